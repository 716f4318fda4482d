"""M-Pesa Express end to end: the real gateway and the Daraja simulator over real
sockets. The simulator's payers wait for the control API (`POST /_sim/stk/<id>`)
unless a test lets them answer by themselves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from server.kernel.clock import Clock
from server.mpesa.client import DarajaClient
from server.mpesa.registration import register_callback_urls
from server.startup.listen import listen
from simulators.daraja import SANDBOX_PASSKEY, DarajaSimSettings, DarajaSimulator

from support import (
    BASIC_KES,
    CALLBACK_SECRET,
    INBOX,
    PAYMENTS,
    PREMIUMS,
    TRANSACTIONS,
    headers_for_role,
    idle_policy,
    make_settings,
    request_json,
    sim_control,
    wait_until,
)

PHONE = "254708374149"
STK_SHORTCODE = "600984"


class Stk:
    """A gateway wired to a Daraja simulator, with an operator."""

    def __init__(self, http, gateway, sim, settings, headers, store) -> None:
        self.http, self.gateway, self.sim = http, gateway, sim
        self.settings, self.headers, self.store = settings, headers, store
        self.services = gateway.services

    async def policy(self, chf_id: str = "070707070", phone: str = "0708374149") -> dict:
        return await idle_policy(self.services, chf_id, BASIC_KES, phone=phone)

    async def api(self, method: str, path: str, body=None) -> tuple[int, Any]:
        return await request_json(
            self.http, method, f"{self.gateway.url}{path}", body, headers=self.headers
        )

    async def push(
        self, policy: dict, phone: str | None = None, amount: str = "1500.00"
    ) -> tuple[int, Any]:
        body = {"policy_uuid": policy["_id"], "amount": amount}
        if phone is not None:
            body["phone"] = phone
        return await self.api("POST", "/api/v1/stk-pushes", body)

    async def control(self, method: str, path: str, body=None) -> Any:
        return await sim_control(self.http, self.sim.base_url, method, path, body)

    async def decide(self, started: dict, action: str) -> dict:
        return await self.control(
            "POST", f"stk/{started['provider_reference']}", {"action": action}
        )

    async def prompt(self, checkout_id: str) -> dict:
        return await self.control("GET", f"stk/{checkout_id}")

    async def transaction(self, uuid: str) -> dict:
        status, body = await self.api("GET", f"/api/v1/transactions/{uuid}")
        assert status == 200, body
        return body

    async def settles_to(self, started: dict, status: str) -> dict:
        async def reached() -> dict | None:
            current = await self.transaction(started["uuid"])
            return current if current["status"] == status else None

        return await wait_until(reached, f"transaction {started['uuid']} to be {status}")

    async def deliveries(self, checkout_id: str, count: int) -> list[dict]:
        """The simulator's deliveries of one prompt once `count` exist and all finished."""

        async def finished() -> list[dict] | None:
            items = (await self.control("GET", f"deliveries?checkout_request_id={checkout_id}"))[
                "items"
            ]
            done = len(items) == count and all(item.get("finished_at") for item in items)
            return items if done else None

        return await wait_until(finished, f"{count} finished deliveries of {checkout_id}")

    async def inbox(self) -> list[dict]:
        return await self.store.collection(INBOX).find({"source": "daraja_stk"}).to_list(None)

    async def premiums(self) -> list[dict]:
        return await self.store.collection(PREMIUMS).find({}).to_list(None)

    async def register_c2b(self) -> None:
        client = DarajaClient(self.http, self.settings.daraja, Clock())
        await register_callback_urls(
            self.settings.server.public_url, self.settings.daraja, self.settings.c2b, client
        )

    async def callback(self, body: dict) -> tuple[int, Any]:
        url = f"{self.gateway.url}/api/v1/stk/callback/{CALLBACK_SECRET}"
        return await request_json(self.http, "POST", url, body)


@pytest_asyncio.fixture
async def stk(http, start_gateway_with, store) -> AsyncIterator[Stk]:
    sim = DarajaSimulator(
        DarajaSimSettings(local_mode=True, validation_timeout=1.0, stk_auto_seconds=None)
    )
    await sim.start()
    try:
        yield await _system(http, start_gateway_with, store, sim)
    finally:
        await sim.stop()


