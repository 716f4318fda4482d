"""Streamed exports for the accountants: payments, unmatched payments, transactions,
premiums and reconciliation items as CSV rows, over any range.

Each export is one definition (server.ops.export_definitions): its collection, the time
field its window is read on, its filters, its columns and how a document becomes a row.
The rows are read with a cursor in the order of the time field and a unique tie-break,
which an index serves, a batch at a time (`batch_size` documents per round trip), and
handed over batch by batch: memory holds one batch whatever the range. The HTTP endpoints
(server.ops.export_handlers) and `python run.py export` write the same rows."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from marshmallow import Schema, fields
from pymongo import ASCENDING

from server.kernel.batches import in_batches
from server.kernel.errors import ValidationFailed
from server.kernel.listing import amount_field, amount_range
from server.kernel.schemas import CURRENCY, StrictSchema
from server.kernel.store import Store
from server.ledger.repository import TRANSACTIONS
from server.mpesa.schemas import NAIROBI
from server.reconciliation.view import psp_names

# Documents per cursor round trip, and rows per flush to the client.
BATCH_SIZE = 1000
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MAX_LENGTH = 40  # the longest ISO 8601 date and time, with microseconds and a zone
# Far enough either way for any payment; keeps the date arithmetic in range.
FIRST_YEAR, LAST_YEAR = 2000, 2999
# The fields of a premium's transaction its row shows.
TRANSACTION_FIELDS = {"channel": 1, "psp_uuid": 1, "provider_reference": 1}

WINDOW = (
    "a day (YYYY-MM-DD: the whole Nairobi business day, as the reconciliation view counts "
    "days; `to`'s day is included) or an ISO 8601 date and time (UTC unless it names its "
    "zone; `to` itself is excluded)"
)


class DayOrMoment(fields.String):
    """A Nairobi business day (a `date`) or an instant (an aware `datetime`)."""

    default_error_messages = {
        "moment": "must be a day (YYYY-MM-DD) or an ISO 8601 date and time "
        f"in the years {FIRST_YEAR} to {LAST_YEAR}"
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if len(text) > MAX_LENGTH:
            raise self.make_error("moment")
        parsed: date | datetime
        try:
            if DAY.fullmatch(text):
                parsed = date.fromisoformat(text)
            else:
                moment = datetime.fromisoformat(text)
                parsed = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        except ValueError:
            raise self.make_error("moment") from None
        if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
            raise self.make_error("moment")
        return parsed


class ExportQuerySchema(StrictSchema):
    """What every export takes: its window, and the currency and amount every row has."""

    date_from = DayOrMoment(
        data_key="from", required=True, metadata={"description": f"the first: {WINDOW}"}
    )
    date_to = DayOrMoment(
        data_key="to", required=True, metadata={"description": f"the last: {WINDOW}"}
    )
    currency = fields.String(validate=CURRENCY)
    min_amount = amount_field("smallest")  # these two need `currency`
    max_amount = amount_field("largest")


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC, and how the file name shows its ends."""

    start: datetime
    end: datetime
    first: str
    last: str


def window_of(first: date | datetime, last: date | datetime) -> Window:
    """The instants `from` and `to` name: a day from its Nairobi midnight, up to the next
    one for `to`; an instant as it is. 400 naming `to` when it is not after `from`."""
    start = _instant(first)
    end = _instant(last) if isinstance(last, datetime) else _instant(last + timedelta(days=1))
    if end <= start:
        raise ValidationFailed(
            "query parameters are invalid", {"fields": {"to": ["must be after from"]}}
        )
    return Window(start, end, _label(first), _label(last))


def _amounts(filters: Mapping[str, Any]) -> dict[str, Any]:
    """The amount range, in minor units of the currency it needs (400 naming `currency`
    without one, as the transactions list)."""
    if "min_amount" not in filters and "max_amount" not in filters:
        return {}
    if "currency" not in filters:
        raise ValidationFailed(
            "query parameters are invalid",
            {"fields": {"currency": ["give the currency with an amount range"]}},
        )
    return amount_range(dict(filters), filters["currency"])


def _instant(moment: date | datetime) -> datetime:
    if isinstance(moment, datetime):
        return moment.astimezone(UTC)
    return datetime.combine(moment, time(), NAIROBI).astimezone(UTC)


def _label(moment: date | datetime) -> str:
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return moment.isoformat()


