"""The `job_runs` collection: one document per run, kept for the retention period.

{_id, name, holder, started_at, finished_at, outcome, summary, error}

`summary` is what the run did, in counts by name ({"expired": 3}). Records written
before summaries existed carry `result`, one count instead: they read as
{"handled": result}.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from server.kernel.store import IndexSpec, Store

RUNS = "job_runs"

# The expiry (TTL on started_at) comes from the settings: the composition root adds it.
INDEXES: list[IndexSpec] = [(RUNS, [("name", 1), ("started_at", -1)], {})]

# What a run did, in counts by name: {"fetched": 40, "recovered": 2, "differing": 0}.
Summary = dict[str, int]
# The name of the one count of a job (or an old record) that gives a number, not a summary.
HANDLED = "handled"


def as_summary(result: Mapping[str, int] | int | None) -> Summary:
    """A job's result as a summary: a mapping of counts as it is, one count as
    {"handled": n}, nothing (a failed run) as {}."""
    if result is None:
        return {}
    if isinstance(result, int):
        return {HANDLED: result}
    return {str(name): int(count) for name, count in result.items()}


def recorded_summary(run: Mapping[str, Any]) -> Summary:
    """The summary of a recorded run (a `job_runs` document or a lease's `last_run`),
    also of one recorded before summaries, whose `result` is one count."""
    summary = run.get("summary")
    if isinstance(summary, Mapping):
        return as_summary(summary)
    result = run.get("result")
    return as_summary(result if isinstance(result, int) else None)


class RunHistory:
    def __init__(self, store: Store) -> None:
        self.collection = store.collection(RUNS)

    async def record(self, run: dict[str, Any]) -> None:
        await self.collection.insert_one({"_id": str(uuid.uuid4()), **run})

    async def latest(self, name: str) -> dict[str, Any] | None:
        """The job's most recent recorded run, if any is still kept."""
        newest = self.collection.find({"name": name}).sort("started_at", -1).limit(1)
        found = await newest.to_list(1)
        return found[0] if found else None
