"""M-Pesa HTTP endpoints: Daraja's callbacks (paybill validation and confirmation,
M-Pesa Express results), the operators' payments and inbox, M-Pesa Express prompts;
what each answers (server.web.operations) and their routes."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from marshmallow import Schema

from server.insurance.schemas import POLICY_UUID_EXAMPLE
from server.kernel.errors import ApiError, Forbidden, NotFound, ServiceUnavailable
from server.kernel.schemas import page_body
from server.ledger.schemas import TransactionSchema
from server.mpesa import initiator
from server.mpesa.check_schemas import (
    ProviderCheckListSchema,
    ProviderCheckSchema,
    ResultCallbackSchema,
    render_check,
)
from server.mpesa.details import (
    C2BPaymentDetailSchema,
    PaymentDetailQuerySchema,
    render_payment_detail,
)
from server.mpesa.rules import (
    OTHER_ERROR,
    DarajaConfirmationAnswerSchema,
    DarajaValidationAnswerSchema,
)
from server.mpesa.schemas import (
    AllocateRequestSchema,
    C2BCallbackSchema,
    C2BPaymentPageSchema,
    C2BPaymentSchema,
    DarajaStkAnswerSchema,
    InboxEntryPageSchema,
    InboxQuerySchema,
    PaymentQuerySchema,
    StkCallbackSchema,
    StkPushRequestSchema,
    render_inbox_entry,
    render_payment,
)
from server.mpesa.service import InboxUnavailable
from server.web.handler import BaseHandler, in_networks
from server.web.operations import AUTH, BODY, STAFF, Operation, Operations

STAFF_ROLES = ("operator", "admin")

log = logging.getLogger("gateway.c2b")

KEPT_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "X-Forwarded-For")

DARAJA_ERRORS = {
    403: "The source address is not in c2b.ip_allowlist",
    404: "Wrong secret: nothing is processed",
    413: "The body is larger than server.max_body_bytes",
    503: "The inbox could not be written: not acknowledged, so Daraja delivers it again",
}

CALLBACK_EXAMPLE = {
    "TransactionType": "Pay Bill",
    "TransID": "RKL51ZDR4F",
    "TransTime": "20261123121325",
    "TransAmount": "1500.00",
    "BusinessShortCode": "600984",
    "BillRefNumber": "080808080",
    "InvoiceNumber": "",
    "OrgAccountBalance": "25000.00",
    "ThirdPartyTransID": "",
    "MSISDN": "2547 ***** 149",
    "FirstName": "JOHN",
    "MiddleName": "",
    "LastName": "DOE",
}

TRANS_ID = {"trans_id": "M-Pesa TransID of the payment"}


def callback_operations(
    kind: str, answer: type[Schema], description: str, errors: tuple[int, ...]
) -> Operations:
    """A callback's POST: Daraja's body, answered (errors too) in Daraja's format."""
    return {
        "post": Operation(
            f"Daraja {kind} callback",
            "c2b-callbacks",
            answer,
            body=C2BCallbackSchema,
            example=CALLBACK_EXAMPLE,
            errors=errors,
            error_answer=answer,
            error_descriptions=DARAJA_ERRORS,
            description=description,
        )
    }


class CallbackHandler(BaseHandler):
    """Daraja callbacks: secret path segment, optional IP allowlist, Daraja's answer format."""

    kind = ""
    error_result_code: Any = OTHER_ERROR
    path_parameters = {"secret": "The callback secret (c2b.callback_secret); a wrong one is 404"}

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
        log.warning(
            "callback_refused reason=%s kind=%s source=%s", reason, self.kind, self.client_ip
        )
        self.settings["services"].metrics.callbacks.labels(self.kind, f"refused_{reason}").inc()

    def error_body(self, status: int, error: BaseException | None) -> dict[str, Any]:
        message = error.message if isinstance(error, ApiError) else self._reason
        return {"ResultCode": self.error_result_code, "ResultDesc": f"Rejected: {message}"}

    def kept_headers(self) -> dict[str, str]:
        return {
            name: self.request.headers[name]
            for name in KEPT_HEADERS
            if name in self.request.headers
        }


