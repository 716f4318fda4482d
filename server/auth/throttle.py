"""Failed-login throttle per username and per source address, kept in the store.

Each key may fail `max_failures` times within the window; the failure that reaches
the limit locks the key for a minute, and every further failure doubles the lock (up
to an hour). While a key is locked no password is checked. A key also admits no more
concurrent checks than it has failures left, so a burst of parallel guesses cannot
slip past the limit. A successful login clears its username's record; the address
keeps its count. Unknown usernames are counted exactly like known ones."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.auth.attempts import LoginAttemptRepository
from server.kernel.clock import Clock

FIRST_LOCK = timedelta(minutes=1)
LONGEST_LOCK = timedelta(hours=1)


@dataclass(frozen=True)
class Throttled:
    """Why a login is refused before its password is checked, and for how long."""

    reason: str  # "user" or "address"
    retry_after: int  # seconds


@dataclass(frozen=True)
class _Key:
    key: str
    reason: str
    max_failures: int


class LoginThrottle:
    def __init__(
        self,
        attempts: LoginAttemptRepository,
        clock: Clock,
        *,
        per_user: int,
        per_address: int,
        window: timedelta,
    ) -> None:
        self.attempts = attempts
        self.clock = clock
        self.per_user = per_user
        self.per_address = per_address
        self.window = window

    async def admit(self, username: str, source: str | None) -> Throttled | None:
        """Reserve one password check for the username and the address, or say why not."""
        now = self.clock.now()
        taken: list[str] = []
        for key in self._keys(username, source):
            await self.attempts.open(key.key, key.max_failures, now, now + self.window)
            if not await self.attempts.take(key.key, now):
                for reserved in taken:
                    await self.attempts.give_back(reserved)
                return Throttled(key.reason, await self._retry_after(key.key, now))
            taken.append(key.key)
        return None

    async def failed(self, username: str, source: str | None) -> None:
        now = self.clock.now()
        for key in self._keys(username, source):
            failures = await self.attempts.add_failure(key.key)
            if failures is not None and failures >= key.max_failures:
                lock = lock_after(failures - key.max_failures)
                await self.attempts.lock(key.key, now + lock, now + lock + self.window)

    async def succeeded(self, username: str, source: str | None) -> None:
        user, *address = self._keys(username, source)
        await self.attempts.clear(user.key)
        for key in address:
            await self.attempts.give_back(key.key)

    async def release(self, username: str, source: str | None) -> None:
        """Give back the checks `admit` reserved when no password was checked after all."""
        for key in self._keys(username, source):
            await self.attempts.give_back(key.key)

    def _keys(self, username: str, source: str | None) -> list[_Key]:
        keys = [_Key(f"user:{username}", "user", self.per_user)]
        if source is not None:
            keys.append(_Key(f"address:{address_key(source)}", "address", self.per_address))
        return keys

    async def _retry_after(self, key: str, now: datetime) -> int:
        """Seconds until the lock ends; 1 when the key only waits for checks in flight."""
        record = await self.attempts.find(key)
        if record is None:
            return 1
        return max(1, math.ceil((record["locked_until"] - now).total_seconds()))


def lock_after(failures_past_limit: int) -> timedelta:
    """The lock after the failure that reaches the limit (0) and each one past it."""
    return min(LONGEST_LOCK, FIRST_LOCK * 2 ** min(failures_past_limit, 16))


def address_key(source: str) -> str:
    """The address a failure counts against: an IPv6 caller by its /64 (one subscriber
    usually holds a whole /64, so counting single addresses would not hold), IPv4 as it
    is."""
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        return source
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
