"""The Daraja simulator's reconciliation APIs over real sockets: Pull Transactions,
Transaction Status, Account Balance and the org portal's statement export, with a small
receiver standing in for the merchant's callback and result endpoints."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from simulators.daraja import (
    NAIROBI,
    QUEUE_TIMEOUT_RECEIPT,
    SANDBOX_CERTIFICATE_PATH,
    SANDBOX_INITIATOR,
    SANDBOX_INITIATOR_PASSWORD,
    SANDBOX_PASSKEY,
)

from support import wait_until

KEY, SECRET = "sandbox-key", "sandbox-secret"
SHORTCODE = "600984"
OTHER_SHORTCODE = "600111"
MSISDN = "254708374149"
UNDELIVERED_MSISDN = "254700000103"  # magic: the confirmation is never delivered
ORGANIZATION = "Sandbox Organisation"
PULL_TIME = "%Y-%m-%d %H:%M:%S"
ACCEPTED = "Accept the service request successfully."
STATEMENT_HEADER = (
    "Receipt No.,Completion Time,Initiation Time,Details,Transaction Status,Paid In,"
    "Withdrawn,Balance,Balance Confirmed,Reason Type,Other Party Info,"
    "Linked Transaction ID,A/C No."
)
RECEIPT = re.compile(r"[A-Z][A-Z0-9]{9}")
ZEROED_ID = re.compile(r"[A-Z][A-Z0-9]{2}0000000")
AGENT_CONVERSATION_ID = re.compile(r"AG_\d{8}_[0-9a-f]{20}")
STAMP = re.compile(r"\d{14}")

StartSim = Callable[..., Awaitable[str]]


def credential(password: str = SANDBOX_INITIATOR_PASSWORD) -> str:
    """What the gateway sends: the password encrypted with the shipped certificate."""
    certificate = x509.load_pem_x509_certificate(SANDBOX_CERTIFICATE_PATH.read_bytes())
    key = certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return base64.b64encode(key.encrypt(password.encode(), padding.PKCS1v15())).decode()


def foreign_credential() -> str:
    """The right password encrypted with some other key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    encrypted = key.encrypt(SANDBOX_INITIATOR_PASSWORD.encode(), padding.PKCS1v15())
    return base64.b64encode(encrypted).decode()


class Merchant:
    """Records every POST by path, raw and decoded; validation answers as configured."""

    def __init__(self) -> None:
        self.texts: dict[str, list[str]] = defaultdict(list)
        self.validation_answer: dict[str, Any] = {"ResultCode": "0", "ResultDesc": "Accepted"}
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(text) for text in self.texts[path]]

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._record)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _record(self, request: web.Request) -> web.Response:
        self.texts[request.path].append(await request.text())
        if request.path == "/c2b/validation":
            return web.json_response(self.validation_answer)
        return web.json_response({"ResultCode": 0, "ResultDesc": "Accepted"})


@pytest_asyncio.fixture
async def merchant() -> AsyncIterator[Merchant]:
    merchant = Merchant()
    await merchant.start()
    yield merchant
    await merchant.stop()


