import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from server.integrations.transport import CachedToken, TokenCache


class ManualClock:
    def __init__(self) -> None:
        self.current = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current


def issuing(clock: ManualClock, lifetime: timedelta | None, delay: float = 0.0):
    issued: list[str] = []

    async def fetch() -> CachedToken:
        await asyncio.sleep(delay)  # a slow token request, so that callers overlap
        issued.append(f"token-{len(issued) + 1}")
        expires = clock.now() + lifetime if lifetime is not None else None
        return CachedToken(issued[-1], expires)

    return fetch, issued


@pytest.mark.asyncio
async def test_concurrent_callers_share_one_token_request() -> None:
    clock = ManualClock()
    fetch, issued = issuing(clock, timedelta(seconds=3599), delay=0.05)
    cache = TokenCache(fetch, clock)
    tokens = await asyncio.gather(*(cache.get() for _ in range(20)))
    assert set(tokens) == {"token-1"}
    assert issued == ["token-1"]


@pytest.mark.asyncio
async def test_token_is_renewed_a_minute_before_it_expires() -> None:
    clock = ManualClock()
    fetch, issued = issuing(clock, timedelta(seconds=3599))
    cache = TokenCache(fetch, clock)
    assert await cache.get() == "token-1"
    clock.current += timedelta(seconds=3538)
    assert await cache.get() == "token-1"
    clock.current += timedelta(seconds=1)
    assert await cache.get() == "token-2"


@pytest.mark.asyncio
async def test_token_without_expiry_is_kept_until_rejected() -> None:
    clock = ManualClock()
    fetch, issued = issuing(clock, None)
    cache = TokenCache(fetch, clock)
    await cache.get()
    clock.current += timedelta(days=30)
    assert await cache.get() == "token-1"
    cache.invalidate("token-1")
    assert await cache.get() == "token-2"


@pytest.mark.asyncio
async def test_invalidating_a_stale_token_keeps_the_fresh_one() -> None:
    clock = ManualClock()
    fetch, issued = issuing(clock, None)
    cache = TokenCache(fetch, clock)
    await cache.get()
    cache.invalidate("token-1")
    await cache.get()
    cache.invalidate("token-1")  # a late caller still holding the old token
    assert await cache.get() == "token-2"
    assert issued == ["token-1", "token-2"]
