"""Safaricom M-Pesa Daraja simulator: OAuth, C2B (register URL, simulate, callbacks),
M-Pesa Express (STK Push and its query, with the payer's answer and the result callback)
and the reconciliation APIs (Pull Transactions, Transaction Status, Account Balance, the
org portal's statement export; see ``simulators.daraja_reconciliation``).

The provider side follows PROTOCOLS.md section 1 so that an unmodified Daraja
client works against it. Everything under ``/_sim/`` is a control API for tests:
inspect recorded traffic, toggle external validation, decide pending STK
prompts and inject faults.

Magic values: a client that never calls ``/_sim/`` picks an outcome with the
payer's ``Msisdn`` on simulate (v1 or v2; number or string), so amounts and
account numbers stay free. Each applies to the callbacks of that one payment
exactly like the callback fault of the same kind (an armed fault for that
callback takes precedence); the delivery records show it as
``"fault": "magic:<kind>"`` (an armed fault shows as ``"fault": "<kind>"``):

=============== ========================================================================
Msisdn          outcome
=============== ========================================================================
254700000101    the validation answer "times out" (``timeout`` fault on validation): no
                validation call is made and the registered ResponseType decides
                (Completed: completes, confirmation sent; Cancelled: cancelled, nothing
                sent). Only with external validation enabled; otherwise no validation
                is sent and the payment completes normally.
254700000102    the confirmation is delivered twice, identical bodies (``duplicate``)
254700000103    the confirmation is never delivered (``drop``); the transaction still
                completes: the money has moved, and the payment is in Pull Transactions,
                Transaction Status and the statement like any other
254700000104    the confirmation is delivered after a delay of 3 seconds (``latency``)
=============== ========================================================================

STK Push: the payer answers a prompt ``stk_auto_seconds`` after it is sent
(accepting it, unless its ``PhoneNumber`` is magic), or when the control API
decides it (``POST /_sim/stk/<CheckoutRequestID>``). The same PhoneNumber and
Amount again within 2 minutes of an earlier prompt ends with ResultCode 17 at
once. Magic PhoneNumbers (the first four are the payer's answer, recorded as
``"decided_by": "magic"`` on the prompt; the last three apply to the result
callback like the ``stk_callback`` fault of that kind):

=============== ========================================================================
PhoneNumber     outcome
=============== ========================================================================
254700000201    cancelled by the payer: ResultCode 1032
254700000202    the phone cannot be reached: ResultCode 1037
254700000203    wrong PIN: ResultCode 2001
254700000204    insufficient balance: ResultCode 1
254700000205    paid, but the callback is never delivered (``drop``); the query answers
                the success
254700000206    the callback is delivered twice, identical bodies (``duplicate``)
254700000207    the callback is delivered 5 seconds late (``latency``)
=============== ========================================================================

Reconciliation: ``POST /pulltransactions/v1/register`` and ``/pulltransactions/v1/query``,
``POST /mpesa/transactionstatus/v1/query``, ``POST /mpesa/accountbalance/v1/query`` (fault
targets ``pullregister``, ``pullquery``, ``transactionstatus``, ``accountbalance``; their
results are deliveries of kind ``result`` or ``queue_timeout``) and
``GET /_sim/statement``. They see every completed C2B payment and paid M-Pesa Express
prompt, delivered or not. The initiator APIs accept ``DarajaSimSettings.initiator`` with a
SecurityCredential made from ``initiator_password`` and ``SANDBOX_CERTIFICATE_PATH`` (the
defaults: Daraja's sandbox ``testapi`` and ``Safaricom999!*!``). Magic receipt: Transaction
Status for a TransactionID starting ``QTO`` (``QUEUE_TIMEOUT_RECEIPT``) times out in the
queue; its result (ResultCode 26) goes to the QueueTimeOutURL.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import secrets
import string
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from simulators.common import (
    BearerTokens,
    ControlError,
    FaultBook,
    Handler,
    JsonObject,
    Magic,
    RequestLog,
    SimEngine,
    SimulatorServer,
    basic_auth_matches,
    control_body,
    create_sim_app,
    format_minor,
    json_object,
    json_or_text,
    now_iso,
    parse_amount_minor,
)
from simulators.daraja_reconciliation import (
    DEFAULT_ORGANIZATION_NAME,
    DEFAULT_PULL_PAGE_SIZE,
    DEFAULT_RESULT_DELAY_SECONDS,
    QUEUE_TIMEOUT_PREFIX,
    RECONCILIATION_CALLBACKS,
    RECONCILIATION_ENDPOINTS,
    SANDBOX_INITIATOR,
    SANDBOX_INITIATOR_PASSWORD,
    SANDBOX_PRIVATE_KEY_PATH,
    InitiatorCheck,
    Payment,
    Reconciliation,
    add_routes,
)
from simulators.daraja_reconciliation import QUEUE_TIMEOUT_RECEIPT as QUEUE_TIMEOUT_RECEIPT
from simulators.daraja_reconciliation import SANDBOX_CERTIFICATE_PATH as SANDBOX_CERTIFICATE_PATH
from simulators.daraja_wire import (
    ALPHANUMERIC,
    NAIROBI,
    SHORTCODE,
    bad_request,
    daraja_error,
    digits,
    invalid_field,
    invalid_payload,
    is_http_url,
    kenyan_phone,
    missing_fields,
    nairobi_now,
    new_conversation_id,
    new_request_id,
    random_string,
    short_text,
    url_problem,
)

logger = logging.getLogger(__name__)

CONFIRMATION_TIMEOUT = 10.0  # seconds a callback receiver has to answer (confirmation, STK)

RESPONSE_TYPES = ("Completed", "Cancelled")
TRANSACTION_TYPES = {"CustomerPayBillOnline": "Pay Bill", "CustomerBuyGoodsOnline": "Buy Goods"}
PAYBILL = "CustomerPayBillOnline"
# ValidationURL is optional: without it validation is never called for the shortcode.
REGISTER_FIELDS = ("ShortCode", "ResponseType", "ConfirmationURL")
SIMULATE_FIELDS = ("ShortCode", "CommandID", "Amount", "Msisdn")

ENDPOINT_TARGETS = (
    "oauth",
    "registerurl",
    "simulate",
    "processrequest",
    "stkpushquery",
    *RECONCILIATION_ENDPOINTS,
)
FAULT_KINDS = {
    **{
        target: ("latency", "http_500", "timeout", "drop", "drop_after", "malformed", "slow_body")
        for target in ENDPOINT_TARGETS
    },
    "validation": ("latency", "drop", "duplicate", "timeout"),
    "confirmation": ("latency", "drop", "duplicate"),
    "stk_callback": ("latency", "drop", "duplicate"),
    **{target: ("latency", "drop", "duplicate") for target in RECONCILIATION_CALLBACKS},
}
MAGIC_DELAY_SECONDS = 3.0
# Payer Msisdn -> the callback fault every payment from it gets (see the module docstring).
MAGIC_MSISDNS = {
    "254700000101": Magic("validation", "timeout"),
    "254700000102": Magic("confirmation", "duplicate"),
    "254700000103": Magic("confirmation", "drop"),
    "254700000104": Magic("confirmation", "latency", MAGIC_DELAY_SECONDS),
}

# ---- M-Pesa Express (STK Push)

# Daraja's published sandbox passkey, valid for the sandbox shortcodes.
SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
SANDBOX_SHORTCODES = ("600984", "174379")
STK_FIELDS = (
    "BusinessShortCode",
    "Password",
    "Timestamp",
    "TransactionType",
    "Amount",
    "PartyA",
    "PartyB",
    "PhoneNumber",
    "CallBackURL",
    "AccountReference",
    "TransactionDesc",
)
STK_QUERY_FIELDS = ("BusinessShortCode", "Password", "Timestamp", "CheckoutRequestID")
STK_TIMESTAMP_TOLERANCE = timedelta(minutes=10)  # either way, against Nairobi time
STK_REPEAT_WINDOW_SECONDS = 120.0
ACCOUNT_REFERENCE_MAX = 12
TRANSACTION_DESC_MAX = 13
MAX_STK_AMOUNT_MINOR = 10**11  # far above any real prompt


@dataclass(frozen=True)
class StkResult:
    code: int
    description: str


# What the payer (or M-Pesa for them) does with a prompt: the control API's actions.
STK_ACTIONS = {
    "accept": StkResult(0, "The service request is processed successfully."),
    "cancel": StkResult(1032, "Request cancelled by user"),
    "wrong_pin": StkResult(2001, "The initiator information is invalid."),
    "insufficient": StkResult(1, "The balance is insufficient for the transaction."),
    "unreachable": StkResult(1037, "DS timeout user cannot be reached"),
    "timeout": StkResult(1019, "Transaction has expired"),
}
RULE_LIMITED = "rule_limited"
STK_RESULTS = {**STK_ACTIONS, RULE_LIMITED: StkResult(17, "Rule limited.")}
STK_CALLBACK_DELAY_SECONDS = 5.0
# PhoneNumber -> the payer's answer (see the module docstring).
MAGIC_STK_ANSWERS = {
    "254700000201": "cancel",
    "254700000202": "unreachable",
    "254700000203": "wrong_pin",
    "254700000204": "insufficient",
}
# PhoneNumber -> the fault its result callback gets.
MAGIC_STK_CALLBACKS = {
    "254700000205": Magic("stk_callback", "drop"),
    "254700000206": Magic("stk_callback", "duplicate"),
    "254700000207": Magic("stk_callback", "latency", STK_CALLBACK_DELAY_SECONDS),
}
# Stands for the Amount in the callback body until it is written out as "1.00".
_AMOUNT_MARK = "\x00amount\x00"

_TRANS_ID_CHARS = string.ascii_uppercase + string.digits


def _sandbox_passkeys() -> dict[str, str]:
    return dict.fromkeys(SANDBOX_SHORTCODES, SANDBOX_PASSKEY)


@dataclass
class DarajaSimSettings:
    """How the simulated Daraja behaves; the control API can change some of it at runtime."""

    consumer_key: str = "sandbox-key"
    consumer_secret: str = "sandbox-secret"
    # True: registerurl also accepts localhost/loopback URLs (http:// is always accepted,
    # as in the sandbox).
    local_mode: bool = False
    validation_timeout: float = 8.0  # seconds the simulator waits for a validation answer
    external_validation: bool = False  # initial state; switchable via control API
    token_ttl_seconds: int = 3599  # expires_in of issued tokens ("3599" as a string on the wire)
    org_balance_minor: int = 0  # starting OrgAccountBalance in cents per shortcode
    # Seconds after which the payer answers an STK prompt by themselves (accepting it unless
    # the phone is magic); None: prompts stay pending until the control API decides them.
    stk_auto_seconds: float | None = 1.0
    # STK shortcode -> its Lipa Na M-Pesa Online passkey; other shortcodes are unknown.
    stk_passkeys: dict[str, str] = field(default_factory=_sandbox_passkeys)
    # The org-portal API user the initiator APIs (Transaction Status, Account Balance)
    # accept, and the key that decrypts their SecurityCredential (its certificate is
    # SANDBOX_CERTIFICATE_PATH for the default key).
    initiator: str = SANDBOX_INITIATOR
    initiator_password: str = SANDBOX_INITIATOR_PASSWORD
    private_key_path: str | Path = SANDBOX_PRIVATE_KEY_PATH
    organization_name: str = DEFAULT_ORGANIZATION_NAME  # in Pull rows and status results
    pull_page_size: int = DEFAULT_PULL_PAGE_SIZE  # rows per Pull Transactions page
    result_delay_seconds: float = DEFAULT_RESULT_DELAY_SECONDS  # before an initiator result


# --------------------------------------------------------------------------- helpers


def present_msisdn(msisdn: str, version: str) -> str:
    """MSISDN as the callbacks show it: v1 a SHA-256 hex digest, v2 masked."""
    if version == "v1":
        return hashlib.sha256(msisdn.encode()).hexdigest()
    return f"{msisdn[:4]} ***** {msisdn[-3:]}"


# --------------------------------------------------------------------------- model


@dataclass
class _Registration:
    shortcode: str
    version: str
    response_type: str
    confirmation_url: str
    validation_url: str | None  # None: validation is never called for this shortcode
    registered_at: str = field(default_factory=now_iso)

    def as_json(self) -> JsonObject:
        return {
            "ShortCode": self.shortcode,
            "version": self.version,
            "ResponseType": self.response_type,
            "ConfirmationURL": self.confirmation_url,
            "ValidationURL": self.validation_url,
            "registered_at": self.registered_at,
        }


@dataclass
class _Transaction:
    conversation_id: str
    trans_id: str
    shortcode: str
    command_id: str
    amount_minor: int
    msisdn: str
    bill_ref: str
    body: JsonObject = field(default_factory=dict)  # the callback body as last sent/prepared
    status: str = "pending"
    created_at: str = field(default_factory=now_iso)
    checkout_request_id: str | None = None  # the STK prompt this payment came from

    def ids(self) -> JsonObject:
        return {
            "trans_id": self.trans_id,
            "conversation_id": self.conversation_id,
            "checkout_request_id": self.checkout_request_id,
        }

    def as_json(self) -> JsonObject:
        return {
            "conversation_id": self.conversation_id,
            "trans_id": self.trans_id,
            "shortcode": self.shortcode,
            "command_id": self.command_id,
            "amount": format_minor(self.amount_minor),
            "msisdn": self.msisdn,
            "bill_ref": self.bill_ref,
            "status": self.status,
            "created_at": self.created_at,
            "checkout_request_id": self.checkout_request_id,
            "body": self.body,
        }


@dataclass
class _StkPrompt:
    """One M-Pesa Express request: the prompt on the payer's phone and how it ended."""

    merchant_request_id: str
    checkout_request_id: str
    shortcode: str
    transaction_type: str
    amount: int  # whole shillings
    party_a: str
    party_b: str
    phone: str
    callback_url: str
    account_reference: str
    transaction_desc: str
    sent: float = field(default_factory=time.monotonic)
    created_at: str = field(default_factory=now_iso)
    status: str = "pending"  # then "decided"
    action: str | None = None  # a key of STK_RESULTS
    decided_by: str | None = None  # "payer", "magic", "control" or "rule"
    decided_at: str | None = None
    receipt: str | None = None  # MpesaReceiptNumber, on success
    transaction_date: str | None = None  # YYYYMMDDHHmmss, Nairobi time, on success

    @property
    def result(self) -> StkResult | None:
        return None if self.action is None else STK_RESULTS[self.action]

    def ids(self) -> JsonObject:
        return {
            "trans_id": self.receipt,
            "conversation_id": None,
            "checkout_request_id": self.checkout_request_id,
        }

    def query_answer(self) -> JsonObject:
        result = self.result
        assert result is not None, "only a decided prompt has a query answer"
        return {
            "ResponseCode": "0",
            "ResponseDescription": "The service request has been accepted successsfully",
            "MerchantRequestID": self.merchant_request_id,
            "CheckoutRequestID": self.checkout_request_id,
            "ResultCode": str(result.code),
            "ResultDesc": result.description,
        }

    def callback_text(self) -> str:
        """The result callback as sent: ``ResultCode``, TransactionDate and PhoneNumber are
        numbers, Amount a number with two decimals (``1.00``), Balance without a Value."""
        result = self.result
        assert result is not None, "only a decided prompt has a callback"
        callback: JsonObject = {
            "MerchantRequestID": self.merchant_request_id,
            "CheckoutRequestID": self.checkout_request_id,
            "ResultCode": result.code,
            "ResultDesc": result.description,
        }
        if result.code == 0:
            assert self.receipt is not None and self.transaction_date is not None
            callback["CallbackMetadata"] = {
                "Item": [
                    {"Name": "Amount", "Value": _AMOUNT_MARK},
                    {"Name": "MpesaReceiptNumber", "Value": self.receipt},
                    {"Name": "Balance"},
                    {"Name": "TransactionDate", "Value": int(self.transaction_date)},
                    {"Name": "PhoneNumber", "Value": int(self.phone)},
                ]
            }
        text = json.dumps({"Body": {"stkCallback": callback}})
        return text.replace(json.dumps(_AMOUNT_MARK), f"{self.amount}.00")

    def as_json(self) -> JsonObject:
        result = self.result
        return {
            "MerchantRequestID": self.merchant_request_id,
            "CheckoutRequestID": self.checkout_request_id,
            "BusinessShortCode": self.shortcode,
            "TransactionType": self.transaction_type,
            "Amount": self.amount,
            "PartyA": self.party_a,
            "PartyB": self.party_b,
            "PhoneNumber": self.phone,
            "CallBackURL": self.callback_url,
            "AccountReference": self.account_reference,
            "TransactionDesc": self.transaction_desc,
            "created_at": self.created_at,
            "status": self.status,
            "action": self.action,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "ResultCode": None if result is None else result.code,
            "ResultDesc": None if result is None else result.description,
            "MpesaReceiptNumber": self.receipt,
            "TransactionDate": self.transaction_date,
        }


