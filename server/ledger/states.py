"""The transaction state machine. Every change is a compare-and-set on the current state."""

from __future__ import annotations

INITIATED = "initiated"
OTP_SENT = "otp_sent"
PROCESSING = "processing"
SUCCEEDED = "succeeded"
FAILED = "failed"
UNKNOWN = "unknown"       # the provider's answer was lost after the request left
EXPIRED = "expired"       # the OTP was never entered in time

STATES = (INITIATED, OTP_SENT, PROCESSING, SUCCEEDED, FAILED, UNKNOWN, EXPIRED)

# A policy has at most one open transaction: it blocks a second payment of it.
OPEN = frozenset({INITIATED, OTP_SENT, PROCESSING, UNKNOWN})


def holds_policy(state: str) -> bool:
    """Open states hold the policy, and so does `succeeded` until its settlement is
    recorded: releasing it earlier would let a second payment see the policy still
    idle and be taken too."""
    return state in OPEN or state == SUCCEEDED

ALLOWED: dict[str, frozenset[str]] = {
    INITIATED: frozenset({OTP_SENT, FAILED}),
    OTP_SENT: frozenset({PROCESSING, EXPIRED, FAILED}),
    PROCESSING: frozenset({SUCCEEDED, FAILED, OTP_SENT, UNKNOWN}),
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