class Daraja:
    """One simulator and a token for it: the calls these tests make."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http = http
        self.base_url = base_url
        self.token = ""

    async def login(self) -> None:
        basic = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
        async with self.http.get(
            f"{self.base_url}/oauth/v1/generate",
            params={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        ) as response:
            self.token = (await response.json())["access_token"]

    async def post(self, path: str, body: Any, *, token: bool = True) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if token else {}
        async with self.http.post(f"{self.base_url}{path}", json=body, headers=headers) as r:
            return r.status, await r.json()

    async def get(self, path: str, **params: str) -> Any:
        async with self.http.get(f"{self.base_url}{path}", params=params) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def register_c2b(self, merchant: Merchant, shortcode: str = SHORTCODE) -> None:
        status, _ = await self.post(
            "/mpesa/c2b/v2/registerurl",
            {
                "ShortCode": shortcode,
                "ResponseType": "Completed",
                "ConfirmationURL": merchant.url("/c2b/confirmation"),
                "ValidationURL": merchant.url("/c2b/validation"),
            },
        )
        assert status == 200

    async def pay(
        self,
        amount: str = "1500",
        *,
        msisdn: str = MSISDN,
        shortcode: str = SHORTCODE,
        reference: str = "070707070",
        command: str = "CustomerPayBillOnline",
    ) -> None:
        status, answer = await self.post(
            "/mpesa/c2b/v2/simulate",
            {
                "ShortCode": shortcode,
                "CommandID": command,
                "Amount": amount,
                "Msisdn": msisdn,
                "BillRefNumber": reference,
            },
        )
        assert (status, answer["ResponseCode"]) == (200, "0"), answer

    async def settled(self, count: int) -> list[dict[str, Any]]:
        """The transactions once `count` of them have left "pending"."""

        async def all_settled() -> list[dict[str, Any]] | None:
            items = (await self.get("/_sim/transactions"))["items"]
            done = [item for item in items if item["status"] != "pending"]
            return items if len(done) == count else None

        return await wait_until(all_settled, f"{count} settled transactions")

    async def register_pull(self, shortcode: str = SHORTCODE) -> dict[str, Any]:
        status, answer = await self.post(
            "/pulltransactions/v1/register",
            {
                "ShortCode": shortcode,
                "RequestType": "Pull",
                "NominatedNumber": "254722000000",
                "CallBackURL": "https://merchant.example/pull",
            },
        )
        assert status == 200, answer
        return answer

    async def pull(
        self,
        offset: int = 0,
        *,
        shortcode: str = SHORTCODE,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> tuple[int, Any]:
        now = datetime.now(NAIROBI)
        start = start or now - timedelta(hours=1)
        end = end or now + timedelta(minutes=5)
        return await self.post(
            "/pulltransactions/v1/query",
            {
                "ShortCode": shortcode,
                "StartDate": start.strftime(PULL_TIME),
                "EndDate": end.strftime(PULL_TIME),
                "OffSetValue": str(offset),
            },
        )

    async def pull_rows(self, shortcode: str = SHORTCODE) -> list[dict[str, Any]]:
        status, answer = await self.pull(shortcode=shortcode)
        assert (status, answer["ResponseCode"]) == (200, "1000"), answer
        [rows] = answer["Response"]
        return rows

    async def statement(self, **params: str) -> list[list[str]]:
        async with self.http.get(f"{self.base_url}/_sim/statement", params=params) as response:
            assert response.status == 200, await response.text()
            assert response.content_type == "text/csv"
            text = await response.text()
        assert text.splitlines()[0] == STATEMENT_HEADER
        return list(csv.reader(io.StringIO(text)))[1:]

    async def status_query(
        self, merchant: Merchant, receipt: str, **overrides: Any
    ) -> tuple[int, Any]:
        return await self.post(
            "/mpesa/transactionstatus/v1/query",
            {
                "Initiator": SANDBOX_INITIATOR,
                "SecurityCredential": credential(),
                "CommandID": "TransactionStatusQuery",
                "TransactionID": receipt,
                "PartyA": SHORTCODE,
                "IdentifierType": "4",
                "ResultURL": merchant.url("/results"),
                "QueueTimeOutURL": merchant.url("/timeouts"),
                "Remarks": "reconciliation",
                "Occasion": receipt,
                **overrides,
            },
        )

    async def balance_query(self, merchant: Merchant, **overrides: Any) -> tuple[int, Any]:
        return await self.post(
            "/mpesa/accountbalance/v1/query",
            {
                "Initiator": SANDBOX_INITIATOR,
                "SecurityCredential": credential(),
                "CommandID": "AccountBalance",
                "PartyA": SHORTCODE,
                "IdentifierType": "4",
                "Remarks": "balance check",
                "QueueTimeOutURL": merchant.url("/timeouts"),
                "ResultURL": merchant.url("/results"),
                **overrides,
            },
        )


@pytest_asyncio.fixture
async def daraja(http: aiohttp.ClientSession, start_daraja: StartSim) -> Daraja:
    simulator = Daraja(http, await start_daraja(result_delay_seconds=0.05))
    await simulator.login()
    return simulator


async def result_at(merchant: Merchant, path: str = "/results") -> dict[str, Any]:
    await wait_until(lambda: merchant.texts[path], f"a result at {path}")
    [body] = merchant.bodies(path)
    return body["Result"]


def parameters(result: dict[str, Any]) -> dict[str, Any]:
    return {
        item["Key"]: item.get("Value") for item in result["ResultParameters"]["ResultParameter"]
    }


def acknowledged(status: int, answer: Any) -> None:
    assert status == 200, answer
    assert set(answer) == {
        "OriginatorConversationID",
        "ConversationID",
        "ResponseCode",
        "ResponseDescription",
    }
    assert (answer["ResponseCode"], answer["ResponseDescription"]) == ("0", ACCEPTED)
    assert AGENT_CONVERSATION_ID.fullmatch(answer["ConversationID"])


# --------------------------------------------------------------------------- Pull Transactions


@pytest.mark.asyncio
async def test_pull_register_answers_1000_then_1001_for_the_same_shortcode(
    daraja: Daraja,
) -> None:
    first = await daraja.register_pull()
    assert (first["ResponseStatus"], first["ShortCode"]) == ("1000", SHORTCODE)
    assert first["ResponseRefID"] and first["ResponseDescription"]
    again = await daraja.register_pull()
    assert again["ResponseStatus"] == "1001"
    assert "already" in again["ResponseDescription"]
    assert (await daraja.register_pull(OTHER_SHORTCODE))["ResponseStatus"] == "1000"
    registered = (await daraja.get("/_sim/pull"))["items"]
    assert [item["ShortCode"] for item in registered] == [SHORTCODE, OTHER_SHORTCODE]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"CallBackURL": None}, "CallBackURL"),
        ({"CallBackURL": "not a url"}, "CallBackURL"),
        ({"RequestType": "Push"}, "RequestType"),
        ({"NominatedNumber": "12345"}, "NominatedNumber"),
        ({"ShortCode": "60-984"}, "ShortCode"),
    ],
)
async def test_pull_register_refuses_a_missing_or_malformed_field(
    daraja: Daraja, change: dict[str, Any], field: str
) -> None:
    body = {
        "ShortCode": SHORTCODE,
        "RequestType": "Pull",
        "NominatedNumber": "0722000000",
        "CallBackURL": "https://merchant.example/pull",
        **change,
    }
    status, answer = await daraja.post("/pulltransactions/v1/register", body)
    assert (status, answer["errorCode"]) == (400, "400.002.02")
    assert answer["errorMessage"] == f"Bad Request - Invalid {field}"
    assert (await daraja.get("/_sim/pull"))["items"] == []


@pytest.mark.asyncio
async def test_pull_calls_need_the_bearer_token(daraja: Daraja) -> None:
    status, answer = await daraja.post("/pulltransactions/v1/register", {}, token=False)
    assert (status, answer["errorCode"]) == (404, "404.001.03")


@pytest.mark.asyncio
async def test_pull_query_needs_a_registered_shortcode(daraja: Daraja) -> None:
    await daraja.pay()
    await daraja.settled(1)
    status, answer = await daraja.pull()
    assert (status, answer["errorCode"]) == (400, "400.002.02")
    assert "not registered" in answer["errorMessage"]


@pytest.mark.asyncio
async def test_pull_rows_have_darajas_fields_for_paybill_and_buy_goods(daraja: Daraja) -> None:
    await daraja.register_pull()
    await daraja.pay("1500")
    await daraja.pay("1500.50", reference="CHF060606")
    await daraja.pay("20", command="CustomerBuyGoodsOnline", reference="")
    transactions = await daraja.settled(3)
    rows = await daraja.pull_rows()
    assert [row["transactionId"] for row in rows] == [txn["trans_id"] for txn in transactions]
    assert rows[0] == {
        "transactionId": transactions[0]["trans_id"],
        "trxDate": rows[0]["trxDate"],
        "msisdn": int(MSISDN),
        "sender": "John Doe",
        "transactiontype": "c2b-pay-bill-debit",
        "billreference": "070707070",
        "amount": "1500.0",
        "organizationname": ORGANIZATION,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000\+03:00", rows[0]["trxDate"])
    assert (rows[1]["amount"], rows[1]["billreference"]) == ("1500.5", "CHF060606")
    assert (rows[2]["transactiontype"], rows[2]["amount"]) == ("c2b-buy-goods-debit", "20.0")
    assert [row["trxDate"] for row in rows] == sorted(row["trxDate"] for row in rows)


@pytest.mark.asyncio
async def test_pull_query_pages_by_offset_and_ends_with_1001(daraja: Daraja) -> None:
    status, settings = await daraja.post("/_sim/settings", {"pull_page_size": 100})
    assert (status, settings["pull_page_size"]) == (200, 100)
    await daraja.register_pull()
    for number in range(250):
        await daraja.pay(f"{number + 1}", reference=f"{number:09d}")
    transactions = await daraja.settled(250)

    pages: list[list[dict[str, Any]]] = []
    for offset in (0, 100, 200):
        status, answer = await daraja.pull(offset)
        assert (status, answer["ResponseCode"], answer["ResponseMessage"]) == (
            200,
            "1000",
            "Success",
        )
        assert answer["ResponseRefID"]
        [rows] = answer["Response"]
        pages.append(rows)
    assert [len(rows) for rows in pages] == [100, 100, 50]
    pulled = [row["transactionId"] for rows in pages for row in rows]
    assert pulled == [txn["trans_id"] for txn in transactions]

    status, answer = await daraja.pull(250)
    assert (status, answer["ResponseCode"]) == (200, "1001")
    assert answer["ResponseMessage"] and not answer["Response"]


@pytest.mark.asyncio
async def test_pull_query_keeps_to_its_window_and_answers_1001_when_it_is_empty(
    daraja: Daraja,
) -> None:
    await daraja.register_pull()
    await daraja.pay()
    await daraja.settled(1)
    now = datetime.now(NAIROBI)
    earlier = now - timedelta(hours=47)
    status, answer = await daraja.pull(start=earlier, end=now - timedelta(hours=1))
    assert (status, answer["ResponseCode"]) == (200, "1001")
    assert len(await daraja.pull_rows()) == 1
    status, answer = await daraja.pull(shortcode=OTHER_SHORTCODE)
    assert (status, answer["errorCode"]) == (400, "400.002.02")  # not registered


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (timedelta(hours=-48, minutes=-10), timedelta(0), "more than 48 hours ago"),
        (timedelta(hours=-49), timedelta(hours=-47), "more than 48 hours ago"),
        (timedelta(minutes=-5), timedelta(minutes=-10), "after EndDate"),
    ],
)
async def test_pull_query_refuses_a_window_beyond_48_hours_or_backwards(
    daraja: Daraja, start: timedelta, end: timedelta, message: str
) -> None:
    await daraja.register_pull()
    now = datetime.now(NAIROBI)
    status, answer = await daraja.pull(start=now + start, end=now + end)
    assert (status, answer["errorCode"]) == (400, "400.002.02")
    assert message in answer["errorMessage"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"StartDate": "2026-12-01T08:00:00"}, "StartDate"),
        ({"EndDate": "yesterday"}, "EndDate"),
        ({"OffSetValue": "-1"}, "OffSetValue"),
        ({"OffSetValue": None}, "OffSetValue"),
    ],
)
async def test_pull_query_refuses_unparsable_fields(
    daraja: Daraja, change: dict[str, Any], field: str
) -> None:
    await daraja.register_pull()
    now = datetime.now(NAIROBI)
    body = {
        "ShortCode": SHORTCODE,
        "StartDate": (now - timedelta(hours=1)).strftime(PULL_TIME),
        "EndDate": now.strftime(PULL_TIME),
        "OffSetValue": "0",
        **change,
    }
    status, answer = await daraja.post("/pulltransactions/v1/query", body)
    assert (status, answer["errorCode"]) == (400, "400.002.02")
    assert answer["errorMessage"] == f"Bad Request - Invalid {field}"


# --------------------------------------------------------------------------- on record or not


@pytest.mark.asyncio
async def test_an_undelivered_confirmation_is_still_pulled_and_on_the_statement(
    daraja: Daraja, merchant: Merchant
) -> None:
    await daraja.register_c2b(merchant)
    await daraja.register_pull()
    await daraja.pay("1500")
    await daraja.pay("350", msisdn=UNDELIVERED_MSISDN, reference="090909090")
    delivered, undelivered = await daraja.settled(2)
    await wait_until(lambda: merchant.texts["/c2b/confirmation"], "the delivered confirmation")

    confirmed = [body["TransID"] for body in merchant.bodies("/c2b/confirmation")]
    assert confirmed == [delivered["trans_id"]]
    lost = await daraja.get(
        "/_sim/deliveries", trans_id=undelivered["trans_id"], kind="confirmation"
    )
    assert [(item["outcome"], item["fault"]) for item in lost["items"]] == [
        ("dropped", "magic:drop")
    ]

    receipts = [delivered["trans_id"], undelivered["trans_id"]]
    rows = await daraja.pull_rows()
    assert [row["transactionId"] for row in rows] == receipts
    assert rows[1]["msisdn"] == int(UNDELIVERED_MSISDN)
    statement = await daraja.statement()
    assert [row[0] for row in statement] == receipts[::-1]  # newest first


@pytest.mark.asyncio
async def test_a_payment_refused_by_validation_is_not_on_record(
    daraja: Daraja, merchant: Merchant
) -> None:
    await daraja.register_c2b(merchant)
    await daraja.register_pull()
    assert (await daraja.post("/_sim/validation", {"enabled": True}))[0] == 200
    merchant.validation_answer = {"ResultCode": "C2B00012", "ResultDesc": "Rejected"}
    await daraja.pay()
    [refused] = await daraja.settled(1)
    assert refused["status"] == "rejected"
    status, answer = await daraja.pull()
    assert (status, answer["ResponseCode"]) == (200, "1001")
    assert await daraja.statement() == []
    await daraja.status_query(merchant, refused["trans_id"])
    assert (await result_at(merchant))["ResultCode"] == "SFC_IC0003"


@pytest.mark.asyncio
async def test_a_paid_stk_prompt_is_on_record_for_its_shortcode(
    http: aiohttp.ClientSession, start_daraja: StartSim, merchant: Merchant
) -> None:
    stk_shortcode = "174379"
    daraja = Daraja(http, await start_daraja(stk_auto_seconds=0.05))
    await daraja.login()
    stamp = datetime.now(NAIROBI).strftime("%Y%m%d%H%M%S")
    password = base64.b64encode(f"{stk_shortcode}{SANDBOX_PASSKEY}{stamp}".encode()).decode()
    status, pushed = await daraja.post(
        "/mpesa/stkpush/v1/processrequest",
        {
            "BusinessShortCode": stk_shortcode,
            "Password": password,
            "Timestamp": stamp,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": 2,
            "PartyA": MSISDN,
            "PartyB": stk_shortcode,
            "PhoneNumber": MSISDN,
            "CallBackURL": merchant.url("/stk"),
            "AccountReference": "070707070",
            "TransactionDesc": "Premium",
        },
    )
    assert status == 200, pushed
    await wait_until(lambda: merchant.texts["/stk"], "the STK callback")
    [callback] = merchant.bodies("/stk")
    items = callback["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    receipt = next(item["Value"] for item in items if item["Name"] == "MpesaReceiptNumber")

    await daraja.register_pull(stk_shortcode)
    [row] = await daraja.pull_rows(stk_shortcode)
    assert (row["transactionId"], row["amount"], row["billreference"]) == (
        receipt,
        "2.0",
        "070707070",
    )
    [line] = await daraja.statement(shortcode=stk_shortcode)
    assert (line[0], line[5]) == (receipt, "2.00")


# --------------------------------------------------------------------------- Transaction Status


@pytest.mark.asyncio
async def test_transaction_status_posts_the_payment_to_the_result_url(
    daraja: Daraja, merchant: Merchant
) -> None:
    await daraja.pay("1500")
    [txn] = await daraja.settled(1)
    receipt = txn["trans_id"]
    status, answer = await daraja.status_query(merchant, receipt)
    acknowledged(status, answer)

    result = await result_at(merchant)
    assert result["ResultType"] == 0
    assert (result["ResultCode"], result["ResultDesc"]) == (
        0,
        "The service request is processed successfully.",
    )
    assert result["OriginatorConversationID"] == answer["OriginatorConversationID"]
    assert result["ConversationID"] == answer["ConversationID"]
    assert RECEIPT.fullmatch(result["TransactionID"]) and result["TransactionID"] != receipt
    assert result["ReferenceData"] == {"ReferenceItem": {"Key": "Occasion", "Value": receipt}}
    found = parameters(result)
    assert found["ReceiptNo"] == receipt
    assert found["TransactionStatus"] == "Completed"
    assert found["Amount"] == 1500
    assert found["DebitPartyName"] == f"{MSISDN} - John Doe"
    assert found["CreditPartyName"] == f"{SHORTCODE} - {ORGANIZATION}"
    assert found["ReasonType"] == "Pay Bill Online"
    assert found["DebitAccountType"] == "MMF Account"
    assert found["OriginatorConversationID"] == txn["conversation_id"]
    assert AGENT_CONVERSATION_ID.fullmatch(found["ConversationID"])
    assert "TransactionReason" in found
    for name in ("InitiatedTime", "FinalisedTime"):
        assert isinstance(found[name], int) and STAMP.fullmatch(str(found[name]))
    assert found["InitiatedTime"] <= found["FinalisedTime"]

    [delivery] = (await daraja.get("/_sim/deliveries", kind="result"))["items"]
    assert (delivery["trans_id"], delivery["conversation_id"]) == (
        receipt,
        answer["OriginatorConversationID"],
    )
    assert (delivery["outcome"], delivery["http_status"]) == ("answered", 200)
    assert merchant.texts["/timeouts"] == []


@pytest.mark.asyncio
async def test_a_status_amount_with_cents_is_an_exact_json_number(
    daraja: Daraja, merchant: Merchant
) -> None:
    await daraja.pay("1500.50")
    [txn] = await daraja.settled(1)
    await daraja.status_query(merchant, txn["trans_id"], Occasion="")
    await result_at(merchant)
    [text] = merchant.texts["/results"]
    result = json.loads(text, parse_float=Decimal)["Result"]
    assert parameters(result)["Amount"] == Decimal("1500.50")
    assert '"Value": 1500.50}' in text
    assert result["ReferenceData"] == {"ReferenceItem": {"Key": "Occasion"}}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "change",
    [
        {"SecurityCredential": "wrong password"},
        {"SecurityCredential": "not base64 at all!"},
        {"SecurityCredential": "foreign key"},
        {"Initiator": "someoneelse"},
    ],
)
async def test_a_wrong_initiator_or_credential_gets_2001(
    daraja: Daraja, merchant: Merchant, change: dict[str, str]
) -> None:
    await daraja.pay()
    [txn] = await daraja.settled(1)
    if change.get("SecurityCredential") == "wrong password":
        change = {"SecurityCredential": credential("Safaricom999!*")}
    elif change.get("SecurityCredential") == "foreign key":
        change = {"SecurityCredential": foreign_credential()}
    acknowledged(*await daraja.status_query(merchant, txn["trans_id"], **change))
    result = await result_at(merchant)
    assert (result["ResultCode"], result["ResultDesc"]) == (
        2001,
        "The initiator information is invalid.",
    )
    assert "ResultParameters" not in result
    assert ZEROED_ID.fullmatch(result["TransactionID"])


@pytest.mark.asyncio
async def test_the_queue_timeout_receipt_goes_to_the_queue_timeout_url(
    daraja: Daraja, merchant: Merchant
) -> None:
    status, answer = await daraja.status_query(merchant, QUEUE_TIMEOUT_RECEIPT)
    acknowledged(status, answer)
    result = await result_at(merchant, "/timeouts")
    assert result["ResultCode"] == 26
    assert "timed out" in result["ResultDesc"]
    assert result["OriginatorConversationID"] == answer["OriginatorConversationID"]
    assert "ResultParameters" not in result
    [delivery] = (await daraja.get("/_sim/deliveries", kind="queue_timeout"))["items"]
    assert delivery["url"] == merchant.url("/timeouts")
    assert merchant.texts["/results"] == []


@pytest.mark.asyncio
async def test_an_unknown_receipt_or_another_shortcodes_gets_sfc_ic0003(
    daraja: Daraja, merchant: Merchant
) -> None:
    await daraja.pay(shortcode=OTHER_SHORTCODE)
    [elsewhere] = await daraja.settled(1)
    await daraja.status_query(merchant, "NLJ7RT61SV")
    await daraja.status_query(merchant, elsewhere["trans_id"])  # PartyA is SHORTCODE
    await wait_until(lambda: len(merchant.texts["/results"]) == 2, "two results")
    for body in merchant.bodies("/results"):
        result = body["Result"]
        assert (result["ResultType"], result["ResultCode"]) == (0, "SFC_IC0003")
        assert result["ResultDesc"]
        assert "ResultParameters" not in result
        assert ZEROED_ID.fullmatch(result["TransactionID"])


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ResultURL": None}, "ResultURL"),
        ({"QueueTimeOutURL": "ftp://merchant.example/timeouts"}, "QueueTimeOutURL"),
        ({"CommandID": "AccountBalance"}, "CommandID"),
        ({"IdentifierType": "1"}, "IdentifierType"),
        ({"PartyA": "shortcode"}, "PartyA"),
        ({"TransactionID": ""}, "TransactionID"),
        ({"Remarks": "x" * 101}, "Remarks"),
        ({"Initiator": ""}, "Initiator"),
    ],
)
async def test_transaction_status_refuses_a_malformed_request_and_sends_nothing(
    daraja: Daraja, merchant: Merchant, change: dict[str, Any], field: str
) -> None:
    status, answer = await daraja.status_query(merchant, "NLJ7RT61SV", **change)
    assert (status, answer["errorCode"]) == (400, "400.002.02")
    assert answer["errorMessage"] == f"Bad Request - Invalid {field}"
    assert (await daraja.get("/_sim/deliveries"))["items"] == []


@pytest.mark.asyncio
async def test_the_security_credential_is_redacted_in_the_request_log(
    daraja: Daraja, merchant: Merchant
) -> None:
    await daraja.status_query(merchant, QUEUE_TIMEOUT_RECEIPT)
    [logged] = [
        item
        for item in (await daraja.get("/_sim/requests"))["items"]
        if item["path"] == "/mpesa/transactionstatus/v1/query"
    ]
    assert logged["body"]["SecurityCredential"] == "[redacted]"


@pytest.mark.asyncio
async def test_a_result_delivery_takes_the_armed_fault_of_its_kind(
    daraja: Daraja, merchant: Merchant
) -> None:
    await daraja.pay()
    [txn] = await daraja.settled(1)
    assert (await daraja.post("/_sim/faults", {"target": "result", "kind": "duplicate"}))[0] == 200
    await daraja.status_query(merchant, txn["trans_id"])
    await wait_until(lambda: len(merchant.texts["/results"]) == 2, "the result twice")
    first, second = merchant.texts["/results"]
    assert first == second


@pytest.mark.asyncio
async def test_an_endpoint_fault_applies_to_the_initiator_apis(
    daraja: Daraja, merchant: Merchant
) -> None:
    fault = {"target": "transactionstatus", "kind": "http_500"}
    assert (await daraja.post("/_sim/faults", fault))[0] == 200
    status, answer = await daraja.status_query(merchant, QUEUE_TIMEOUT_RECEIPT)
    assert (status, answer["errorCode"]) == (500, "500.001.1001")
    assert (await daraja.get("/_sim/deliveries"))["items"] == []


# --------------------------------------------------------------------------- Account Balance


@pytest.mark.asyncio
async def test_the_utility_account_holds_what_the_shortcode_was_credited(
    daraja: Daraja, merchant: Merchant
) -> None:
    await daraja.pay("1500")
    await daraja.pay("350.50", msisdn=UNDELIVERED_MSISDN)
    await daraja.pay("0.50")
    await daraja.pay("99", shortcode=OTHER_SHORTCODE)
    await daraja.settled(4)
    status, answer = await daraja.balance_query(merchant)
    acknowledged(status, answer)
    result = await result_at(merchant)
    assert (result["ResultCode"], result["ResultType"]) == (0, 0)
    assert RECEIPT.fullmatch(result["TransactionID"])
    found = parameters(result)
    assert found["AccountBalance"] == (
        "Working Account|KES|700000.00|700000.00|0.00|0.00"
        "&Utility Account|KES|1851.00|1851.00|0.00|0.00"
        "&Charges Paid Account|KES|-1540.00|-1540.00|0.00|0.00"
    )
    assert isinstance(found["BOCompletedTime"], int)
    assert STAMP.fullmatch(str(found["BOCompletedTime"]))
    assert result["ReferenceData"] == {
        "ReferenceItem": {"Key": "QueueTimeoutURL", "Value": merchant.url("/timeouts")}
    }


@pytest.mark.asyncio
async def test_account_balance_with_a_wrong_credential_gets_2001(
    daraja: Daraja, merchant: Merchant
) -> None:
    acknowledged(*await daraja.balance_query(merchant, SecurityCredential=credential("nope")))
    result = await result_at(merchant)
    assert result["ResultCode"] == 2001
    assert "ResultParameters" not in result


@pytest.mark.asyncio
async def test_account_balance_refuses_a_wrong_command_id(
    daraja: Daraja, merchant: Merchant
) -> None:
    status, answer = await daraja.balance_query(merchant, CommandID="TransactionStatusQuery")
    assert (status, answer["errorMessage"]) == (400, "Bad Request - Invalid CommandID")


@pytest.mark.asyncio
async def test_the_initiator_and_result_delay_are_settings(
    http: aiohttp.ClientSession, start_daraja: StartSim, merchant: Merchant
) -> None:
    daraja = Daraja(http, await start_daraja(initiator="apiop", initiator_password="s3cret!"))
    await daraja.login()
    settings = await daraja.get("/_sim/settings")
    assert (settings["pull_page_size"], settings["result_delay_seconds"]) == (1000, 0.2)
    status, changed = await daraja.post("/_sim/settings", {"result_delay_seconds": 0})
    assert (status, changed["result_delay_seconds"]) == (200, 0)
    for bad in ({"pull_page_size": 0}, {"pull_page_size": 1.5}, {"result_delay_seconds": -1}):
        assert (await daraja.post("/_sim/settings", bad))[0] == 400
    await daraja.balance_query(
        merchant, Initiator="apiop", SecurityCredential=credential("s3cret!")
    )
    assert (await result_at(merchant))["ResultCode"] == 0


# --------------------------------------------------------------------------- statement


@pytest.mark.asyncio
async def test_the_statement_has_the_portals_columns_and_a_running_balance(
    daraja: Daraja, merchant: Merchant
) -> None:
    before = datetime.now(NAIROBI).strftime("%Y-%m-%d")
    await daraja.pay("1500", reference="070707070")
    await daraja.pay("350", msisdn=UNDELIVERED_MSISDN, reference="090909090")
    await daraja.pay("99", shortcode=OTHER_SHORTCODE)
    first, second, _ = await daraja.settled(3)
    after = datetime.now(NAIROBI).strftime("%Y-%m-%d")

    newest, oldest = await daraja.statement(shortcode=SHORTCODE, **{"from": before, "to": after})
    assert oldest[0] == first["trans_id"]
    assert oldest[3] == f"Pay Bill from {MSISDN} - John Doe Acc. 070707070"
    assert oldest[4:] == [
        "Completed",
        "1500.00",
        "",
        "1500.00",
        "true",
        "Pay Bill Online",
        f"{MSISDN} - John Doe",
        "",
        "070707070",
    ]
    for row in (newest, oldest):
        for moment in row[1:3]:
            assert before <= datetime.strptime(moment, PULL_TIME).strftime("%Y-%m-%d") <= after
    assert oldest[2] <= oldest[1]
    assert (newest[0], newest[5], newest[7]) == (second["trans_id"], "350.00", "1850.00")
    assert newest[10] == f"{UNDELIVERED_MSISDN} - John Doe"

    assert len(await daraja.statement()) == 3  # every shortcode
    tomorrow = (datetime.now(NAIROBI) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert await daraja.statement(**{"from": f"{tomorrow} 00:00:00"}) == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "params",
    [
        {"from": "01/12/2026"},
        {"to": "2026-12-01T10:00"},
        {"from": "2026-12-02", "to": "2026-12-01"},
    ],
)
async def test_the_statement_refuses_unreadable_dates(
    daraja: Daraja, params: dict[str, str]
) -> None:
    async with daraja.http.get(f"{daraja.base_url}/_sim/statement", params=params) as response:
        assert response.status == 400
        assert (await response.json())["error"]


@pytest.mark.asyncio
async def test_reset_forgets_the_payments_and_pull_registrations(daraja: Daraja) -> None:
    await daraja.register_pull()
    await daraja.pay()
    await daraja.settled(1)
    assert (await daraja.post("/_sim/settings", {"pull_page_size": 5}))[0] == 200
    assert (await daraja.post("/_sim/reset", {}))[0] == 200
    await daraja.login()
    assert (await daraja.get("/_sim/pull"))["items"] == []
    assert await daraja.statement() == []
    assert (await daraja.get("/_sim/settings"))["pull_page_size"] == 1000
    assert (await daraja.register_pull())["ResponseStatus"] == "1000"
