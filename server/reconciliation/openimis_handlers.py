"""GET /api/v1/reconciliation/openimis: the gateway's premiums of a period against
openIMIS's (server.reconciliation.openimis_check); what it answers and its route."""

from __future__ import annotations

from server.integrations.transport import ProviderError
from server.kernel.errors import Conflict, ServiceUnavailable
from server.reconciliation.openimis_check import OpenimisCheckSchema, OpenimisPremiumCheck
from server.reconciliation.view import ReconciliationView
from server.reconciliation.view_handlers import PERIOD, PeriodQuerySchema
from server.web.handler import BaseHandler
from server.web.operations import AUTH, STAFF, Operation


class OpenimisCheckHandler(BaseHandler):
    operations = {
        "get": Operation(
            "The period's premiums against openIMIS's, by receipt",
            "reconciliation",
            OpenimisCheckSchema,
            roles=STAFF,
            query=PeriodQuerySchema,
            errors=(400, *AUTH, 409, 503),
            description="With insurance.backend: openimis. Each premium the gateway recorded "
            "in the period (by when it was recorded) is looked for in openIMIS on its "
            "policy: `matched`, `different` (amount or pay date), `missing_there`; a "
            "premium of the gateway's pay type openIMIS holds on those policies and the "
            "gateway does not is `only_there`. `items` lists all but the matched. 409 "
            "`no_insurance_backend` with the built-in backend; 503 when openIMIS does not "
            f"answer. {PERIOD}",
        )
    }

    async def get(self) -> None:
        await self.require_role(*STAFF)
        query = self.load_query(PeriodQuerySchema)
        services = self.settings["services"]
        check: OpenimisPremiumCheck | None = services.openimis_check
        if check is None:
            raise Conflict(
                "the gateway keeps its own premiums (insurance.backend: builtin): there is "
                "no openIMIS to compare with",
                code="no_insurance_backend",
            )
        view: ReconciliationView = services.reconciliation
        period = view.period(query.get("date_from"), query.get("date_to"))
        try:
            compared = await check.compare(period)
        except ProviderError as err:
            raise ServiceUnavailable(
                f"openIMIS did not answer: {err.message}", code="provider_unavailable"
            ) from None
        self.write_json(compared)


ROUTES = [(r"/api/v1/reconciliation/openimis", OpenimisCheckHandler)]
