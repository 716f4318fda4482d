"""The reconciliation view on the API: its JSON answer, its rows as CSV, and asking
M-Pesa for the accounts' balances; what each answers (server.web.operations) and their
routes."""

from __future__ import annotations

from datetime import date

from marshmallow import fields, validate

from server.kernel.batches import in_batches
from server.kernel.schemas import ReasonSchema, StrictSchema
from server.mpesa.check_schemas import ProviderCheckSchema, render_check
from server.reconciliation.view import (
    MAX_DAYS,
    OPEN_ITEMS_LIMIT,
    Period,
    ReconciliationItemSchema,
    ReconciliationSchema,
    ReconciliationView,
    csv_lines,
    iso_stamp,
    render_item,
)
from server.web import answer_schemas as answers
from server.web.csv_answer import send_csv
from server.web.handler import BaseHandler
from server.web.operations import AUTH, BODY, STAFF, Operation

# Far enough either way for any business day; keeps the date arithmetic in range.
DAYS = validate.Range(min=date(2000, 1, 1), max=date(2999, 12, 31))
CSV_FLUSH_EVERY = 500
PERIOD = (
    "`from` and `to` are Nairobi business days (YYYY-MM-DD), both included; by default "
    f"the last 7 days. A period longer than {MAX_DAYS} days, or `to` before `from`, is "
    "refused (400, naming the parameter)."
)


class PeriodQuerySchema(StrictSchema):
    date_from = fields.Date(
        data_key="from", validate=DAYS, metadata={"description": "the first day (Nairobi)"}
    )
    date_to = fields.Date(
        data_key="to", validate=DAYS, metadata={"description": "the last day (Nairobi)"}
    )


class ReconciliationQuerySchema(PeriodQuerySchema):
    limit = fields.Integer(
        load_default=OPEN_ITEMS_LIMIT,
        validate=validate.Range(min=1, max=500),
        metadata={"description": "how many open items to list (newest first)"},
    )


class ReconciliationHandler(BaseHandler):
    operations = {
        "get": Operation(
            "The reconciliation of a period: received against checked, open items, "
            "last runs, balance",
            "reconciliation",
            ReconciliationSchema,
            roles=STAFF,
            query=ReconciliationQuerySchema,
            errors=(400, *AUTH),
            description="Per day, channel, provider and currency: what the gateway received "
            "and the reconciliation items of that day by what their check found (matched, "
            "recovered, differing, missing here, missing at the provider); the period's "
            "totals per channel and currency; the open items of any day (newest first); "
            "the last M-Pesa pull, statement import and janitor run; the latest answered "
            f"Account Balance beside what the paybill received in the period. {PERIOD}",
        )
    }

    async def get(self) -> None:
        await self.require_role(*STAFF)
        query = self.load_query(ReconciliationQuerySchema)
        view: ReconciliationView = self.settings["services"].reconciliation
        period = view.period(query.get("date_from"), query.get("date_to"))
        self.write_json(await view.summary(period, query["limit"]))


class ReconciliationCsvHandler(BaseHandler):
    operations = {
        "get": Operation(
            "The reconciliation rows of a period as CSV",
            "reconciliation",
            {"type": "string"},
            roles=STAFF,
            query=PeriodQuerySchema,
            errors=(400, *AUTH),
            media_type="text/csv",
            description="One line per day, channel, provider and currency (the rows of GET "
            "/api/v1/reconciliation), after a header line: a count and a total per figure, "
            "totals as decimal strings in the line's currency. Sent as an attachment. "
            f"{PERIOD}",
        )
    }

    async def get(self) -> None:
        await self.require_role(*STAFF)
        query = self.load_query(PeriodQuerySchema)
        view: ReconciliationView = self.settings["services"].reconciliation
        period = view.period(query.get("date_from"), query.get("date_to"))
        rows = await view.rows(period)
        await send_csv(self, _file_name(period), in_batches(csv_lines(rows), CSV_FLUSH_EVERY))


def _file_name(period: Period) -> str:
    return f"reconciliation-{period.first.isoformat()}-{period.last.isoformat()}.csv"


class BalanceCheckHandler(BaseHandler):
    operations = {
        "post": Operation(
            "Ask M-Pesa for the accounts' balances (Account Balance)",
            "reconciliation",
            ProviderCheckSchema,
            roles=STAFF,
            success={202: "Asked: M-Pesa's result arrives on the result callback"},
            errors=(*AUTH, 409, 503),
            description="The result, once M-Pesa sends it, is the `balance` of GET "
            "/api/v1/reconciliation: a check beside the received totals, not a ledger entry. "
            "409 `initiator_not_configured` without daraja.initiator, its password and "
            "M-Pesa's certificate. No body is read.",
        )
    }

    async def post(self) -> None:
        identity = await self.require_role(*STAFF)
        view: ReconciliationView = self.settings["services"].reconciliation
        self.write_json(render_check(await view.request_balance(identity.username)), status=202)


class ClearedItemSchema(ReconciliationItemSchema):
    cleared_at = answers.stamp()
    cleared_by = answers.text()
    cleared_reason = answers.text()


class ClearItemHandler(BaseHandler):
    path_parameters = {"item_id": "The open item's id (`<channel>:<key>`)"}
    operations = {
        "post": Operation(
            "Clear an open reconciliation item, with the reason",
            "reconciliation",
            ClearedItemSchema,
            roles=STAFF,
            body=ReasonSchema,
            example={"reason": "the provider confirmed the amount; payment corrected"},
            errors=(*BODY, *AUTH, 404, 409),
            description="The item leaves the open items; who cleared it, when and why are "
            "kept on it. 409 `invalid_state` when it is matched or already cleared.",
        )
    }

    async def post(self, item_id: str) -> None:
        identity = await self.require_role(*STAFF)
        request = self.load_json(ReasonSchema)
        view: ReconciliationView = self.settings["services"].reconciliation
        cleared = await view.clear(item_id, identity.username, request["reason"])
        self.write_json(
            {
                **render_item(cleared),
                "cleared_at": iso_stamp(cleared["cleared_at"]),
                "cleared_by": cleared["cleared_by"],
                "cleared_reason": cleared["cleared_reason"],
            }
        )


ROUTES = [
    (r"/api/v1/reconciliation", ReconciliationHandler),
    (r"/api/v1/reconciliation.csv", ReconciliationCsvHandler),
    (r"/api/v1/reconciliation/balance", BalanceCheckHandler),
    (r"/api/v1/reconciliation/items/([^/]+)/clear", ClearItemHandler),
]
