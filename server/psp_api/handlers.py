"""GET /api/v1/insurees/<chf_id>/policies and POST /api/v1/payments for providers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from server.kernel.errors import TooManyRequests
from server.psp_api.audit import AuditedRequest
from server.psp_api.schemas import PaymentRequestSchema, render_payment, render_verification
from server.web.handler import BaseHandler

log = logging.getLogger("gateway.psp_api")


class ProviderHandler(BaseHandler):
    """Only users linked to an active external-API PSP; per-PSP rate limit; audited."""

    psp: dict[str, Any] | None = None
    answer: Any = None
    validated: Any = None       # the request body as the handler validated it
    _audits: set[asyncio.Task] = set()

    async def prepare(self) -> None:
        super().prepare()
        identity = await self.require_role("psp")
        self.psp = await self.settings["services"].psp_api.provider_of(identity)
        wait = self.settings["services"].rate_limiter.retry_after(self.psp["_id"])
        if wait is not None:
            raise TooManyRequests(f"too many requests; retry in {wait} s",
                                  {"retry_after": wait}, headers={"Retry-After": str(wait)})

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
            method=self.request.method or "", path=self.request.path, source=self.client_ip,
            status=self.get_status(), body=self.request.body or b"", answer=self.answer,
            request_id=getattr(self, "request_id", None),
            psp_uuid=self.psp["_id"] if self.psp else None,
            user=self.identity.username if self.identity else None, request=self.validated)
        task = asyncio.ensure_future(self.settings["services"].psp_api.record_audit(audited))
        self._audits.add(task)
        task.add_done_callback(self._audit_done)

    def _audit_done(self, task: asyncio.Task) -> None:
        self._audits.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("audit_write_failed error=%r", task.exception())


class VerifyInsureeHandler(ProviderHandler):
    async def get(self, chf_id: str) -> None:
        insuree, policies = await self.settings["services"].psp_api.verify(chf_id)
        self.write_json(render_verification(insuree, policies))


class ProviderPaymentHandler(ProviderHandler):
    async def post(self) -> None:
        request = self.validated = self.load_json(PaymentRequestSchema)
        status, transaction = await self.settings["services"].psp_api.pay(
            self.psp, request, self.identity.username)
        self.write_json(render_payment(transaction), status=status)
