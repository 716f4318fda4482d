"""The `jobs` settings section: whether the runner runs, each job's interval, the lease."""

from __future__ import annotations

from dataclasses import dataclass, fields

from server.kernel.settings import require_positive


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

    def check(self) -> None:
        require_positive(
            self, (spec.name for spec in fields(self) if spec.name.endswith("_seconds"))
        )