async def _system(http, start_gateway_with, store, sim: DarajaSimulator) -> Stk:
    sockets = listen("127.0.0.1", 0)
    public_url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    settings = make_settings(
        server={"public_url": public_url},
        daraja={
            "base_url": sim.base_url,
            "passkey": SANDBOX_PASSKEY,
            "timeout_seconds": 2.0,
            "stk_status_checks_seconds": ("1", "2", "3"),
        },
        jobs={"enabled": False},
    )
    gateway = await start_gateway_with(settings, sockets=sockets)
    headers = await headers_for_role(http, gateway, "olga", "operator")
    return Stk(http, gateway, sim, settings, headers, store)


# --- the prompt and its outcomes ----------------------------------------------


@pytest.mark.asyncio
async def test_a_paid_prompt_succeeds_settles_and_keeps_the_receipt(stk: Stk) -> None:
    policy = await stk.policy()
    status, started = await stk.push(policy)
    assert status == 201, started
    assert (started["channel"], started["status"]) == ("mpesa_stk", "prompt_sent")
    assert (started["amount"], started["currency"]) == ("1500.00", "KES")
    assert started["policy_uuid"] == policy["_id"] and started["created_at"]
    assert started["phone"] == PHONE and started["psp_uuid"] is None
    prompt = await stk.prompt(started["provider_reference"])
    assert prompt["Amount"] == 1500 and prompt["PhoneNumber"] == PHONE
    assert (prompt["BusinessShortCode"], prompt["PartyB"]) == (STK_SHORTCODE, STK_SHORTCODE)
    assert prompt["AccountReference"] == "070707070"
    assert prompt["TransactionDesc"] == "Premium"
    assert prompt["TransactionType"] == "CustomerPayBillOnline"
    assert prompt["CallBackURL"] == (
        f"{stk.settings.server.public_url}/api/v1/stk/callback/{CALLBACK_SECRET}"
    )
    decided = await stk.decide(started, "accept")
    done = await stk.settles_to(started, "succeeded")
    assert done["mpesa_receipt"] == decided["MpesaReceiptNumber"]
    assert done["settlement"]["status"] == "settled"
    assert [step["to"] for step in done["history"]] == ["initiated", "prompt_sent", "succeeded"]
    [premium] = await stk.premiums()
    assert premium["transaction_uuid"] == started["uuid"] and premium["amount"] == 150000
    assert (await stk.services.policies.get(policy["_id"]))["status"] == 2
    [entry] = await stk.inbox()
    assert (entry["kind"], entry["status"]) == ("stk_result", "processed")
    assert entry["trans_id"] == decided["MpesaReceiptNumber"]


@pytest.mark.asyncio
async def test_the_phone_is_normalised_and_defaults_to_the_insurees(stk: Stk) -> None:
    first = await stk.policy("1", phone="+254 711 000 001")
    _, started = await stk.push(first)
    assert started["phone"] == "254711000001"
    second = await stk.policy("2", phone="")
    status, body = await stk.push(second)
    assert status == 400 and body["error"]["code"] == "no_phone"
    status, started = await stk.push(second, phone="0110 000 002")
    assert status == 201 and started["phone"] == "254110000002"
    status, body = await stk.push(await stk.policy("3"), phone="0808 000 003")
    assert status == 400 and body["error"]["code"] == "invalid_phone"
    assert "not a Kenyan mobile number" in body["error"]["message"]
    assert len((await stk.control("GET", "stk"))["items"]) == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("action", "status", "code", "words"),
    [
        ("cancel", "cancelled", "1032", "cancelled"),
        ("unreachable", "failed", "1037", "could not be reached"),
        ("wrong_pin", "failed", "2001", "wrong M-Pesa PIN"),
        ("insufficient", "failed", "1", "insufficient"),
        ("timeout", "expired", "1019", "expired"),
    ],
)
async def test_a_prompt_not_paid_ends_with_its_reason_and_frees_the_policy(
    stk: Stk, action: str, status: str, code: str, words: str
) -> None:
    policy = await stk.policy()
    _, started = await stk.push(policy)
    await stk.decide(started, action)
    ended = await stk.settles_to(started, status)
    assert ended["failure"]["code"] == code and words in ended["failure"]["message"]
    assert ended["settlement"] is None and await stk.premiums() == []
    assert (await stk.services.policies.get(policy["_id"]))["status"] == 1
    status_code, again = await stk.push(policy, phone="0711000009")
    assert status_code == 201 and again["status"] == "prompt_sent"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("phone", "status", "code"),
    [
        ("254700000201", "cancelled", "1032"),
        ("254700000202", "failed", "1037"),
        ("254700000203", "failed", "2001"),
        ("254700000204", "failed", "1"),
    ],
)
async def test_magic_phones_reach_every_outcome(stk: Stk, phone, status, code) -> None:
    await stk.control("POST", "settings", {"stk_auto_seconds": 0.05})
    _, started = await stk.push(await stk.policy(), phone=phone)
    ended = await stk.settles_to(started, status)
    assert ended["failure"]["code"] == code


