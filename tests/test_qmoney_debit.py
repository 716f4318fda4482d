"""OTP debits end to end: the real gateway and the Qmoney simulator over real sockets."""

import asyncio
import json
import logging
import re
from datetime import timedelta

import pytest

from support import PREMIUMS
from systems import WALLET


@pytest.mark.asyncio
async def test_happy_path_debits_the_wallet_creates_the_premium_and_activates_the_policy(
    debits,
) -> None:
    policy = await debits.policy()
    status, started = await debits.start(policy)
    assert status == 201
    assert started["status"] == "otp_sent" and started["channel"] == "qmoney"
    assert (started["amount"], started["currency"]) == ("500.00", "GMD")
    assert started["provider_reference"]
    status, done = await debits.process(started, await debits.otp())
    assert status == 200 and done["status"] == "succeeded"
    assert done["settlement"]["status"] == "settled" and done["settlement"]["receipt"]
    assert [step["to"] for step in done["history"]] == [
        "initiated",
        "otp_sent",
        "processing",
        "succeeded",
    ]
    assert await debits.balance() == "9500.00"
    assert (await debits.control("GET", "state"))["merchant_balance"] == "500.00"
    stored_policy = await debits.services.policies.get(policy["_id"])
    assert stored_policy["status"] == 2 and stored_policy["effective_date"]
    [premium] = await debits.store.collection(PREMIUMS).find({}).to_list(None)
    assert premium["transaction_uuid"] == started["uuid"] and premium["amount"] == 50000


@pytest.mark.asyncio
async def test_getmoney_gets_the_exact_body_of_the_protocol(debits) -> None:
    policy = await debits.policy(amount="5.50")
    await debits.start(policy, amount="5.5")
    [request] = await debits.requests("/getMoney")
    data = request["body"]["data"]
    assert data["fromUser"] == {"userIdentifier": WALLET}
    assert data["toUser"] == {"userIdentifier": "14001502"}
    assert (data["serviceId"], data["productId"], data["remarks"]) == (
        "MOBILE_MONEY",
        "NHIA_GETMONEY",
        "add",
    )
    assert data["transactionPin"] == "[redacted]"
    assert str(data["payment"][0]["amount"]) in ("5.50", "5.5")


@pytest.mark.asyncio
async def test_wrong_otp_then_right_otp_succeeds(debits) -> None:
    policy = await debits.policy()
    _, started = await debits.start(policy)
    otp = await debits.otp()
    wrong = "000000" if otp != "000000" else "111111"
    status, after_wrong = await debits.process(started, wrong)
    assert status == 200 and after_wrong["status"] == "otp_sent"
    assert after_wrong["otp_attempts"] == 1
    assert after_wrong["failure"]["code"] == "-150005"
    status, done = await debits.process(started, otp)
    assert done["status"] == "succeeded"


def state_lines(caplog, transaction_uuid: str) -> list[str]:
    return [
        re.sub(r" actor=\S+$", "", record.getMessage().split(" channel=")[1])
        for record in caplog.records
        if record.getMessage().startswith(f"transaction_state transaction={transaction_uuid}")
    ]


