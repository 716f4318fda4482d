"""verifyInsuree and processPayment: the provider API's verify and pay
(`GET /api/v1/insurees/<chf_id>/policies`, `POST /api/v1/payments`), admitted, rate
limited and audited as those are, answered in the seed's shapes."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo

from server.kernel.errors import ApiError, Forbidden, NotFound, TooManyRequests, Unauthorized
from server.kernel.identity import Identity
from server.psp_api.schemas import PaymentRequestSchema, render_payment, render_verification
from server.seed_graphql import answers
from server.seed_graphql.caller import Caller
from server.seed_graphql.inputs import PAYMENT_NAMES, load, payment_body

log = logging.getLogger("gateway.seed_graphql")


class ProviderCall:
    """One provider operation of a request: admitted as the REST twin's handler admits
    a request (the psp role, an active external-API PSP, the PSP's rate limit: each
    operation counts as one request) and audited as it is."""

    def __init__(self, caller: Caller, operation: str, request: Any = None) -> None:
        self.caller = caller
        self.operation = operation
        self.request = request  # as validated, for the audit
        self.identity: Identity | None = None
        self.psp: dict[str, Any] | None = None

    async def admit(self) -> tuple[Identity, dict[str, Any]]:
        self.identity = await self.caller.identity()
        if self.identity.role != "psp":
            raise Forbidden("this operation needs the role psp")
        services = self.caller.services
        self.psp = await services.psp_api.provider_of(self.identity)
        wait = services.rate_limiter.retry_after(self.psp["_id"])
        if wait is not None:
            raise TooManyRequests(f"too many requests; retry in {wait} s", {"retry_after": wait})
        return self.identity, self.psp

    def audit(self, status: int, answer: Any) -> None:
        self.caller.audit(
            self.operation,
            status,
            answer,
            psp_uuid=self.psp["_id"] if self.psp else None,
            user=self.identity.username if self.identity else None,
            request=self.request,
        )

    def refused(self, err: ApiError) -> None:
        self.audit(err.status, err.to_body())

    def failed(self) -> None:
        log.exception("seed_graphql_failed operation=%s", self.operation)
        self.audit(500, None)


async def verify_insuree(_root: Any, info: GraphQLResolveInfo, chfId: str) -> dict[str, Any]:
    call = ProviderCall(info.context, "verifyInsuree", {"chf_id": chfId})
    try:
        await call.admit()
        insuree, policies = await info.context.services.psp_api.verify(chfId)
    except NotFound as err:
        call.refused(err)
        return {
            "firstName": None,
            "lastName": None,
            "policies": None,
            "message": answers.UNKNOWN_INSUREE,
        }
    except Forbidden as err:
        call.refused(err)
        raise answers.graphql_error(err, answers.NOT_A_PROVIDER) from None
    except ApiError as err:
        call.refused(err)
        raise answers.graphql_error(err) from None
    except Exception:
        call.failed()
        raise GraphQLError(answers.INTERNAL) from None
    verification = render_verification(insuree, policies)
    call.audit(200, verification)
    return seed_verification(verification)


def seed_verification(verification: dict[str, Any]) -> dict[str, Any]:
    """The REST verification in the seed's shape. The seed answers a policy's amount as
    a JSON number, so it is one here: the decimal itself, written with its digits
    ("500.00" is 500.00; server.seed_graphql.scalars.EXACT_FLOAT)."""
    policies = verification["policies"]
    return {
        "firstName": verification["first_name"],
        "lastName": verification["last_name"],
        "message": answers.IDLE_POLICIES if policies else answers.NO_IDLE_POLICY,
        "policies": [
            {
                "amount": Decimal(policy["amount"]),
                "status": policy["status"],
                "productName": policy["product_name"],
                "productCode": policy["product_code"],
                "token": policy["token"],
            }
            for policy in policies
        ],
    }


async def process_payment(
    _root: Any,
    info: GraphQLResolveInfo,
    inputData: dict[str, Any] | None = None,
    input: dict[str, Any] | None = None,  # the seed's argument name
) -> dict[str, Any]:
    """The seed took the payment in `inputData` first, then (as a relay mutation) in
    `input` with a clientMutationId: either is accepted, not both."""
    given = inputData or input
    if given is None or (inputData is not None and input is not None):
        raise GraphQLError("processPayment takes its fields in `inputData` or in `input`")
    mutation_id = given.get("clientMutationId")
    call = ProviderCall(info.context, "processPayment")
    try:
        identity, psp = await call.admit()
    except Unauthorized as err:
        call.refused(err)
        raise answers.graphql_error(err) from None
    except ApiError as err:
        call.refused(err)
        return answers.payment_refused(err, mutation_id)
    except Exception:
        call.failed()
        raise GraphQLError(answers.INTERNAL) from None
    try:
        request = call.request = load(PaymentRequestSchema, payment_body(given), PAYMENT_NAMES)
        status, transaction = await info.context.services.psp_api.pay(
            psp, request, identity.username
        )
    except ApiError as err:
        call.refused(err)
        return answers.payment_refused(err, mutation_id)
    except Exception:
        call.failed()
        return answers.payment_failed(mutation_id)
    call.audit(status, render_payment(transaction))
    return answers.payment_made(mutation_id)
