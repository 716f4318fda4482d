"""Time source, injectable so tests can control it."""

from __future__ import annotations

from datetime import UTC, datetime


class Clock:
    """Wall clock returning timezone-aware UTC datetimes."""

    def now(self) -> datetime:
        return datetime.now(UTC)
