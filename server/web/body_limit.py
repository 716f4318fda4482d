"""Request bodies over server.max_body_bytes are refused before they are read.

BodyLimit sits between the HTTP server and the application. A route may have a limit
of its own (`limits`: a literal request path and its limit, e.g. the statement
upload's reconciliation.max_statement_bytes); every other path has
server.max_body_bytes. A request whose Content-Length is over the limit is handed to
its route at once with an empty body; a body without a length (chunked) is passed on
until it goes past the limit, and then cut off after limit + 1 bytes. Either way the
route's handler runs right away and answers 413 in its own format
(server.web.TrackedRequest.prepare), and nothing more of the body is kept.

The answer goes out at once, but what the client is still sending is read and
dropped (up to DRAIN_BYTES, within server.body_timeout_seconds) before the answer is
finished: a client that sends its whole body before reading (urllib, requests) then
reads the 413 instead of a connection reset, and the connection stays usable. Past
DRAIN_BYTES the connection is closed."""

from __future__ import annotations

import logging
from asyncio import Future
from collections.abc import Awaitable, Mapping
from typing import Any

from tornado import httputil
from tornado.http1connection import HTTP1Connection

from server.web.body_deadline import BodyDeadlines

log = logging.getLogger("gateway.http")

# How much of a refused body is read (and dropped) so that its client sees the answer.
DRAIN_BYTES = 4 * 1024 * 1024


def declared_length(headers: httputil.HTTPHeaders) -> int | None:
    """The Content-Length when it is a plain number (given once, or repeated the same);
    anything else is the HTTP server's to refuse (it answers 400)."""
    values = {value.strip() for value in headers.get("Content-Length", "").split(",")}
    value = values.pop() if len(values) == 1 else ""
    return int(value) if value.isascii() and value.isdigit() else None


def _has_body(headers: httputil.HTTPHeaders, length: int | None) -> bool:
    """Whether the HTTP server will read a body for these headers (Tornado's rule)."""
    if length is not None:
        return length > 0
    return headers.get("Transfer-Encoding", "").lower() == "chunked"


class BodyLimit(httputil.HTTPServerConnectionDelegate):
    """Wraps the application (the HTTP server's request callback); every request's body
    is read within the time `deadlines` gives it (server.web.body_deadline)."""

    def __init__(
        self,
        application: httputil.HTTPServerConnectionDelegate,
        limit: int,
        limits: Mapping[str, int] | None,
        deadlines: BodyDeadlines,
    ) -> None:
        self.application = application
        self.limit = limit
        self.limits = dict(limits or {})
        self.deadlines = deadlines

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        assert isinstance(request_conn, HTTP1Connection)
        return _LimitedBody(
            self.application, server_conn, request_conn, self.limit, self.limits, self.deadlines
        )

    def on_close(self, server_conn: object) -> None:
        self.application.on_close(server_conn)


class _LimitedBody(httputil.HTTPMessageDelegate):
    """One request: its body as the application receives it, and the finishing of
    its answer (the application writes through _AnswerFinishedAfterBody)."""

    def __init__(
        self,
        application: httputil.HTTPServerConnectionDelegate,
        server_conn: object,
        connection: HTTP1Connection,
        limit: int,
        limits: Mapping[str, int],
        deadlines: BodyDeadlines,
    ) -> None:
        self.connection = connection
        self.limit = limit
        self.limits = limits
        self.deadlines = deadlines
        self.received = 0
        self.cut_off = False  # the handler has run; the rest is dropped
        self.body_ended = False
        self.answer_waiting = False  # the handler finished before the body ended
        self.inner = application.start_request(server_conn, _AnswerFinishedAfterBody(self))

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        if self.limits and isinstance(start_line, httputil.RequestStartLine):
            self.limit = self.limits.get(start_line.path.partition("?")[0], self.limit)
        answer = self.inner.headers_received(start_line, headers)
        length = declared_length(headers)
        if _has_body(headers, length):
            # As Tornado's own body timeout: counted once the route is ready for the
            # body (a streaming handler's prepare has run).
            if answer is None:
                self.deadlines.reading(self)
            else:
                answer = self._read_after(answer)
        if length is not None and length > self.limit:
            # The answer is final: no "100 Continue" invites the client to send it all.
            headers.pop("Expect", None)
            self._cut_off()
        return answer

    async def _read_after(self, ready: Awaitable[None]) -> None:
        await ready
        self.deadlines.reading(self)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        room = self.limit + 1 - self.received
        self.received += len(chunk)
        if self.cut_off:
            if self.received > self.limit + 1 + DRAIN_BYTES:
                self.connection.close()
            return None
        if self.received <= self.limit:
            return self.inner.data_received(chunk)
        self.inner.data_received(chunk[:room])  # one byte over: the handler sees it
        self._cut_off()
        return None

    def finish(self) -> None:
        self.body_ended = True
        self.deadlines.read(self)
        if not self.cut_off:
            self.inner.finish()
        elif self.answer_waiting:
            self.connection.finish()

    def on_connection_close(self) -> None:
        self.deadlines.read(self)
        self.inner.on_connection_close()

    def body_timed_out(self) -> None:
        log.info("body_timeout client=%s", getattr(self.connection.context, "remote_ip", "-"))
        self.connection.close()

    def answer_finished(self) -> None:
        if self.cut_off and not self.body_ended:
            self.answer_waiting = True
        else:
            self.connection.finish()

    def _cut_off(self) -> None:
        """Run the handler now, on what has arrived."""
        self.cut_off = True
        self.inner.finish()


class _AnswerFinishedAfterBody(httputil.HTTPConnection):
    """The connection as the application sees it: writes go straight out; finishing
    the answer waits for the end of a refused body (see _LimitedBody)."""

    def __init__(self, request: _LimitedBody) -> None:
        self._request: _LimitedBody | None = request
        self._connection = request.connection

    def write_headers(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> Future[None]:
        return self._connection.write_headers(start_line, headers, chunk)

    def write(self, chunk: bytes) -> Future[None]:
        return self._connection.write(chunk)

    def finish(self) -> None:
        """The answer's end, the request's last use of it. The request holds the
        application's delegate, which holds this connection: letting go of the request
        here breaks that cycle, so a finished request is freed at once, not left for
        the garbage collector (a bare Tornado server leaves no cycle per request)."""
        request, self._request = self._request, None
        if request is not None:
            request.answer_finished()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)
