"""POST /api/graphql: the seed module's GraphQL for payment providers and operators, the
handler, what it answers (server.web.operations) and its route."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import simplejson
from marshmallow import ValidationError as SchemaError

from server.kernel.errors import ValidationFailed
from server.kernel.schemas import shared
from server.seed_graphql.caller import Caller
from server.seed_graphql.execution import answer
from server.seed_graphql.schemas import GraphQLAnswerSchema, GraphQLRequestSchema
from server.web.handler import BaseHandler, is_json
from server.web.json_body import parse_json
from server.web.operations import PSP, STAFF, Operation

VERIFY_EXAMPLE = (
    'query { verifyInsuree(chfId: "070707070") { lastName firstName message '
    "policies { amount status productName productCode token } } }"
)


class SeedGraphQLHandler(BaseHandler):
    """Answers as graphene does: 200 with `data` and `errors` for anything a document
    asks (its refusals included); only a body that cannot be read is refused with
    400, and then too in GraphQL's error shape."""

    operations = {
        "post": Operation(
            "The seed module's GraphQL: tokenAuth, verifyInsuree, processPayment, "
            "initiateTransaction, processTransaction",
            "payment-providers",
            GraphQLAnswerSchema,
            roles=(*PSP, *STAFF),
            body=GraphQLRequestSchema,
            example={"query": VERIFY_EXAMPLE},
            success={200: "The answer: `data`, with `errors` for what failed"},
            errors=(400, 401, 403),
            error_answer=GraphQLAnswerSchema,
            error_descriptions={
                400: "The body cannot be read: not JSON, not sent as application/json, "
                "no `query`, or larger than server.max_body_bytes",
                401: "Not answered: a missing or invalid token is a GraphQL error (200)",
                403: "Not answered: a wrong role is told in the operation's answer (200)",
            },
            description="The documents of openIMIS's mobile payment module, answered in its "
            "shapes by the REST endpoints' services: tokenAuth (no token needed) is "
            "POST /api/v1/auth/token; verifyInsuree and processPayment (role psp) are "
            "GET /api/v1/insurees/<chf_id>/policies and POST /api/v1/payments, audited and "
            "rate limited as those; initiateTransaction and processTransaction (operator, "
            "admin) are POST /api/v1/transactions and .../<uuid>/process.",
        )
    }

    def body_too_large(self) -> Exception:
        return ValidationFailed("request body is too large", code="payload_too_large")

    def error_body(self, status: int, error: BaseException | None) -> dict[str, Any]:
        """A refused request in GraphQL's error shape, the API's code in `extensions`."""
        refusal = super().error_body(status, error)["error"]
        extensions: dict[str, Any] = {"code": refusal["code"]}
        if refusal["details"]:
            extensions["details"] = refusal["details"]
        return {"errors": [{"message": refusal["message"], "extensions": extensions}]}

    async def post(self) -> None:
        request = self.load_request()
        caller = Caller(
            services=self.settings["services"],
            authorization=self.request.headers.get("Authorization", ""),
            source=self.client_ip,
            path=self.request.path,
            body=self.request.body,
            request_id=self.request_id,
        )
        self.write_json(
            await answer(request["query"], request["variables"], request["operationName"], caller)
        )

    def write_json(self, body: Any, status: int = 200) -> None:
        """As every handler, with an amount's decimal written as the JSON number it is
        (simplejson's `use_decimal`: the standard library would need a float)."""
        self.set_status(status)
        self.finish(simplejson.dumps(body, use_decimal=True, separators=(",", ":")))

    def load_request(self) -> dict[str, Any]:
        """The body within the API's bounds for JSON, read with its numbers' decimals
        kept (an amount in the variables never becomes a float)."""
        if not is_json(self.request.headers.get("Content-Type", "")):
            raise ValidationFailed(
                "send the body as Content-Type: application/json", code="unsupported_media_type"
            )
        parse_json(self.request.body)
        body = json.loads(self.request.body, parse_float=Decimal)
        if not isinstance(body, dict):
            raise ValidationFailed("request body must be a JSON object")
        try:
            return shared(GraphQLRequestSchema).load(body)
        except SchemaError as err:
            raise ValidationFailed("request body is invalid", {"fields": err.messages}) from None


ROUTES = [(r"/api/graphql", SeedGraphQLHandler)]
