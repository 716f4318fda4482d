"""The period close, for the accountants: per channel, provider and currency, what a
month (or a day) of Nairobi business days came to.

- received: the reconciliation view's figure (paybill payments by their M-Pesa time,
  succeeded transactions of the other channels by when they were paid);
- applied: money applied to policies during the period, whenever it arrived (a paybill
  payment by the time of its `settled` allocation step, so an unmatched payment an
  operator allocates later counts in the period of the allocation; a transaction of the
  other channels, which is applied as it is paid, by when it was paid, if its settlement
  made a premium);
- unmatched at the end: paybill payments received by the period's end that were
  unmatched when it ended, read from each payment's allocation history (whether or not
  they have been applied since; one recorded only after the end, recovered from the
  provider's records later, was nothing at the end and is not counted);
- recovered: the view's figure (payments of the period's days the gateway lacked and a
  check of the provider's records brought in);
- in doubt, now: debits of the period whose outcome is unknown or still processing, and
  paybill payments of the period still being applied or with a review flag no operator
  has dismissed.

Amounts stay integer minor units until rendered; currencies are never added together,
and as in the view an M-Pesa Express payment also counts under the paybill: compare
channel by channel. CloseReportSchema (at the end) describes the answer key for key."""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from marshmallow import Schema, fields

from server.kernel.batches import in_batches
from server.kernel.clock import Clock
from server.kernel.money import format_amount
from server.kernel.schemas import iso_stamp
from server.kernel.store import IndexSpec, Store
from server.ledger import states
from server.ledger.repository import TRANSACTIONS
from server.mpesa.allocation import CHANNEL as C2B_CHANNEL
from server.mpesa.repository import ALLOCATING, NEEDS_REVIEW, PAYMENTS, SETTLED, UNMATCHED
from server.reconciliation.view import (
    RECEIVED,
    RECOVERED,
    Period,
    ReconciliationChannelSchema,
    ReconciliationFigureSchema,
    ReconciliationView,
    psp_names,
)
from server.web import answer_schemas as answers

APPLIED, UNMATCHED_AT_END, IN_DOUBT = "applied", "unmatched_at_end", "in_doubt"
FIGURES = (RECEIVED, APPLIED, UNMATCHED_AT_END, RECOVERED, IN_DOUBT)
DEFINITIONS = {
    RECEIVED: "money received in the period: paybill payments by their M-Pesa time (every "
    "one stored, applied or not), succeeded transactions of the other channels by when "
    "they were paid",
    APPLIED: "money applied to policies in the period, whenever it was received: a paybill "
    "payment when it was settled (an unmatched payment allocated later counts in the "
    "period of its allocation), a transaction of the other channels when it was paid, if "
    "its settlement made a premium",
    UNMATCHED_AT_END: "paybill payments received by the period's end that were unmatched "
    "when it ended (from each payment's allocation history), whether applied since or not; "
    "one the gateway recorded only after the end is not among them",
    RECOVERED: "payments of the period's days that the gateway lacked and a check of the "
    "provider's records (the M-Pesa pull, a statement) brought in; also in received",
    IN_DOUBT: "now: debits of the period whose outcome is unknown or still processing, and "
    "paybill payments of the period still being applied or with a review flag no operator "
    "has dismissed",
}
DAYS = "Nairobi business days (UTC+03:00), as the reconciliation view counts them"
MONTH, DAY = "month", "day"
FIRST_YEAR, LAST_YEAR = 2000, 2999
PERIOD_TEXT = re.compile(r"([0-9]{4})-([0-9]{2})(?:-([0-9]{2}))?")
# The settlement that made a premium (server.ledger.settlement).
SETTLED_SETTLEMENT = "settled"
BATCH_SIZE = 1000

# A paybill payment's allocation steps, by status and time: those settled in a period,
# and those that were ever unmatched before a period's end.
INDEXES: list[IndexSpec] = [
    (PAYMENTS, [("allocation_history.status", 1), ("allocation_history.at", 1)], {}),
]

Key = tuple[str, str, str]  # channel, provider, currency
# Figure name -> [count, total in minor units].
Cells = dict[str, list[int]]


@dataclass(frozen=True)
class ClosePeriod:
    """A month (`2026-12`) or a day (`2026-12-05`) of Nairobi business days."""

    name: str
    kind: str
    days: Period


def close_period(text: str) -> ClosePeriod:
    """`YYYY-MM` or `YYYY-MM-DD`; ValueError for anything else, or a year out of range."""
    match = PERIOD_TEXT.fullmatch(text)
    if match is None:
        raise ValueError("must be a month (YYYY-MM) or a day (YYYY-MM-DD)")
    year, month = int(match[1]), int(match[2])
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"must be in the years {FIRST_YEAR} to {LAST_YEAR}")
    if match[3] is None:
        if not 1 <= month <= 12:
            raise ValueError("the month must be 01 to 12")
        last = calendar.monthrange(year, month)[1]
        return ClosePeriod(text, MONTH, Period(date(year, month, 1), date(year, month, last)))
    day = date.fromisoformat(text)  # ValueError for a day the calendar lacks
    return ClosePeriod(text, DAY, Period(day, day))


