"""The Daraja simulator's reconciliation side: Pull Transactions, Transaction Status,
Account Balance, and the org portal's statement export, all over the payments the
simulator has completed (PROTOCOLS.md, "Reconciliation APIs").

Which payments are on record: every C2B payment that moved money to a shortcode,
whether or not its confirmation reached the merchant. That is a ``simulate`` payment
once it completes (not one refused or cancelled by validation, nor one still waiting
for it), and a paid M-Pesa Express prompt: it credits the paybill (BusinessShortCode)
or, for Buy Goods, the till (PartyB), as M-Pesa records it as a C2B payment to that
shortcode. The payer is named ``John Doe`` throughout, as in Daraja's samples, and the
organisation takes ``DarajaSimSettings.organization_name``. A paybill payment's reason
type is "Pay Bill Online", a till's "Merchant Payment Online".

Provider routes (fault targets in brackets; every one needs the bearer token):

``POST /pulltransactions/v1/register`` (``pullregister``)
    ``ResponseStatus`` ``1000`` registered, ``1001`` already registered (the first
    registration is kept).
``POST /pulltransactions/v1/query`` (``pullquery``)
    Needs a registered ShortCode. StartDate and EndDate are ``YYYY-MM-DD HH:MM:SS``
    Nairobi time, both ends included; a StartDate more than 48 hours ago (a minute's
    grace for clocks and transit) or after EndDate is refused. ``OffSetValue`` is the
    number of rows to skip; a page holds at most ``pull_page_size`` rows (default 1000,
    as Daraja pages; ``POST /_sim/settings`` changes it). Rows are ordered by completion
    time. ``ResponseCode`` ``1000`` with ``Response: [[rows]]``, or ``1001`` and
    ``Response: []`` when the page is empty (no payment, or an offset past the end).
``POST /mpesa/transactionstatus/v1/query`` (``transactionstatus``) and
``POST /mpesa/accountbalance/v1/query`` (``accountbalance``)
    Answer at once with the acknowledgement, then post the result
    ``result_delay_seconds`` later (default 0.2 s; also a ``/_sim/settings`` value).
    The deliveries are recorded in ``/_sim/deliveries`` with kind ``result`` or
    ``queue_timeout`` (their fault targets too), ``conversation_id`` the request's
    OriginatorConversationID and, for Transaction Status, ``trans_id`` the receipt
    asked about.

Result codes:

============== ===========================================================================
ResultCode     when
============== ===========================================================================
0              success; Transaction Status carries the payment's parameters, Account
               Balance the ``AccountBalance`` string (the Utility Account holds what the
               shortcode was credited) and ``BOCompletedTime``
2001           the Initiator is not the configured one, or the SecurityCredential does not
               decrypt (RSA PKCS#1 v1.5, the simulator's private key) to its password
SFC_IC0003     (a string, as M-Pesa sends it) Transaction Status for a receipt the
               simulator never completed, or that did not credit PartyA: the one failure
               code Daraja documents for this API, with its text "The operator does not
               exist."
26             the request timed out in M-Pesa's queue (26: "traffic blocking condition
               in place", M-Pesa's code for a full queue); sent to QueueTimeOutURL
============== ===========================================================================

A failed result carries no parameters and a zeroed TransactionID (``NLJ0000000``), as
M-Pesa's do. Magic receipt: a Transaction Status query for any TransactionID starting
with ``QTO`` (e.g. ``QUEUE_TIMEOUT_RECEIPT``) times out in the queue, whatever the
credential: the result goes to QueueTimeOutURL with ResultCode 26. The simulator never
issues receipts with that prefix.

``GET /_sim/pull`` lists the Pull registrations.
``GET /_sim/statement?from=&to=&shortcode=`` answers the org portal's CSV export of the
same payments (from/to ``YYYY-MM-DD`` or ``YYYY-MM-DD HH:MM:SS`` Nairobi time, both
optional and included; a date alone for ``to`` means the end of that day), newest
first as the portal lists them; Balance is the shortcode's balance after each payment.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from simulators.common import ControlError, JsonObject, format_minor, json_object, now_iso
from simulators.daraja_wire import (
    NAIROBI,
    SHORTCODE,
    daraja_error,
    digits,
    invalid_field,
    invalid_payload,
    is_http_url,
    missing_fields,
    nairobi_now,
    new_conversation_id,
    new_request_id,
    short_text,
)

KEYS_DIR = Path(__file__).resolve().parent / "keys"
# The test key pair: the gateway encrypts with the certificate as with M-Pesa's.
SANDBOX_CERTIFICATE_PATH = KEYS_DIR / "sandbox_certificate.pem"
SANDBOX_PRIVATE_KEY_PATH = KEYS_DIR / "sandbox_private_key.pem"
# Daraja's published sandbox initiator.
SANDBOX_INITIATOR = "testapi"
SANDBOX_INITIATOR_PASSWORD = "Safaricom999!*!"

QUEUE_TIMEOUT_PREFIX = "QTO"
QUEUE_TIMEOUT_RECEIPT = "QTO0000000"

RECONCILIATION_ENDPOINTS = ("pullregister", "pullquery", "transactionstatus", "accountbalance")
RESULT = "result"
QUEUE_TIMEOUT = "queue_timeout"
RECONCILIATION_CALLBACKS = (RESULT, QUEUE_TIMEOUT)

DEFAULT_PULL_PAGE_SIZE = 1000
DEFAULT_RESULT_DELAY_SECONDS = 0.2
DEFAULT_ORGANIZATION_NAME = "Sandbox Organisation"
PAYER_NAME = "John Doe"

PULL_WINDOW = timedelta(hours=48)
PULL_WINDOW_GRACE = timedelta(minutes=1)
PULL_TIME = "%Y-%m-%d %H:%M:%S"
PULL_REGISTERED, PULL_ALREADY_REGISTERED = "1000", "1001"
PULL_ROWS, PULL_NO_ROWS = "1000", "1001"
PULL_REGISTER_FIELDS = ("ShortCode", "RequestType", "NominatedNumber", "CallBackURL")
PULL_QUERY_FIELDS = ("ShortCode", "StartDate", "EndDate", "OffSetValue")
NOMINATED_NUMBER_LENGTHS = (10, 12)  # 07XXXXXXXX or 2547XXXXXXXX

ACCEPTED = "Accept the service request successfully."
TEXT_MAX = 100  # Remarks and Occasion
INITIATOR_FIELDS = (
    "Initiator",
    "SecurityCredential",
    "CommandID",
    "PartyA",
    "IdentifierType",
    "Remarks",
    "QueueTimeOutURL",
    "ResultURL",
)
ORGANISATION_SHORTCODE = "4"  # IdentifierType: the only party kind the simulator knows
TIME_STAMP = "%Y%m%d%H%M%S"
DEBIT_ACCOUNT_TYPE = "MMF Account"  # the payer's M-Pesa wallet
WORKING_ACCOUNT = "Working Account|KES|700000.00|700000.00|0.00|0.00"
CHARGES_PAID_ACCOUNT = "Charges Paid Account|KES|-1540.00|-1540.00|0.00|0.00"

STATEMENT_HEADER = (
    "Receipt No.",
    "Completion Time",
    "Initiation Time",
    "Details",
    "Transaction Status",
    "Paid In",
    "Withdrawn",
    "Balance",
    "Balance Confirmed",
    "Reason Type",
    "Other Party Info",
    "Linked Transaction ID",
    "A/C No.",
)
STATEMENT_TIME = PULL_TIME  # the portal writes times the same way
STATEMENT_DATE = "%Y-%m-%d"

# Stands for a JSON number (an amount) until the body is written out.
_NUMBER_MARK = "\x00number\x00"


@dataclass(frozen=True)
class ResultCode:
    code: int | str
    description: str


SUCCESS = ResultCode(0, "The service request is processed successfully.")
INITIATOR_INVALID = ResultCode(2001, "The initiator information is invalid.")
NO_SUCH_TRANSACTION = ResultCode("SFC_IC0003", "The operator does not exist.")
QUEUE_TIMED_OUT = ResultCode(26, "The request timed out in the queue.")


@dataclass(frozen=True)
class PaymentKind:
    """How each record names one C2B command."""

    pull_type: str  # Pull Transactions' transactiontype
    reason_type: str  # Transaction Status' ReasonType and the statement's Reason Type
    details: str  # the statement's Details, before " from <payer>"


PAYMENT_KINDS = {
    "CustomerPayBillOnline": PaymentKind("c2b-pay-bill-debit", "Pay Bill Online", "Pay Bill"),
    "CustomerBuyGoodsOnline": PaymentKind(
        "c2b-buy-goods-debit", "Merchant Payment Online", "Merchant Payment"
    ),
}


def _agent_conversation_id() -> str:
    """ConversationID shaped like ``AG_20180223_0000493344ae97d86f75``."""
    return f"AG_{nairobi_now():%Y%m%d}_{secrets.token_hex(10)}"


@dataclass(frozen=True)
class Payment:
    """A completed C2B payment as M-Pesa's records keep it (times in Nairobi time)."""

    receipt: str
    shortcode: str  # the paybill or till credited
    command_id: str  # a key of PAYMENT_KINDS
    amount_minor: int
    msisdn: str
    bill_ref: str
    initiated_at: datetime
    completed_at: datetime
    originator_conversation_id: str
    balance_after_minor: int = 0  # the shortcode's balance once credited
    conversation_id: str = field(default_factory=_agent_conversation_id)

    @property
    def kind(self) -> PaymentKind:
        return PAYMENT_KINDS[self.command_id]

    @property
    def payer(self) -> str:
        return f"{self.msisdn} - {PAYER_NAME}"

    def completed_within(self, start: datetime | None, end: datetime | None) -> bool:
        """Whether it completed between start and end, both included, to the second."""
        second = self.completed_at.replace(microsecond=0)
        return (start is None or start <= second) and (end is None or second <= end)


