"""One owner for the work a request starts and does not wait for (an audit line, a
provider call's log entry, a late validation's record): each task is kept until it
ends, its failure is logged, and a stopping gateway drains them with a deadline
before the store closes, so no write in flight is lost to a shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("gateway.background")


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `work` on the running loop; the task is held until it ends."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("background_failed task=%s", task.get_name(), exc_info=error)

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, deadline_seconds: float) -> int:
        """Wait for every task, new ones included, up to the deadline; cancel what is
        left and return how many were cut."""
        try:
            async with asyncio.timeout(deadline_seconds):
                while self._tasks:
                    await asyncio.wait(set(self._tasks))
        except TimeoutError:
            pass
        left = list(self._tasks)
        for task in left:
            task.cancel()
        if left:
            await asyncio.gather(*left, return_exceptions=True)
            log.warning("background_cut count=%s", len(left))
        return len(left)
