"""The `job_runs` collection: one document per run, kept for the retention period.

{_id, name, holder, started_at, finished_at, outcome, result, error}
"""

from __future__ import annotations

import uuid
from typing import Any

from server.kernel.store import IndexSpec, Store

RUNS = "job_runs"

# The expiry (TTL on started_at) comes from the settings: the composition root adds it.
INDEXES: list[IndexSpec] = [(RUNS, [("name", 1), ("started_at", -1)], {})]


class RunHistory:
    def __init__(self, store: Store) -> None:
        self.collection = store.collection(RUNS)

    async def record(self, run: dict[str, Any]) -> None:
        await self.collection.insert_one({"_id": str(uuid.uuid4()), **run})