@pytest.mark.asyncio
async def test_a_repeat_within_2_minutes_fails_with_17(stk: Stk) -> None:
    policy = await stk.policy()
    _, first = await stk.push(policy)
    await stk.decide(first, "cancel")
    await stk.settles_to(first, "cancelled")
    status, second = await stk.push(policy)
    assert status == 201
    failed = await stk.settles_to(second, "failed")
    assert failed["failure"]["code"] == "17"
    assert "2 minutes" in failed["failure"]["message"]


@pytest.mark.asyncio
async def test_concurrent_pushes_for_one_policy_send_one_prompt(stk: Stk) -> None:
    policy = await stk.policy()
    answers = await asyncio.gather(*(stk.push(policy) for _ in range(5)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201, 409, 409, 409, 409]
    assert {body["error"]["code"] for status, body in answers if status == 409} == {
        "payment_in_progress"
    }
    assert len((await stk.control("GET", "stk"))["items"]) == 1


@pytest.mark.asyncio
async def test_a_push_has_the_checks_of_every_debit(stk: Stk) -> None:
    policy = await stk.policy()
    status, body = await stk.push(policy, amount="1499.00")
    assert status == 400 and body["error"]["code"] == "amount_too_small"
    status, body = await stk.push(policy, amount="1500.50")
    assert status == 400 and body["error"]["code"] == "amount_not_whole"
    status, body = await stk.api(
        "POST", "/api/v1/stk-pushes", {"policy_uuid": "nope", "amount": "1500.00"}
    )
    assert status == 404
    await stk.services.policies.update(policy["_id"], {"status": 2})
    status, body = await stk.push(policy)
    assert status == 409 and body["error"]["code"] == "policy_not_idle"
    assert (await stk.control("GET", "stk"))["items"] == []


@pytest.mark.asyncio
async def test_an_insuree_number_longer_than_the_account_reference_is_refused(
    stk: Stk,
) -> None:
    """The prompt's AccountReference carries 12 characters: a longer insuree number
    would be cut, and its payment's C2B copy could name another insuree."""
    policy = await stk.policy("1234567890123", phone="0708374149")
    status, body = await stk.push(policy)
    assert status == 400 and body["error"]["code"] == "reference_too_long"
    assert "1234567890123" in body["error"]["message"]
    assert await stk.store.collection(TRANSACTIONS).count_documents({}) == 0
    assert (await stk.control("GET", "stk"))["items"] == []
    requests = (await stk.control("GET", "requests"))["items"]
    assert not [item for item in requests if "stkpush" in item["path"]]
    assert (await stk.services.policies.get(policy["_id"]))["status"] == 1
    # 12 characters are carried whole.
    status, started = await stk.push(await stk.policy("123456789012"))
    assert status == 201, started
    prompt = await stk.prompt(started["provider_reference"])
    assert prompt["AccountReference"] == "123456789012"


@pytest.mark.asyncio
async def test_a_refused_push_fails_the_debit_and_says_why(stk: Stk) -> None:
    policy = await stk.policy()
    await stk.control("POST", "faults", {"target": "processrequest", "kind": "http_500"})
    status, body = await stk.push(policy)
    assert status == 409 and body["error"]["code"] == "subscriber_busy"
    assert body["error"]["details"]["provider_code"] == "500.001.1001"
    _, listed = await stk.api("GET", "/api/v1/transactions?channel=mpesa_stk")
    [failed] = listed["items"]
    assert failed["status"] == "failed" and failed["failure"]["code"] == "500.001.1001"
    status, again = await stk.push(policy)
    assert status == 201  # a refused push leaves no open debit


# --- callbacks that go missing, come twice, or do not fit ---------------------


async def due_check(stk: Stk, started: dict, status: str) -> dict:
    """Run the status checks until the debit is `status` (the checks come due at 1, 2
    and 3 s after the push)."""

    async def checked() -> dict | None:
        await stk.services.debits.check_pending()
        current = await stk.transaction(started["uuid"])
        return current if current["status"] == status else None

    return await wait_until(checked, f"the status checks to make it {status}", every=0.2)


@pytest.mark.asyncio
async def test_a_lost_callback_is_resolved_by_the_status_checks(stk: Stk) -> None:
    await stk.control("POST", "faults", {"target": "stk_callback", "kind": "drop"})
    _, started = await stk.push(await stk.policy())
    await stk.decide(started, "accept")
    await stk.deliveries(started["provider_reference"], 1)
    assert (await stk.transaction(started["uuid"]))["status"] == "prompt_sent"
    done = await due_check(stk, started, "succeeded")
    assert done["settlement"]["status"] == "settled" and len(await stk.premiums()) == 1
    assert await stk.inbox() == []


@pytest.mark.asyncio
async def test_a_prompt_nobody_answers_is_unknown_after_the_last_check(stk: Stk) -> None:
    _, started = await stk.push(await stk.policy())
    unknown = await due_check(stk, started, "unknown")
    assert "no answer after 3 status checks" in unknown["history"][-1]["reason"]
    queries = [
        item
        for item in (await stk.control("GET", "requests"))["items"]
        if item["path"].endswith("/stkpushquery/v1/query")
    ]
    assert len(queries) == 3
    await stk.decide(started, "accept")  # the callback still settles it
    done = await stk.settles_to(started, "succeeded")
    assert done["settlement"]["status"] == "settled"


@pytest.mark.asyncio
async def test_a_callback_delivered_twice_is_applied_once(stk: Stk) -> None:
    await stk.control("POST", "faults", {"target": "stk_callback", "kind": "duplicate"})
    _, started = await stk.push(await stk.policy())
    await stk.decide(started, "accept")
    await stk.deliveries(started["provider_reference"], 2)
    await stk.settles_to(started, "succeeded")
    assert len(await stk.premiums()) == 1
    entries = await wait_until(
        lambda: _marked(stk, 2), "both deliveries of the callback to be processed"
    )
    assert sorted(entry["status"] for entry in entries) == ["duplicate", "processed"]


async def _marked(stk: Stk, count: int) -> list[dict] | None:
    entries = await stk.inbox()
    done = len(entries) == count and all(entry["status"] != "received" for entry in entries)
    return entries if done else None


def paid_callback(checkout_id: str, amount: str, phone: str = PHONE) -> dict:
    return {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "29115-34620561-1",
                "CheckoutRequestID": checkout_id,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": float(amount)},
                        {"Name": "MpesaReceiptNumber", "Value": "TST1ABC2DE"},
                        {"Name": "Balance"},
                        {"Name": "TransactionDate", "Value": 20261123102115},
                        {"Name": "PhoneNumber", "Value": int(phone)},
                    ]
                },
            }
        }
    }


