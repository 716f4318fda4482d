"""The operations dashboard: what came in, what is stuck, what is failing.

Every figure is an aggregation pipeline over indexed fields (created_at, status,
received_at, at), so it reads the same from the in-memory store and MongoDB.
Amounts stay integer minor units per currency until rendered; amounts of
different currencies are never added together. DashboardSchema (at the end) describes
the answer key for key."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import Schema, fields

from server.debits.registry import Channel
from server.kernel.clock import Clock
from server.kernel.money import format_amount
from server.kernel.store import Store
from server.ledger import states
from server.ledger.premium_schemas import LedgerPremiumSchema, render_premium
from server.mpesa.reasons import review_text, unmatched_text
from server.mpesa.repository import NEEDS_REVIEW
from server.mpesa.schemas import INBOX_STATUSES
from server.reconciliation.view import PullOverdueAttentionSchema, overdue_pulls
from server.web import answer_schemas as answers

ATTENTION_ITEMS = 5
# Debits that have sat in these states longer than this need a person. A payer who
# has not read out the OTP after a few minutes may never have received it, and the
# debit would otherwise only expire with its channel's lifetime (e.g.
# qmoney.otp_lifetime_seconds).
STUCK_AFTER = {
    **{waiting: timedelta(minutes=2) for waiting in states.WAITING},
    states.PROCESSING: timedelta(minutes=15),
    states.UNKNOWN: timedelta(minutes=15),
}
# A debit its provider is asked about on a schedule (an M-Pesa Express prompt) is
# stuck once its last status check is this long past: the check job should have
# decided it, or made it `unknown`.
STATUS_CHECK_GRACE = timedelta(minutes=1)


def stuck_after(channels: Sequence[Channel]) -> dict[str, timedelta]:
    """STUCK_AFTER, with each scheduled channel's waiting state held past its schedule."""
    limits: dict[str, timedelta] = {str(state): after for state, after in STUCK_AFTER.items()}
    for channel in channels:
        adapter = channel.debit
        if adapter is not None and adapter.status_checks:
            past_schedule = adapter.status_checks[-1] + STATUS_CHECK_GRACE
            limits[adapter.waiting_state] = max(
                limits.get(adapter.waiting_state, past_schedule), past_schedule
            )
    return limits


FAILED = (states.FAILED, states.EXPIRED, states.CANCELLED)
# One row of Dashboard._figures: channel, currency, status, psp, start, amount, count.
Figure = dict[str, Any]
HOURLY_UP_TO = timedelta(days=3)
PROVIDER_SAMPLE = 5000
# A provider call's outcome (server.integrations.transport.CallLog): `ok`; `rejected`, a
# refusal: the provider answered and said no (a wrong OTP, an unknown receipt), a
# business answer; `unavailable` or `unknown`, a failure: no answer, a server error or
# an answer that could not be read. Each client decides which of its answers is which.
REFUSED = "rejected"


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


