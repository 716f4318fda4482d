"""One inbox entry for operators, with the answer it was given and its body read
(server.mpesa.details); its route."""

from __future__ import annotations

from server.mpesa.details import DeliverySchema, render_delivery
from server.web.handler import BaseHandler
from server.web.operations import AUTH, STAFF, Operation


class InboxEntryHandler(BaseHandler):
    path_parameters = {"entry_id": "Id of the inbox entry"}
    operations = {
        "get": Operation(
            "One raw callback as received, with its answer and its body read",
            "c2b-payments",
            DeliverySchema,
            roles=STAFF,
            errors=(*AUTH, 404),
        )
    }

    async def get(self, entry_id: str) -> None:
        await self.require_role(*STAFF)
        entry = await self.settings["services"].payment_details.delivery(entry_id)
        self.write_json(render_delivery(entry))


ROUTES = [(r"/api/v1/c2b/inbox/([^/]+)", InboxEntryHandler)]
