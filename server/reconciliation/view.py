"""The reconciliation view: what the gateway received against what the checks of the
providers' records found, for the accountants.

Per Nairobi business day, channel, provider and currency: the money the gateway
received (paybill payments by their M-Pesa time; succeeded transactions of the other
channels by when they were paid) beside the reconciliation items of those days by
outcome (matched, recovered, differing, missing here, missing at the provider). Then
the open items, the last M-Pesa pull, statement import and janitor run, and the
latest Account Balance. A read model: aggregation pipelines over indexed fields, read
the same from the in-memory store and MongoDB; amounts stay integer minor units until
rendered, and amounts of different currencies are never added together.
ReconciliationSchema (at the end) describes the answer key for key."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from marshmallow import Schema, fields
from pymongo import DESCENDING

from server.debits.registry import Channel
from server.jobs.history import RunHistory
from server.jobs.leases import LeaseRepository
from server.jobs.runner import FAILED, OK
from server.jobs.status import last_run_of
from server.kernel.clock import Clock
from server.kernel.errors import Conflict, NotFound, ValidationFailed
from server.kernel.metrics import Metrics
from server.kernel.money import format_amount
from server.kernel.schemas import iso_stamp
from server.kernel.store import IndexSpec, Store
from server.ledger import states
from server.ledger.repository import TRANSACTIONS
from server.mpesa.allocation import CHANNEL as C2B_CHANNEL
from server.mpesa.initiator import InitiatorService
from server.mpesa.repository import PAYMENTS
from server.mpesa.schemas import NAIROBI
from server.psps.repository import PSPS
from server.reconciliation import items
from server.reconciliation.items import ItemRepository
from server.reconciliation.pull import PullState, PullStateRepository, pull_overdue
from server.web import answer_schemas as answers

log = logging.getLogger("gateway.reconciliation")

# A period is whole Nairobi days, both ends included.
DEFAULT_DAYS = 7
MAX_DAYS = 92
OPEN_ITEMS_LIMIT = 50
# Written by statement import: one document per imported file.
STATEMENTS = "statements"
JANITOR_JOB = "janitor"
PULL_PREFIX = "mpesa-pull:"
# An Account Balance result names its accounts; the paybill's money lands in this one.
UTILITY_ACCOUNT = "utility"

RECEIVED, RECOVERED = "received", "recovered"
# What a row counts, in the order of its columns: what the gateway received, then the
# items by what their check found. `recovered` is not counted in `matched`.
FIGURES = (
    RECEIVED,
    items.MATCHED,
    RECOVERED,
    items.DIFFERING,
    items.MISSING_HERE,
    items.MISSING_AT_PROVIDER,
)
KEY_COLUMNS = ("day", "channel", "provider", "provider_name", "currency")

# The received money of the other channels is read by when it was paid.
INDEXES: list[IndexSpec] = [(TRANSACTIONS, [("status", 1), ("paid_at", 1)], {})]

Key = tuple[str, str, str, str]  # day, channel, provider, currency
# Figure name -> [count, total in minor units].
Cells = dict[str, list[int]]


@dataclass(frozen=True)
class Period:
    """Nairobi business days `first` to `last`, both included."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), NAIROBI).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), NAIROBI).astimezone(UTC)


def period_of(day_from: date | None, day_to: date | None, today: date) -> Period:
    """The period asked for: by default the last DEFAULT_DAYS days up to `today`; `to`
    defaults to today (or `from`, when that is later), `from` to DEFAULT_DAYS days
    before `to`. Refused (400, naming the parameter) when `to` is before `from` or the
    period is longer than MAX_DAYS."""
    to_given = day_to is not None
    last = day_to if day_to is not None else max(today, day_from or today)
    first = day_from if day_from is not None else last - timedelta(days=DEFAULT_DAYS - 1)
    if last < first:
        raise _refused("to", "must not be before from")
    if (last - first).days + 1 > MAX_DAYS:
        raise _refused("to" if to_given else "from", f"the period is at most {MAX_DAYS} days")
    return Period(first, last)