@pytest.mark.asyncio
async def test_every_state_change_is_logged_once(debits, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.ledger")
    _, started = await debits.start(await debits.policy())
    otp = await debits.otp()
    await debits.process(started, "000000" if otp != "000000" else "111111")
    await debits.process(started, otp)
    assert state_lines(caplog, started["uuid"]) == [
        'qmoney from=- to=initiated reason="created"',
        "qmoney from=initiated to=otp_sent reason=-",
        "qmoney from=otp_sent to=processing reason=-",
        'qmoney from=processing to=otp_sent reason="wrong_otp"',
        "qmoney from=otp_sent to=processing reason=-",
        "qmoney from=processing to=succeeded reason=-",
    ]


@pytest.mark.asyncio
async def test_too_many_wrong_otps_fail_the_debit(debits) -> None:
    policy = await debits.policy()
    _, started = await debits.start(policy)
    wrong = "000000" if await debits.otp() != "000000" else "111111"
    for _ in range(2):
        _, state = await debits.process(started, wrong)
        assert state["status"] == "otp_sent"
    status, failed = await debits.process(started, wrong)
    assert status == 200 and failed["status"] == "failed"
    assert failed["failure"]["code"] == "too_many_wrong_otps"
    assert len(await debits.requests("/verifyCode")) == 3
    assert await debits.balance() == "10000.00"
    status, again = await debits.process(started, await debits.otp())
    assert status == 409 and again["error"]["details"]["status"] == "failed"


@pytest.mark.asyncio
async def test_insufficient_balance_fails_and_the_policy_can_be_paid_again(debits) -> None:
    await debits.control("PUT", f"wallets/{WALLET}", {"balance": "100.00"})
    policy = await debits.policy()
    _, started = await debits.start(policy)
    _, failed = await debits.process(started, await debits.otp())
    assert failed["status"] == "failed" and failed["failure"]["code"] == "-120008"
    assert (await debits.services.policies.get(policy["_id"]))["status"] == 1
    await debits.control("PUT", f"wallets/{WALLET}", {"balance": "600.00"})
    status, second = await debits.start(policy)
    assert status == 201
    _, done = await debits.process(second, await debits.otp())
    assert done["status"] == "succeeded" and await debits.balance() == "100.00"


@pytest.mark.asyncio
async def test_a_second_debit_of_the_same_policy_waits_for_the_first(debits) -> None:
    policy = await debits.policy()
    await debits.start(policy)
    status, body = await debits.start(policy)
    assert status == 409 and body["error"]["code"] == "payment_in_progress"
    assert len(await debits.requests("/getMoney")) == 1


@pytest.mark.asyncio
async def test_token_is_reused_across_debits(debits) -> None:
    for number in range(10):
        policy = await debits.policy(chf_id=f"1000{number}")
        _, started = await debits.start(policy)
        _, done = await debits.process(started, await debits.otp())
        assert done["status"] == "succeeded"
    assert len(await debits.requests("/login")) == 1


@pytest.mark.asyncio
async def test_token_is_renewed_a_minute_before_its_stated_expiry(debits) -> None:
    policy = await debits.policy(chf_id="1")
    await debits.start(policy)
    debits.clock.offset += timedelta(seconds=3539)
    await debits.start(await debits.policy(chf_id="2"))
    assert len(await debits.requests("/login")) == 1
    debits.clock.offset += timedelta(seconds=2)
    await debits.start(await debits.policy(chf_id="3"))
    assert len(await debits.requests("/login")) == 2


@pytest.mark.asyncio
async def test_token_without_expiry_is_kept_until_rejected(debits) -> None:
    await debits.control("POST", "settings", {"token_expiry": "-1"})
    await debits.start(await debits.policy(chf_id="1"))
    debits.clock.offset += timedelta(days=7)
    await debits.start(await debits.policy(chf_id="2"))
    assert len(await debits.requests("/login")) == 1
    await debits.control("POST", "tokens/revoke")
    status, _ = await debits.start(await debits.policy(chf_id="3"))
    assert status == 201
    assert len(await debits.requests("/login")) == 2


@pytest.mark.asyncio
async def test_token_rejected_mid_flow_logs_in_again_and_completes(debits) -> None:
    _, started = await debits.start(await debits.policy())
    await debits.control("POST", "tokens/revoke")
    _, done = await debits.process(started, await debits.otp())
    assert done["status"] == "succeeded"
    assert len(await debits.requests("/login")) == 2
    verify = await debits.requests("/verifyCode")
    assert [item["status"] for item in verify] == [401, 200]


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", [{"kind": "drop_after"}, {"kind": "timeout", "seconds": 4}])
async def test_lost_answer_after_the_debit_ends_unknown_and_is_not_retried(debits, fault) -> None:
    policy = await debits.policy()
    _, started = await debits.start(policy)
    await debits.control("POST", "faults", {"target": "verifyCode", **fault})
    status, unknown = await debits.process(started, await debits.otp())
    assert status == 200 and unknown["status"] == "unknown"
    await debits.answered("/verifyCode")  # the late answer lands, if any
    assert len(await debits.requests("/verifyCode")) == 1
    assert await debits.balance() == "9500.00"  # the money did move
    assert (await debits.services.policies.get(policy["_id"]))["status"] == 1
    status, again = await debits.process(started, await debits.otp())
    assert status == 409 and again["error"]["details"]["status"] == "unknown"
    status, _ = await debits.start(policy)
    assert status == 409  # no second debit meanwhile


@pytest.mark.asyncio
async def test_provider_error_on_verify_leaves_the_outcome_unknown(debits) -> None:
    _, started = await debits.start(await debits.policy())
    await debits.control("POST", "faults", {"target": "verifyCode", "kind": "http_500"})
    status, answer = await debits.process(started, await debits.otp())
    assert status == 200 and answer["status"] == "unknown"


@pytest.mark.asyncio
async def test_unreachable_provider_on_verify_keeps_the_otp_usable(debits) -> None:
    _, started = await debits.start(await debits.policy())
    otp = await debits.otp()
    await debits.sim.stop()
    status, body = await debits.process(started, otp)
    assert status == 503 and body["error"]["code"] == "provider_unavailable"
    _, current = await debits.api("GET", f"/api/v1/transactions/{started['uuid']}")
    assert current["status"] == "otp_sent"


@pytest.mark.asyncio
async def test_concurrent_process_calls_reach_qmoney_once(debits) -> None:
    _, started = await debits.start(await debits.policy())
    otp = await debits.otp()
    results = await asyncio.gather(*(debits.process(started, otp) for _ in range(5)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 409, 409, 409, 409]
    assert len(await debits.requests("/verifyCode")) == 1
    assert await debits.store.collection(PREMIUMS).count_documents({}) == 1


@pytest.mark.asyncio
async def test_replayed_process_call_is_409_with_the_current_state(debits) -> None:
    _, started = await debits.start(await debits.policy())
    otp = await debits.otp()
    await debits.process(started, otp)
    status, body = await debits.process(started, otp)
    assert status == 409 and body["error"]["details"]["status"] == "succeeded"
    assert len(await debits.requests("/verifyCode")) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("499.99", "amount_too_small"),
        ("500.01", "amount_too_large"),
        ("5OO", "validation_error"),
        ("500.001", "invalid_amount"),
    ],
)
async def test_amount_mismatch_is_refused_before_any_provider_call(debits, amount, code) -> None:
    status, body = await debits.start(await debits.policy(), amount=amount)
    assert status == 400 and body["error"]["code"] == code
    assert (await debits.control("GET", "requests"))["items"] == []


