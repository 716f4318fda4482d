"""What every provider client shares: typed outcomes and a shared token cache.

Provider clients turn every answer into a result or one of these exceptions;
nothing above them parses provider JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from server.kernel.background import BackgroundTasks
from server.kernel.clock import Clock


class ProviderError(Exception):
    """`http_status`: the provider's HTTP status, when it answered; `correlation_id`: the
    id the provider gave the request, when it sent one (for tracing with the provider).
    The message names the operation and the provider's answer, never a credential."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        http_status: int | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message
        self.http_status = http_status
        self.correlation_id = correlation_id


class ProviderRejected(ProviderError):
    """The provider answered and said no; `code` is the provider's own code."""

    def __init__(
        self,
        provider: str,
        code: str,
        message: str,
        *,
        http_status: int | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(
            provider, f"{code} {message}", http_status=http_status, correlation_id=correlation_id
        )
        self.code = code
        self.reason = message


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or failed before acting; safe to try again later."""


class ProviderOutcomeUnknown(ProviderError):
    """The request may have been acted on but no usable answer came back."""


@dataclass(frozen=True)
class Answer:
    """A provider's HTTP answer: status, parsed JSON (None if empty or not JSON) and
    the cookies it set (a provider that ties a check to its session cookie)."""

    status: int
    body: Any
    cookies: Mapping[str, str] = field(default_factory=dict)


async def send(
    session: aiohttp.ClientSession,
    provider: str,
    method: str,
    url: str,
    *,
    limit: aiohttp.ClientTimeout,
    data: str | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One HTTP exchange. Cannot connect: unavailable (nothing was sent). Timed out or
    cut off: outcome unknown (the request may have reached the provider)."""
    try:
        async with session.request(
            method, url, data=data, headers=headers, timeout=limit
        ) as response:
            text = await response.text()
            cookies = {name: morsel.value for name, morsel in response.cookies.items()}
    except aiohttp.ClientConnectorError as err:
        reason = f"cannot connect ({err.__class__.__name__})"
        raise ProviderUnavailable(provider, reason) from None
    except (TimeoutError, aiohttp.ClientError) as err:
        kind = "timed out" if isinstance(err, TimeoutError) else err.__class__.__name__
        raise ProviderOutcomeUnknown(
            provider, f"{urlsplit(url).path}: no answer ({kind})"
        ) from None
    try:
        body = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        body = None
    return Answer(response.status, body, cookies)


@dataclass(frozen=True)
class CachedToken:
    value: str
    expires_at: datetime | None  # None: valid until the provider rejects it


class TokenCache:
    """One provider token shared by every caller in the process.

    Concurrent callers share a single fetch (single-flight); a token is renewed
    `margin` before it expires; `invalidate` drops it after the provider rejected it,
    unless another caller already replaced it."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[CachedToken]],
        clock: Clock,
        margin: timedelta = timedelta(seconds=60),
        on_fetch: Callable[[], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self._on_fetch = on_fetch
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
                if self._on_fetch is not None:
                    self._on_fetch()
                token = self._token = await self._fetch()
            return token.value

    def invalidate(self, value: str) -> None:
        if self._token is not None and self._token.value == value:
            self._token = None


class CallLog:
    """Records every outbound provider call (store and metrics) for provider health.

    Recording never fails or delays the call it records: the store write runs in
    the background and its errors are only logged. A provider's error message is
    kept up to ERROR_CHARS characters."""

    ERROR_CHARS = 500

    def __init__(
        self,
        collection: Any = None,
        clock: Clock | None = None,
        metrics: Any = None,
        background: BackgroundTasks | None = None,
    ) -> None:
        self._collection = collection
        self._clock = clock or Clock()
        self._metrics = metrics
        self._background = BackgroundTasks() if background is None else background

    def stamped_by(self, clock: Clock) -> CallLog:
        """The same log (store, metrics, background work) with its entries stamped by
        `clock`: calls made on behalf of a past moment (the sandbox's history) are
        recorded at that moment."""
        return CallLog(self._collection, clock, self._metrics, self._background)

    def token_fetched(self, provider: str) -> Callable[[], None]:
        def count() -> None:
            if self._metrics is not None:
                self._metrics.token_refreshes.labels(provider).inc()

        return count

    @contextlib.asynccontextmanager
    async def call(self, provider: str, endpoint: str) -> AsyncIterator[None]:
        started, at = time.perf_counter(), self._clock.now()
        outcome, error = "ok", None
        try:
            yield
        except ProviderRejected as err:
            outcome, error = "rejected", err.message
            raise
        except ProviderUnavailable as err:
            outcome, error = "unavailable", err.message
            raise
        except ProviderOutcomeUnknown as err:
            outcome, error = "unknown", err.message
            raise
        finally:
            self._record(provider, endpoint, at, time.perf_counter() - started, outcome, error)

    def _record(
        self,
        provider: str,
        endpoint: str,
        at: datetime,
        seconds: float,
        outcome: str,
        error: str | None,
    ) -> None:
        if self._metrics is not None:
            self._metrics.provider_calls.labels(provider, endpoint, outcome).inc()
            self._metrics.provider_seconds.labels(provider, endpoint).observe(seconds)
        if self._collection is None:
            return
        self._background.spawn(
            self._collection.insert_one(
                {
                    "provider": provider,
                    "endpoint": endpoint,
                    "at": at,
                    "duration_ms": round(seconds * 1000, 2),
                    "outcome": outcome,
                    "error": error[: self.ERROR_CHARS] if error else error,
                }
            ),
            "provider-call-log",
        )
