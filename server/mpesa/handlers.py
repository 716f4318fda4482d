"""C2B HTTP endpoints: Daraja's callbacks and the operators' payment list."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from server.kernel.errors import ApiError, Forbidden, NotFound, ServiceUnavailable
from server.kernel.schemas import page_body
from server.mpesa.rules import OTHER_ERROR
from server.mpesa.schemas import (
    AllocateRequestSchema,
    InboxQuerySchema,
    PaymentQuerySchema,
    ReplayRequestSchema,
    render_inbox_entry,
    render_payment,
)
from server.mpesa.service import InboxUnavailable
from server.web.handler import BaseHandler, in_networks

log = logging.getLogger("gateway.c2b")

KEPT_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "X-Forwarded-For")


class CallbackHandler(BaseHandler):
    """Daraja callbacks: secret path segment, optional IP allowlist, Daraja's answer format."""

    kind = ""
    error_result_code: Any = OTHER_ERROR

    def prepare(self) -> None:
        super().prepare()
        secret = self.path_args[0] if self.path_args else ""
        expected = self.settings["gateway"].c2b.callback_secret
        if not hmac.compare_digest(secret.encode(), expected.encode()):
            self._refused("wrong_secret")
            raise NotFound("no such endpoint")
        allowlist = self.settings["gateway"].c2b.ip_allowlist
        if allowlist and not in_networks(self.client_ip, allowlist):
            self._refused("source_not_allowed")
            raise Forbidden("source address not allowed")

    def _refused(self, reason: str) -> None:
        log.warning("callback_refused reason=%s kind=%s source=%s", reason, self.kind,
                    self.client_ip)
        self.settings["services"].metrics.callbacks.labels(self.kind, f"refused_{reason}").inc()

    def error_body(self, status: int, error: BaseException | None) -> dict[str, Any]:
        message = error.message if isinstance(error, ApiError) else self._reason
        return {"ResultCode": self.error_result_code, "ResultDesc": f"Rejected: {message}"}

    def kept_headers(self) -> dict[str, str]:
        return {name: self.request.headers[name] for name in KEPT_HEADERS
                if name in self.request.headers}


class ValidationHandler(CallbackHandler):
    kind = "validation"

    async def post(self, _secret: str) -> None:
        answer = await self.settings["services"].c2b.validate(
            self.request.body, self.client_ip, self.kept_headers())
        self.write_json(answer)


class ConfirmationHandler(CallbackHandler):
    kind = "confirmation"
    error_result_code = 1

    async def post(self, _secret: str) -> None:
        try:
            answer = await self.settings["services"].c2b.confirm(
                self.request.body, self.client_ip, self.kept_headers())
        except InboxUnavailable:
            raise ServiceUnavailable("temporarily unable to record the payment") from None
        self.write_json(answer)


class PaymentListHandler(BaseHandler):
    async def get(self) -> None:
        await self.require_role("operator", "admin")
        query = self.load_query(PaymentQuerySchema)
        limit, offset = query.pop("limit"), query.pop("offset")
        items, total = await self.settings["services"].c2b.list_payments(query, limit, offset)
        self.write_json(page_body([render_payment(item) for item in items], total, limit,
                                  offset))


class PaymentHandler(BaseHandler):
    async def get(self, trans_id: str) -> None:
        await self.require_role("operator", "admin")
        payment = await self.settings["services"].c2b.get_payment(trans_id)
        if payment is None:
            raise NotFound(f"no C2B payment with TransID {trans_id}")
        self.write_json(render_payment(payment))


class AllocateHandler(BaseHandler):
    async def post(self, trans_id: str) -> None:
        """An operator applies an unmatched payment to a policy."""
        identity = await self.require_role("operator", "admin")
        request = self.load_json(AllocateRequestSchema)
        payment = await self.settings["services"].c2b.allocate(
            trans_id, request["policy_uuid"], identity.username, request["note"])
        self.write_json(render_payment(payment))


class InboxListHandler(BaseHandler):
    async def get(self) -> None:
        await self.require_role("operator", "admin")
        query = self.load_query(InboxQuerySchema)
        limit, offset = query.pop("limit"), query.pop("offset")
        items, total = await self.settings["services"].c2b.list_inbox(query, limit, offset)
        self.write_json(page_body([render_inbox_entry(item) for item in items], total, limit,
                                  offset))


class InboxReplayHandler(BaseHandler):
    async def post(self, entry_id: str) -> None:
        """An operator processes a failed confirmation again."""
        identity = await self.require_role("operator", "admin")
        request = self.load_json(ReplayRequestSchema)
        entry = await self.settings["services"].c2b.replay_entry(
            entry_id, request["reason"], identity.username)
        self.write_json(render_inbox_entry(entry))