def _c2b_payment(txn: _Transaction) -> Payment:
    """The record of a C2B payment completing now, initiated at its TransTime."""
    initiated = datetime.strptime(txn.body["TransTime"], "%Y%m%d%H%M%S").replace(tzinfo=NAIROBI)
    return Payment(
        txn.trans_id,
        txn.shortcode,
        txn.command_id,
        txn.amount_minor,
        txn.msisdn,
        txn.bill_ref,
        initiated_at=initiated,
        completed_at=nairobi_now(),
        originator_conversation_id=txn.conversation_id,
    )


def _finish(record: JsonObject, outcome: str, **details: Any) -> None:
    record.update(outcome=outcome, finished_at=now_iso(), **details)


# --------------------------------------------------------------------------- engine


class _DarajaEngine(SimEngine):
    """State of one simulated Daraja plus the asynchronous callback deliveries."""

    def __init__(self, settings: DarajaSimSettings) -> None:
        super().__init__(
            FaultBook(FAULT_KINDS, ENDPOINT_TARGETS),
            RequestLog(("Password", "SecurityCredential")),
        )
        self.settings = settings
        self.reconciliation = Reconciliation(
            self,
            InitiatorCheck(
                settings.initiator, settings.initiator_password, Path(settings.private_key_path)
            ),
            organization_name=settings.organization_name,
            pull_page_size=settings.pull_page_size,
            result_delay_seconds=settings.result_delay_seconds,
        )
        self.session: aiohttp.ClientSession | None = None
        self.tokens = BearerTokens()
        self._tasks: set[asyncio.Task[None]] = set()
        self._used_trans_ids: set[str] = set()
        self._used_checkout_ids: set[str] = set()
        self._next_delivery_id = 1
        self._clear_state()

    def _clear_state(self) -> None:
        self.external_validation = self.settings.external_validation
        self.stk_auto_seconds = self.settings.stk_auto_seconds
        self.tokens.clear()
        self.registrations: dict[str, _Registration] = {}
        self.balances: dict[str, int] = {}
        self.transactions: dict[str, _Transaction] = {}
        self.prompts: dict[str, _StkPrompt] = {}
        self.deliveries: list[JsonObject] = []
        self.reconciliation.clear()
        self.requests.clear()
        self.faults.clear()

    async def reset(self) -> None:
        await self.cancel_deliveries()
        self._clear_state()

    async def cancel_deliveries(self) -> None:
        """Cancel every pending callback delivery and STK payer answer."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("callback delivery failed", exc_info=task.exception())

    # ---- OAuth

    def issue_token(self) -> str:
        token = random_string(ALPHANUMERIC, 28)
        return self.tokens.issue(token, self.settings.token_ttl_seconds)

    def credentials_valid(self, authorization: str | None) -> bool:
        settings = self.settings
        return basic_auth_matches(authorization, settings.consumer_key, settings.consumer_secret)

    # ---- recording

    def _begin_delivery(
        self, kind: str, url: str, fault: str | None, body: JsonObject, ids: JsonObject
    ) -> JsonObject:
        """A delivery record, listed at once; outcome and finished_at stay None until done.

        fault: the applied fault's kind, ``magic:<kind>`` for a magic value, or None.
        ids: trans_id, conversation_id and checkout_request_id (None where not known).
        """
        record: JsonObject = {
            "id": self._next_delivery_id,
            **ids,
            "kind": kind,
            "url": url,
            "fault": fault,
            "body": dict(body),
            "outcome": None,
            "http_status": None,
            "answer": None,
            "error": None,
            "started_at": now_iso(),
            "finished_at": None,
        }
        self._next_delivery_id += 1
        self.deliveries.append(record)
        return record

    # ---- C2B

    def register(self, registration: _Registration) -> None:
        self.registrations[registration.shortcode] = registration
        self.balances.setdefault(registration.shortcode, self.settings.org_balance_minor)

    def new_trans_id(self) -> str:
        """A receipt never issued before, and never the magic queue-timeout one."""
        while True:
            trans_id = secrets.choice(string.ascii_uppercase) + random_string(_TRANS_ID_CHARS, 9)
            if trans_id.startswith(QUEUE_TIMEOUT_PREFIX):
                continue
            if trans_id not in self._used_trans_ids:
                self._used_trans_ids.add(trans_id)
                return trans_id

    def start_transaction(self, txn: _Transaction, registration: _Registration | None) -> None:
        """Record the transaction and settle it (callbacks, if any) in the background."""
        self.transactions[txn.conversation_id] = txn
        self._spawn(self._settle(txn, registration))

    def balance_of(self, shortcode: str) -> int:
        return self.balances.get(shortcode, self.settings.org_balance_minor)

    def _credit(self, payment: Payment) -> int:
        """Move the money: the shortcode's new balance. The payment goes on record
        (Pull Transactions, Transaction Status, the statement) whatever its callbacks."""
        balance = self.balance_of(payment.shortcode) + payment.amount_minor
        self.balances[payment.shortcode] = balance
        self.reconciliation.book.record(replace(payment, balance_after_minor=balance))
        return balance

    async def _settle(self, txn: _Transaction, registration: _Registration | None) -> None:
        """Validate (when enabled and a ValidationURL is registered), complete, confirm.

        Without a registration the payment completes and nothing is sent.
        """
        if (
            registration is not None
            and registration.validation_url is not None
            and self.external_validation
            and not await self._validate(txn, registration)
        ):
            return
        balance = self._credit(_c2b_payment(txn))
        txn.body = {**txn.body, "OrgAccountBalance": format_minor(balance)}
        txn.status = "completed"  # the money has moved, whatever the confirmation answer
        if registration is not None:
            await self._deliver(
                txn, "confirmation", registration.confirmation_url, CONFIRMATION_TIMEOUT
            )

    async def _validate(self, txn: _Transaction, registration: _Registration) -> bool:
        """Ask the validation URL; True when the payment may go ahead."""
        assert registration.validation_url is not None
        record = await self._deliver(
            txn, "validation", registration.validation_url, self.settings.validation_timeout
        )
        answer = record["answer"]
        usable = (
            record["outcome"] == "answered"
            and 200 <= record["http_status"] < 300
            and isinstance(answer, dict)
            and "ResultCode" in answer
        )
        if not usable:  # timeout, error, non-2xx or not JSON: the ResponseType decides
            if registration.response_type == "Completed":
                return True
            txn.status = "cancelled"
            return False
        if str(answer["ResultCode"]).strip() != "0":
            txn.status = "rejected"
            return False
        if answer.get("ThirdPartyTransID"):
            txn.body = {**txn.body, "ThirdPartyTransID": str(answer["ThirdPartyTransID"])}
        return True

    async def _deliver(
        self, txn: _Transaction, kind: str, url: str, answer_within: float
    ) -> JsonObject:
        """Deliver one C2B callback, honouring an armed fault or else a magic Msisdn."""
        return await self._send(
            kind,
            url,
            txn.body,
            txn.ids(),
            answer_within,
            MAGIC_MSISDNS.get(txn.msisdn),
            duplicable=kind == "confirmation",
        )

    async def _send(
        self,
        kind: str,
        url: str,
        body: JsonObject,
        ids: JsonObject,
        answer_within: float,
        magic: Magic | None,
        *,
        duplicable: bool,
        text: str | None = None,
    ) -> JsonObject:
        """Deliver one callback, honouring an armed fault of its kind, else the magic value.

        Returns its (first) record. The records exist before the first await, so
        once a transaction has left "pending" the deliveries list already shows
        every callback it will get. text: the exact body to send (body is then
        what it decodes to).
        """
        fault_kind, seconds, label = self._delivery_fault(kind, magic)
        duplicate = fault_kind == "duplicate" and duplicable
        records = [
            self._begin_delivery(kind, url, label, body, ids) for _ in range(2 if duplicate else 1)
        ]
        if fault_kind == "latency":
            await self.pause(seconds or 0.0)
        if fault_kind in ("drop", "timeout"):
            _finish(records[0], "dropped" if fault_kind == "drop" else "timeout")
            return records[0]
        for record in records:
            await self._post(record, answer_within, text)
        return records[0]

    def _delivery_fault(
        self, kind: str, magic: Magic | None
    ) -> tuple[str | None, float | None, str | None]:
        """(fault kind, seconds, recorded label) for one callback: armed fault, else magic."""
        fault = self.faults.take(kind)
        if fault is not None:
            return fault.kind, fault.seconds, fault.kind
        if magic is not None and magic.target == kind:
            return magic.kind, magic.seconds, magic.label
        return None, None, None

    async def _post(self, record: JsonObject, answer_within: float, text: str | None) -> None:
        assert self.session is not None, "the app's client session starts with the app"
        body: dict[str, Any] = (
            {"json": record["body"]}
            if text is None
            else {"data": text.encode(), "headers": {"Content-Type": "application/json"}}
        )
        try:
            async with self.session.post(
                record["url"], timeout=aiohttp.ClientTimeout(total=answer_within), **body
            ) as response:
                answer = (await response.read()).decode("utf-8", errors="replace")
        except TimeoutError:
            _finish(record, "timeout")
        except (aiohttp.ClientError, OSError) as exc:
            _finish(record, "error", error=f"{type(exc).__name__}: {exc}")
        else:
            _finish(record, "answered", http_status=response.status, answer=json_or_text(answer))

    # ---- M-Pesa Express

    def new_checkout_request_id(self) -> str:
        """``ws_CO_`` + the Nairobi time (DDMMYYYYHHmmss) + 4 digits, never reused."""
        stamp = nairobi_now().strftime("%d%m%Y%H%M%S")
        while True:
            checkout_id = f"ws_CO_{stamp}{secrets.randbelow(10000):04d}"
            if checkout_id not in self._used_checkout_ids:
                self._used_checkout_ids.add(checkout_id)
                return checkout_id

    def passkey(self, shortcode: str) -> str | None:
        return self.settings.stk_passkeys.get(shortcode)

    def send_prompt(self, prompt: _StkPrompt) -> None:
        """Record the prompt; the payer (or the 2-minute rule) decides it in the background."""
        repeated = any(
            other.phone == prompt.phone
            and other.amount == prompt.amount
            and prompt.sent - other.sent < STK_REPEAT_WINDOW_SECONDS
            for other in self.prompts.values()
        )
        self.prompts[prompt.checkout_request_id] = prompt
        if repeated:
            self.decide(prompt, RULE_LIMITED, "rule")
        elif self.stk_auto_seconds is not None:
            self._spawn(self._payer_answers(prompt, self.stk_auto_seconds))

    async def _payer_answers(self, prompt: _StkPrompt, seconds: float) -> None:
        await self.pause(seconds)
        if self.closing or prompt.status != "pending":  # stopping, or decided meanwhile
            return
        magic = MAGIC_STK_ANSWERS.get(prompt.phone)
        self.decide(prompt, magic or "accept", "payer" if magic is None else "magic")

    def decide(self, prompt: _StkPrompt, action: str, decided_by: str) -> None:
        """End a pending prompt; on success the money moves. The callback follows."""
        if prompt.status != "pending":
            raise ControlError(f"{prompt.checkout_request_id} is already decided")
        prompt.status, prompt.action, prompt.decided_by = "decided", action, decided_by
        prompt.decided_at = now_iso()
        if action == "accept":
            prompt.receipt = self.new_trans_id()
            prompt.transaction_date = nairobi_now().strftime("%Y%m%d%H%M%S")
            self._pay(prompt)
        self._spawn(self._deliver_stk_result(prompt))

    def _pay(self, prompt: _StkPrompt) -> None:
        """Credit the merchant; a paybill with registered URLs also gets the C2B callbacks
        (validation when enabled, then confirmation) of the same receipt."""
        assert prompt.receipt is not None and prompt.transaction_date is not None
        amount_minor = prompt.amount * 100
        paybill = prompt.transaction_type == PAYBILL
        registration = self.registrations.get(prompt.shortcode) if paybill else None
        if registration is None:
            payment = Payment(
                prompt.receipt,
                prompt.shortcode if paybill else prompt.party_b,
                prompt.transaction_type,
                amount_minor,
                prompt.phone,
                prompt.account_reference,
                initiated_at=datetime.fromisoformat(prompt.created_at).astimezone(NAIROBI),
                completed_at=nairobi_now(),
                originator_conversation_id=new_conversation_id(),
            )
            self._credit(payment)
            return
        txn = _Transaction(
            new_conversation_id(),
            prompt.receipt,
            prompt.shortcode,
            PAYBILL,
            amount_minor,
            prompt.phone,
            prompt.account_reference,
            checkout_request_id=prompt.checkout_request_id,
        )
        txn.body = {
            **_callback_body(txn, registration.version),
            "TransTime": prompt.transaction_date,
        }
        self.start_transaction(txn, registration)

    async def _deliver_stk_result(self, prompt: _StkPrompt) -> None:
        text = prompt.callback_text()
        await self._send(
            "stk_callback",
            prompt.callback_url,
            json.loads(text),
            prompt.ids(),
            CONFIRMATION_TIMEOUT,
            MAGIC_STK_CALLBACKS.get(prompt.phone),
            duplicable=True,
            text=text,
        )

    # ---- initiator results (Transaction Status, Account Balance)

    def send_result_later(
        self, kind: str, url: str, text: str, ids: JsonObject, seconds: float
    ) -> None:
        self._spawn(self._send_result(kind, url, text, ids, seconds))

    async def _send_result(
        self, kind: str, url: str, text: str, ids: JsonObject, seconds: float
    ) -> None:
        await self.pause(seconds)
        if self.closing:
            return
        body = json.loads(text)
        await self._send(
            kind, url, body, ids, CONFIRMATION_TIMEOUT, None, duplicable=True, text=text
        )

    # ---- control views

    def state_json(self) -> JsonObject:
        return {
            "external_validation": self.external_validation,
            "registrations": {code: reg.as_json() for code, reg in self.registrations.items()},
            "balances": {code: format_minor(minor) for code, minor in self.balances.items()},
        }

    def settings_json(self) -> JsonObject:
        return {
            "stk_auto_seconds": self.stk_auto_seconds,
            "stk_shortcodes": sorted(self.settings.stk_passkeys),
            "pull_page_size": self.reconciliation.pull_page_size,
            "result_delay_seconds": self.reconciliation.result_delay_seconds,
        }


ENGINE = web.AppKey("daraja_engine", _DarajaEngine)


# --------------------------------------------------------------------------- provider API


async def _oauth(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    if not engine.credentials_valid(request.headers.get("Authorization")):
        return daraja_error(400, "400.008.01", "Invalid Authentication passed")
    if request.query.get("grant_type") != "client_credentials":
        return daraja_error(400, "400.008.02", "Invalid grant type passed")
    token = engine.issue_token()
    return web.json_response(
        {"access_token": token, "expires_in": str(engine.settings.token_ttl_seconds)}
    )


def _registration_from(
    payload: JsonObject, version: str, settings: DarajaSimSettings
) -> _Registration | web.Response:
    shortcode = digits(payload["ShortCode"])
    if shortcode is None:
        return bad_request("Invalid ShortCode")
    if payload["ResponseType"] not in RESPONSE_TYPES:
        return bad_request("Invalid ResponseType")
    for name in ("ValidationURL", "ConfirmationURL"):
        url = payload.get(name)
        if url is None and name == "ValidationURL":
            continue
        problem = url_problem(url, settings.local_mode) if isinstance(url, str) else "not a URL"
        if problem is not None:
            return bad_request(f"Invalid {name} - {problem}")
    return _Registration(
        shortcode,
        version,
        payload["ResponseType"],
        payload["ConfirmationURL"],
        payload.get("ValidationURL"),
    )


async def _register_url(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    payload = json_object(await request.text())
    if payload is None:
        return invalid_payload()
    if missing := missing_fields(payload, REGISTER_FIELDS):
        return invalid_payload(missing)
    registration = _registration_from(payload, request.match_info["version"], engine.settings)
    if isinstance(registration, web.Response):
        return registration
    engine.register(registration)
    return web.json_response(
        {
            "OriginatorCoversationID": new_conversation_id(),
            "ResponseCode": "0",
            "ResponseDescription": "Success",
        }
    )


def _transaction_from(
    payload: JsonObject, engine: _DarajaEngine
) -> tuple[_Transaction, _Registration | None] | web.Response:
    shortcode = digits(payload["ShortCode"])
    if shortcode is None:
        return bad_request("Invalid ShortCode")
    command_id = payload["CommandID"]
    if not isinstance(command_id, str) or command_id not in TRANSACTION_TYPES:
        return bad_request("Invalid CommandID")
    amount_minor = parse_amount_minor(payload["Amount"])
    if amount_minor is None:
        return bad_request("Invalid Amount")
    msisdn = digits(payload["Msisdn"])
    if msisdn is None or not 9 <= len(msisdn) <= 15:
        return bad_request("Invalid Msisdn")
    bill_ref = ""
    if command_id == PAYBILL:
        raw_ref = payload.get("BillRefNumber")
        if raw_ref is None:
            return invalid_payload(["BillRefNumber"])
        bill_ref = str(raw_ref)
        if isinstance(raw_ref, bool) or not isinstance(raw_ref, str | int) or len(bill_ref) > 20:
            return bad_request("Invalid BillRefNumber")
    # No registered URLs: M-Pesa still completes the payment, and sends nothing.
    registration = engine.registrations.get(shortcode)
    txn = _Transaction(
        new_conversation_id(),
        engine.new_trans_id(),
        shortcode,
        command_id,
        amount_minor,
        msisdn,
        bill_ref,
    )
    txn.body = _callback_body(txn, registration.version if registration else "v2")
    return txn, registration


def _callback_body(txn: _Transaction, version: str) -> JsonObject:
    """The validation body; confirmation adds the balance (and a ThirdPartyTransID echo)."""
    return {
        "TransactionType": TRANSACTION_TYPES[txn.command_id],
        "TransID": txn.trans_id,
        "TransTime": nairobi_now().strftime("%Y%m%d%H%M%S"),
        "TransAmount": format_minor(txn.amount_minor),
        "BusinessShortCode": txn.shortcode,
        "BillRefNumber": txn.bill_ref,
        "InvoiceNumber": "",
        "OrgAccountBalance": "",
        "ThirdPartyTransID": "",
        "MSISDN": present_msisdn(txn.msisdn, version),
        "FirstName": "JOHN",
        "MiddleName": "",
        "LastName": "DOE",
    }


async def _simulate(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    payload = json_object(await request.text())
    if payload is None:
        return invalid_payload()
    if missing := missing_fields(payload, SIMULATE_FIELDS):
        return invalid_payload(missing)
    parsed = _transaction_from(payload, engine)
    if isinstance(parsed, web.Response):
        return parsed
    txn, registration = parsed
    engine.start_transaction(txn, registration)
    return web.json_response(
        {
            "OriginatorCoversationID": txn.conversation_id,
            "ResponseCode": "0",
            "ResponseDescription": "Accept the service request successfully.",
        }
    )


# ---- M-Pesa Express


def _whole_shillings(value: object) -> int | None:
    """A positive whole amount sent as a number or a numeric string (1, "1", 1.0)."""
    minor = parse_amount_minor(value, max_minor=MAX_STK_AMOUNT_MINOR)
    return None if minor is None or minor % 100 else minor // 100


def _fresh_timestamp(value: object) -> str | None:
    """The Timestamp as sent when it is ``YYYYMMDDHHmmss`` within 10 minutes of Nairobi's now."""
    text = digits(value)
    if text is None or len(text) != 14:
        return None
    try:
        stamp = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=NAIROBI)
    except ValueError:
        return None
    return text if abs(nairobi_now() - stamp) <= STK_TIMESTAMP_TOLERANCE else None