def _refused(name: str, message: str) -> ValidationFailed:
    return ValidationFailed("query parameters are invalid", {"fields": {name: [message]}})


def _day_of_hour(hour: str) -> str:
    """A UTC hour ("2024-05-01T21") as its Nairobi business day."""
    moment = datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=UTC)
    return moment.astimezone(NAIROBI).date().isoformat()


def _figure(count: int, total: int, currency: str) -> dict[str, Any]:
    return {"count": count, "total": format_amount(total, currency)}


class ReconciliationView:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        initiator: InitiatorService,
        channels: Sequence[Channel],
        *,
        shortcode: str,
        pull_enabled: bool,
    ) -> None:
        """`channels`: the registered ones, in the order the view lists them;
        `shortcode`: the paybill the `mpesa-pull` job pulls."""
        self.store = store
        self.clock = clock
        self.initiator = initiator
        self.shortcode = shortcode
        self.pull_enabled = pull_enabled
        self.pull_states = PullStateRepository(store)
        self.leases = LeaseRepository(store)
        self.history = RunHistory(store)
        self.channels = [{"name": channel.name, "label": channel.label} for channel in channels]
        self.order = {channel.name: index for index, channel in enumerate(channels)}
        # A channel without PSPs names its own receiving account (M-Pesa Express: the
        # shortcode): its provider in the rows.
        self.accounts = {
            channel.name: channel.debit.merchant_account or ""
            for channel in channels
            if channel.debit is not None and channel.debit.psp_kind is None
        }

    def period(self, day_from: date | None, day_to: date | None) -> Period:
        return period_of(day_from, day_to, self.clock.now().astimezone(NAIROBI).date())

    async def summary(self, period: Period, limit: int = OPEN_ITEMS_LIMIT) -> dict[str, Any]:
        table = await self.table(period)
        return {
            "from": period.first.isoformat(),
            "to": period.last.isoformat(),
            "channels": self.channels,
            "rows": await self._render_rows(table),
            "totals": self._totals(table),
            "open_items": await self._open_items(limit),
            "runs": {
                "pull": await self._pull(),
                "statement": await self._statement(),
                "janitor": await self._janitor(),
            },
            "balance": await self._balance(table),
        }

    async def rows(self, period: Period) -> list[dict[str, Any]]:
        """One row per (day, channel, provider, currency) that received money or had an
        item checked, by day, then channel in the registry's order."""
        return await self._render_rows(await self.table(period))

    async def table(self, period: Period) -> dict[Key, Cells]:
        """Every figure of the period, in minor units: (day, channel, provider, currency)
        -> figure -> [count, total]."""
        table: dict[Key, Cells] = {}
        for key, figure, count, total in [
            *await self._checked(period),
            *[(key, RECEIVED, count, total) for key, count, total in await self._received(period)],
        ]:
            cell = table.setdefault(key, _no_cells())[figure]
            cell[0] += count
            cell[1] += total
        return table

    async def _render_rows(self, table: dict[Key, Cells]) -> list[dict[str, Any]]:
        names = await psp_names(self.store)
        ordered = sorted(table, key=lambda key: (key[0], self._rank(key[1]), key))
        return [
            {
                "day": day,
                "channel": channel,
                "provider": provider,
                "provider_name": names.get(provider),
                "currency": currency,
                **_render_cells(table[(day, channel, provider, currency)], currency),
            }
            for day, channel, provider, currency in ordered
        ]

    def _totals(self, table: dict[Key, Cells]) -> list[dict[str, Any]]:
        """The period's figures per channel and currency (every provider and day)."""
        totals: dict[tuple[str, str], Cells] = {}
        for (_, channel, _, currency), cells in table.items():
            _add_cells(totals.setdefault((channel, currency), _no_cells()), cells)
        return [
            {"channel": channel, "currency": currency, **_render_cells(cells, currency)}
            for (channel, currency), cells in sorted(
                totals.items(), key=lambda entry: (self._rank(entry[0][0]), entry[0])
            )
        ]

    def _rank(self, channel: str) -> int:
        return self.order.get(channel, len(self.order))

    async def _checked(self, period: Period) -> list[tuple[Key, str, int, int]]:
        found = await self.store.aggregate(
            items.ITEMS,
            [
                {
                    "$match": {
                        "day": {"$gte": period.first.isoformat(), "$lte": period.last.isoformat()}
                    }
                },
                {
                    "$group": {
                        "_id": {
                            "day": "$day",
                            "channel": "$channel",
                            "provider": "$provider",
                            "currency": "$currency",
                            "outcome": "$outcome",
                            "recovered_by": "$recovered_by",
                        },
                        "count": {"$sum": 1},
                        "total": {"$sum": "$amount"},
                    }
                },
            ],
        )
        result = []
        for row in found:
            group = row["_id"]
            outcome = group["outcome"]
            if outcome not in items.OUTCOMES:
                continue
            if outcome == items.MATCHED and group.get("recovered_by"):
                outcome = RECOVERED
            key = (group["day"], group["channel"], group["provider"] or "", group["currency"])
            result.append((key, outcome, row["count"], row["total"]))
        return result

    async def _received(self, period: Period) -> list[tuple[Key, int, int]]:
        """Paybill payments by their M-Pesa time (every one stored, whatever became of
        it); succeeded transactions of the other channels by when they were paid. Grouped
        by UTC hour in the store, then by Nairobi day here."""
        window = {"$gte": period.start, "$lt": period.end}
        hourly = "%Y-%m-%dT%H"
        payments = await self.store.aggregate(
            PAYMENTS,
            [
                {"$match": {"trans_time": window}},
                {
                    "$group": {
                        "_id": {
                            "hour": {"$dateToString": {"date": "$trans_time", "format": hourly}},
                            "provider": "$shortcode",
                            "currency": "$currency",
                        },
                        "count": {"$sum": 1},
                        "total": {"$sum": "$amount"},
                    }
                },
            ],
        )
        # Settled paybill payments are also transactions of the paybill's channel:
        # counted once, from the payments.
        paid = await self.store.aggregate(
            TRANSACTIONS,
            [
                {
                    "$match": {
                        "status": states.SUCCEEDED,
                        "channel": {"$ne": C2B_CHANNEL},
                        # Transactions stored before `paid_at` by when they were made.
                        "$or": [{"paid_at": window}, {"paid_at": None, "created_at": window}],
                    }
                },
                {
                    "$group": {
                        "_id": {
                            "hour": {
                                "$dateToString": {
                                    "date": {"$ifNull": ["$paid_at", "$created_at"]},
                                    "format": hourly,
                                }
                            },
                            "channel": "$channel",
                            "provider": "$psp_uuid",
                            "currency": "$currency",
                        },
                        "count": {"$sum": 1},
                        "total": {"$sum": "$amount"},
                    }
                },
            ],
        )
        result = []
        for row in payments:
            group = row["_id"]
            key = (
                _day_of_hour(group["hour"]),
                C2B_CHANNEL,
                group.get("provider") or "",
                group["currency"],
            )
            result.append((key, row["count"], row["total"]))
        for row in paid:
            group = row["_id"]
            channel = group["channel"]
            provider = group.get("provider") or self.accounts.get(channel, "")
            key = (_day_of_hour(group["hour"]), channel, provider, group["currency"])
            result.append((key, row["count"], row["total"]))
        return result

    async def _open_items(self, limit: int) -> dict[str, Any]:
        """Open items of any day, newest payment first: they stay until cleared."""
        query = {"outcome": {"$in": list(items.OPEN_OUTCOMES)}, "cleared_at": None}
        collection = self.store.collection(items.ITEMS)
        found = await collection.find(query).sort("at", DESCENDING).limit(limit).to_list(None)
        return {
            "count": await collection.count_documents(query),
            "items": [render_item(item) for item in found],
        }

    async def _pull(self) -> dict[str, Any]:
        state = await self.pull_states.get(self.shortcode)
        return render_pull(self.shortcode, self.pull_enabled, state, self.clock.now())

    async def _statement(self) -> dict[str, Any] | None:
        # An import in progress (or cut off) has no `imported_at` yet.
        newest = await self.store.collection(STATEMENTS).find_one(
            {"imported_at": {"$ne": None}, "complete": {"$ne": False}},
            sort=[("imported_at", DESCENDING)],
        )
        return None if newest is None else render_statement(newest)

    async def _janitor(self) -> dict[str, Any] | None:
        lease = await self.leases.collection.find_one(
            {"_id": JANITOR_JOB}, {"last_run": 1, "last_success_at": 1}
        )
        recorded = (lease or {}).get("last_run") or await self.history.latest(JANITOR_JOB)
        if recorded is None:
            return None
        run = last_run_of(recorded)
        return {
            "job": JANITOR_JOB,
            "started_at": iso_stamp(run.started_at),
            "finished_at": iso_stamp(run.finished_at),
            "outcome": run.outcome,
            "summary": run.summary,
            "error": run.error,
            "last_success_at": iso_stamp((lease or {}).get("last_success_at")),
        }

    async def _balance(self, table: dict[Key, Cells]) -> dict[str, Any] | None:
        """The latest answered Account Balance, beside what the paybill received in the
        period in the account's currency: a check, not a ledger entry."""
        answered = await self.initiator.latest_balance()
        if answered is None:
            return None
        accounts = (answered.get("result") or {}).get("accounts") or []
        utility = next(
            (account for account in accounts if UTILITY_ACCOUNT in account["name"].lower()),
            accounts[0] if accounts else None,
        )
        currency = utility["currency"] if utility else None
        count = total = 0
        for (_, channel, provider, row_currency), cells in table.items():
            if (channel, provider, row_currency) == (C2B_CHANNEL, self.shortcode, currency):
                count += cells[RECEIVED][0]
                total += cells[RECEIVED][1]
        return {
            "answered_at": iso_stamp(answered.get("answered_at")),
            "requested_by": answered.get("requested_by", ""),
            "account": utility["name"] if utility else None,
            "currency": currency,
            "available": _available(utility),
            "accounts": [
                {
                    "name": account["name"],
                    "currency": account["currency"],
                    "available": _available(account),
                }
                for account in accounts
            ],
            "received": None if currency is None else _figure(count, total, currency),
        }

    async def request_balance(self, actor: str) -> dict[str, Any]:
        """Ask M-Pesa for the accounts' balances; the result arrives on the result
        callback (409 `initiator_not_configured` without the initiator)."""
        return await self.initiator.check_balance(actor)

    async def clear(self, item_id: str, actor: str, reason: str) -> dict[str, Any]:
        """An operator clears an open item; NotFound or Conflict (not open) otherwise."""
        found = ItemRepository(self.store)
        cleared = await found.clear(item_id, actor, reason, self.clock.now())
        if cleared is not None:
            log.info("reconciliation_item_cleared id=%s by=%s", item_id, actor)
            return cleared
        current = await found.collection.find_one({"_id": item_id})
        if current is None:
            raise NotFound(f"no reconciliation item {item_id}")
        state = "cleared" if current.get("cleared_at") else current["outcome"]
        raise Conflict(
            f"the item is {state}: only an open item is cleared",
            {"outcome": current["outcome"]},
            code="invalid_state",
        )

    # --- the pull's gap: metrics and the dashboard --------------------------

    async def refresh_metrics(self, metrics: Metrics) -> None:
        """The pull gauges, from the store: every pulled shortcode's last success and
        whether its pull is overdue (1) or not (0)."""
        now = self.clock.now()
        found = await pull_states(self.store)
        metrics.mpesa_pull_overdue.clear()
        metrics.mpesa_pull_last_success.clear()
        for shortcode, state in found:
            overdue = pull_overdue(state, now) is not None
            metrics.mpesa_pull_overdue.labels(shortcode).set(1 if overdue else 0)
            success = state.get("last_success_at")
            if success is not None:
                metrics.mpesa_pull_last_success.labels(shortcode).set(success.timestamp())
        if self.pull_enabled and self.shortcode not in {shortcode for shortcode, _ in found}:
            metrics.mpesa_pull_overdue.labels(self.shortcode).set(0)


