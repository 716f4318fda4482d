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

# How long cancelled tasks get to end, and how often the cancellation is repeated.
CANCEL_WAIT_SECONDS = 2.0
CANCEL_REPEAT_SECONDS = 0.1


async def cancel_and_wait(
    tasks: list[asyncio.Task[Any]], within: float = CANCEL_WAIT_SECONDS
) -> int:
    """Cancel `tasks` and wait up to `within` seconds for them to end; returns how many
    did not. The cancellation is repeated while they run: a task awaiting the database
    driver may see one cancellation swallowed by the driver and go on."""
    try:
        async with asyncio.timeout(within):
            while pending := [task for task in tasks if not task.done()]:
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=CANCEL_REPEAT_SECONDS)
    except TimeoutError:
        pass
    return sum(1 for task in tasks if not task.done())


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
        if left:
            still = await cancel_and_wait(left)
            log.warning("background_cut count=%s still_running=%s", len(left), still)
        return len(left)
