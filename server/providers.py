"""What every provider client shares: typed outcomes and a shared token cache.

Provider clients turn every answer into a result or one of these exceptions;
nothing above them parses provider JSON.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.clock import Clock


class ProviderError(Exception):
    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message


class ProviderRejected(ProviderError):
    """The provider answered and said no; `code` is the provider's own code."""

    def __init__(self, provider: str, code: str, message: str) -> None:
        super().__init__(provider, f"{code} {message}")
        self.code = code
        self.reason = message


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or failed before acting; safe to try again later."""


class ProviderOutcomeUnknown(ProviderError):
    """The request may have been acted on but no usable answer came back."""


@dataclass(frozen=True)
class CachedToken:
    value: str
    expires_at: datetime | None     # None: valid until the provider rejects it


class TokenCache:
    """One provider token shared by every caller in the process.

    Concurrent callers share a single fetch (single-flight); a token is renewed
    `margin` before it expires; `invalidate` drops it after the provider rejected it,
    unless another caller already replaced it."""

    def __init__(self, fetch: Callable[[], Awaitable[CachedToken]], clock: Clock,
                 margin: timedelta = timedelta(seconds=60)) -> None:
        self._fetch = fetch
        self._clock = clock
        self._margin = margin
        self._token: CachedToken | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    def _fresh(self) -> CachedToken | None:
        token = self._token
        if token is None:
            return None
        if token.expires_at is not None and self._clock.now() >= token.expires_at - self._margin:
            return None
        return token

    async def get(self) -> str:
        token = self._fresh()
        if token is not None:
            return token.value
        async with self._lock:
            token = self._fresh()
            if token is None:
                self.fetches += 1
                token = self._token = await self._fetch()
            return token.value

    def invalidate(self, value: str) -> None:
        if self._token is not None and self._token.value == value:
            self._token = None