def _merchant(payload: JsonObject, engine: _DarajaEngine) -> str | web.Response:
    """The BusinessShortCode once Password and Timestamp prove its passkey.

    A malformed field is ``400.002.02``; an unknown shortcode and a wrong password are
    refused the way Daraja does, with HTTP 500 ``500.001.1001``.
    """
    shortcode = digits(payload.get("BusinessShortCode"))
    if shortcode is None or not SHORTCODE.fullmatch(shortcode):
        return invalid_field("BusinessShortCode")
    password = payload.get("Password")
    if not isinstance(password, str) or not password:
        return invalid_field("Password")
    timestamp = _fresh_timestamp(payload.get("Timestamp"))
    if timestamp is None:
        return invalid_field("Timestamp")
    passkey = engine.passkey(shortcode)
    if passkey is None:
        return daraja_error(500, "500.001.1001", "Merchant does not exist")
    expected = base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode("ascii")
    if not secrets.compare_digest(password.encode(), expected.encode()):
        return daraja_error(500, "500.001.1001", "Wrong credentials")
    return shortcode


def _prompt_from(payload: JsonObject, engine: _DarajaEngine) -> _StkPrompt | web.Response:
    if missing := missing_fields(payload, STK_FIELDS):
        return invalid_field(missing[0])
    shortcode = _merchant(payload, engine)
    if isinstance(shortcode, web.Response):
        return shortcode
    transaction_type = payload["TransactionType"]
    if transaction_type not in TRANSACTION_TYPES:
        return invalid_field("TransactionType")
    amount = _whole_shillings(payload["Amount"])
    if amount is None:
        return invalid_field("Amount")
    party_a = kenyan_phone(payload["PartyA"])
    if party_a is None:
        return invalid_field("PartyA")
    party_b = digits(payload["PartyB"])  # the paybill, or the till for Buy Goods
    if party_b is None or not SHORTCODE.fullmatch(party_b):
        return invalid_field("PartyB")
    phone = kenyan_phone(payload["PhoneNumber"])
    if phone is None:
        return invalid_field("PhoneNumber")
    callback_url = payload["CallBackURL"]
    if not isinstance(callback_url, str) or not is_http_url(callback_url):
        return invalid_field("CallBackURL")
    reference = short_text(payload["AccountReference"], ACCOUNT_REFERENCE_MAX)
    if reference is None:
        return invalid_field("AccountReference")
    description = short_text(payload["TransactionDesc"], TRANSACTION_DESC_MAX)
    if description is None:
        return invalid_field("TransactionDesc")
    return _StkPrompt(
        new_request_id(),
        engine.new_checkout_request_id(),
        shortcode,
        transaction_type,
        amount,
        party_a,
        party_b,
        phone,
        callback_url,
        reference,
        description,
    )