@pytest.mark.asyncio
async def test_policy_and_psp_checks_come_before_any_provider_call(debits) -> None:
    active = await debits.policy(chf_id="1")
    await debits.services.policies.update(active["_id"], {"status": 2})
    status, body = await debits.start(active)
    assert status == 409 and body["error"]["code"] == "policy_not_idle"
    no_wallet = await debits.policy(chf_id="2", wallet="")
    status, body = await debits.start(no_wallet)
    assert status == 400 and body["error"]["code"] == "no_wallet"
    other = await debits.services.psps.create(
        {
            "name": "Afrimoney",
            "kind": "external",
            "account": "A",
            "currency": "GMD",
            "is_external_api": True,
            "username": None,
            "active": True,
        }
    )
    status, body = await debits.start(await debits.policy(chf_id="3"), psp=other)
    assert status == 400 and body["error"]["code"] == "invalid_psp"
    status, body = await debits.api(
        "POST",
        "/api/v1/transactions",
        {"policy_uuid": "nope", "psp_uuid": debits.psp["_id"], "amount": "1"},
    )
    assert status == 404 and body["error"]["code"] == "unknown_policy"
    assert (await debits.control("GET", "requests"))["items"] == []


@pytest.mark.asyncio
async def test_provider_refusal_fails_the_debit_with_its_code(debits) -> None:
    await debits.services.psps.update(debits.psp["_id"], {"pin": "9999"})
    policy = await debits.policy()
    status, body = await debits.start(policy)
    assert status == 502 and body["error"]["details"]["provider_code"] == "-150002"
    status, listed = await debits.api("GET", "/api/v1/transactions?status=failed")
    [failed] = listed["items"]
    assert failed["failure"]["code"] == "-150002"
    status, _ = await debits.start(policy)  # a failed debit does not block the policy
    assert status == 502