async def psp_names(store: Store) -> dict[str, str]:
    """Every payment service provider's name by its uuid (a handful of documents)."""
    found = await store.collection(PSPS).find({}, {"name": 1}).to_list(None)
    return {psp["_id"]: psp["name"] for psp in found}


def _no_cells() -> Cells:
    return {name: [0, 0] for name in FIGURES}


def _add_cells(into: Cells, cells: Cells) -> None:
    for name, (count, total) in cells.items():
        into[name][0] += count
        into[name][1] += total


def _render_cells(cells: Cells, currency: str) -> dict[str, Any]:
    return {name: _figure(count, total, currency) for name, (count, total) in cells.items()}


def _available(account: Mapping[str, Any] | None) -> str | None:
    if account is None or account.get("available") is None:
        return None
    return format_amount(account["available"], account["currency"])


# --- the pull's state, for the view, the metrics and the dashboard -------------


async def pull_states(store: Store) -> list[tuple[str, PullState]]:
    """Every shortcode's `mpesa-pull` state, by shortcode."""
    found = (
        await PullStateRepository(store)
        .collection.find({"_id": {"$regex": f"^{PULL_PREFIX}"}})
        .to_list(None)
    )
    return sorted(
        ((state["_id"].removeprefix(PULL_PREFIX), state) for state in found),
        key=lambda entry: entry[0],
    )


