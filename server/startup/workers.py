"""Several gateway processes on one port (pre-fork), for production against MongoDB.

The parent binds the port, forks the workers and forwards SIGTERM/SIGINT to them;
each worker shuts down gracefully. A worker that dies is reported, not replaced
(the process supervisor restarts the whole service)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable


def run(count: int, serve: Callable[[], int]) -> int:
    children = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = serve()
            finally:
                os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code:
            print(f"worker {pid} exited with {code}", file=sys.stderr)
            worst = max(worst, abs(code))
    return worst