@pytest.mark.asyncio
async def test_a_callback_of_another_amount_is_for_review_and_settles_nothing(stk: Stk) -> None:
    policy = await stk.policy()
    _, started = await stk.push(policy)
    status, answer = await stk.callback(paid_callback(started["provider_reference"], "15.00"))
    assert (status, answer) == (200, {"ResultCode": 0, "ResultDesc": "Accepted"})
    unknown = await stk.transaction(started["uuid"])
    assert unknown["status"] == "unknown" and "amount_mismatch" in unknown["history"][-1]["reason"]
    assert unknown["settlement"] is None and await stk.premiums() == []
    assert (await stk.services.policies.get(policy["_id"]))["status"] == 1
    [entry] = await stk.inbox()
    assert entry["status"] == "needs_review" and "amount_mismatch" in entry["errors"]["review"]
    status, _ = await stk.push(policy)
    assert status == 409  # held for an operator, who resolves it


@pytest.mark.asyncio
async def test_a_callback_for_a_prompt_never_sent_is_kept_for_review(stk: Stk) -> None:
    status, answer = await stk.callback(paid_callback("ws_CO_000000000000000", "1500.00"))
    assert (status, answer["ResultCode"]) == (200, 0)
    [entry] = await stk.inbox()
    assert entry["status"] == "needs_review" and await stk.premiums() == []