async def overdue_pulls(store: Store, now: datetime) -> dict[str, Any]:
    """The needs-attention item: pulls that have not succeeded for longer than Pull
    Transactions reaches back, longest first. Payments of that gap are only recovered
    from a statement."""
    overdue = []
    for shortcode, state in await pull_states(store):
        since = pull_overdue(state, now)
        if since is not None:
            overdue.append((since, shortcode, state))
    overdue.sort(key=lambda entry: entry[0])
    return {
        "count": len(overdue),
        "oldest": [
            {
                "shortcode": shortcode,
                "since": iso_stamp(since),
                "last_success_at": iso_stamp(state.get("last_success_at")),
                "last_attempt_at": iso_stamp(state.get("last_attempt_at")),
                "last_error": state.get("last_error"),
                "note": "the pull has not succeeded since then, longer than M-Pesa's "
                "Pull Transactions reaches back (48 hours): import the paybill's statement "
                "of the gap",
            }
            for since, shortcode, state in overdue
        ],
    }


# --- rendering ----------------------------------------------------------------


def render_item(item: Mapping[str, Any]) -> dict[str, Any]:
    currency = item["currency"]
    here = item.get("amount_here")
    return {
        "id": item["_id"],
        "channel": item["channel"],
        "provider": item["provider"],
        "key": item["key"],
        "day": item["day"],
        "at": iso_stamp(item["at"]),
        "currency": currency,
        "amount": format_amount(item["amount"], currency),
        "amount_here": None if here is None else format_amount(here, currency),
        "outcome": item["outcome"],
        "detail": item.get("detail") or "",
        "sources": list(item.get("sources") or []),
        "recovered_by": item.get("recovered_by"),
        "checked_at": iso_stamp(item.get("checked_at")),
    }


