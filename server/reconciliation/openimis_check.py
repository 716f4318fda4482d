"""The premiums the gateway recorded for a period against those openIMIS holds, by
receipt (insurance.backend: openimis).

The gateway's premiums of the period (those it settled with openIMIS as the backend)
are read from the store in policy batches; openIMIS is asked for the premiums of the
same policies (`premiumsByPolicies`, one call per batch). Each receipt is then:

- `matched`: in both, with the same amount and pay date;
- `different`: in both, the amount or the pay date differs;
- `missing_there`: recorded here, not in openIMIS (still waiting, refused, or lost);
- `only_there`: in openIMIS on one of those policies with the gateway's pay type, and
  not recorded here;
- `duplicated_there`: a receipt recorded here that openIMIS holds more than once.

openIMIS's other premiums (cash at a desk, other pay types) are not the gateway's and
are not listed; a premium on a policy the gateway recorded nothing for in the period is
not seen (openIMIS is asked by policy)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import Schema, fields

from server.insurance.openimis_client import OpenimisClient
from server.kernel.money import format_amount
from server.kernel.store import Store
from server.ledger.repository import PREMIUMS
from server.reconciliation.view import Period
from server.web import answer_schemas as answers

KINDS = ("matched", "different", "missing_there", "only_there", "duplicated_there")
# Policies asked about per call (their premiums are read page by page).
POLICY_BATCH = 25


class OpenimisPremiumCheck:
    def __init__(self, store: Store, client: OpenimisClient, pay_type: str, zone: tzinfo) -> None:
        """`zone`: the scheme's, whose day a premium's pay date is."""
        self.store = store
        self.client = client
        self.pay_type = pay_type
        self.zone = zone

    async def compare(self, period: Period) -> dict[str, Any]:
        here = await self._recorded(period)
        by_policy: dict[str, list[dict[str, Any]]] = {}
        for premium in here:
            by_policy.setdefault(premium["policy_uuid"], []).append(premium)
        items: list[dict[str, Any]] = []
        policies = sorted(by_policy)
        for start in range(0, len(policies), POLICY_BATCH):
            batch = policies[start : start + POLICY_BATCH]
            there = await self.client.premiums_by_policy(batch)
            for policy_uuid in batch:
                held = there.get(policy_uuid, [])
                items.extend(compare_policy(by_policy[policy_uuid], held, self.pay_type, self.zone))
        counts = Counter(item["kind"] for item in items)
        return {
            "from": period.first.isoformat(),
            "to": period.last.isoformat(),
            "counts": {kind: counts.get(kind, 0) for kind in KINDS},
            "items": [item for item in items if item["kind"] != "matched"],
        }

    async def _recorded(self, period: Period) -> list[dict[str, Any]]:
        cursor = self.store.collection(PREMIUMS).find(
            {
                "insurance_write.state": {"$in": ["pending", "written", "refused"]},
                "created_at": {"$gte": period.start, "$lt": period.end},
            }
        )
        return await cursor.to_list(None)


def compare_policy(
    recorded: list[dict[str, Any]], held: list[dict[str, Any]], pay_type: str, zone: tzinfo
) -> list[dict[str, Any]]:
    """One policy's premiums recorded here against those openIMIS holds, by receipt."""
    there: dict[str, list[dict[str, Any]]] = {}
    for node in held:
        there.setdefault(str(node.get("receipt")), []).append(node)
    items = []
    for premium in recorded:
        nodes = there.pop(premium["receipt"], [])
        items.append(_compared(premium, nodes[0] if nodes else None, zone))
        for extra in nodes[1:]:
            # The same receipt twice: the premium was written twice.
            items.append({**_only_there(premium["receipt"], extra), "kind": "duplicated_there"})
    for receipt, nodes in there.items():
        for node in nodes:
            if node.get("payType") == pay_type:
                items.append(_only_there(receipt, node))
    return items


def _only_there(receipt: str, node: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "only_there",
        "receipt": receipt,
        "policy_uuid": str((node.get("policy") or {}).get("uuid")),
        "here": None,
        "there": _there(node),
    }


def _compared(premium: dict[str, Any], node: dict[str, Any] | None, zone: tzinfo) -> dict[str, Any]:
    paid_at = premium["pay_date"]
    paid_at = paid_at if paid_at.tzinfo else paid_at.replace(tzinfo=UTC)
    here = {
        "amount": format_amount(premium["amount"], premium["currency"]),
        "currency": premium["currency"],
        "pay_date": paid_at.astimezone(zone).date().isoformat(),
        "state": premium["insurance_write"]["state"],
    }
    item = {
        "receipt": premium["receipt"],
        "policy_uuid": premium["policy_uuid"],
        "here": here,
        "there": None if node is None else _there(node),
    }
    if node is None:
        return {**item, "kind": "missing_there"}
    same = (
        _same_amount(here["amount"], node.get("amount"))
        and str(node.get("payDate", ""))[:10] == here["pay_date"]
    )
    return {**item, "kind": "matched" if same else "different"}


def _there(node: dict[str, Any]) -> dict[str, Any]:
    return {
        "amount": str(node.get("amount")),
        "pay_date": str(node.get("payDate", ""))[:10],
        "pay_type": str(node.get("payType", "")),
    }


def _same_amount(here: str, there: Any) -> bool:
    try:
        return Decimal(here) == Decimal(str(there))
    except InvalidOperation:
        return False


class RecordedHereSchema(Schema):
    amount = answers.amount()
    currency = answers.text()
    pay_date = answers.day()
    state = answers.one_of(("pending", "written", "refused"))


class HeldThereSchema(Schema):
    amount = answers.text(metadata={"description": "as openIMIS answers it"})
    pay_date = answers.day()
    pay_type = answers.text()


class PremiumComparisonSchema(Schema):
    kind = answers.one_of(KINDS)
    receipt = answers.text()
    policy_uuid = answers.text()
    here = answers.nested(RecordedHereSchema, nullable=True)
    there = answers.nested(HeldThereSchema, nullable=True)


class CountsSchema(Schema):
    matched = answers.count()
    different = answers.count()
    missing_there = answers.count()
    only_there = answers.count()
    duplicated_there = answers.count()


class OpenimisCheckSchema(Schema):
    date_from = fields.Date(required=True, data_key="from")
    date_to = fields.Date(required=True, data_key="to")
    counts = answers.nested(CountsSchema)
    items = answers.list_of(PremiumComparisonSchema)