async def _stk_push(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    payload = json_object(await request.text())
    if payload is None:
        return invalid_payload()
    prompt = _prompt_from(payload, engine)
    if isinstance(prompt, web.Response):
        return prompt
    engine.send_prompt(prompt)
    accepted = "Success. Request accepted for processing"
    return web.json_response(
        {
            "MerchantRequestID": prompt.merchant_request_id,
            "CheckoutRequestID": prompt.checkout_request_id,
            "ResponseCode": "0",
            "ResponseDescription": accepted,
            "CustomerMessage": accepted,
        }
    )


async def _stk_query(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    payload = json_object(await request.text())
    if payload is None:
        return invalid_payload()
    if missing := missing_fields(payload, STK_QUERY_FIELDS):
        return invalid_field(missing[0])
    shortcode = _merchant(payload, engine)
    if isinstance(shortcode, web.Response):
        return shortcode
    checkout_id = payload["CheckoutRequestID"]
    prompt = engine.prompts.get(checkout_id) if isinstance(checkout_id, str) else None
    if prompt is None or prompt.shortcode != shortcode:
        return invalid_field("CheckoutRequestID")
    if prompt.status == "pending":
        return daraja_error(500, "500.001.1001", "The transaction is being processed")
    return web.json_response(prompt.query_answer())


def _internal_error() -> web.Response:
    # Not 500.003.1001: that code means "Urls are already registered" on registerurl.
    return daraja_error(500, "500.001.1001", "Internal Server Error")


async def _provider_answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    route_error = request.match_info.http_exception
    if route_error is not None:  # a path (or method) this simulator does not implement
        if route_error.status == 404:
            return daraja_error(404, "404.001.01", "Resource not found")
        return daraja_error(route_error.status, f"{route_error.status}.001.01", route_error.reason)
    engine = request.app[ENGINE]
    if request.match_info.route.name != "oauth" and not engine.tokens.valid(
        request.headers.get("Authorization")
    ):
        return daraja_error(404, "404.001.03", "Invalid Access Token")
    return await handler(request)


# --------------------------------------------------------------------------- control API


async def _get_state(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE].state_json())


async def _set_validation(request: web.Request) -> web.Response:
    enabled = (await control_body(request)).get("enabled")
    if not isinstance(enabled, bool):
        raise ControlError("enabled must be true or false")
    request.app[ENGINE].external_validation = enabled
    return web.json_response({"external_validation": enabled})


async def _get_settings(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE].settings_json())


