"""The body timeout (server.body_timeout_seconds): a request whose body has not all
arrived in time has its connection closed.

Tornado's own body timeout starts a task and a timer for every request with a body
(about 6% of a C2B validation's CPU, measured). Here a request being read is one entry in a dict,
and one periodic sweep closes the connections past their time. A connection is
closed up to a sweep's interval (a quarter of the timeout, at most a second) after
its time."""

from __future__ import annotations

import time
from typing import Protocol

from tornado.ioloop import PeriodicCallback

# The longest wait between sweeps, in seconds.
MAX_SWEEP_SECONDS = 1.0


class BodyRead(Protocol):
    """A request whose body is being read (server.web.body_limit's)."""

    def body_timed_out(self) -> None: ...


class BodyDeadlines:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._reading: dict[BodyRead, float] = {}
        interval = min(MAX_SWEEP_SECONDS, seconds / 4)
        self._sweeper = PeriodicCallback(self._sweep, interval * 1000)

    def reading(self, request: BodyRead) -> None:
        """`request`'s body is being read from now: it must have arrived in time."""
        self._reading[request] = time.monotonic() + self.seconds
        if not self._sweeper.is_running():  # started in the event loop that serves
            self._sweeper.start()

    def read(self, request: BodyRead) -> None:
        """`request`'s body has arrived, or its connection closed."""
        self._reading.pop(request, None)

    def stop(self) -> None:
        self._sweeper.stop()

    def _sweep(self) -> None:
        now = time.monotonic()
        late = [request for request, deadline in self._reading.items() if deadline <= now]
        for request in late:
            del self._reading[request]
            request.body_timed_out()
