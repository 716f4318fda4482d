"""The `jobs` settings section: whether the runner runs, each job's interval, the lease."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta

from server.kernel.settings import increasing_schedule, require_positive


@dataclass(frozen=True)
class JobsSettings:
    enabled: bool = True
    # A run still holding its lease this long after it started is presumed dead, and
    # another process may take the job over: keep it above the longest run.
    lease_seconds: float = 300.0
    expire_debits_interval_seconds: float = 30.0
    check_debits_interval_seconds: float = 15.0
    finish_settlements_interval_seconds: float = 60.0
    replay_inbox_interval_seconds: float = 120.0
    # Pull Transactions (when daraja.pull_enabled): each run overlaps the last.
    mpesa_pull_interval_seconds: float = 600.0
    janitor_interval_seconds: float = 60.0
    # Premiums waiting to be written into openIMIS (insurance.backend: openimis).
    write_premiums_interval_seconds: float = 15.0
    # Minutes after a debit became in doubt (`unknown`, or `processing` cut off) at which
    # the janitor asks its provider's status call; after the last, it is for an operator.
    janitor_backoff_minutes: tuple[str, ...] = ("1", "5", "15", "60")

    def check(self) -> None:
        require_positive(
            self, (spec.name for spec in fields(self) if spec.name.endswith("_seconds"))
        )
        self.janitor_backoff()

    def janitor_backoff(self) -> tuple[timedelta, ...]:
        """When, after a debit became in doubt, the janitor asks about it: at least once,
        whole minutes, positive and increasing."""
        return increasing_schedule(
            "janitor_backoff_minutes", self.janitor_backoff_minutes, "minutes", "1,5,15,60"
        )