class PaymentBook:
    """Every completed C2B payment, in the order they completed."""

    def __init__(self) -> None:
        self.payments: list[Payment] = []
        self._by_receipt: dict[str, Payment] = {}

    def record(self, payment: Payment) -> None:
        self.payments.append(payment)
        self._by_receipt[payment.receipt] = payment

    def find(self, receipt: str) -> Payment | None:
        return self._by_receipt.get(receipt)

    def between(
        self, shortcode: str | None, start: datetime | None, end: datetime | None
    ) -> list[Payment]:
        """The payments to shortcode (None: to every shortcode) completed in the window."""
        return [
            payment
            for payment in self.payments
            if (shortcode is None or payment.shortcode == shortcode)
            and payment.completed_within(start, end)
        ]

    def clear(self) -> None:
        self.payments.clear()
        self._by_receipt.clear()


def _load_private_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} holds no RSA private key")
    return key


class InitiatorCheck:
    """Whether an Initiator and its SecurityCredential are the configured API user."""

    def __init__(self, initiator: str, password: str, private_key_path: Path) -> None:
        self._initiator = initiator
        self._password = password.encode()
        self._key = _load_private_key(private_key_path)

    def valid(self, initiator: str, credential: str) -> bool:
        try:
            encrypted = base64.b64decode(credential, validate=True)
            password = self._key.decrypt(encrypted, padding.PKCS1v15())
        except (binascii.Error, ValueError):
            return False
        # Compare both, so a wrong name costs as much as a wrong password.
        same_name = secrets.compare_digest(initiator.encode(), self._initiator.encode())
        same_password = secrets.compare_digest(password, self._password)
        return same_name and same_password


