"""One provider's HTTP transport, shared by every provider client.

A client owns its wire formats (bodies, answers, error codes); the transport owns the
rest: the session, base URL and timeout, the token and the login behind it, the call
log around each operation, and the two retries that are safe:

- a login is tried once more after any failure short of a refusal (it acts on nothing);
- an authenticated call whose answer says the token was rejected gets one new login
  and one retry (the provider refused before acting). A second rejection is the
  client's to report. Nothing else is ever retried here: a call whose answer was lost
  raises `ProviderOutcomeUnknown` to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import aiohttp

from server.integrations.transport import (
    Answer,
    CachedToken,
    CallLog,
    ProviderOutcomeUnknown,
    ProviderUnavailable,
    TokenCache,
    send,
)
from server.kernel.clock import Clock

JSON = "application/json"


class ProviderTransport:
    """`login` makes one login attempt and returns the token (or raises a typed error);
    `login_endpoint` names it in the call log and in errors; `token_rejected` tells
    from an answer that the provider refused the bearer token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        provider: str,
        base_url: str,
        timeout_seconds: float,
        clock: Clock,
        *,
        login: Callable[[], Awaitable[CachedToken]],
        login_endpoint: str,
        token_rejected: Callable[[Answer], bool],
        calls: CallLog | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._login_once = login
        self._login_endpoint = login_endpoint
        self._token_rejected = token_rejected
        self._log = logging.getLogger(f"gateway.{provider}")
        self.calls = calls or CallLog()
        self.tokens = TokenCache(self._login, clock, on_fetch=self.calls.token_fetched(provider))

    def call(self, endpoint: str) -> AbstractAsyncContextManager[None]:
        """The call-log entry of one operation: wrap the whole operation in it."""
        return self.calls.call(self.provider, endpoint)

    async def send(
        self,
        method: str,
        path: str,
        *,
        data: str | None = None,
        headers: dict[str, str] | None = None,
        timeout_seconds: float | None = None,
    ) -> Answer:
        """One exchange, no token, no retry; `data` is a JSON text. `timeout_seconds`
        replaces the transport's own limit for this exchange."""
        headers = {**(headers or {}), **({"Content-Type": JSON} if data is not None else {})}
        limit = self._timeout
        if timeout_seconds is not None:
            limit = aiohttp.ClientTimeout(total=timeout_seconds)
        return await send(
            self._session,
            self.provider,
            method,
            self.base_url + path,
            data=data,
            headers=headers,
            limit=limit,
        )

    async def authorized(
        self,
        method: str,
        path: str,
        *,
        data: str | None = None,
        headers: dict[str, str] | None = None,
        timeout_seconds: float | None = None,
    ) -> Answer:
        """One exchange with the bearer token. A rejected token is dropped and the call
        made once more after a new login; the second answer is returned whatever it is."""
        for attempt in (1, 2):
            token = await self.tokens.get()
            answer = await self.send(
                method,
                path,
                data=data,
                headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                timeout_seconds=timeout_seconds,
            )
            if attempt == 1 and self._token_rejected(answer):
                self._log.info("%s_token_rejected path=%s", self.provider, path)
                self.tokens.invalidate(token)
                continue
            return answer
        raise AssertionError("unreachable")

    async def _login(self) -> CachedToken:
        async with self.call(self._login_endpoint):
            return await self._login_with_retry()

    async def _login_with_retry(self) -> CachedToken:
        for attempt in (1, 2):
            try:
                return await self._login_once()
            except (ProviderUnavailable, ProviderOutcomeUnknown) as err:
                if attempt == 2:
                    raise ProviderUnavailable(
                        self.provider,
                        f"{self._login_endpoint}: {err.message}",
                        http_status=err.http_status,
                        correlation_id=err.correlation_id,
                    ) from None
        raise AssertionError("unreachable")
