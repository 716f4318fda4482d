"""The gateway's HTTP server: Tornado's, with connection timeouts, the body limit, and
an accept() that backs off when the process runs out of file descriptors.

Timeouts: Tornado's `idle_connection_timeout` bounds the wait for a request's
headers, counted from the connection's start or from the end of the previous answer,
so it closes idle keep-alive connections and headers sent too slowly alike;
server.web.body_deadline bounds the reading of a body."""

from __future__ import annotations

import errno
import logging
import socket
import sys
from collections.abc import Callable, Iterable
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.web import Application

from server.kernel.settings import ServerSettings
from server.web.body_deadline import BodyDeadlines
from server.web.body_limit import BodyLimit

log = logging.getLogger("gateway.http")

# accept() errors that mean "out of descriptors or memory for now", not a broken socket.
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# How long accepting stops after such an error (one log line per pause).
ACCEPT_PAUSE_SECONDS = 1.0
# Connections accepted per wake-up before other work runs (Tornado's own figure).
ACCEPTS_PER_WAKEUP = 128


class GatewayHTTPServer(HTTPServer):
    """`GatewayHTTPServer(application, settings.server)`: the timeouts and the body
    limit of the settings, and Acceptor on every socket it listens on."""

    # Tornado's HTTPServer takes its arguments in initialize (it is a Configurable).
    def initialize(  # type: ignore[override]
        self,
        application: Application,
        settings: ServerSettings,
    ) -> None:
        # The body limit is BodyLimit's, answered in the route's format; Tornado's own
        # (a bare 400) is set out of reach. A route with a limit of its own is named in
        # the application's `body_limits` (server.api.app.make_app).
        self.body_deadlines = BodyDeadlines(settings.body_timeout_seconds)
        super().initialize(
            BodyLimit(
                application,
                settings.max_body_bytes,
                application.settings.get("body_limits"),
                self.body_deadlines,
            ),
            idle_connection_timeout=settings.idle_timeout_seconds,
            max_body_size=sys.maxsize,
        )

    async def close_all_connections(self) -> None:
        try:
            await super().close_all_connections()
        finally:
            self.body_deadlines.stop()

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """TCPServer.add_sockets, with the accept handler below."""
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = Acceptor(
                sock, self._handle_connection, ACCEPT_PAUSE_SECONDS
            ).remove


class Acceptor:
    """Accepts connections on a listening socket. When accept() fails for lack of
    descriptors, stops watching the socket for a pause and logs it once, instead of
    being woken again at once by the connection still waiting (a busy loop)."""

    def __init__(
        self,
        sock: socket.socket,
        on_connection: Callable[[socket.socket, Any], None],
        pause_seconds: float,
    ) -> None:
        self.sock = sock
        self.on_connection = on_connection
        self.pause_seconds = pause_seconds
        self.io_loop = IOLoop.current()
        self.removed = False
        self.paused: object | None = None  # the timeout that resumes accepting
        self.io_loop.add_handler(sock, self._accept, IOLoop.READ)

    def _accept(self, _fd: Any, _events: int) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            if self.removed:
                return
            try:
                connection, address = self.sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:
                if error.errno not in EXHAUSTED:
                    raise
                self._pause(error.errno)
                return
            self.on_connection(connection, address)

    def _pause(self, code: int) -> None:
        self.io_loop.update_handler(self.sock, 0)
        self.paused = self.io_loop.call_later(self.pause_seconds, self._resume)
        log.warning(
            "accept_paused reason=%s port=%s resume_in_seconds=%s",
            errno.errorcode[code],
            self.sock.getsockname()[1],
            self.pause_seconds,
        )

    def _resume(self) -> None:
        self.paused = None
        if not self.removed:
            self.io_loop.update_handler(self.sock, IOLoop.READ)

    def remove(self) -> None:
        self.removed = True
        if self.paused is not None:
            self.io_loop.remove_timeout(self.paused)
        self.io_loop.remove_handler(self.sock)