@dataclass
class Lookups:
    """What rows show beside their own document: providers' names, the accounts of the
    channels without providers, and (premiums) the batch's transactions by uuid."""

    names: Mapping[str, str]
    accounts: Mapping[str, str]
    transactions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def provider(self, transaction: Mapping[str, Any]) -> str:
        """A transaction's provider as the reconciliation view names it: its PSP, or the
        account a channel without PSPs receives on."""
        return transaction.get("psp_uuid") or self.accounts.get(transaction.get("channel", ""), "")

    def name(self, provider: str) -> str:
        return self.names.get(provider, "")


@dataclass(frozen=True)
class Export:
    """One export: where its rows come from and what they show."""

    name: str
    summary: str  # "M-Pesa paybill payments": the docs, the command's help
    collection: str
    time_field: str  # the window's field, and the rows' order (an index serves both)
    tiebreak: str  # a unique field: the order of rows of the same time
    filters: type[Schema]  # its query: the window, then its filters
    columns: tuple[str, ...]
    where: Callable[[Mapping[str, Any]], dict[str, Any]]  # the loaded filters -> query
    row: Callable[[Mapping[str, Any], Lookups], list[str]]
    projection: tuple[str, ...]
    # Filters naming a registered channel: refused (400) when it is not one.
    channel_filter: bool = False
    # Rows that show their transaction's channel and provider (premiums).
    joins_transactions: bool = False


@dataclass(frozen=True)
class Prepared:
    """An export asked for: its store query and window."""

    export: Export
    window: Window
    query: dict[str, Any]

    @property
    def file_name(self) -> str:
        return f"{self.export.name}-{self.window.first}-{self.window.last}.csv"


class Exports:
    def __init__(
        self,
        store: Store,
        channels: Sequence[str],
        accounts: Mapping[str, str],
        batch_size: int = BATCH_SIZE,
    ) -> None:
        """`channels`: the registered channels' names; `accounts`: the account each
        channel without PSPs receives on (the reconciliation view's)."""
        self.store = store
        self.channels = tuple(channels)
        self.accounts = dict(accounts)
        self.batch_size = batch_size

    def prepare(self, export: Export, filters: Mapping[str, Any]) -> Prepared:
        """The export of `filters` (loaded with export.filters); 400 naming the parameter
        for a window that ends before it starts, a channel that is not registered or an
        amount range without its currency."""
        channel = filters.get("channel")
        if export.channel_filter and channel is not None and channel not in self.channels:
            raise ValidationFailed(
                "query parameters are invalid",
                {"fields": {"channel": [f"Must be one of: {', '.join(self.channels)}."]}},
            )
        window = window_of(filters["date_from"], filters["date_to"])
        query = {
            **export.where(filters),
            **_amounts(filters),
            export.time_field: {"$gte": window.start, "$lt": window.end},
        }
        return Prepared(export, window, query)

    async def batches(self, prepared: Prepared) -> AsyncIterator[list[list[str]]]:
        """The header, then the rows, a batch at a time in the order of the time field
        and then the tie-break (two exports of a range list its rows alike). The header
        comes with the first batch (alone when there is no row), so nothing is handed
        over before the store has answered."""
        export = prepared.export
        lookups = Lookups(await psp_names(self.store), self.accounts)
        cursor = (
            self.store.collection(export.collection)
            .find(prepared.query, dict.fromkeys(export.projection, 1))
            .sort([(export.time_field, ASCENDING), (export.tiebreak, ASCENDING)])
            .batch_size(self.batch_size)
        )
        header: list[list[str]] = [list(export.columns)]
        async for documents in in_batches(cursor, self.batch_size):
            if export.joins_transactions:
                lookups.transactions = await self._transactions(documents)
            yield [*header, *(export.row(document, lookups) for document in documents)]
            header = []
        if header:
            yield header

    async def _transactions(
        self, premiums: list[Mapping[str, Any]]
    ) -> dict[str, Mapping[str, Any]]:
        """The transactions of a batch of premiums, in one round trip (by _id)."""
        uuids = [premium["transaction_uuid"] for premium in premiums]
        found = self.store.collection(TRANSACTIONS).find(
            {"_id": {"$in": uuids}}, TRANSACTION_FIELDS
        )
        return {transaction["_id"]: transaction for transaction in await found.to_list(None)}
