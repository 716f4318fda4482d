"""The transaction state machine, for every channel. Every change is a compare-and-set
on the current state (TransactionRepository.transition).

Money already received (a paybill confirmation, a provider's payment) is stored
`processing` and decided at once. A debit starts `initiated`, waits in a waiting
state while the payer acts (`otp_sent`: the payer got a code to read out), then goes
`processing` while the provider is asked to complete it."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    INITIATED = "initiated"
    OTP_SENT = "otp_sent"  # waiting: the payer got a one-time code
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the provider's answer was lost after the request left
    EXPIRED = "expired"  # the payer never acted in time


INITIATED = State.INITIATED
OTP_SENT = State.OTP_SENT
PROCESSING = State.PROCESSING
SUCCEEDED = State.SUCCEEDED
FAILED = State.FAILED
UNKNOWN = State.UNKNOWN
EXPIRED = State.EXPIRED

STATES = tuple(state.value for state in State)

# The states in which a debit waits for its payer (a channel's `waiting_state`).
WAITING = frozenset({OTP_SENT})

# A policy has at most one open transaction: it blocks a second payment of it.
OPEN = frozenset({INITIATED, PROCESSING, UNKNOWN, *WAITING})


def holds_policy(state: str) -> bool:
    """Open states hold the policy, and so does `succeeded` until its settlement is
    recorded: releasing it earlier would let a second payment see the policy still
    idle and be taken too."""
    return state in OPEN or state == SUCCEEDED


ALLOWED: dict[str, frozenset[str]] = {
    INITIATED: frozenset({*WAITING, FAILED}),
    **{waiting: frozenset({PROCESSING, EXPIRED, FAILED}) for waiting in WAITING},
    PROCESSING: frozenset({SUCCEEDED, FAILED, UNKNOWN, *WAITING}),
    UNKNOWN: frozenset({SUCCEEDED, FAILED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    EXPIRED: frozenset(),
}


class IllegalTransition(ValueError):
    pass


def check(current: str, target: str) -> None:
    if target not in ALLOWED[current]:
        raise IllegalTransition(f"{current} -> {target}")
