"""The `mpesa-pull` job: M-Pesa's own list of the paybill's payments (Pull
Transactions), checked against what the gateway stored.

Each run asks from a little before the last successful run's end (daraja
.pull_overlap_minutes) to now, at most 48 hours back (what the API reaches), and pages
until M-Pesa has no more rows. A TransID the gateway lacks is recovered through the
inbox (source `daraja_pull`) and the confirmation's path: stored once, notified and
settled. A row that differs from the stored payment (amount, account) is kept in the
inbox and flagged for review on the payment, and its receipt is checked with
Transaction Status when the initiator is configured.

The pull's state (`reconciliation_state`, one document per shortcode) says when it
last succeeded: older than the API's window, a gap can only be closed from a statement,
and the dashboard, the metrics and the log say so."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict

from marshmallow import ValidationError
from pymongo.asynchronous.collection import AsyncCollection

from server.inbox import repository as inbox
from server.kernel.clock import Clock
from server.kernel.store import Store
from server.mpesa import recovered
from server.mpesa.allocation import CHANNEL as C2B_CHANNEL
from server.mpesa.client import DarajaClient
from server.mpesa.repository import C2BPaymentRepository
from server.mpesa.service import C2BService
from server.mpesa.settings import PULL_WINDOW_MINUTES, DarajaSettings
from server.reconciliation import items
from server.reconciliation.items import Item, ItemRepository

log = logging.getLogger("gateway.reconciliation")

STATE = "reconciliation_state"
# Pull Transactions reaches this far back; a minute less, so a slow request stays inside.
PULL_REACH = timedelta(minutes=PULL_WINDOW_MINUTES - 1)
# No run reads more pages, or runs longer (below the jobs' default lease of 300 s): a
# provider that ignores OffSetValue must not keep a run going for ever.
MAX_PAGES = 1000
RUN_SECONDS = 240
# Pull rows of these types move no money in: never recovered as payments.
NOT_PAYMENTS = ("reversal", "refund")


class PullIncomplete(Exception):
    """The pull stopped before M-Pesa's last row: the window stays uncovered."""


class PullState(TypedDict, total=False):
    """`reconciliation_state` document `mpesa-pull:<shortcode>`."""

    _id: str
    last_attempt_at: datetime
    last_success_at: datetime
    covered_until: datetime  # the end of the last successful window
    first_attempt_at: datetime
    last_error: str | None
    last_summary: dict[str, int]


class PullStateRepository:
    def __init__(self, store: Store) -> None:
        self.collection: AsyncCollection[PullState] = store.collection(STATE)

    async def get(self, shortcode: str) -> PullState | None:
        return await self.collection.find_one({"_id": f"mpesa-pull:{shortcode}"})

    async def attempted(self, shortcode: str, at: datetime, error: str | None) -> None:
        await self.collection.update_one(
            {"_id": f"mpesa-pull:{shortcode}"},
            {
                "$set": {"last_attempt_at": at, "last_error": error},
                "$setOnInsert": {"first_attempt_at": at},
            },
            upsert=True,
        )

    async def succeeded(
        self, shortcode: str, at: datetime, until: datetime, summary: dict[str, int]
    ) -> None:
        await self.collection.update_one(
            {"_id": f"mpesa-pull:{shortcode}"},
            {
                "$set": {
                    "last_attempt_at": at,
                    "last_success_at": at,
                    "covered_until": until,
                    "last_error": None,
                    "last_summary": summary,
                },
                "$setOnInsert": {"first_attempt_at": at},
            },
            upsert=True,
        )