CHANGEABLE_SETTINGS = ("stk_auto_seconds", "pull_page_size", "result_delay_seconds")


def _is_seconds(value: object) -> bool:
    return (
        not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value < float("inf")
    )


async def _change_settings(request: web.Request) -> web.Response:
    """Change some settings at runtime; nothing changes unless every value is valid."""
    engine = request.app[ENGINE]
    reconciliation = engine.reconciliation
    payload = await control_body(request)
    if unknown := sorted(set(payload) - set(CHANGEABLE_SETTINGS)):
        raise ControlError(f"unknown settings {unknown}; known: {list(CHANGEABLE_SETTINGS)}")
    seconds = payload.get("stk_auto_seconds")
    if seconds is not None and not _is_seconds(seconds):
        raise ControlError("stk_auto_seconds must be a non-negative number or null")
    page_size = payload.get("pull_page_size", reconciliation.pull_page_size)
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise ControlError("pull_page_size must be a positive integer")
    delay = payload.get("result_delay_seconds", reconciliation.result_delay_seconds)
    if not _is_seconds(delay):
        raise ControlError("result_delay_seconds must be a non-negative number")
    if "stk_auto_seconds" in payload:
        engine.stk_auto_seconds = None if seconds is None else float(seconds)
    reconciliation.pull_page_size = page_size
    reconciliation.result_delay_seconds = float(delay)
    return web.json_response(engine.settings_json())