class ResultSender(Protocol):
    """What the reconciliation APIs need from the simulator's engine."""

    def new_trans_id(self) -> str:
        """A receipt-shaped id never issued before."""

    def balance_of(self, shortcode: str) -> int:
        """The shortcode's balance in minor units."""

    def send_result_later(
        self, kind: str, url: str, text: str, ids: JsonObject, seconds: float
    ) -> None:
        """Post text to url after `seconds`, recorded as a delivery of `kind`."""


class Reconciliation:
    """The payments on record, the Pull registrations, and the initiator APIs' results."""

    def __init__(
        self,
        sender: ResultSender,
        initiators: InitiatorCheck,
        *,
        organization_name: str,
        pull_page_size: int,
        result_delay_seconds: float,
    ) -> None:
        self.sender = sender
        self.initiators = initiators
        self.organization_name = organization_name
        self.book = PaymentBook()
        self.pull_registrations: dict[str, JsonObject] = {}
        self._initial = (pull_page_size, result_delay_seconds)
        self.pull_page_size, self.result_delay_seconds = self._initial

    def clear(self) -> None:
        self.book.clear()
        self.pull_registrations.clear()
        self.pull_page_size, self.result_delay_seconds = self._initial

    # ---- Pull Transactions

    def register_pull(self, shortcode: str, nominated_number: str, callback_url: str) -> str:
        """PULL_REGISTERED, or PULL_ALREADY_REGISTERED (the first registration stays)."""
        if shortcode in self.pull_registrations:
            return PULL_ALREADY_REGISTERED
        self.pull_registrations[shortcode] = {
            "ShortCode": shortcode,
            "NominatedNumber": nominated_number,
            "CallBackURL": callback_url,
            "registered_at": now_iso(),
        }
        return PULL_REGISTERED

    def pull_page(
        self, shortcode: str, start: datetime, end: datetime, offset: int
    ) -> list[JsonObject]:
        payments = self.book.between(shortcode, start, end)
        page = payments[offset : offset + self.pull_page_size]
        return [self.pull_row(payment) for payment in page]

    def pull_row(self, payment: Payment) -> JsonObject:
        return {
            "transactionId": payment.receipt,
            "trxDate": _pull_date(payment.completed_at),
            "msisdn": int(payment.msisdn),
            "sender": PAYER_NAME,
            "transactiontype": payment.kind.pull_type,
            "billreference": payment.bill_ref,
            "amount": _pull_amount(payment.amount_minor),
            "organizationname": self.organization_name,
        }

    # ---- initiator APIs

    def transaction_status(self, request: InitiatorRequest, receipt: str) -> None:
        """Send the status of receipt to the ResultURL (or time out in the queue)."""
        ids = _delivery_ids(request, receipt)
        reference: JsonObject = {"Key": "Occasion"}
        if request.occasion:
            reference["Value"] = request.occasion
        if receipt.startswith(QUEUE_TIMEOUT_PREFIX):
            url = request.queue_timeout_url
            self._send(QUEUE_TIMEOUT, url, request, QUEUE_TIMED_OUT, ids, reference)
            return
        if not self.initiators.valid(request.initiator, request.credential):
            self._send(RESULT, request.result_url, request, INITIATOR_INVALID, ids, reference)
            return
        payment = self.book.find(receipt)
        if payment is None or payment.shortcode != request.party_a:
            self._send(RESULT, request.result_url, request, NO_SUCH_TRANSACTION, ids, reference)
            return
        parameters = self._status_parameters(payment)
        self._send(
            RESULT,
            request.result_url,
            request,
            SUCCESS,
            ids,
            reference,
            parameters,
            _number_text(payment.amount_minor),
        )

    def account_balance(self, request: InitiatorRequest) -> None:
        ids = _delivery_ids(request, None)
        reference = {"Key": "QueueTimeoutURL", "Value": request.queue_timeout_url}
        if not self.initiators.valid(request.initiator, request.credential):
            self._send(RESULT, request.result_url, request, INITIATOR_INVALID, ids, reference)
            return
        utility = _money(self.sender.balance_of(request.party_a))
        balance = (
            f"{WORKING_ACCOUNT}&Utility Account|KES|{utility}|{utility}|0.00|0.00"
            f"&{CHARGES_PAID_ACCOUNT}"
        )
        parameters: list[JsonObject] = [
            {"Key": "AccountBalance", "Value": balance},
            {"Key": "BOCompletedTime", "Value": int(nairobi_now().strftime(TIME_STAMP))},
        ]
        self._send(RESULT, request.result_url, request, SUCCESS, ids, reference, parameters)

    def _status_parameters(self, payment: Payment) -> list[JsonObject]:
        """Transaction Status' parameters, in the order of Daraja's sample; Amount is a
        number (whole shillings without decimals)."""
        return [
            {"Key": "DebitPartyName", "Value": payment.payer},
            {"Key": "CreditPartyName", "Value": f"{payment.shortcode} - {self.organization_name}"},
            {"Key": "OriginatorConversationID", "Value": payment.originator_conversation_id},
            {"Key": "InitiatedTime", "Value": int(payment.initiated_at.strftime(TIME_STAMP))},
            {"Key": "DebitAccountType", "Value": DEBIT_ACCOUNT_TYPE},
            {"Key": "TransactionReason"},
            {"Key": "ReasonType", "Value": payment.kind.reason_type},
            {"Key": "TransactionStatus", "Value": "Completed"},
            {"Key": "FinalisedTime", "Value": int(payment.completed_at.strftime(TIME_STAMP))},
            {"Key": "Amount", "Value": _NUMBER_MARK},
            {"Key": "ConversationID", "Value": payment.conversation_id},
            {"Key": "ReceiptNo", "Value": payment.receipt},
        ]

    def _send(
        self,
        kind: str,
        url: str,
        request: InitiatorRequest,
        result: ResultCode,
        ids: JsonObject,
        reference: JsonObject,
        parameters: list[JsonObject] | None = None,
        number: str | None = None,
    ) -> None:
        """Post the result later. number: the JSON number text that replaces the mark."""
        transaction_id = self.sender.new_trans_id()
        body: JsonObject = {
            "ResultType": 0,
            "ResultCode": result.code,
            "ResultDesc": result.description,
            "OriginatorConversationID": request.originator_conversation_id,
            "ConversationID": request.conversation_id,
            # A failed request moved no money: M-Pesa zeroes the id's serial.
            "TransactionID": transaction_id if parameters else f"{transaction_id[:3]}0000000",
        }
        if parameters:
            body["ResultParameters"] = {"ResultParameter": parameters}
        body["ReferenceData"] = {"ReferenceItem": reference}
        text = json.dumps({"Result": body})
        if number is not None:
            text = text.replace(json.dumps(_NUMBER_MARK), number)
        self.sender.send_result_later(kind, url, text, ids, self.result_delay_seconds)