@pytest.mark.asyncio
async def test_an_unreadable_callback_is_kept_for_review(stk: Stk) -> None:
    url = f"{stk.gateway.url}/api/v1/stk/callback/{CALLBACK_SECRET}"
    async with stk.http.post(url, data=b"{not json") as response:
        assert response.status == 200
        assert json.loads(await response.text()) == {"ResultCode": 0, "ResultDesc": "Accepted"}
    [entry] = await stk.inbox()
    assert entry["status"] == "needs_review" and entry["errors"]


@pytest.mark.asyncio
async def test_a_wrong_secret_is_404_and_nothing_is_kept(stk: Stk) -> None:
    url = f"{stk.gateway.url}/api/v1/stk/callback/wrong-secret"
    status, _ = await request_json(stk.http, "POST", url, paid_callback("ws_CO_1", "1.00"))
    assert status == 404 and await stk.inbox() == []


# --- a push whose answer is lost -------------------------------------------------


@pytest.mark.asyncio
async def test_a_push_timeout_is_unknown_then_resolved_by_the_query(stk: Stk) -> None:
    policy = await stk.policy()
    await stk.control(
        "POST", "faults", {"target": "processrequest", "kind": "timeout", "seconds": 3}
    )
    await stk.control("POST", "faults", {"target": "stk_callback", "kind": "drop"})
    status, started = await stk.push(policy)
    assert status == 201 and started["status"] == "unknown"
    assert started["provider_reference"] is None

    async def late_reference() -> str | None:
        return (await stk.transaction(started["uuid"]))["provider_reference"]

    checkout_id = await wait_until(late_reference, "the late answer's CheckoutRequestID")
    assert (await stk.prompt(checkout_id))["status"] == "pending"
    status, _ = await stk.push(policy)
    assert status == 409  # no second prompt meanwhile
    await stk.control("POST", f"stk/{checkout_id}", {"action": "accept"})
    done = await due_check(stk, started, "succeeded")
    assert done["settlement"]["status"] == "settled" and len(await stk.premiums()) == 1


@pytest.mark.asyncio
async def test_a_push_answer_never_received_stays_unknown_for_an_operator(stk: Stk) -> None:
    await stk.control("POST", "faults", {"target": "processrequest", "kind": "drop_after"})
    status, started = await stk.push(await stk.policy())
    assert status == 201 and started["status"] == "unknown"
    status, resolved = await stk.api(
        "POST",
        f"/api/v1/transactions/{started['uuid']}/resolve",
        {"outcome": "failed", "reason": "the payer saw no prompt"},
    )
    assert status == 200 and resolved["status"] == "failed"


# --- one payment, two messages ------------------------------------------------


async def one_premium_two_messages(stk: Stk, fault: dict | None) -> None:
    await stk.register_c2b()
    if fault is not None:
        await stk.control("POST", "faults", fault)
    policy = await stk.policy()
    _, started = await stk.push(policy)
    decided = await stk.decide(started, "accept")
    receipt = decided["MpesaReceiptNumber"]
    await stk.deliveries(started["provider_reference"], 2)
    done = await stk.settles_to(started, "succeeded")
    assert done["mpesa_receipt"] == receipt

    async def linked() -> dict | None:
        payment = await stk.store.collection(PAYMENTS).find_one({"trans_id": receipt})
        return payment if payment and payment["status"] == "settled" else None

    payment = await wait_until(linked, "the C2B copy to be linked")
    assert payment["transaction_uuid"] == started["uuid"]
    assert payment["receipt"] == done["settlement"]["receipt"]
    assert payment["policy_uuid"] == policy["_id"]
    [premium] = await stk.premiums()
    assert premium["transaction_uuid"] == started["uuid"]
    transactions = await stk.store.collection(TRANSACTIONS).find({}).to_list(None)
    assert [item["channel"] for item in transactions] == ["mpesa_stk"]
    await wait_until(lambda: _marked(stk, 1), "the STK result to be processed")
    assert (await stk.services.policies.get(policy["_id"]))["status"] == 2


@pytest.mark.asyncio
async def test_stk_result_first_then_c2b_confirmation_one_premium(stk: Stk) -> None:
    await one_premium_two_messages(stk, {"target": "confirmation", "kind": "latency", "seconds": 1})
    [entry] = await stk.inbox()
    assert entry["status"] == "processed"