async def _list_deliveries(request: web.Request) -> web.Response:
    filters = {
        name: request.query[name]
        for name in ("trans_id", "conversation_id", "checkout_request_id", "kind")
        if request.query.get(name)
    }
    items = [
        item
        for item in request.app[ENGINE].deliveries
        if all(item[name] == value for name, value in filters.items())
    ]
    return web.json_response({"items": items})


async def _list_transactions(request: web.Request) -> web.Response:
    transactions = request.app[ENGINE].transactions.values()
    return web.json_response({"items": [txn.as_json() for txn in transactions]})


async def _get_transaction(request: web.Request) -> web.Response:
    conversation_id = request.match_info["conversation_id"]
    txn = request.app[ENGINE].transactions.get(conversation_id)
    if txn is None:
        return web.json_response({"error": f"unknown transaction {conversation_id}"}, status=404)
    return web.json_response(txn.as_json())


async def _list_prompts(request: web.Request) -> web.Response:
    prompts = request.app[ENGINE].prompts.values()
    return web.json_response({"items": [prompt.as_json() for prompt in prompts]})


def _prompt_named(request: web.Request) -> _StkPrompt | web.Response:
    checkout_id = request.match_info["checkout_request_id"]
    prompt = request.app[ENGINE].prompts.get(checkout_id)
    if prompt is None:
        return web.json_response({"error": f"unknown STK prompt {checkout_id}"}, status=404)
    return prompt


