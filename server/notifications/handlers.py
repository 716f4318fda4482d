"""SMS endpoints: Africa's Talking's delivery reports, and the operators' view of the
outbox (the messages, and their counts per day); what each answers and their routes."""

from __future__ import annotations

import hmac
import logging

from marshmallow import Schema

from server.kernel.errors import Forbidden, NotFound, ServiceUnavailable
from server.kernel.schemas import page_body
from server.notifications.reports import ReportNotStored
from server.notifications.schemas import (
    SmsMessagePageSchema,
    SmsMessageQuerySchema,
    SmsSummaryQuerySchema,
    SmsSummarySchema,
    render_message,
    render_summary,
)
from server.web import answer_schemas as answers
from server.web.handler import BaseHandler, in_networks
from server.web.operations import AUTH, STAFF, Operation

log = logging.getLogger("gateway.sms")

STAFF_ROLES = ("operator", "admin")
KEPT_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "X-Forwarded-For")


class SmsReportAnswerSchema(Schema):
    status = answers.one_of(["ok"])


class DeliveryReportHandler(BaseHandler):
    """Africa's Talking posts each delivery report here (its dashboard's callback URL):
    a secret path segment and an optional source allowlist, like the M-Pesa callbacks,
    with a secret of its own (another party holds this URL)."""

    path_parameters = {
        "secret": "The delivery reports' secret (notifications.delivery_report_secret); "
        "a wrong one is 404"
    }
    operations = {
        "post": Operation(
            "Africa's Talking SMS delivery report",
            "sms",
            SmsReportAnswerSchema,
            errors=(403, 404, 413, 503),
            error_descriptions={
                403: "The source address is not in notifications.delivery_report_ip_allowlist",
                404: "Wrong secret, or none configured: nothing is processed",
                503: "The inbox could not be written: not acknowledged",
            },
            description="A form-encoded body (`id`, `status`, `phoneNumber`, "
            "`networkCode`, `failureReason`, `retryCount`), kept raw in the inbox (source "
            "`africastalking`) and applied to the message of that id: Success -> "
            "delivered, Failed or Rejected -> failed, Buffered, Sent or Submitted -> sent. "
            "A report of an id no message has is kept for review, still answered 200.",
        )
    }

    def prepare(self) -> None:
        super().prepare()
        settings = self.settings["gateway"].notifications
        secret = self.path_args[0] if self.path_args else ""
        expected = settings.delivery_report_secret
        if not expected or not hmac.compare_digest(secret.encode(), expected.encode()):
            log.warning("delivery_report_refused reason=wrong_secret source=%s", self.client_ip)
            raise NotFound("no such endpoint")
        allowlist = settings.delivery_report_ip_allowlist
        if allowlist and not in_networks(self.client_ip, allowlist):
            log.warning(
                "delivery_report_refused reason=source_not_allowed source=%s", self.client_ip
            )
            raise Forbidden("source address not allowed")

    async def post(self, _secret: str) -> None:
        headers = {
            name: self.request.headers[name]
            for name in KEPT_HEADERS
            if name in self.request.headers
        }
        try:
            await self.settings["services"].sms_reports.receive(
                self.request.body, self.client_ip, headers
            )
        except ReportNotStored:
            raise ServiceUnavailable("temporarily unable to record the report") from None
        self.write_json({"status": "ok"})


class MessageListHandler(BaseHandler):
    operations = {
        "get": Operation(
            "List the payers' SMS receipts, newest first",
            "sms",
            SmsMessagePageSchema,
            roles=STAFF,
            query=SmsMessageQuerySchema,
            errors=(400, *AUTH),
            description="Filters: `status`, `event`, `chf_id`, and `from`/`to` on when the "
            "message was recorded.",
        )
    }

    async def get(self) -> None:
        await self.require_role(*STAFF_ROLES)
        query = self.load_query(SmsMessageQuerySchema)
        limit, offset = query.pop("limit"), query.pop("offset")
        items, total = await self.settings["services"].sms.messages(query, limit, offset)
        self.write_json(page_body([render_message(item) for item in items], total, limit, offset))


class SummaryHandler(BaseHandler):
    operations = {
        "get": Operation(
            "SMS receipts per day and status, and the failing ones with the reason",
            "sms",
            SmsSummarySchema,
            roles=STAFF,
            query=SmsSummaryQuerySchema,
            errors=(400, *AUTH),
            description="Over the last `days` UTC days (default 7, today included), by the "
            "day each message was recorded and its status now; `failing`: the latest "
            "failed or unreachable ones.",
        )
    }

    async def get(self) -> None:
        await self.require_role(*STAFF_ROLES)
        query = self.load_query(SmsSummaryQuerySchema)
        summary = await self.settings["services"].sms.daily(query["days"])
        self.write_json(render_summary(summary))


ROUTES = [
    (r"/api/v1/sms/delivery-reports/([^/]*)", DeliveryReportHandler),
    (r"/api/v1/sms/messages", MessageListHandler),
    (r"/api/v1/sms/summary", SummaryHandler),
]
