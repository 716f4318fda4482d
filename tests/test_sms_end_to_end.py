"""Payer receipts end to end: the real gateway, the SMS simulator (Africa's Talking's API
and its delivery reports), and the Daraja and Qmoney simulators, over real sockets.

The gateway's job loops are off: each test runs send-notifications itself and moves the
gateway's clock past a backoff or a hold when it needs to."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio

from server.inbox.repository import INBOX
from server.notifications.documents import NOTICE, NOTICE_STATE
from server.notifications.repository import SMS_OUTBOX
from server.startup.listen import listen
from server.startup.services import PROVIDER_CALLS
from simulators.daraja import SANDBOX_PASSKEY, DarajaSimSettings, DarajaSimulator
from simulators.qmoney import QmoneySimSettings, QmoneySimulator
from simulators.sms import (
    SANDBOX_API_KEY,
    SANDBOX_SENDER_ID,
    SANDBOX_USERNAME,
    SmsSimSettings,
    SmsSimulator,
)

from support import (
    BASIC_GMD,
    BASIC_KES,
    PREMIUMS,
    TRANSACTIONS,
    callback_body,
    deliver_callback,
    headers_for_role,
    idle_policy,
    make_settings,
    psp_user,
    request_json,
    sim_control,
    wait_until,
)
from systems import WALLET, ManualClock

REPORT_SECRET = "test-sms-delivery-reports"
PAYER = "254708374149"
MAGIC = "+254799000"


class Sms:
    """The gateway wired to the SMS, Daraja and Qmoney simulators, with an operator."""

    def __init__(self, http, gateway, sms, daraja, qmoney, clock, store, headers) -> None:
        self.http, self.gateway, self.store = http, gateway, store
        self.sms, self.daraja, self.qmoney = sms, daraja, qmoney
        self.clock, self.headers = clock, headers
        self.services = gateway.services
        self.report_url = f"{gateway.url}/api/v1/sms/delivery-reports/{REPORT_SECRET}"

    async def send(self) -> dict[str, int]:
        """One run of send-notifications; its summary."""
        report = await self.gateway.jobs.run_now("send-notifications")
        assert report.outcome == "ok", report
        return dict(report.summary)

    def advance(self, seconds: float) -> None:
        self.clock.offset += timedelta(seconds=seconds)

    async def control(self, sim, method: str, path: str, body: Any = None) -> Any:
        return await sim_control(self.http, sim.base_url, method, path, body)

    async def outbox(self, number: str | None = None) -> list[dict]:
        path = "outbox" if number is None else f"outbox/{number}"
        return (await self.control(self.sms, "GET", path))["items"]

    async def fault(self, kind: str, times: int = 1, target: str = "messaging") -> None:
        await self.control(
            self.sms, "POST", "faults", {"target": target, "kind": kind, "times": times}
        )

    async def messages(self) -> list[dict]:
        return await self.store.collection(SMS_OUTBOX).find({}).to_list(None)

    async def only_message(self) -> dict:
        [message] = await self.messages()
        return message

    async def reaches(self, status: str) -> dict:
        """The only message, once a delivery report has taken it to `status`."""

        async def reached() -> dict | None:
            message = await self.only_message()
            return message if message["status"] == status else None

        return await wait_until(reached, f"the message to be {status}")

    async def api(self, method: str, path: str, body: Any = None, **kwargs: Any):
        return await request_json(
            self.http, method, f"{self.gateway.url}{path}", body, headers=self.headers, **kwargs
        )

    async def receipt_text(self, policy_uuid: str, receipt: str) -> str:
        policy = await self.services.policies.get(policy_uuid)
        amount = {"KES": "1500.00", "GMD": "500.00"}[policy["currency"]]
        return (
            f"Premium of {policy['currency']} {amount} received for Basic cover, insuree "
            f"{policy['chf_id']}. Cover active from "
            f"{policy['effective_date'].date().isoformat()}. Ref {receipt}."
        )

    # --- the channels

    async def paybill(self, trans_id: str, msisdn: str = PAYER, account: str = "070707070"):
        body = callback_body(
            TransID=trans_id, TransAmount="1500.00", MSISDN=msisdn, BillRefNumber=account
        )
        status, answer = await deliver_callback(self.http, self.gateway, "confirmation", body)
        assert (status, answer["ResultCode"]) == (200, 0)
        return await self.services.c2b.get_payment(trans_id)


@pytest_asyncio.fixture
async def sms(http, start_gateway_with, store) -> AsyncIterator[Sms]:
    sms_sim = SmsSimulator(SmsSimSettings(delivery_delay_seconds=0.05))
    daraja = DarajaSimulator(
        DarajaSimSettings(local_mode=True, validation_timeout=1.0, stk_auto_seconds=None)
    )
    qmoney = QmoneySimulator(QmoneySimSettings(token_expiry="3600"))
    started = []
    try:
        for simulator in (sms_sim, daraja, qmoney):
            await simulator.start()
            started.append(simulator)
        sockets = listen("127.0.0.1", 0)
        public_url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        settings = make_settings(
            server={"public_url": public_url},
            daraja={
                "base_url": daraja.base_url,
                "passkey": SANDBOX_PASSKEY,
                "timeout_seconds": 2.0,
            },
            qmoney={"base_url": qmoney.base_url, "timeout_seconds": 2.0},
            notifications={
                "kind": "africastalking",
                "username": SANDBOX_USERNAME,
                "api_key": SANDBOX_API_KEY,
                "sender_id": SANDBOX_SENDER_ID,
                "base_url": sms_sim.base_url,
                "timeout_seconds": 2.0,
                "delivery_report_secret": REPORT_SECRET,
            },
            jobs={"enabled": False},
        )
        clock = ManualClock()
        gateway = await start_gateway_with(settings, sockets=sockets, clock=clock)
        headers = await headers_for_role(http, gateway, "olga", "operator")
        world = Sms(http, gateway, sms_sim, daraja, qmoney, clock, store, headers)
        await world.control(sms_sim, "POST", "settings", {"delivery_report_url": world.report_url})
        yield world
    finally:
        for simulator in reversed(started):
            await simulator.stop()


# --- every channel: exactly one SMS with the right text -----------------------------------


@pytest.mark.asyncio
async def test_a_settled_paybill_payment_sends_one_receipt_to_the_payer(sms: Sms) -> None:
    policy = await idle_policy(sms.services, "070707070", BASIC_KES, phone="0711000001")
    payment = await sms.paybill("RKL51ZDR4F")
    assert payment["status"] == "settled"
    # The premium carries the message until the job copies it into the outbox and sends it.
    [premium] = await sms.store.collection(PREMIUMS).find({}).to_list(None)
    assert premium[NOTICE]["event"] == "premium_paid" and premium[NOTICE_STATE] == "pending"
    assert await sms.messages() == [] and await sms.outbox() == []
    summary = await sms.send()
    assert (summary["recorded"], summary["sent"]) == (1, 1)
    premium = await sms.store.collection(PREMIUMS).find_one({"_id": premium["_id"]})
    assert NOTICE not in premium and premium[NOTICE_STATE] == "copied"
    [sent] = await sms.outbox()
    assert sent["number"] == "+254708374149" and sent["from"] == SANDBOX_SENDER_ID
    assert sent["message"] == await sms.receipt_text(policy["_id"], "RKL51ZDR4F")
    assert (sent["encoding"], sent["parts"]) == ("GSM-7", 1)
    message = await sms.reaches("delivered")
    assert message["message_id"] == sent["messageId"] and message["cost"] == "KES 0.8000"
    assert (await sms.send())["sent"] == 0
    assert len(await sms.outbox()) == 1 and len(await sms.messages()) == 1


@pytest.mark.asyncio
async def test_a_qmoney_debit_sends_one_receipt_to_the_insurees_phone(sms: Sms) -> None:
    services = sms.services
    psp = await services.psps.create(
        {
            "name": "Qmoney",
            "kind": "qmoney",
            "account": "14001502",
            "currency": "GMD",
            "pin": "1234",
            "is_external_api": False,
            "username": None,
            "active": True,
        }
    )
    policy = await idle_policy(services, "060606060", BASIC_GMD, wallet=WALLET, phone="7712345")
    status, started = await sms.api(
        "POST",
        "/api/v1/transactions",
        {"policy_uuid": policy["_id"], "psp_uuid": psp["_id"], "amount": "500.00"},
    )
    assert status == 201, started
    otp = (await sms.control(sms.qmoney, "GET", f"otp/{WALLET}"))["otp"]
    status, done = await sms.api(
        "POST", f"/api/v1/transactions/{started['uuid']}/process", {"otp": otp}
    )
    assert done["status"] == "succeeded", done
    assert (await sms.send())["sent"] == 1
    [sent] = await sms.outbox()
    assert sent["number"] == "+2207712345"  # a Gambian local number, completed
    transaction = await sms.store.collection(TRANSACTIONS).find_one({"_id": started["uuid"]})
    receipt = transaction.get("provider_confirmation") or transaction["provider_reference"]
    assert sent["message"] == await sms.receipt_text(policy["_id"], receipt)
    await sms.reaches("delivered")


@pytest.mark.asyncio
async def test_an_mpesa_express_debit_sends_one_receipt_to_the_phone_prompted(sms: Sms) -> None:
    policy = await idle_policy(sms.services, "070707070", BASIC_KES, phone="0711000003")
    status, started = await sms.api(
        "POST",
        "/api/v1/stk-pushes",
        {"policy_uuid": policy["_id"], "amount": "1500.00", "phone": "0708 374 149"},
    )
    assert status == 201, started
    decided = await sms.control(
        sms.daraja, "POST", f"stk/{started['provider_reference']}", {"action": "accept"}
    )

    async def succeeded() -> bool:
        _, current = await sms.api("GET", f"/api/v1/transactions/{started['uuid']}")
        return current["status"] == "succeeded"

    await wait_until(succeeded, "the M-Pesa Express debit to succeed")
    assert (await sms.send())["sent"] == 1
    [sent] = await sms.outbox()
    assert sent["number"] == "+254708374149"
    assert sent["message"] == await sms.receipt_text(policy["_id"], decided["MpesaReceiptNumber"])
    assert await sms.outbox("+254711000003") == []


@pytest.mark.asyncio
async def test_a_provider_payment_sends_one_receipt_to_the_insurees_phone(sms: Sms, http) -> None:
    policy = await idle_policy(sms.services, "060606060", BASIC_GMD, phone="+220 700 0001")
    provider = await psp_user(http, sms.gateway)
    status, paid = await request_json(
        http,
        "POST",
        f"{sms.gateway.url}/api/v1/payments",
        {
            "chf_id": "060606060",
            "amount": "500.00",
            "psp_transaction_id": "AFR-20260101-1",
            "policy": {
                "token": policy["payment_token"],
                "product_code": "BASIC-GMD",
                "product_name": "Basic cover",
            },
        },
        headers=provider.headers,
    )
    assert status == 201, paid
    assert (await sms.send())["sent"] == 1
    [sent] = await sms.outbox()
    assert sent["number"] == "+2207000001"
    assert sent["message"] == await sms.receipt_text(policy["_id"], "AFR-20260101-1")


# --- what is retried, and what is not sent twice ------------------------------------------


@pytest.mark.asyncio
async def test_a_provider_500_then_success_sends_one_sms(sms: Sms) -> None:
    await idle_policy(sms.services, "070707070", BASIC_KES)
    await sms.paybill("RKL51ZDR4F")
    await sms.fault("http_500")
    assert (await sms.send())["retried"] == 1
    assert await sms.outbox() == []
    message = await sms.only_message()
    assert (message["status"], message["failure"]["code"]) == ("pending", "unavailable")
    sms.advance(31)
    assert (await sms.send())["sent"] == 1
    assert len(await sms.outbox(PAYER)) == 1
    assert (await sms.reaches("delivered"))["attempts"] == 2


@pytest.mark.asyncio
async def test_an_answer_lost_after_acceptance_is_not_sent_twice(sms: Sms) -> None:
    await idle_policy(sms.services, "070707070", BASIC_KES)
    await sms.paybill("RKL51ZDR4F")
    await sms.fault("drop_after")
    assert (await sms.send())["unknown"] == 1
    [sent] = await sms.outbox()  # the provider did send it
    message = await sms.reaches("delivered")  # its delivery report adopted the message
    assert message["message_id"] == sent["messageId"]
    sms.advance(3600)  # long past the hold
    assert (await sms.send())["sent"] == 0
    assert len(await sms.outbox()) == 1


@pytest.mark.asyncio
async def test_without_a_report_a_lost_answer_is_sent_again_after_the_hold(sms: Sms) -> None:
    """The documented trade-off: a second SMS rather than none."""
    await idle_policy(sms.services, "070707070", BASIC_KES)
    await sms.paybill("RKL51ZDR4F")
    await sms.control(sms.sms, "POST", "settings", {"delivery_report_url": None})
    await sms.fault("drop_after")
    assert (await sms.send())["unknown"] == 1
    sms.advance(600)
    assert (await sms.send())["sent"] == 0
    sms.advance(301)
    assert (await sms.send())["sent"] == 1
    assert len(await sms.outbox()) == 2
    assert (await sms.only_message())["status"] == "sent"


@pytest.mark.asyncio
async def test_a_permanent_refusal_fails_and_is_never_retried(sms: Sms) -> None:
    await idle_policy(sms.services, "070707070", BASIC_KES)
    await sms.paybill("RKL51ZDR4F", msisdn=f"{MAGIC}403")
    assert (await sms.send())["failed"] == 1
    sms.advance(86400)
    assert (await sms.send())["failed"] == 0
    message = await sms.only_message()
    assert (message["status"], message["attempts"]) == ("failed", 1)
    assert message["failure"] == {"code": "403", "reason": "InvalidPhoneNumber"}
    requests = (await sms.control(sms.sms, "GET", "requests"))["items"]
    assert len(requests) == 1
    status, summary = await sms.api("GET", "/api/v1/sms/summary")
    assert status == 200 and summary["failing"][0]["failure"]["reason"] == "InvalidPhoneNumber"


@pytest.mark.asyncio
async def test_an_opted_out_insuree_gets_no_sms(sms: Sms, headers_for) -> None:
    await idle_policy(sms.services, "070707070", BASIC_KES, phone="0711000001")
    admin = await headers_for("root", "admin")
    status, insuree = await request_json(
        sms.http,
        "PATCH",
        f"{sms.gateway.url}/api/v1/insurees/070707070",
        {"sms_opt_out": True},
        headers=admin,
    )
    assert status == 200 and insuree["sms_opt_out"] is True
    payment = await sms.paybill("RKL51ZDR4F")
    assert payment["status"] == "settled"
    assert (await sms.send())["opted_out"] == 1
    assert (await sms.only_message())["status"] == "opted_out"
    assert await sms.outbox() == []


@pytest.mark.asyncio
async def test_a_masked_msisdn_falls_back_to_the_insurees_phone(sms: Sms) -> None:
    await idle_policy(sms.services, "070707070", BASIC_KES, phone="0711 000 002")
    await sms.paybill("RKL51ZDR4F", msisdn="2547 ***** 149")
    assert (await sms.send())["sent"] == 1
    assert [item["number"] for item in await sms.outbox()] == ["+254711000002"]


@pytest.mark.asyncio
async def test_an_unmatched_payment_tells_the_payer_it_arrived(sms: Sms) -> None:
    payment = await sms.paybill("RKL51ZDR4F", account="123456")
    assert payment["status"] == "unmatched"
    assert payment[NOTICE]["event"] == "payment_received" and payment[NOTICE_STATE] == "pending"
    assert await sms.messages() == []
    assert (await sms.send())["sent"] == 1
    payment = await sms.services.c2b.get_payment("RKL51ZDR4F")
    assert NOTICE not in payment and payment[NOTICE_STATE] == "copied"
    [sent] = await sms.outbox(PAYER)
    assert sent["message"].startswith("Payment of KES 1500.00 received for account 123456")


# --- delivery reports -----------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("suffix", "status", "failure"),
    [
        ("600", "failed", {"code": "Failed", "reason": "DeliveryFailure"}),
        ("601", "failed", {"code": "Rejected", "reason": "UserInBlackList"}),
        ("602", "delivered", None),  # Buffered, then Success
    ],
)
async def test_delivery_reports_update_the_status(sms: Sms, suffix, status, failure) -> None:
    await idle_policy(sms.services, "070707070", BASIC_KES)
    await sms.paybill("RKL51ZDR4F", msisdn=f"{MAGIC}{suffix}")
    assert (await sms.send())["sent"] == 1
    message = await sms.reaches(status)
    assert message["failure"] == failure
    reports = [entry["note"] for entry in message["history"] if "report" in entry["note"]]
    assert len(reports) == (2 if suffix == "602" else 1)
    entries = await sms.store.collection(INBOX).find({"source": "africastalking"}).to_list(None)
    assert {entry["status"] for entry in entries} == {"processed"}


@pytest.mark.asyncio
async def test_the_report_route_keeps_what_it_cannot_apply(sms: Sms) -> None:
    form = {"id": "ATXid_nobody", "status": "Success", "phoneNumber": "+254700000001"}
    async with sms.http.post(sms.report_url, data=form) as answer:
        assert answer.status == 200 and await answer.json() == {"status": "ok"}
    async with sms.http.post(sms.report_url, data={"status": "Success"}) as answer:
        assert answer.status == 200
    wrong = sms.report_url.replace(REPORT_SECRET, "wrong-secret-of-some-length")
    async with sms.http.post(wrong, data=form) as answer:
        assert answer.status == 404
    entries = await sms.store.collection(INBOX).find({"source": "africastalking"}).to_list(None)
    assert sorted(entry["status"] for entry in entries) == ["needs_review", "needs_review"]
    assert {entry["kind"] for entry in entries} == {"delivery_report"}


# --- the payment path never waits for the SMS provider ----------------------------------------


@pytest.mark.asyncio
async def test_payments_settle_while_the_sms_provider_is_down(sms: Sms) -> None:
    await sms.fault("http_500", times=0)  # every call, until cleared
    for number, trans_id in (("070707070", "RKL51ZDR4A"), ("080808080", "RKL51ZDR4B")):
        await idle_policy(sms.services, number, BASIC_KES)
        payment = await sms.paybill(trans_id, account=number)
        assert payment["status"] == "settled"
    assert await sms.store.collection(PREMIUMS).count_documents({}) == 2
    summary = await sms.send()
    assert (summary["retried"], summary["sent"]) == (1, 0)  # the run stopped at the first
    assert {message["status"] for message in await sms.messages()} == {"pending"}
    await sms.control(sms.sms, "DELETE", "faults")
    sms.advance(31)
    assert (await sms.send())["sent"] == 2
    assert len(await sms.outbox(PAYER)) == 2


# --- secrets, requests, the operators' view ----------------------------------------------------


@pytest.mark.asyncio
async def test_the_request_is_africas_talkings_and_the_key_is_never_kept(
    sms: Sms, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await idle_policy(sms.services, "070707070", BASIC_KES)
    await sms.paybill("RKL51ZDR4F")
    await sms.fault("http_500")
    await sms.send()
    sms.advance(31)
    await sms.send()
    requests = (await sms.control(sms.sms, "GET", "requests"))["items"]
    assert [item["path"] for item in requests] == ["/version1/messaging"] * 2
    form = requests[-1]["body"]
    assert (form["username"], form["to"], form["from"]) == (
        SANDBOX_USERNAME,
        "+254708374149",
        SANDBOX_SENDER_ID,
    )
    assert requests[-1]["headers"]["Accept"] == "application/json"

    async def logged() -> list[dict]:
        calls = await sms.store.collection(PROVIDER_CALLS).find({}).to_list(None)
        return calls if len(calls) == 2 else []

    calls = await wait_until(logged, "both calls in the call log")
    assert [(c["provider"], c["endpoint"], c["outcome"]) for c in calls] == [
        ("africastalking", "messaging", "unavailable"),
        ("africastalking", "messaging", "ok"),
    ]
    assert SANDBOX_API_KEY not in repr(calls)
    assert SANDBOX_API_KEY not in caplog.text


@pytest.mark.asyncio
async def test_operators_list_the_messages_and_their_counts_per_day(sms: Sms) -> None:
    await idle_policy(sms.services, "070707070", BASIC_KES)
    await sms.paybill("RKL51ZDR4F")
    await sms.send()
    await sms.reaches("delivered")
    status, page = await sms.api("GET", "/api/v1/sms/messages", params={"status": "delivered"})
    assert status == 200 and page["total"] == 1
    [item] = page["items"]
    assert (item["event"], item["receipt"], item["recipient"]) == (
        "premium_paid",
        "RKL51ZDR4F",
        "+254708374149",
    )
    assert item["amount"] == "1500.00" and item["parts"] == 1
    status, page = await sms.api("GET", "/api/v1/sms/messages", params={"status": "failed"})
    assert page["total"] == 0
    status, summary = await sms.api("GET", "/api/v1/sms/summary", params={"days": "2"})
    assert status == 200 and len(summary["days"]) == 2
    assert (summary["days"][-1]["delivered"], summary["days"][-1]["total"]) == (1, 1)
    status, _ = await request_json(sms.http, "GET", f"{sms.gateway.url}/api/v1/sms/messages")
    assert status == 401