def render_pull(
    shortcode: str, enabled: bool, state: PullState | None, now: datetime
) -> dict[str, Any]:
    known: PullState = state or {}
    return {
        "shortcode": shortcode,
        "enabled": enabled,
        "last_attempt_at": iso_stamp(known.get("last_attempt_at")),
        "last_success_at": iso_stamp(known.get("last_success_at")),
        "covered_until": iso_stamp(known.get("covered_until")),
        "last_error": known.get("last_error"),
        "last_summary": dict(known.get("last_summary") or {}),
        "overdue_since": iso_stamp(pull_overdue(state, now)),
    }


def render_statement(statement: Mapping[str, Any]) -> dict[str, Any]:
    summary = statement.get("summary") or {}
    return {
        "id": str(statement["_id"]),
        "kind": statement.get("kind"),
        "provider": statement.get("provider"),
        "file_name": statement.get("file_name"),
        "imported_at": iso_stamp(statement.get("imported_at")),
        "imported_by": statement.get("imported_by"),
        "rows": statement.get("rows"),
        "period_from": _moment_or_day(statement.get("period_from")),
        "period_to": _moment_or_day(statement.get("period_to")),
        "summary": {str(name): count for name, count in summary.items() if isinstance(count, int)},
    }


def _moment_or_day(value: Any) -> str | None:
    if isinstance(value, datetime):
        return iso_stamp(value)
    return None if value is None else str(value)


