"""Processing inbox entries again: the ones a crash cut off (`received`), the ones whose
processing failed, and on request the ones held for review.

Each source registers how an entry of a kind is processed (`register`); replay
dispatches by (source, kind). A kind without a processor is never replayed: a
validation's answer, for one, cannot be given again."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from server.inbox import repository as repo
from server.inbox.documents import InboxEntry
from server.inbox.repository import InboxRepository
from server.kernel.clock import Clock
from server.kernel.errors import Conflict, NotFound
from server.kernel.listing import sort_keys
from server.kernel.store import time_window

log = logging.getLogger("gateway.inbox")

# Processes one entry; returns the status it marked the entry with.
Processor = Callable[[InboxEntry], Awaitable[str]]
# Records that processing an entry failed (the owner also counts it).
FailureMarker = Callable[[str, BaseException], Awaitable[None]]


@dataclass(frozen=True)
class ReplayResult:
    entry_id: str
    status: str


@dataclass(frozen=True)
class EntryReplay:
    """An entry as it was before an operator's replay, and as the replay left it."""

    before: InboxEntry
    after: InboxEntry


@dataclass(frozen=True)
class _Registration:
    process: Processor
    mark_failed: FailureMarker


class InboxReplay:
    def __init__(self, inbox: InboxRepository, clock: Clock) -> None:
        self.inbox = inbox
        self.clock = clock
        self._processors: dict[tuple[str, str], _Registration] = {}

    def register(
        self, source: str, kind: str, process: Processor, mark_failed: FailureMarker
    ) -> None:
        self._processors[(source, kind)] = _Registration(process, mark_failed)

    def _registration(self, entry: InboxEntry) -> _Registration | None:
        source = entry.get("source", repo.LEGACY_SOURCE_KIND[0])
        return self._processors.get((source, entry["kind"]))

    async def replay(
        self,
        *,
        include_review: bool = False,
        grace: timedelta = timedelta(minutes=1),
        limit: int = 1000,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[ReplayResult]:
        """Process again the entries that were received but not finished.

        Entries younger than `grace` may still be in flight and are left alone.
        Replay is safe to repeat: every processor is idempotent on its entry."""
        statuses = repo.REVIEWABLE if include_review else repo.REPLAYABLE
        entries = await self.inbox.replayable(
            set(self._processors), statuses, self.clock.now() - grace, limit
        )
        results = []
        for entry in entries:
            results.append(ReplayResult(entry["_id"], await self._process(entry)))
            if progress is not None:
                progress(len(results), len(entries))
        return results

    async def entry(self, entry_id: str) -> InboxEntry:
        entry = await self.inbox.get(entry_id)
        if entry is None:
            raise NotFound(f"no inbox entry {entry_id}")
        return entry

    async def replay_entry(self, entry_id: str, reason: str, actor: str) -> EntryReplay:
        """An operator processes one entry again (audited on the entry)."""
        entry = await self.entry(entry_id)
        if self._registration(entry) is None or entry["status"] not in repo.REVIEWABLE:
            raise Conflict(
                f"a {entry['kind']} entry that is {entry['status']} is not replayed",
                {"status": entry["status"]},
                code="invalid_state",
            )
        await self.inbox.note_replay(entry_id, actor, reason, self.clock.now())
        await self._process(entry)
        replayed = await self.inbox.get(entry_id)
        if replayed is None:
            raise RuntimeError(f"inbox entry {entry_id} vanished while it was replayed")
        return EntryReplay(entry, replayed)

    async def _process(self, entry: InboxEntry) -> str:
        registration = self._registration(entry)
        if registration is None:
            raise ValueError(f"no processor for inbox entry {entry['_id']}")
        try:
            return await registration.process(entry)
        except Exception as err:
            log.exception("replay_failed inbox_id=%s", entry["_id"])
            await registration.mark_failed(entry["_id"], err)
            return repo.FAILED

    async def entries(
        self, filters: dict[str, Any], limit: int, offset: int
    ) -> tuple[list[InboxEntry], int]:
        """`filters` as server.mpesa.schemas.InboxQuerySchema loads them."""
        query = {key: filters[key] for key in repo.LIST_FILTERS if key in filters}
        query.update(time_window(filters, "received_at"))
        sort = sort_keys(filters.get("sort", "-received_at"), "_id")
        return await self.inbox.page(query, limit, offset, sort)
