"""The operators' desk over HTTP: search, review items, an insuree's overview; what
each answers (server.web.operations) and their routes."""

from __future__ import annotations

from server.kernel.schemas import page_body
from server.ops.insuree_overview import (
    SECTIONS,
    InsureeOverviewSchema,
    OverviewQuerySchema,
    render_overview,
)
from server.ops.review_items import DeskReviewItemPageSchema, ReviewQuerySchema
from server.ops.search import SearchAnswerSchema, SearchQuerySchema
from server.web.handler import BaseHandler
from server.web.operations import AUTH, STAFF, Operation


class SearchHandler(BaseHandler):
    operations = {
        "get": Operation(
            "Search payments, transactions, insurees and inbox entries by their keys",
            "desk",
            SearchAnswerSchema,
            roles=STAFF,
            query=SearchQuerySchema,
            errors=(400, *AUTH),
            description="Exact keys only, newest first, at most `limit` (default 20). A "
            "phone number also finds the paybill payments whose number M-Pesa masked "
            "(`match: phone_masked`: only possibly the payer) or hashed. Nothing found: "
            "200 with no items.",
        )
    }

    async def get(self) -> None:
        await self.require_role(*STAFF)
        query = self.load_query(SearchQuerySchema)
        items = await self.settings["services"].desk.search.find(query["q"], query["limit"])
        self.write_json({"items": items, "query": query["q"]})


class ReviewItemsHandler(BaseHandler):
    operations = {
        "get": Operation(
            "What waits for an operator: flagged payments, inbox entries to review",
            "desk",
            DeskReviewItemPageSchema,
            roles=STAFF,
            query=ReviewQuerySchema,
            errors=(400, *AUTH),
            description="Paybill payments flagged for review and inbox entries that need "
            "review, failed or conflict, newest first; `offset` up to 10000.",
        )
    }

    async def get(self) -> None:
        await self.require_role(*STAFF)
        query = self.load_query(ReviewQuerySchema)
        limit, offset = query["limit"], query["offset"]
        items, total = await self.settings["services"].desk.review.page(
            query.get("kind"), limit, offset
        )
        self.write_json(page_body(items, total, limit, offset))


class InsureeOverviewHandler(BaseHandler):
    path_parameters = {"chf_id": "Insuree number"}
    operations = {
        "get": Operation(
            "An insuree with its policies, premiums, payments and transactions",
            "desk",
            InsureeOverviewSchema,
            roles=STAFF,
            query=OverviewQuerySchema,
            errors=(400, *AUTH, 404),
            description="Each list newest first, `limit` items, from its own offset "
            "(`policies_offset`, ...). `payments` are the paybill payments made to the "
            "insuree number as account.",
        )
    }

    async def get(self, chf_id: str) -> None:
        await self.require_role(*STAFF)
        query = self.load_query(OverviewQuerySchema)
        offsets = {section: query[f"{section}_offset"] for section in SECTIONS}
        services = self.settings["services"]
        overview = await services.desk.insurees.of(chf_id, query["limit"], offsets)
        self.write_json(render_overview(overview, services.ledger.render))


ROUTES = [
    (r"/api/v1/search", SearchHandler),
    (r"/api/v1/review-items", ReviewItemsHandler),
    (r"/api/v1/insurees/([^/]+)/overview", InsureeOverviewHandler),
]