def csv_lines(rows: Sequence[Mapping[str, Any]]) -> Iterator[list[str]]:
    """The rows as CSV records, a header first: amounts as decimal strings beside their
    currency, one count and one total column per figure."""
    yield [
        *KEY_COLUMNS,
        *(f"{name}_{part}" for name in FIGURES for part in ("count", "total")),
    ]
    for row in rows:
        yield [
            *(str(row[column] or "") for column in KEY_COLUMNS),
            *(str(row[name][part]) for name in FIGURES for part in ("count", "total")),
        ]


# --- what summary answers -------------------------------------------------------


class ReconciliationFigureSchema(Schema):
    count = answers.count()
    total = answers.amount()


def _figures(described: str) -> dict[str, fields.Field]:
    descriptions = {
        RECEIVED: "what the gateway received: paybill payments by their M-Pesa time, "
        "succeeded transactions of the other channels by when they were paid",
        items.MATCHED: "checked: the same payment here and at the provider",
        RECOVERED: "checked: the provider had it, the gateway had not; the check "
        "recovered it (stored and settled like a confirmation). Not counted in matched",
        items.DIFFERING: "checked: amount, currency or account differ (the provider's amount)",
        items.MISSING_HERE: "checked: the provider has it, the gateway has not and could "
        "not recover it",
        items.MISSING_AT_PROVIDER: "checked: recorded here only",
    }
    return {
        name: fields.Nested(
            ReconciliationFigureSchema,
            required=True,
            metadata={"description": f"{descriptions[name]}, {described}"},
        )
        for name in FIGURES
    }


ReconciliationRowSchema = Schema.from_dict(
    {
        "day": answers.day(),
        "channel": answers.text(),
        "provider": answers.text(
            metadata={
                "description": "the paybill's shortcode, the PSP's uuid, or the account "
                "a channel without PSPs receives on"
            }
        ),
        "provider_name": answers.text(nullable=True, metadata={"description": "a PSP's name"}),
        "currency": answers.text(),
        **_figures("count and total of the day"),
    },
    name="ReconciliationRowSchema",
)

ReconciliationTotalSchema = Schema.from_dict(
    {
        "channel": answers.text(),
        "currency": answers.text(),
        **_figures("over the period"),
    },
    name="ReconciliationTotalSchema",
)


class ReconciliationChannelSchema(Schema):
    name = answers.text()
    label = answers.text()