class ValidationHandler(CallbackHandler):
    kind = "validation"
    operations = callback_operations(
        "validation",
        DarajaValidationAnswerSchema,
        "Kept raw in the inbox, then checked: shortcode (C2B00015), amount (C2B00013), "
        "paybill account number (C2B00012). Answered within "
        "c2b.validation_deadline_seconds; an unreadable body is C2B00016.",
        (403, 404, 413),
    )

    async def post(self, _secret: str) -> None:
        answer = await self.settings["services"].c2b.validate(
            self.request.body, self.client_ip, self.kept_headers()
        )
        self.write_json(answer)


class ConfirmationHandler(CallbackHandler):
    kind = "confirmation"
    error_result_code = 1
    operations = callback_operations(
        "confirmation",
        DarajaConfirmationAnswerSchema,
        "Never refused: stored once per TransID, and settles the insuree's policy when "
        "the account number and amount match exactly one idle policy.",
        (403, 404, 413, 503),
    )

    async def post(self, _secret: str) -> None:
        try:
            answer = await self.settings["services"].c2b.confirm(
                self.request.body, self.client_ip, self.kept_headers()
            )
        except InboxUnavailable:
            raise ServiceUnavailable("temporarily unable to record the payment") from None
        self.write_json(answer)


STK_CALLBACK_EXAMPLE = {
    "Body": {
        "stkCallback": {
            "MerchantRequestID": "29115-34620561-1",
            "CheckoutRequestID": "ws_CO_191220191020363925",
            "ResultCode": 0,
            "ResultDesc": "The service request is processed successfully.",
            "CallbackMetadata": {
                "Item": [
                    {"Name": "Amount", "Value": 1500.00},
                    {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
                    {"Name": "Balance"},
                    {"Name": "TransactionDate", "Value": 20261123102115},
                    {"Name": "PhoneNumber", "Value": 254708374149},
                ]
            },
        }
    }
}


class StkCallbackHandler(CallbackHandler):
    """M-Pesa Express result callback: the same secret and source checks as C2B's."""

    kind = "stk_result"
    error_result_code = 1
    operations = {
        "post": Operation(
            "Daraja M-Pesa Express result callback",
            "stk-callbacks",
            DarajaStkAnswerSchema,
            body=StkCallbackSchema,
            example=STK_CALLBACK_EXAMPLE,
            errors=(403, 404, 413, 503),
            error_answer=DarajaStkAnswerSchema,
            error_descriptions=DARAJA_ERRORS,
            description="Kept raw in the inbox (source `daraja_stk`), answered Accepted, "
            "then applied once to the debit of its CheckoutRequestID: 0 succeeded and "
            "settled (amount and phone checked), 1032 cancelled, 1019 expired, other "
            "codes failed; an unknown CheckoutRequestID is kept for review.",
        )
    }

    async def post(self, _secret: str) -> None:
        try:
            answer = await self.settings["services"].stk.callback(
                self.request.body, self.client_ip, self.kept_headers()
            )
        except InboxUnavailable:
            raise ServiceUnavailable("temporarily unable to record the result") from None
        self.write_json(answer)


RESULT_EXAMPLE = {
    "Result": {
        "ResultType": 0,
        "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "OriginatorConversationID": "10571-7910404-1",
        "ConversationID": "AG_20261201_00004e48cf7e3533f581",
        "TransactionID": "RL10000000",
        "ResultParameters": {
            "ResultParameter": [
                {"Key": "ReceiptNo", "Value": "RKL51ZDR4F"},
                {"Key": "TransactionStatus", "Value": "Completed"},
                {"Key": "Amount", "Value": 1500},
            ]
        },
    }
}


def result_operation(what: str, description: str) -> Operation:
    """The POST of a result callback of the initiator APIs, answered in Daraja's format."""
    return Operation(
        f"Daraja {what} of a Transaction Status or Account Balance request",
        "c2b-callbacks",
        DarajaStkAnswerSchema,
        body=ResultCallbackSchema,
        example=RESULT_EXAMPLE,
        errors=(403, 404, 413, 503),
        error_answer=DarajaStkAnswerSchema,
        error_descriptions=DARAJA_ERRORS,
        description=description,
    )


class ResultCallbackHandler(CallbackHandler):
    """Transaction Status and Account Balance results (ResultURL)."""

    kind = initiator.RESULT
    error_result_code = 1
    description = (
        "Kept raw in the inbox (source `daraja_result`), answered Accepted, then applied "
        "once to the request it answers: a receipt's details are compared with the "
        "payment stored under it (a different amount flags it for review); balances are "
        "kept for the reconciliation view."
    )
    operations = {"post": result_operation("result", description)}

    async def post(self, _secret: str) -> None:
        try:
            answer = await self.settings["services"].initiator.callback(
                self.kind, self.request.body, self.client_ip, self.kept_headers()
            )
        except InboxUnavailable:
            raise ServiceUnavailable("temporarily unable to record the result") from None
        self.write_json(answer)


class QueueTimeoutHandler(ResultCallbackHandler):
    """The same results when the request timed out in Daraja's queue (QueueTimeOutURL)."""

    kind = initiator.QUEUE_TIMEOUT
    operations = {
        "post": result_operation(
            "queue timeout", "Kept raw in the inbox; the request is marked timed_out."
        )
    }


class PaymentCheckHandler(BaseHandler):
    path_parameters = TRANS_ID
    operations = {
        "post": Operation(
            "Ask M-Pesa about a receipt (Transaction Status)",
            "reconciliation",
            ProviderCheckSchema,
            roles=STAFF,
            success={202: "Asked: M-Pesa's result arrives on the result callback"},
            errors=(400, *AUTH, 409, 503),
            description="Any receipt, stored here or not. The result is compared with the "
            "payment stored under the receipt; see GET .../checks. 409 "
            "`initiator_not_configured` without daraja.initiator, its password and "
            "M-Pesa's certificate.",
        )
    }

    async def post(self, trans_id: str) -> None:
        identity = await self.require_role(*STAFF_ROLES)
        check = await self.settings["services"].initiator.check_payment(trans_id, identity.username)
        self.write_json(render_check(check), status=202)


class PaymentChecksHandler(BaseHandler):
    path_parameters = TRANS_ID
    operations = {
        "get": Operation(
            "The Transaction Status checks of a receipt, newest first",
            "reconciliation",
            ProviderCheckListSchema,
            roles=STAFF,
            errors=AUTH,
        )
    }

    async def get(self, trans_id: str) -> None:
        await self.require_role(*STAFF_ROLES)
        checks = await self.settings["services"].initiator.checks_of(trans_id)
        self.write_json({"items": [render_check(check) for check in checks]})


class StkPushHandler(BaseHandler):
    operations = {
        "post": Operation(
            "Prompt the payer's phone for a premium (M-Pesa Express)",
            "mpesa-express",
            TransactionSchema,
            roles=STAFF,
            body=StkPushRequestSchema,
            example={
                "policy_uuid": POLICY_UUID_EXAMPLE,
                "phone": "0708 374 149",
                "amount": "1500.00",
            },
            success={
                201: "The prompt is on the payer's phone (`prompt_sent`; `unknown` when "
                "Daraja's answer was lost: the status checks find out)"
            },
            errors=(*BODY, *AUTH, 404, 409, 502, 503),
            description="The same checks as any debit: the policy idle, the amount its "
            "value in whole shillings, no other open payment of it. `phone` (any common "
            "Kenyan form) defaults to the insuree's. Daraja's refusals: 409 "
            "`subscriber_busy` (500.001.1001), 503 `provider_rate_limited` (500.003.02), "
            "400 `provider_invalid_request` (400.002.02), with `details.provider_code`.",
        )
    }

    async def post(self) -> None:
        identity = await self.require_role(*STAFF_ROLES)
        request = self.load_json(StkPushRequestSchema)
        services = self.settings["services"]
        transaction = await services.stk.push(
            request["policy_uuid"], request.get("phone"), request["amount"], identity.username
        )
        self.write_json(services.ledger.render(transaction), status=201)


class PaymentListHandler(BaseHandler):
    operations = {
        "get": Operation(
            "List M-Pesa payments, newest first",
            "c2b-payments",
            C2BPaymentPageSchema,
            roles=STAFF,
            query=PaymentQuerySchema,
            errors=(400, *AUTH),
            description="`min_amount`/`max_amount` are in the paybill's currency.",
        )
    }

    async def get(self) -> None:
        await self.require_role("operator", "admin")
        query = self.load_query(PaymentQuerySchema)
        limit, offset = query.pop("limit"), query.pop("offset")
        items, total = await self.settings["services"].c2b.list_payments(query, limit, offset)
        self.write_json(page_body([render_payment(item) for item in items], total, limit, offset))


class PaymentHandler(BaseHandler):
    path_parameters = TRANS_ID
    operations = {
        "get": Operation(
            "One M-Pesa payment",
            "c2b-payments",
            C2BPaymentDetailSchema,
            roles=STAFF,
            query=PaymentDetailQuerySchema,
            errors=(400, *AUTH, 404),
            description="`include=deliveries` adds the inbox entries that named its "
            "TransID (raw body, answer, status), `include=settlement` the transaction and "
            "premium it settled; both: `include=deliveries,settlement`.",
        )
    }

    async def get(self, trans_id: str) -> None:
        await self.require_role("operator", "admin")
        include = self.load_query(PaymentDetailQuerySchema)["include"]
        services = self.settings["services"]
        detail = await services.payment_details.get(trans_id, include)
        self.write_json(render_payment_detail(detail, services.ledger.render))


class AllocateHandler(BaseHandler):
    path_parameters = TRANS_ID
    operations = {
        "post": Operation(
            "Apply an unmatched payment to an idle policy of exactly its amount",
            "c2b-payments",
            C2BPaymentSchema,
            roles=STAFF,
            body=AllocateRequestSchema,
            example={
                "policy_uuid": POLICY_UUID_EXAMPLE,
                "note": "payer confirmed the policy by phone",
            },
            errors=(*BODY, *AUTH, 404, 409),
        )
    }

    async def post(self, trans_id: str) -> None:
        """An operator applies an unmatched payment to a policy."""
        identity = await self.require_role("operator", "admin")
        request = self.load_json(AllocateRequestSchema)
        payment = await self.settings["services"].c2b.allocate(
            trans_id, request["policy_uuid"], identity.username, request["note"]
        )
        self.write_json(render_payment(payment))


class InboxListHandler(BaseHandler):
    operations = {
        "get": Operation(
            "List raw callbacks as received",
            "c2b-payments",
            InboxEntryPageSchema,
            roles=STAFF,
            query=InboxQuerySchema,
            errors=(400, *AUTH),
        )
    }

    async def get(self) -> None:
        await self.require_role("operator", "admin")
        query = self.load_query(InboxQuerySchema)
        limit, offset = query.pop("limit"), query.pop("offset")
        items, total = await self.settings["services"].inbox.entries(query, limit, offset)
        self.write_json(
            page_body([render_inbox_entry(item) for item in items], total, limit, offset)
        )


ROUTES = [
    (r"/api/v1/c2b/validation/([^/]*)", ValidationHandler),
    (r"/api/v1/c2b/confirmation/([^/]*)", ConfirmationHandler),
    (r"/api/v1/c2b/payments", PaymentListHandler),
    (r"/api/v1/c2b/payments/([^/]+)", PaymentHandler),
    (r"/api/v1/c2b/payments/([^/]+)/allocate", AllocateHandler),
    (r"/api/v1/c2b/payments/([^/]+)/check", PaymentCheckHandler),
    (r"/api/v1/c2b/payments/([^/]+)/checks", PaymentChecksHandler),
    (r"/api/v1/c2b/inbox", InboxListHandler),
    (r"/api/v1/stk-pushes", StkPushHandler),
    (r"/api/v1/stk/callback/([^/]*)", StkCallbackHandler),
    (r"/api/v1/daraja/results/([^/]*)", ResultCallbackHandler),
    (r"/api/v1/daraja/timeouts/([^/]*)", QueueTimeoutHandler),
]