@pytest.mark.asyncio
async def test_unanswered_getmoney_fails_the_debit_without_moving_money(debits) -> None:
    await debits.control("POST", "faults", {"target": "getMoney", "kind": "drop"})
    status, body = await debits.start(await debits.policy())
    assert status == 503 and body["error"]["code"] == "provider_unavailable"
    _, listed = await debits.api("GET", "/api/v1/transactions")
    assert listed["items"][0]["status"] == "failed"


@pytest.mark.asyncio
async def test_otp_not_entered_in_time_expires(debits) -> None:
    _, late = await debits.start(await debits.policy(chf_id="1"))
    _, stale = await debits.start(await debits.policy(chf_id="2"))
    debits.clock.offset += timedelta(seconds=301)
    status, body = await debits.process(late, await debits.otp())
    assert status == 409 and body["error"]["details"]["status"] == "expired"
    assert await debits.services.debits.expire_stale() == 1
    status, stale_now = await debits.api("GET", f"/api/v1/transactions/{stale['uuid']}")
    assert stale_now["status"] == "expired"
    assert await debits.requests("/verifyCode") == []


@pytest.mark.asyncio
async def test_process_needs_a_well_formed_otp(debits) -> None:
    _, started = await debits.start(await debits.policy())
    for otp in ("12", "abcdef", "1234567890"):
        status, body = await debits.process(started, otp)
        assert status == 400 and body["error"]["code"] == "validation_error"
    _, current = await debits.api("GET", f"/api/v1/transactions/{started['uuid']}")
    assert current["status"] == "otp_sent"


@pytest.mark.asyncio
async def test_transactions_are_listed_with_filters(debits) -> None:
    _, first = await debits.start(await debits.policy(chf_id="1"))
    _, second = await debits.start(await debits.policy(chf_id="2"))
    await debits.process(second, await debits.otp())
    status, page = await debits.api("GET", "/api/v1/transactions?channel=qmoney")
    assert [item["uuid"] for item in page["items"]] == [second["uuid"], first["uuid"]]
    _, page = await debits.api("GET", "/api/v1/transactions?status=succeeded")
    assert [item["uuid"] for item in page["items"]] == [second["uuid"]]
    _, page = await debits.api(
        "GET", f"/api/v1/transactions?psp_uuid={debits.psp['_id']}&limit=1&offset=1"
    )
    assert page["total"] == 2 and [item["uuid"] for item in page["items"]] == [first["uuid"]]
    status, body = await debits.api("GET", "/api/v1/transactions?status=paid")
    assert status == 400


@pytest.mark.asyncio
async def test_otp_and_pin_never_reach_the_store_or_the_logs(debits, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    _, started = await debits.start(await debits.policy())
    otp = await debits.otp()
    wrong = "000000" if otp != "000000" else "111111"
    await debits.process(started, wrong)
    await debits.process(started, otp)
    documents = []
    for name in await debits.store.db.list_collection_names():
        documents += await debits.store.collection(name).find({}).to_list(None)
    stored = json.dumps(documents, default=str)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (otp, wrong):
        pattern = re.compile(rf"(?<![\d.]){secret}(?!\d)")
        assert not pattern.search(stored), f"OTP {secret} stored"
        assert not pattern.search(logged), f"OTP {secret} logged"
    assert '"otp"' not in stored
    assert not re.search(r"(?<![\d.])1234(?!\d)", logged)
