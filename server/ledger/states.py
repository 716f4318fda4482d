"""The transaction state machine, for every channel. Every change is a compare-and-set
on the current state (TransactionRepository.transition).

Money already received (a paybill confirmation, a provider's payment) is stored
`processing` and decided at once. A debit starts `initiated`, waits in a waiting
state while the payer acts (`otp_sent`: the payer got a code to read out;
`prompt_sent`: the payer's phone shows a payment prompt), then goes `processing`
while the provider is asked to complete it, or is decided by the provider's own
answer (its callback or status call): succeeded, failed, cancelled or expired."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    INITIATED = "initiated"
    OTP_SENT = "otp_sent"  # waiting: the payer got a one-time code
    PROMPT_SENT = "prompt_sent"  # waiting: the payer's phone shows a payment prompt
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the provider's answer was lost after the request left
    EXPIRED = "expired"  # the payer never acted in time
    CANCELLED = "cancelled"  # the payer declined


INITIATED = State.INITIATED
OTP_SENT = State.OTP_SENT
PROMPT_SENT = State.PROMPT_SENT
PROCESSING = State.PROCESSING
SUCCEEDED = State.SUCCEEDED
FAILED = State.FAILED
UNKNOWN = State.UNKNOWN
EXPIRED = State.EXPIRED
CANCELLED = State.CANCELLED

STATES = tuple(state.value for state in State)

# The states in which a debit waits for its payer (a channel's `waiting_state`).
WAITING = frozenset({OTP_SENT, PROMPT_SENT})

# A policy has at most one open transaction: it blocks a second payment of it.
OPEN = frozenset({INITIATED, PROCESSING, UNKNOWN, *WAITING})


def holds_policy(state: str) -> bool:
    """Open states hold the policy, and so does `succeeded` until its settlement is
    recorded: releasing it earlier would let a second payment see the policy still
    idle and be taken too."""
    return state in OPEN or state == SUCCEEDED


# The decisions a provider's own answer (a callback, a status call) can bring.
DECIDED_BY_PROVIDER = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED})

ALLOWED: dict[str, frozenset[str]] = {
    # `unknown`: the request that asks the payer left and its answer was lost.
    INITIATED: frozenset({*WAITING, FAILED, UNKNOWN}),
    **{waiting: frozenset({PROCESSING, *DECIDED_BY_PROVIDER, UNKNOWN}) for waiting in WAITING},
    PROCESSING: frozenset({SUCCEEDED, FAILED, UNKNOWN, *WAITING}),
    UNKNOWN: DECIDED_BY_PROVIDER,
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    EXPIRED: frozenset(),
    CANCELLED: frozenset(),
}


class IllegalTransition(ValueError):
    pass


def check(current: str, target: str) -> None:
    if target not in ALLOWED[current]:
        raise IllegalTransition(f"{current} -> {target}")