async def _get_prompt(request: web.Request) -> web.Response:
    prompt = _prompt_named(request)
    return prompt if isinstance(prompt, web.Response) else web.json_response(prompt.as_json())


async def _decide_prompt(request: web.Request) -> web.Response:
    prompt = _prompt_named(request)
    if isinstance(prompt, web.Response):
        return prompt
    action = (await control_body(request)).get("action")
    if not isinstance(action, str) or action not in STK_ACTIONS:
        raise ControlError(f"action must be one of {list(STK_ACTIONS)}")
    if prompt.status != "pending":
        message = f"{prompt.checkout_request_id} is already decided ({prompt.action})"
        return web.json_response({"error": message}, status=409)
    request.app[ENGINE].decide(prompt, action, "control")
    return web.json_response(prompt.as_json())


async def _reset(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    await engine.reset()
    return web.json_response(engine.state_json())


# --------------------------------------------------------------------------- application


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    """One outbound session for callbacks; pending deliveries die with the app."""
    engine = app[ENGINE]
    engine.session = aiohttp.ClientSession()
    yield
    await engine.cancel_deliveries()
    await engine.session.close()


def create_app(settings: DarajaSimSettings) -> web.Application:
    """Provider API plus ``/_sim/`` control API; runnable by any aiohttp runner or test client."""
    engine = _DarajaEngine(settings)
    app = create_sim_app(engine, _provider_answer, _internal_error)
    app[ENGINE] = engine
    app.cleanup_ctx.append(_client_session)
    app.router.add_get("/oauth/v1/generate", _oauth, name="oauth")
    app.router.add_post(
        r"/mpesa/c2b/{version:v[12]}/registerurl", _register_url, name="registerurl"
    )
    app.router.add_post(r"/mpesa/c2b/{version:v[12]}/simulate", _simulate, name="simulate")
    app.router.add_post("/mpesa/stkpush/v1/processrequest", _stk_push, name="processrequest")
    app.router.add_post("/mpesa/stkpushquery/v1/query", _stk_query, name="stkpushquery")
    app.router.add_get("/_sim/state", _get_state)
    app.router.add_post("/_sim/validation", _set_validation)
    app.router.add_get("/_sim/settings", _get_settings)
    app.router.add_post("/_sim/settings", _change_settings)
    app.router.add_get("/_sim/deliveries", _list_deliveries)
    app.router.add_get("/_sim/transactions", _list_transactions)
    app.router.add_get("/_sim/transactions/{conversation_id}", _get_transaction)
    app.router.add_get("/_sim/stk", _list_prompts)
    app.router.add_get("/_sim/stk/{checkout_request_id}", _get_prompt)
    app.router.add_post("/_sim/stk/{checkout_request_id}", _decide_prompt)
    app.router.add_post("/_sim/reset", _reset)
    add_routes(app, engine.reconciliation)
    return app


class DarajaSimulator(SimulatorServer):
    """The simulator on a real socket; stop() also cancels pending callback deliveries."""

    def __init__(self, settings: DarajaSimSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or DarajaSimSettings()

    def build_app(self) -> web.Application:
        return create_app(self.settings)