class Dashboard:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        channels: Sequence[Channel],
        insurance_backend: str = "builtin",
    ) -> None:
        """`channels`: the registered ones, in the order the dashboard lists them;
        `insurance_backend`: where premiums go (server.insurance.backend)."""
        self.store = store
        self.insurance_backend = insurance_backend
        self.clock = clock
        self.stuck_after = stuck_after(channels)
        # Unknown debits of a channel with a status call are the janitor's until it has
        # made its last attempt; those of a channel without one are an operator's.
        self.janitor_channels = sorted(
            channel.name for channel in channels if channel.debit and channel.debit.status_call
        )
        self.not_asked = {
            channel.name: channel.label
            for channel in channels
            if channel.debit and not channel.debit.status_call
        }
        self.channels = [
            {"name": channel.name, "label": channel.label, "direction": channel.direction.value}
            for channel in channels
        ]

    async def summary(
        self, date_from: datetime | None, date_to: datetime | None, currency: str | None
    ) -> dict[str, Any]:
        end = date_to or self.clock.now()
        start = date_from or end - timedelta(hours=24)
        bucket = "hour" if end - start <= HOURLY_UP_TO else "day"
        window: dict[str, Any] = {"created_at": {"$gte": start, "$lt": end}}
        if currency:
            window["currency"] = currency
        rows = await self._figures(window, bucket)
        succeeded = [row for row in rows if row["status"] == states.SUCCEEDED]
        return {
            "window": {"from": _iso(start), "to": _iso(end), "bucket": bucket},
            "channels": self.channels,
            "insurance_backend": self.insurance_backend,
            "currency": currency,
            "totals": _totals(succeeded),
            "by_channel": _by_channel(rows),
            "by_psp": await self._by_psp(succeeded),
            "by_status": _by_status(rows),
            "series": _series(succeeded),
            "attention": await self._attention(currency),
            "providers": await self._providers(start, end),
        }

    async def _figures(self, window: dict[str, Any], bucket: str) -> list[Figure]:
        """The window's transactions in one pass, summed by channel, currency, status,
        provider and time bucket: every figure of the summary is a sum of these rows."""
        pattern = "%Y-%m-%dT%H:00:00+00:00" if bucket == "hour" else "%Y-%m-%dT00:00:00+00:00"
        rows = await self.store.aggregate(
            "transactions",
            [
                {"$match": window},
                {
                    "$group": {
                        "_id": {
                            "channel": "$channel",
                            "currency": "$currency",
                            "status": "$status",
                            "psp": "$psp_uuid",
                            "start": {"$dateToString": {"date": "$created_at", "format": pattern}},
                        },
                        "amount": {"$sum": "$amount"},
                        "count": {"$sum": 1},
                    }
                },
            ],
        )
        return [
            {
                **row["_id"],
                "psp": row["_id"].get("psp"),
                "amount": row["amount"],
                "count": row["count"],
            }
            for row in rows
        ]

    async def _by_psp(self, rows: list[Figure]) -> list[dict[str, Any]]:
        sums = _summed(rows, "psp", "currency")
        names = {
            psp["_id"]: psp["name"]
            for psp in await self.store.collection("psps").find({}, {"name": 1}).to_list(None)
        }
        return sorted(
            (
                {
                    "psp_uuid": psp,
                    "psp_name": names.get(psp, "?"),
                    "currency": code,
                    "amount": format_amount(amount, code),
                    "count": count,
                }
                for (psp, code), (amount, count) in sums.items()
                if psp is not None
            ),
            key=lambda row: (row["psp_name"], row["currency"]),
        )

    async def _oldest(
        self, collection: str, query: dict[str, Any], sort_field: str, render: Any
    ) -> dict[str, Any]:
        items = await (
            self.store.collection(collection)
            .find(query)
            .sort(sort_field, 1)
            .limit(ATTENTION_ITEMS)
            .to_list(None)
        )
        count = await self.store.collection(collection).count_documents(query)
        return {"count": count, "oldest": [render(item) for item in items]}

    async def _attention(self, currency: str | None) -> dict[str, Any]:
        money = {"currency": currency} if currency else {}
        now = self.clock.now()
        stuck = [
            {"status": status, "updated_at": {"$lt": now - after}}
            for status, after in self.stuck_after.items()
            if status != states.UNKNOWN
        ]
        stuck.append(self._unknown_for_operators(now))
        return {
            "c2b_unmatched": await self._oldest(
                "c2b_payments",
                {"status": "unmatched", **money},
                "received_at",
                lambda item: {
                    "trans_id": item["trans_id"],
                    "bill_ref": item["bill_ref"],
                    "amount": format_amount(item["amount"], item["currency"]),
                    "currency": item["currency"],
                    "reason": item.get("unmatched_reason"),
                    "reason_text": unmatched_text(item),
                    "received_at": _iso(item["received_at"]),
                },
            ),
            # Flags an operator dismissed no longer count (server.mpesa.actions).
            "c2b_needs_review": await self._oldest(
                "c2b_payments",
                {**NEEDS_REVIEW, **money},
                "received_at",
                _review_item,
            ),
            "stuck_debits": await self._oldest(
                "transactions",
                {"$or": stuck, **money},
                "updated_at",
                lambda item: {
                    "uuid": item["_id"],
                    "status": item["status"],
                    "channel": item["channel"],
                    "amount": format_amount(item["amount"], item["currency"]),
                    "currency": item["currency"],
                    "chf_id": item["chf_id"],
                    "updated_at": _iso(item["updated_at"]),
                    "note": self._unknown_note(item),
                },
            ),
            "failed_inbox": await self._oldest(
                "c2b_inbox",
                {"status": {"$in": ["failed", "needs_review", "conflict"]}},
                "received_at",
                lambda item: {
                    "id": item["_id"],
                    "kind": item["kind"],
                    "status": item["status"],
                    "received_at": _iso(item["received_at"]),
                },
            ),
            # Premiums settled here that openIMIS does not have yet, and those it refused.
            "premiums_waiting": await self._oldest(
                "premiums",
                {"insurance_write.state": "pending", **money},
                "created_at",
                render_premium,
            ),
            "premiums_refused": await self._oldest(
                "premiums",
                {"insurance_write.state": "refused", **money},
                "created_at",
                render_premium,
            ),
            # Any currency: a gap in the M-Pesa pull that only a statement closes.
            "mpesa_pull_overdue": await overdue_pulls(self.store, now),
        }

    def _unknown_for_operators(self, now: datetime) -> dict[str, Any]:
        """`unknown` debits an operator resolves: those the janitor gave up on (its
        attempts are exhausted), those of a channel without a status call once they have
        sat STUCK_AFTER, and those the janitor has not come to for as long (not running)."""
        past = now - self.stuck_after[states.UNKNOWN]
        return {
            "status": states.UNKNOWN,
            "$or": [
                {"needs_operator": True},
                {"channel": {"$nin": self.janitor_channels}, "updated_at": {"$lt": past}},
                {"janitor_next_at": {"$lt": past}},
                {"janitor_from": {"$exists": False}, "updated_at": {"$lt": past}},
            ],
        }

    def _unknown_note(self, item: dict[str, Any]) -> str | None:
        """Why an `unknown` debit is listed: what the operator is to do."""
        if item["status"] != states.UNKNOWN:
            return None
        if item.get("needs_operator"):
            return item.get("operator_reason") or (
                "automatic status checks exhausted: for an operator to resolve"
            )
        label = self.not_asked.get(item["channel"])
        if label is not None:
            return f"{label} has no status call: an operator checks with {label} and resolves it"
        return "automatic status checks are overdue (is the janitor job running?)"

    async def _providers(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        window = {"at": {"$gte": start, "$lt": end}}
        rows = await self.store.aggregate(
            "provider_calls",
            [
                {"$match": window},
                {
                    "$group": {
                        "_id": {"provider": "$provider", "endpoint": "$endpoint"},
                        "count": {"$sum": 1},
                        "errors": {"$sum": {"$cond": [{"$eq": ["$outcome", "ok"]}, 0, 1]}},
                        "refusals": {"$sum": {"$cond": [{"$eq": ["$outcome", REFUSED]}, 1, 0]}},
                    }
                },
            ],
        )
        calls = self.store.collection("provider_calls")
        result = []
        for row in sorted(rows, key=lambda row: (row["_id"]["provider"], row["_id"]["endpoint"])):
            # Latency from the most recent calls only, so a busy window stays cheap.
            recent = (
                calls.find({**row["_id"], **window}, {"duration_ms": 1, "_id": 0})
                .sort("at", -1)
                .limit(PROVIDER_SAMPLE)
            )
            durations = sorted(call["duration_ms"] for call in await recent.to_list(None))
            last_error = await calls.find_one(
                {**row["_id"], "outcome": {"$ne": "ok"}}, sort=[("at", -1)]
            )
            last_failure = last_error
            if last_error is not None and last_error["outcome"] == REFUSED:
                last_failure = await calls.find_one(
                    {**row["_id"], "outcome": {"$nin": ["ok", REFUSED]}}, sort=[("at", -1)]
                )
            failures = row["errors"] - row["refusals"]
            result.append(
                {
                    **row["_id"],
                    "count": row["count"],
                    "error_rate": row["errors"] / row["count"],
                    "refusals": row["refusals"],
                    "refusal_rate": row["refusals"] / row["count"],
                    "failures": failures,
                    "failure_rate": failures / row["count"],
                    "p50_ms": _percentile(durations, 50),
                    "p95_ms": _percentile(durations, 95),
                    "last_error": _call_error(last_error),
                    "last_failure": _call_error(last_failure),
                }
            )
        return result


def _call_error(call: dict[str, Any] | None) -> dict[str, Any] | None:
    if call is None:
        return None
    return {"at": _iso(call["at"]), "message": call["error"], "outcome": call["outcome"]}


def _review_item(item: dict[str, Any]) -> dict[str, Any]:
    """A payment that needs review, by its latest flag not dismissed."""
    open_flags = [flag for flag in item["review"] if "dismissed_at" not in flag]
    flag = (open_flags or item["review"])[-1]
    return {
        "trans_id": item["trans_id"],
        "amount": format_amount(item["amount"], item["currency"]),
        "currency": item["currency"],
        "reason": flag["reason"],
        "reason_text": review_text(item, flag["reason"]),
        "received_at": _iso(item["received_at"]),
    }


def _percentile(values: list[float], percent: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[percent - 1], 1)


def _summed(rows: list[Figure], *keys: str) -> dict[tuple[Any, ...], tuple[int, int]]:
    """(amount, count) of `rows` summed by the values of `keys`."""
    sums: dict[tuple[Any, ...], tuple[int, int]] = {}
    for row in rows:
        key = tuple(row[name] for name in keys)
        amount, count = sums.get(key, (0, 0))
        sums[key] = (amount + row["amount"], count + row["count"])
    return sums


def _totals(succeeded: list[Figure]) -> list[dict[str, Any]]:
    return [
        {"currency": code, "amount": format_amount(amount, code), "count": count}
        for (code,), (amount, count) in sorted(_summed(succeeded, "currency").items())
    ]


def _by_channel(rows: list[Figure]) -> list[dict[str, Any]]:
    table: dict[tuple[str, str], dict[str, int]] = {}
    for row in rows:
        entry = table.setdefault(
            (row["channel"], row["currency"]),
            {"amount": 0, "count": 0, "succeeded": 0, "failed": 0},
        )
        entry["count"] += row["count"]
        if row["status"] == states.SUCCEEDED:
            entry["succeeded"] += row["count"]
            entry["amount"] += row["amount"]
        elif row["status"] in FAILED:
            entry["failed"] += row["count"]
    result = []
    for (channel, code), entry in sorted(table.items()):
        finished = entry["succeeded"] + entry["failed"]
        result.append(
            {
                "channel": channel,
                "currency": code,
                "amount": format_amount(entry["amount"], code),
                "count": entry["count"],
                "succeeded": entry["succeeded"],
                "failed": entry["failed"],
                "other": entry["count"] - entry["succeeded"] - entry["failed"],
                "success_rate": entry["succeeded"] / finished if finished else None,
            }
        )
    return result


def _by_status(rows: list[Figure]) -> list[dict[str, Any]]:
    return [
        {"status": status, "count": count}
        for (status,), (_, count) in sorted(_summed(rows, "status").items())
    ]


def _series(succeeded: list[Figure]) -> list[dict[str, Any]]:
    return [
        {"start": start, "currency": code, "amount": format_amount(amount, code), "count": count}
        for (start, code), (amount, count) in sorted(
            _summed(succeeded, "start", "currency").items()
        )
    ]


# --- what summary answers ---------------------------------------------------


class DashboardWindowSchema(Schema):
    from_ = answers.stamp(data_key="from")
    to = answers.stamp()
    bucket = answers.one_of(["hour", "day"])


class CurrencyTotalSchema(Schema):
    currency = answers.text()
    amount = answers.amount()
    count = answers.count()


class ChannelFigureSchema(Schema):
    channel = answers.text()  # a registered channel: the dashboard lists them
    currency = answers.text()
    amount = answers.amount()
    count = answers.count()
    succeeded = answers.count()
    failed = answers.count()
    other = fields.Integer(
        required=True,
        metadata={
            "description": "neither succeeded nor failed: still waiting, processing or "
            "unknown (count = succeeded + failed + other)"
        },
    )
    success_rate = fields.Float(
        required=True,
        allow_none=True,
        metadata={"description": "succeeded over finished; null when none finished"},
    )


class PspFigureSchema(Schema):
    psp_uuid = answers.text()
    psp_name = answers.text()
    currency = answers.text()
    amount = answers.amount()
    count = answers.count()


class StatusCountSchema(Schema):
    status = answers.one_of(states.STATES)
    count = answers.count()


class SeriesPointSchema(Schema):
    start = answers.stamp()
    currency = answers.text()
    amount = answers.amount()
    count = answers.count()


class UnmatchedItemSchema(Schema):
    trans_id = answers.text()
    bill_ref = answers.text()
    amount = answers.amount()
    currency = answers.text()
    reason = answers.text(nullable=True)
    reason_text = answers.text(
        nullable=True,
        metadata={
            "description": "the reason in words, with the amounts when it is about one",
            "example": "paid 350.00 KES; the policy needs 1500.00 KES",
        },
    )
    received_at = answers.stamp()


class ReviewItemSchema(Schema):
    trans_id = answers.text()
    amount = answers.amount()
    currency = answers.text()
    reason = answers.text(metadata={"description": "its latest flag not dismissed"})
    reason_text = answers.text()
    received_at = answers.stamp()


class StuckDebitItemSchema(Schema):
    uuid = answers.text()
    status = answers.one_of(states.STATES)
    channel = answers.text()  # a registered channel: the dashboard lists them
    amount = answers.amount()
    currency = answers.text()
    chf_id = answers.text()
    updated_at = answers.stamp()
    note = answers.text(
        nullable=True,
        metadata={
            "description": "unknown debits: why an operator resolves it (automatic status "
            "checks exhausted, or the provider has no status call)"
        },
    )


class FailedInboxItemSchema(Schema):
    id = answers.text()
    kind = answers.one_of(["validation", "confirmation"])
    status = answers.one_of(INBOX_STATUSES)
    received_at = answers.stamp()


class UnmatchedAttentionSchema(Schema):
    count = answers.count()
    oldest = answers.list_of(UnmatchedItemSchema)


class ReviewAttentionSchema(Schema):
    count = answers.count()
    oldest = answers.list_of(ReviewItemSchema)


class StuckDebitAttentionSchema(Schema):
    count = answers.count()
    oldest = answers.list_of(StuckDebitItemSchema)


class FailedInboxAttentionSchema(Schema):
    count = answers.count()
    oldest = answers.list_of(FailedInboxItemSchema)


class PremiumsWaitingSchema(Schema):
    count = answers.count()
    oldest = answers.list_of(LedgerPremiumSchema)  # each with its `insurance_write`


class AttentionSchema(Schema):
    c2b_unmatched = answers.nested(UnmatchedAttentionSchema)
    c2b_needs_review = answers.nested(ReviewAttentionSchema)
    stuck_debits = answers.nested(StuckDebitAttentionSchema)
    failed_inbox = answers.nested(FailedInboxAttentionSchema)
    mpesa_pull_overdue = answers.nested(PullOverdueAttentionSchema)
    premiums_waiting = answers.nested(PremiumsWaitingSchema)
    premiums_refused = answers.nested(PremiumsWaitingSchema)


class LastErrorSchema(Schema):
    at = answers.stamp()
    message = answers.text()
    outcome = answers.one_of(
        ["rejected", "unavailable", "unknown"],
        metadata={"description": "`rejected`: a refusal; the others: failures"},
    )


class ProviderHealthSchema(Schema):
    provider = answers.text()
    endpoint = answers.text()
    count = answers.count()
    error_rate = fields.Float(
        required=True,
        metadata={"description": "calls that did not succeed: refusals and failures together"},
    )
    refusals = fields.Integer(
        required=True,
        metadata={"description": "the provider answered and said no (e.g. a wrong OTP)"},
    )
    refusal_rate = fields.Float(required=True)
    failures = fields.Integer(
        required=True,
        metadata={"description": "no answer, a timeout, a server error or an unreadable answer"},
    )
    failure_rate = fields.Float(required=True)
    p50_ms = fields.Float(required=True, allow_none=True)
    p95_ms = fields.Float(required=True, allow_none=True)
    last_error = answers.nested(LastErrorSchema, nullable=True)  # a refusal or a failure
    last_failure = answers.nested(LastErrorSchema, nullable=True)


class ChannelSchema(Schema):
    name = answers.text()
    label = answers.text()
    direction = answers.one_of(["inbound", "debit"])


class DashboardSchema(Schema):
    """What Dashboard.summary answers."""

    window = answers.nested(DashboardWindowSchema)
    channels = answers.list_of(ChannelSchema)
    insurance_backend = answers.one_of(("builtin", "openimis"))
    currency = answers.text(nullable=True)
    totals = answers.list_of(CurrencyTotalSchema)
    by_channel = answers.list_of(ChannelFigureSchema)
    by_psp = answers.list_of(PspFigureSchema)
    by_status = answers.list_of(StatusCountSchema)
    series = answers.list_of(SeriesPointSchema)
    attention = answers.nested(AttentionSchema)
    providers = answers.list_of(ProviderHealthSchema)
