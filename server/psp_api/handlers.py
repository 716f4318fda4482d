"""GET /api/v1/insurees/<chf_id>/policies and POST /api/v1/payments for providers: the
handlers, what each answers (server.web.operations) and the routes."""

from __future__ import annotations

from typing import Any

from server.kernel.errors import TooManyRequests
from server.psp_api.audit import AuditedRequest
from server.psp_api.schemas import (
    PaymentRequestSchema,
    ProviderPaymentSchema,
    VerificationSchema,
    render_payment,
    render_verification,
)
from server.web.handler import BaseHandler
from server.web.operations import AUTH, BODY, PSP, Operation


class ProviderHandler(BaseHandler):
    """Only users linked to an active external-API PSP; per-PSP rate limit; audited."""

    psp: dict[str, Any] | None = None
    answer: Any = None
    validated: Any = None  # the request body as the handler validated it

    async def prepare(self) -> None:
        super().prepare()
        identity = await self.require_role("psp")
        self.psp = await self.settings["services"].psp_api.provider_of(identity)
        wait = self.settings["services"].rate_limiter.retry_after(self.psp["_id"])
        if wait is not None:
            raise TooManyRequests(
                f"too many requests; retry in {wait} s",
                {"retry_after": wait},
                headers={"Retry-After": str(wait)},
            )

    def write_json(self, body: Any, status: int = 200) -> None:
        self.answer = body
        super().write_json(body, status)

    def error_body(self, status: int, error: BaseException | None) -> dict[str, Any]:
        self.answer = super().error_body(status, error)
        return self.answer

    def on_finish(self) -> None:
        """Audit the request (server.psp_api.audit says what is kept); no credentials."""
        super().on_finish()
        audited = AuditedRequest(
            method=self.request.method or "",
            path=self.request.path,
            source=self.client_ip,
            status=self.get_status(),
            body=self.request.body or b"",
            answer=self.answer,
            request_id=getattr(self, "request_id", None),
            psp_uuid=self.psp["_id"] if self.psp else None,
            user=self.identity.username if self.identity else None,
            request=self.validated,
        )
        services = self.settings["services"]
        services.background.spawn(services.psp_api.record_audit(audited), "psp-api-audit")


class VerifyInsureeHandler(ProviderHandler):
    path_parameters = {"chf_id": "Insuree number"}
    operations = {
        "get": Operation(
            "Verify an insuree: the policies awaiting payment",
            "payment-providers",
            VerificationSchema,
            roles=PSP,
            errors=(*AUTH, 404, 429),
        )
    }

    async def get(self, chf_id: str) -> None:
        insuree, policies = await self.settings["services"].psp_api.verify(chf_id)
        self.write_json(render_verification(insuree, policies))


class ProviderPaymentHandler(ProviderHandler):
    operations = {
        "post": Operation(
            "Pay a policy, idempotently per psp_transaction_id",
            "payment-providers",
            ProviderPaymentSchema,
            roles=PSP,
            body=PaymentRequestSchema,
            example={
                "chf_id": "060606060",
                "amount": "500.00",
                "psp_transaction_id": "AFR-2026-000123",
                "policy": {
                    "token": "q3V0Zk1hY2tUb2tlbg",
                    "product_code": "BASIC-GMD",
                    "product_name": "Basic cover",
                },
                "json_ext": {"channel": "ussd"},
            },
            success={201: "Paid", 200: "The same request again: its first outcome"},
            errors=(*BODY, *AUTH, 404, 409, 429),
        )
    }

    async def post(self) -> None:
        request = self.validated = self.load_json(PaymentRequestSchema)
        if self.identity is None:
            raise RuntimeError("prepare() did not authenticate the provider")
        status, transaction = await self.settings["services"].psp_api.pay(
            self.psp, request, self.identity.username
        )
        self.write_json(render_payment(transaction), status=status)


ROUTES = [
    (r"/api/v1/insurees/([^/]+)/policies", VerifyInsureeHandler),
    (r"/api/v1/payments", ProviderPaymentHandler),
]