@dataclass(frozen=True)
class InitiatorRequest:
    """The fields Transaction Status and Account Balance share, and the ids answered."""

    initiator: str
    credential: str
    party_a: str
    result_url: str
    queue_timeout_url: str
    occasion: str  # "" when not sent
    originator_conversation_id: str = field(default_factory=new_conversation_id)
    conversation_id: str = field(default_factory=_agent_conversation_id)

    def acknowledgement(self) -> web.Response:
        return web.json_response(
            {
                "OriginatorConversationID": self.originator_conversation_id,
                "ConversationID": self.conversation_id,
                "ResponseCode": "0",
                "ResponseDescription": ACCEPTED,
            }
        )


def _delivery_ids(request: InitiatorRequest, receipt: str | None) -> JsonObject:
    """How the deliveries list names a result: the receipt asked about, the request."""
    return {
        "trans_id": receipt,
        "conversation_id": request.originator_conversation_id,
        "checkout_request_id": None,
    }


# --------------------------------------------------------------------------- formats


def _money(minor: int) -> str:
    """Minor units as Daraja's balances write them: "1500.00", "-15.40"."""
    return ("-" if minor < 0 else "") + format_minor(abs(minor))


def _number_text(minor: int) -> str:
    """An amount as a JSON number: 1500 for whole shillings, else 1500.50."""
    return str(minor // 100) if minor % 100 == 0 else format_minor(minor)


def _pull_amount(minor: int) -> str:
    """Pull Transactions' amount: "1500.0", "1500.5", "1500.55"."""
    text = format_minor(minor).rstrip("0")
    return text + "0" if text.endswith(".") else text


def _pull_date(moment: datetime) -> str:
    """``2026-12-01T08:15:32.000+03:00``."""
    return moment.astimezone(NAIROBI).strftime("%Y-%m-%dT%H:%M:%S.000+03:00")


def statement_csv(payments: Iterable[Payment]) -> str:
    """The org portal's statement export of these payments, in the order given."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(STATEMENT_HEADER)
    for payment in payments:
        details = f"{payment.kind.details} from {payment.payer}"
        if payment.bill_ref:
            details += f" Acc. {payment.bill_ref}"
        writer.writerow(
            (
                payment.receipt,
                payment.completed_at.strftime(STATEMENT_TIME),
                payment.initiated_at.strftime(STATEMENT_TIME),
                details,
                "Completed",
                format_minor(payment.amount_minor),
                "",
                _money(payment.balance_after_minor),
                "true",
                payment.kind.reason_type,
                payment.payer,
                "",
                payment.bill_ref,
            )
        )
    return out.getvalue()


# --------------------------------------------------------------------------- parsing


def _shortcode(value: object) -> str | None:
    text = digits(value)
    return text if text is not None and SHORTCODE.fullmatch(text) else None


def _nominated_number(value: object) -> str | None:
    text = digits(value)
    if text is None or len(text) not in NOMINATED_NUMBER_LENGTHS:
        return None
    return text if text.startswith(("07", "01", "2547", "2541")) else None


def _pull_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value.strip(), PULL_TIME).replace(tzinfo=NAIROBI)
    except ValueError:
        return None


def _offset(value: object) -> int | None:
    text = digits(value)
    return None if text is None else int(text)


def _initiator_request(
    payload: JsonObject, command_id: str, fields: tuple[str, ...]
) -> InitiatorRequest | web.Response:
    """The shared fields checked, as Daraja refuses them (``400.002.02`` naming the
    first bad field)."""
    if missing := missing_fields(payload, fields):
        return invalid_field(missing[0])
    initiator, credential = payload["Initiator"], payload["SecurityCredential"]
    if not isinstance(initiator, str) or not initiator:
        return invalid_field("Initiator")
    if not isinstance(credential, str) or not credential:
        return invalid_field("SecurityCredential")
    if payload["CommandID"] != command_id:
        return invalid_field("CommandID")
    party_a = _shortcode(payload["PartyA"])
    if party_a is None:
        return invalid_field("PartyA")
    if digits(payload["IdentifierType"]) != ORGANISATION_SHORTCODE:
        return invalid_field("IdentifierType")
    for name in ("ResultURL", "QueueTimeOutURL"):
        if not is_http_url(payload[name]):
            return invalid_field(name)
    if short_text(payload["Remarks"], TEXT_MAX) is None:
        return invalid_field("Remarks")
    occasion = short_text(payload.get("Occasion", ""), TEXT_MAX)
    if occasion is None:
        return invalid_field("Occasion")
    return InitiatorRequest(
        initiator,
        credential,
        party_a,
        payload["ResultURL"],
        payload["QueueTimeOutURL"],
        occasion,
    )


def _statement_time(value: str | None, name: str, *, end_of_day: bool) -> datetime | None:
    if not value:
        return None
    for layout in (STATEMENT_TIME, STATEMENT_DATE):
        try:
            moment = datetime.strptime(value.strip(), layout).replace(tzinfo=NAIROBI)
        except ValueError:
            continue
        if layout == STATEMENT_DATE and end_of_day:
            moment += timedelta(days=1, seconds=-1)
        return moment
    raise ControlError(f"{name} must be YYYY-MM-DD or YYYY-MM-DD HH:MM:SS (Nairobi time)")


# --------------------------------------------------------------------------- routes


RECONCILIATION = web.AppKey("daraja_reconciliation", Reconciliation)


async def _pull_register(request: web.Request) -> web.Response:
    reconciliation = request.app[RECONCILIATION]
    payload = json_object(await request.text())
    if payload is None:
        return invalid_payload()
    if missing := missing_fields(payload, PULL_REGISTER_FIELDS):
        return invalid_field(missing[0])
    shortcode = _shortcode(payload["ShortCode"])
    if shortcode is None:
        return invalid_field("ShortCode")
    if payload["RequestType"] != "Pull":
        return invalid_field("RequestType")
    nominated_number = _nominated_number(payload["NominatedNumber"])
    if nominated_number is None:
        return invalid_field("NominatedNumber")
    callback_url = payload["CallBackURL"]
    if not is_http_url(callback_url):
        return invalid_field("CallBackURL")
    status = reconciliation.register_pull(shortcode, nominated_number, callback_url)
    description = "Success" if status == PULL_REGISTERED else "Shortcode already registered"
    return web.json_response(
        {
            "ResponseRefID": new_request_id(),
            "ResponseStatus": status,
            "ShortCode": shortcode,
            "ResponseDescription": description,
        }
    )


async def _pull_query(request: web.Request) -> web.Response:
    reconciliation = request.app[RECONCILIATION]
    payload = json_object(await request.text())
    if payload is None:
        return invalid_payload()
    if missing := missing_fields(payload, PULL_QUERY_FIELDS):
        return invalid_field(missing[0])
    shortcode = _shortcode(payload["ShortCode"])
    if shortcode is None:
        return invalid_field("ShortCode")
    start, end = _pull_time(payload["StartDate"]), _pull_time(payload["EndDate"])
    if start is None:
        return invalid_field("StartDate")
    if end is None:
        return invalid_field("EndDate")
    offset = _offset(payload["OffSetValue"])
    if offset is None:
        return invalid_field("OffSetValue")
    if shortcode not in reconciliation.pull_registrations:
        return daraja_error(400, "400.002.02", "Bad Request - ShortCode is not registered for Pull")
    if start < nairobi_now() - PULL_WINDOW - PULL_WINDOW_GRACE:
        return daraja_error(
            400, "400.002.02", "Bad Request - Invalid StartDate - more than 48 hours ago"
        )
    if start > end:
        return daraja_error(400, "400.002.02", "Bad Request - Invalid StartDate - after EndDate")
    rows = reconciliation.pull_page(shortcode, start, end, offset)
    if not rows:
        return web.json_response(
            {
                "ResponseRefID": new_request_id(),
                "ResponseCode": PULL_NO_ROWS,
                "ResponseMessage": "No transactions found",
                "Response": [],
            }
        )
    return web.json_response(
        {
            "ResponseRefID": new_request_id(),
            "ResponseCode": PULL_ROWS,
            "ResponseMessage": "Success",
            "Response": [rows],
        }
    )


async def _transaction_status(request: web.Request) -> web.Response:
    payload = json_object(await request.text())
    if payload is None:
        return invalid_payload()
    parsed = _initiator_request(
        payload, "TransactionStatusQuery", (*INITIATOR_FIELDS, "TransactionID")
    )
    if isinstance(parsed, web.Response):
        return parsed
    receipt = payload["TransactionID"]
    if not isinstance(receipt, str) or not receipt.isalnum():
        return invalid_field("TransactionID")
    request.app[RECONCILIATION].transaction_status(parsed, receipt)
    return parsed.acknowledgement()


async def _account_balance(request: web.Request) -> web.Response:
    payload = json_object(await request.text())
    if payload is None:
        return invalid_payload()
    parsed = _initiator_request(payload, "AccountBalance", INITIATOR_FIELDS)
    if isinstance(parsed, web.Response):
        return parsed
    request.app[RECONCILIATION].account_balance(parsed)
    return parsed.acknowledgement()


async def _statement(request: web.Request) -> web.Response:
    query = request.query
    start = _statement_time(query.get("from"), "from", end_of_day=False)
    end = _statement_time(query.get("to"), "to", end_of_day=True)
    if start is not None and end is not None and start > end:
        raise ControlError("from must not be after to")
    book = request.app[RECONCILIATION].book
    payments = book.between(query.get("shortcode") or None, start, end)
    return web.Response(
        text=statement_csv(reversed(payments)),
        content_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="statement.csv"'},
    )


async def _list_pull_registrations(request: web.Request) -> web.Response:
    registrations = request.app[RECONCILIATION].pull_registrations
    return web.json_response({"items": list(registrations.values())})


def add_routes(app: web.Application, reconciliation: Reconciliation) -> None:
    """The provider routes (named after their fault targets) and their control routes."""
    app[RECONCILIATION] = reconciliation
    app.router.add_post("/pulltransactions/v1/register", _pull_register, name="pullregister")
    app.router.add_post("/pulltransactions/v1/query", _pull_query, name="pullquery")
    app.router.add_post(
        "/mpesa/transactionstatus/v1/query", _transaction_status, name="transactionstatus"
    )
    app.router.add_post("/mpesa/accountbalance/v1/query", _account_balance, name="accountbalance")
    app.router.add_get("/_sim/statement", _statement)
    app.router.add_get("/_sim/pull", _list_pull_registrations)