class CloseReport:
    def __init__(self, store: Store, clock: Clock, view: ReconciliationView) -> None:
        """`view`: the reconciliation view, whose received and recovered figures, channel
        order and receiving accounts the close shares."""
        self.store = store
        self.clock = clock
        self.view = view

    async def report(self, period: ClosePeriod) -> dict[str, Any]:
        table = await self.figures(period.days)
        names = await psp_names(self.store)
        start, end, now = period.days.start, period.days.end, self.clock.now()
        return {
            "period": period.name,
            "kind": period.kind,
            "from": period.days.first.isoformat(),
            "to": period.days.last.isoformat(),
            "days": DAYS,
            "starts_at": iso_stamp(start),
            "ends_at": iso_stamp(end),
            "complete": now >= end,
            "generated_at": iso_stamp(now),
            "channels": self.view.channels,
            "rows": [
                {
                    "channel": channel,
                    "provider": provider,
                    "provider_name": names.get(provider),
                    "currency": currency,
                    **_render(table[(channel, provider, currency)], currency),
                }
                for channel, provider, currency in sorted(table, key=self._order)
            ],
            "totals": self._totals(table),
            "definitions": [{"figure": name, "means": DEFINITIONS[name]} for name in FIGURES],
        }

    async def figures(self, days: Period) -> dict[Key, Cells]:
        """Every figure of the period, in minor units, per (channel, provider, currency)."""
        table: dict[Key, Cells] = {}

        def add(found: Iterable[tuple[Key, str, int, int]]) -> None:
            for key, figure, count, total in found:
                cell = table.setdefault(key, _no_cells())[figure]
                cell[0] += count
                cell[1] += total

        add(
            ((channel, provider, currency), figure, cells[figure][0], cells[figure][1])
            for (_, channel, provider, currency), cells in (await self.view.table(days)).items()
            for figure in (RECEIVED, RECOVERED)
            if cells[figure][0]
        )
        add(await self._applied(days))
        add(await self._unmatched_at(days.end))
        add(await self._in_doubt(days))
        return table

    def _order(self, key: Key) -> tuple[int, str, str]:
        channel, provider, currency = key
        return self.view.order.get(channel, len(self.view.order)), provider, currency

    def _totals(self, table: dict[Key, Cells]) -> list[dict[str, Any]]:
        totals: dict[tuple[str, str], Cells] = {}
        for (channel, _, currency), cells in table.items():
            into = totals.setdefault((channel, currency), _no_cells())
            for name, (count, total) in cells.items():
                into[name][0] += count
                into[name][1] += total
        return [
            {"channel": channel, "currency": currency, **_render(cells, currency)}
            for (channel, currency), cells in sorted(
                totals.items(), key=lambda entry: self._order((entry[0][0], "", entry[0][1]))
            )
        ]

    def _provider(self, channel: str, psp_uuid: str | None) -> str:
        return psp_uuid or self.view.accounts.get(channel, "")

    async def _applied(self, days: Period) -> list[tuple[Key, str, int, int]]:
        window = {"$gte": days.start, "$lt": days.end}
        settled = await self.store.aggregate(
            PAYMENTS,
            [
                {"$match": {"allocation_history": _step(SETTLED, window)}},
                _group({"provider": "$shortcode", "currency": "$currency"}),
            ],
        )
        paid = await self.store.aggregate(
            TRANSACTIONS,
            [
                {
                    "$match": {
                        "status": states.SUCCEEDED,
                        "channel": {"$ne": C2B_CHANNEL},
                        "settlement.status": SETTLED_SETTLEMENT,
                        # Transactions stored before `paid_at` by when they were made.
                        "$or": [{"paid_at": window}, {"paid_at": None, "created_at": window}],
                    }
                },
                _group({"channel": "$channel", "psp": "$psp_uuid", "currency": "$currency"}),
            ],
        )
        return [*self._paybill(settled, APPLIED), *self._transactions(paid, APPLIED)]

    async def _unmatched_at(self, end: datetime) -> list[tuple[Key, str, int, int]]:
        """Paybill payments whose latest allocation step before `end` left them unmatched:
        read (a batch at a time) among those the allocation index finds unmatched at some
        time before it, the only ones that can be."""
        cursor = (
            self.store.collection(PAYMENTS)
            .find(
                {
                    "allocation_history": _step(UNMATCHED, {"$lt": end}),
                    "trans_time": {"$lt": end},
                },
                {"shortcode": 1, "currency": 1, "amount": 1, "allocation_history": 1},
            )
            .batch_size(BATCH_SIZE)
        )
        found: dict[Key, list[int]] = {}
        async for payments in in_batches(cursor, BATCH_SIZE):
            for payment in payments:
                steps = [step for step in payment["allocation_history"] if step["at"] < end]
                if steps and steps[-1]["status"] == UNMATCHED:
                    key = (C2B_CHANNEL, payment.get("shortcode") or "", payment["currency"])
                    cell = found.setdefault(key, [0, 0])
                    cell[0] += 1
                    cell[1] += payment["amount"]
        return [(key, UNMATCHED_AT_END, count, total) for key, (count, total) in found.items()]

    async def _in_doubt(self, days: Period) -> list[tuple[Key, str, int, int]]:
        window = {"$gte": days.start, "$lt": days.end}
        debits = await self.store.aggregate(
            TRANSACTIONS,
            [
                {
                    "$match": {
                        "status": {"$in": [states.UNKNOWN, states.PROCESSING]},
                        "channel": {"$ne": C2B_CHANNEL},
                        "created_at": window,
                    }
                },
                _group({"channel": "$channel", "psp": "$psp_uuid", "currency": "$currency"}),
            ],
        )
        payments = await self.store.aggregate(
            PAYMENTS,
            [
                {
                    "$match": {
                        "trans_time": window,
                        "$or": [{"status": ALLOCATING}, NEEDS_REVIEW],
                    }
                },
                _group({"provider": "$shortcode", "currency": "$currency"}),
            ],
        )
        return [*self._paybill(payments, IN_DOUBT), *self._transactions(debits, IN_DOUBT)]

    def _paybill(self, groups: list[dict], figure: str) -> list[tuple[Key, str, int, int]]:
        return [
            (
                (C2B_CHANNEL, group["_id"].get("provider") or "", group["_id"]["currency"]),
                figure,
                group["count"],
                group["total"],
            )
            for group in groups
        ]

    def _transactions(self, groups: list[dict], figure: str) -> list[tuple[Key, str, int, int]]:
        found = []
        for group in groups:
            channel = group["_id"]["channel"]
            provider = self._provider(channel, group["_id"].get("psp"))
            key = (channel, provider, group["_id"]["currency"])
            found.append((key, figure, group["count"], group["total"]))
        return found


