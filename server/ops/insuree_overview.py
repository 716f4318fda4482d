"""One insuree as the desk shows it: the insuree, its policies, its premiums, the
paybill payments made to its number (the account) and its transactions of every
channel; each list newest first, paged on its own, read from an index that starts
with the insuree number."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, fields, validate

from server.insurance.repository import INSUREES, POLICIES
from server.insurance.schemas import InsureeSchema, PolicySchema, render_insuree, render_policy
from server.kernel.errors import NotFound
from server.kernel.identifiers import CHF_ID
from server.kernel.schemas import StrictSchema, page_body
from server.kernel.store import Store
from server.ledger.premium_schemas import LedgerPremiumSchema, render_premium
from server.ledger.repository import PREMIUMS, TRANSACTIONS
from server.ledger.schemas import TransactionPageSchema
from server.mpesa.repository import PAYMENTS
from server.mpesa.schemas import C2BPaymentPageSchema, render_payment
from server.web import answer_schemas as answers

# The lists, each with its collection, its insuree field and its order.
SECTIONS: dict[str, tuple[str, str, list[tuple[str, int]]]] = {
    "policies": (POLICIES, "chf_id", [("created_at", -1), ("_id", -1)]),
    "premiums": (PREMIUMS, "chf_id", [("created_at", -1), ("_id", -1)]),
    "payments": (PAYMENTS, "bill_ref", [("trans_time", -1), ("trans_id", -1)]),
    "transactions": (TRANSACTIONS, "chf_id", [("created_at", -1), ("_id", -1)]),
}


def _offset(section: str) -> fields.Integer:
    return fields.Integer(
        load_default=0,
        validate=validate.Range(min=0, max=1_000_000),
        metadata={"description": f"where the page of {section} starts"},
    )


class OverviewQuerySchema(StrictSchema):
    limit = fields.Integer(
        load_default=20,
        validate=validate.Range(min=1, max=100),
        metadata={"description": "items per list"},
    )
    policies_offset = _offset("policies")
    premiums_offset = _offset("premiums")
    payments_offset = _offset("payments")
    transactions_offset = _offset("transactions")


def _page_of(item: type[Schema], name: str) -> type[Schema]:
    return answers.PageSchema.from_dict({"items": answers.list_of(item)}, name=name)


class InsureeOverviewSchema(Schema):
    """What render_overview answers."""

    insuree = answers.nested(InsureeSchema)
    policies = answers.nested(_page_of(PolicySchema, "InsureePolicyPageSchema"))
    premiums = answers.nested(_page_of(LedgerPremiumSchema, "InsureePremiumPageSchema"))
    payments = answers.nested(C2BPaymentPageSchema)
    transactions = answers.nested(TransactionPageSchema)


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    offset: int


@dataclass(frozen=True)
class Overview:
    insuree: dict[str, Any]
    limit: int
    pages: dict[str, Page]  # by section


class InsureeOverview:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def of(self, chf_id: str, limit: int, offsets: dict[str, int]) -> Overview:
        """`offsets`: where each section's page starts (a missing one: 0)."""
        chf_id = CHF_ID.normalise(chf_id)
        insuree = await self.store.collection(INSUREES).find_one({"chf_id": chf_id})
        if insuree is None:
            raise NotFound(f"no insuree with number {chf_id}", code="unknown_insuree")
        pages = await asyncio.gather(
            *(self._page(section, chf_id, limit, offsets.get(section, 0)) for section in SECTIONS)
        )
        return Overview(insuree, limit, dict(zip(SECTIONS, pages, strict=True)))

    async def _page(self, section: str, chf_id: str, limit: int, offset: int) -> Page:
        collection, field, order = SECTIONS[section]
        found = self.store.collection(collection)
        query = {field: chf_id}
        items = await found.find(query).sort(order).skip(offset).limit(limit).to_list(None)
        return Page(items, await found.count_documents(query), offset)


def render_overview(
    overview: Overview, render_transaction: Callable[[Any], dict[str, Any]]
) -> dict[str, Any]:
    """`render_transaction`: the ledger's (it adds each channel's own fields)."""
    renders: dict[str, Callable[[Any], dict[str, Any]]] = {
        "policies": render_policy,
        "premiums": render_premium,
        "payments": render_payment,
        "transactions": render_transaction,
    }
    body: dict[str, Any] = {"insuree": render_insuree(overview.insuree)}
    for section, page in overview.pages.items():
        items = [renders[section](item) for item in page.items]
        body[section] = page_body(items, page.total, overview.limit, page.offset)
    return body