@pytest.mark.asyncio
async def test_c2b_confirmation_first_then_stk_result_one_premium(stk: Stk) -> None:
    await one_premium_two_messages(stk, {"target": "stk_callback", "kind": "latency", "seconds": 1})
    [entry] = await stk.inbox()
    assert entry["status"] == "duplicate"  # the confirmation had completed it
    done = (await stk.store.collection(TRANSACTIONS).find({}).to_list(None))[0]
    assert done["history"][-1]["actor"] == "daraja_c2b"


@pytest.mark.asyncio
async def test_stk_result_and_c2b_confirmation_at_once_one_premium(stk: Stk) -> None:
    await one_premium_two_messages(stk, None)


@pytest.mark.asyncio
async def test_a_query_success_takes_its_receipt_from_the_c2b_confirmation(stk: Stk) -> None:
    await stk.register_c2b()
    await stk.control("POST", "faults", {"target": "stk_callback", "kind": "drop"})
    await stk.control("POST", "faults", {"target": "confirmation", "kind": "latency", "seconds": 4})
    policy = await stk.policy()
    _, started = await stk.push(policy)
    decided = await stk.decide(started, "accept")
    done = await due_check(stk, started, "succeeded")
    assert done["mpesa_receipt"] is None
    await stk.deliveries(started["provider_reference"], 2)

    async def receipted() -> dict | None:
        current = await stk.transaction(started["uuid"])
        return current if current["mpesa_receipt"] else None

    done = await wait_until(receipted, "the confirmation to bring the receipt")
    assert done["mpesa_receipt"] == decided["MpesaReceiptNumber"]
    payment = await stk.store.collection(PAYMENTS).find_one({"trans_id": done["mpesa_receipt"]})
    assert payment["status"] == "settled" and payment["transaction_uuid"] == started["uuid"]
    assert len(await stk.premiums()) == 1


@pytest.mark.asyncio
async def test_the_metrics_count_results_by_code(stk: Stk) -> None:
    _, started = await stk.push(await stk.policy())
    await stk.decide(started, "cancel")
    await stk.settles_to(started, "cancelled")
    async with stk.http.get(f"{stk.gateway.url}/metrics") as response:
        text = await response.text()
    assert 'gateway_stk_results_total{result_code="1032",source="callback"} 1.0' in text


@pytest.mark.asyncio
async def test_the_metrics_count_query_answers_too(stk: Stk) -> None:
    await stk.control("POST", "faults", {"target": "stk_callback", "kind": "drop"})
    _, started = await stk.push(await stk.policy())
    await stk.decide(started, "wrong_pin")
    await due_check(stk, started, "failed")
    async with stk.http.get(f"{stk.gateway.url}/metrics") as response:
        text = await response.text()
    assert 'gateway_stk_results_total{result_code="2001",source="query"} 1.0' in text


@pytest.mark.asyncio
async def test_the_transactions_api_lists_and_filters_the_channel(stk: Stk) -> None:
    _, started = await stk.push(await stk.policy())
    status, page = await stk.api("GET", "/api/v1/transactions?channel=mpesa_stk")
    assert status == 200 and [item["uuid"] for item in page["items"]] == [started["uuid"]]
    status, page = await stk.api("GET", "/api/v1/transactions?status=prompt_sent")
    assert status == 200 and page["total"] == 1
    status, body = await stk.api(
        "POST", f"/api/v1/transactions/{started['uuid']}/process", {"otp": "123456"}
    )
    assert status == 409 and body["error"]["code"] == "no_code_to_enter"


@pytest.mark.asyncio
async def test_a_prompt_past_its_status_checks_needs_attention(stk: Stk) -> None:
    _, started = await stk.push(await stk.policy())
    status, summary = await stk.api("GET", "/api/v1/dashboard")
    assert status == 200 and summary["attention"]["stuck_debits"]["count"] == 0
    assert "mpesa_stk" in [channel["name"] for channel in summary["channels"]]
    await stk.store.collection(TRANSACTIONS).update_one(
        {"_id": started["uuid"]}, {"$set": {"updated_at": datetime.now(UTC) - timedelta(minutes=5)}}
    )
    _, summary = await stk.api("GET", "/api/v1/dashboard")
    [stuck] = summary["attention"]["stuck_debits"]["oldest"]
    assert (stuck["uuid"], stuck["status"]) == (started["uuid"], "prompt_sent")