class ReconciliationItemSchema(Schema):
    id = answers.text(metadata={"description": "`<channel>:<key>`; clear it by this id"})
    channel = answers.text()
    provider = answers.text()
    key = answers.text(metadata={"description": "the receipt (TransID) or PSP transaction id"})
    day = answers.day()
    at = answers.stamp()
    currency = answers.text()
    amount = answers.amount()
    amount_here = answers.text(
        nullable=True, metadata={"description": "the gateway's amount; null when it has none"}
    )
    outcome = answers.one_of(items.OPEN_OUTCOMES)
    detail = answers.text()
    sources = fields.List(fields.String(), required=True)
    recovered_by = answers.text(nullable=True)
    checked_at = answers.stamp(nullable=True)


class ReconciliationOpenItemsSchema(Schema):
    count = answers.count()
    items = answers.list_of(ReconciliationItemSchema)


class ReconciliationPullSchema(Schema):
    shortcode = answers.text()
    enabled = fields.Boolean(required=True)
    last_attempt_at = answers.stamp(nullable=True)
    last_success_at = answers.stamp(nullable=True)
    covered_until = answers.stamp(nullable=True)
    last_error = answers.text(nullable=True)
    last_summary = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    overdue_since = answers.stamp(
        nullable=True,
        metadata={
            "description": "since when the pull has not succeeded, when that is longer than "
            "Pull Transactions reaches back (48 hours): that gap needs a statement"
        },
    )


class ReconciliationStatementSchema(Schema):
    id = answers.text()
    kind = answers.text(nullable=True, metadata={"description": "mpesa or psp"})
    provider = answers.text(nullable=True)
    file_name = answers.text(nullable=True)
    imported_at = answers.stamp(nullable=True)
    imported_by = answers.text(nullable=True)
    rows = fields.Integer(required=True, allow_none=True)
    period_from = answers.text(nullable=True)
    period_to = answers.text(nullable=True)
    summary = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class ReconciliationJobRunSchema(Schema):
    job = answers.text()
    started_at = answers.stamp()
    finished_at = answers.stamp(nullable=True)
    outcome = answers.one_of([OK, FAILED])
    summary = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    error = answers.text(nullable=True)
    last_success_at = answers.stamp(nullable=True)


class ReconciliationRunsSchema(Schema):
    pull = answers.nested(ReconciliationPullSchema)
    statement = answers.nested(ReconciliationStatementSchema, nullable=True)
    janitor = answers.nested(ReconciliationJobRunSchema, nullable=True)


class ReconciliationAccountSchema(Schema):
    name = answers.text()
    currency = answers.text()
    available = answers.text(
        nullable=True, metadata={"description": "decimal string, may be negative"}
    )


class ReconciliationBalanceSchema(Schema):
    answered_at = answers.stamp(nullable=True)
    requested_by = answers.text()
    account = answers.text(nullable=True, metadata={"example": "Utility Account"})
    currency = answers.text(nullable=True)
    available = answers.text(
        nullable=True, metadata={"description": "the utility account's available balance"}
    )
    accounts = answers.list_of(ReconciliationAccountSchema)
    received = answers.nested(ReconciliationFigureSchema, nullable=True)


class ReconciliationSchema(Schema):
    """What ReconciliationView.summary answers."""

    from_ = fields.Date(required=True, data_key="from")
    to = answers.day()
    channels = answers.list_of(ReconciliationChannelSchema)
    rows = answers.list_of(ReconciliationRowSchema)
    totals = answers.list_of(ReconciliationTotalSchema)
    open_items = answers.nested(ReconciliationOpenItemsSchema)
    runs = answers.nested(ReconciliationRunsSchema)
    balance = answers.nested(ReconciliationBalanceSchema, nullable=True)


class PullOverdueItemSchema(Schema):
    shortcode = answers.text()
    since = answers.stamp()
    last_success_at = answers.stamp(nullable=True)
    last_attempt_at = answers.stamp(nullable=True)
    last_error = answers.text(nullable=True)
    note = answers.text()


class PullOverdueAttentionSchema(Schema):
    count = answers.count()
    oldest = answers.list_of(PullOverdueItemSchema)