def _step(status: str, at: dict[str, datetime]) -> dict[str, Any]:
    """An allocation step to `status` at a time within `at` (the allocation index)."""
    return {"$elemMatch": {"status": status, "at": at}}


def _group(by: dict[str, str]) -> dict[str, Any]:
    return {"$group": {"_id": by, "count": {"$sum": 1}, "total": {"$sum": "$amount"}}}


def _no_cells() -> Cells:
    return {name: [0, 0] for name in FIGURES}


def _render(cells: Mapping[str, list[int]], currency: str) -> dict[str, Any]:
    return {
        name: {"count": count, "total": format_amount(total, currency)}
        for name, (count, total) in cells.items()
    }


# --- what report answers ----------------------------------------------------------


def _figure_fields() -> dict[str, fields.Field]:
    return {
        name: fields.Nested(
            ReconciliationFigureSchema,
            required=True,
            metadata={"description": f"{DEFINITIONS[name]}: count and total"},
        )
        for name in FIGURES
    }


CloseRowSchema = Schema.from_dict(
    {
        "channel": answers.text(),
        "provider": answers.text(
            metadata={
                "description": "the paybill's shortcode, the PSP's uuid, or the account a "
                "channel without PSPs receives on"
            }
        ),
        "provider_name": answers.text(nullable=True, metadata={"description": "a PSP's name"}),
        "currency": answers.text(),
        **_figure_fields(),
    },
    name="CloseRowSchema",
)

CloseTotalSchema = Schema.from_dict(
    {"channel": answers.text(), "currency": answers.text(), **_figure_fields()},
    name="CloseTotalSchema",
)


class CloseDefinitionSchema(Schema):
    figure = answers.one_of(FIGURES)
    means = answers.text()


class CloseReportSchema(Schema):
    """What CloseReport.report answers."""

    period = answers.text(metadata={"example": "2026-12"})
    kind = answers.one_of([MONTH, DAY])
    from_ = fields.Date(required=True, data_key="from")
    to = answers.day()
    days = answers.text(metadata={"description": "which days: Nairobi business days"})
    starts_at = answers.stamp(metadata={"description": "the period's first instant, in UTC"})
    ends_at = answers.stamp(metadata={"description": "the instant after its last, in UTC"})
    complete = fields.Boolean(
        required=True, metadata={"description": "false while the period has not ended"}
    )
    generated_at = answers.stamp()
    channels = answers.list_of(ReconciliationChannelSchema)
    rows = answers.list_of(CloseRowSchema)
    totals = answers.list_of(CloseTotalSchema)
    definitions = answers.list_of(CloseDefinitionSchema)
