"""Per-provider request limit: a fixed one-minute window per key.

Counted in process memory: with N gateway processes the limit applies per
process (the configured value is per process)."""

from __future__ import annotations

import math

from server.kernel.clock import Clock


class RateLimiter:
    def __init__(self, per_minute: int, clock: Clock) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._windows: dict[str, tuple[int, int]] = {}

    def retry_after(self, key: str) -> int | None:
        """Count one request; None when allowed, else seconds until the next window."""
        if self.per_minute <= 0:
            return None
        now = self.clock.now().timestamp()
        window = int(now // 60)
        current, count = self._windows.get(key, (window, 0))
        if current != window:
            count = 0
        if count >= self.per_minute:
            return max(1, math.ceil((window + 1) * 60 - now))
        self._windows[key] = (window, count + 1)
        return None