def _digest(row: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()


def pull_overdue(state: PullState | None, now: datetime) -> datetime | None:
    """Since when the pull has not succeeded, when that is longer than the API reaches
    back (payments from then can only come from a statement); else None."""
    if state is None:
        return None
    since = state.get("last_success_at") or state.get("first_attempt_at")
    if since is None or now - since <= PULL_REACH:
        return None
    return since


@dataclass
class PullSummary:
    fetched: int = 0
    matched: int = 0
    recovered: int = 0
    differing: int = 0
    unreadable: int = 0
    other: int = 0
    pages: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class PullReconciler:
    def __init__(
        self,
        client: DarajaClient | None,
        c2b: C2BService,
        payments: C2BPaymentRepository,
        state: PullStateRepository,
        found: ItemRepository,
        settings: DarajaSettings,
        clock: Clock,
        check_receipt: Callable[[str, str], Any] | None = None,
    ) -> None:
        """`check_receipt(trans_id, actor)` asks Transaction Status about a differing row."""
        self.client = client
        self.c2b = c2b
        self.payments = payments
        self.state = state
        self.found = found
        self.settings = settings
        self.clock = clock
        self.check_receipt = check_receipt

    async def run(self) -> dict[str, int]:
        """One pull over the window; raises when M-Pesa could not be asked, after
        recording the attempt (and, past the API's reach, saying so loudly)."""
        if not self.settings.pull_enabled or self.client is None:
            return {"disabled": 1}
        shortcode = self.settings.shortcode
        now = self.clock.now()
        state = await self.state.get(shortcode)
        start = now - PULL_REACH
        covered = (state or {}).get("covered_until")
        if covered is not None:
            start = max(start, covered - timedelta(minutes=self.settings.pull_overlap_minutes))
        summary = PullSummary()
        try:
            await self._pull(shortcode, start, now, summary)
        except Exception as err:
            await self.state.attempted(shortcode, now, f"{err.__class__.__name__}: {err}"[:500])
            overdue = pull_overdue(await self.state.get(shortcode), now)
            if overdue is not None:
                log.error(
                    "mpesa_pull_gap shortcode=%s since=%s: payments from then can only be "
                    "recovered from a statement",
                    shortcode,
                    overdue.isoformat(),
                )
            raise
        await self.state.succeeded(shortcode, now, now, summary.as_dict())
        log.info(
            "mpesa_pull shortcode=%s from=%s to=%s %s",
            shortcode,
            start.isoformat(),
            now.isoformat(),
            " ".join(f"{key}={value}" for key, value in summary.as_dict().items()),
        )
        return summary.as_dict()

    async def _pull(
        self, shortcode: str, start: datetime, end: datetime, summary: PullSummary
    ) -> None:
        """Page until M-Pesa has no more rows. A provider that ignores the offset, more
        pages than MAX_PAGES, or more time than RUN_SECONDS is PullIncomplete: the
        window is then not covered, and the next run asks for it again."""
        assert self.client is not None
        offset = 0
        seen: set[str] = set()
        deadline = time.monotonic() + RUN_SECONDS
        while True:
            if summary.pages >= MAX_PAGES or time.monotonic() > deadline:
                raise PullIncomplete(
                    f"stopped after {summary.pages} pages ({summary.fetched} rows): "
                    "the window is asked for again next run"
                )
            rows = await self.client.pull_transactions(shortcode, start, end, offset)
            if not rows:
                return
            summary.pages += 1
            summary.fetched += len(rows)
            if not await self._reconcile(shortcode, rows, seen, summary):
                raise PullIncomplete(
                    f"M-Pesa answered offset {offset} with rows already read: it ignores "
                    "OffSetValue, so the rest of the window cannot be read"
                )
            offset += len(rows)

    async def _reconcile(
        self, shortcode: str, rows: list[dict[str, Any]], seen: set[str], summary: PullSummary
    ) -> int:
        """Each row against the stored payment of its TransID; returns how many rows
        this run had not seen yet."""
        readable: dict[str, tuple[dict[str, Any], recovered.RecoveredRecord]] = {}
        fresh = 0
        for row in rows:
            try:
                record = recovered.pull_record(shortcode, row)
            except ValidationError:
                digest = _digest(row)
                if digest in seen:
                    continue
                # Kept raw for review, like an unreadable confirmation.
                seen.add(digest)
                summary.unreadable += 1
                fresh += 1
                await self.c2b.recover(recovered.PULL_SOURCE, shortcode, row)
                continue
            kind = record.callback.transaction_type.lower()
            if any(word in kind for word in NOT_PAYMENTS):
                summary.other += 1  # a reversal, or a type that moves no money in
                fresh += record.callback.trans_id not in seen
                seen.add(record.callback.trans_id)
                continue
            trans_id = record.callback.trans_id
            if trans_id not in seen:
                fresh += 1
                seen.add(trans_id)
                readable[trans_id] = (row, record)
        stored = await self.payments.cores(list(readable))
        differing = [
            trans_id
            for trans_id, (_, record) in readable.items()
            if trans_id in stored and stored[trans_id] != self._core(record)
        ]
        # Flagged by an earlier pull: not kept, flagged and checked again every run.
        known = await self.payments.flagged(differing, f"differs_from_{recovered.PULL_SOURCE}")
        found = []
        for trans_id, (row, record) in readable.items():
            core = stored.get(trans_id)
            theirs = self._core(record)
            if core is not None and core == theirs:
                summary.matched += 1
                found.append(self._item(record, theirs, core[0], items.MATCHED))
                continue
            if trans_id in known:
                summary.differing += 1
                found.append(self._item(record, theirs, core[0] if core else None, items.DIFFERING))
                continue
            status = await self.c2b.recover(recovered.PULL_SOURCE, shortcode, row)
            if status == inbox.PROCESSED and core is None:
                summary.recovered += 1
                found.append(self._item(record, theirs, theirs[0], items.MATCHED, True))
            elif status == inbox.CONFLICT:
                summary.differing += 1
                here = core or (await self.payments.cores([trans_id])).get(trans_id)
                found.append(self._item(record, theirs, here[0] if here else None, items.DIFFERING))
                if self.check_receipt is not None:
                    await self.check_receipt(trans_id, "mpesa-pull")
            elif status == inbox.DUPLICATE:  # stored meanwhile by its confirmation
                summary.matched += 1
                found.append(self._item(record, theirs, theirs[0], items.MATCHED))
            else:  # kept for review: the inbox holds it
                summary.unreadable += 1
        await self.found.record(found, self.clock.now())
        return fresh

    def _item(
        self,
        record: recovered.RecoveredRecord,
        theirs: tuple[int, str, str],
        amount_here: int | None,
        outcome: str,
        recovered_now: bool = False,
    ) -> Item:
        callback = record.callback
        return Item(
            channel=C2B_CHANNEL,
            provider=callback.shortcode,
            key=callback.trans_id,
            at=callback.trans_time,
            currency=self.c2b.rules.currency,
            amount=theirs[0],
            amount_here=amount_here,
            outcome=outcome,
            source=recovered.PULL_SOURCE,
            recovered=recovered_now,
            detail=f"account {callback.bill_ref or '-'}",
        )

    def _core(self, record: recovered.RecoveredRecord) -> tuple[int, str, str]:
        """(amount, shortcode, account); an amount that is not one counts as zero, so the
        row differs from any payment and goes to review."""
        try:
            amount = self.c2b.amount_of(record.callback)
        except ValidationError:
            amount = 0
        return amount, record.callback.shortcode, record.callback.bill_ref
