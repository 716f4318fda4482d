"""C2B callbacks over HTTP against the real app: inbox first, exactly once, Daraja's format."""

import asyncio
import json

import pytest

from server.kernel.store import Store

from support import INBOX, PAYMENTS, callback_body, callback_url, deliver_callback, make_settings


async def count(store: Store, collection: str, query: dict | None = None) -> int:
    return await store.collection(collection).count_documents(query or {})


@pytest.mark.asyncio
async def test_confirmation_is_stored_with_minor_units_and_utc_time(http, gateway, store) -> None:
    status, answer = await deliver_callback(http, gateway, "confirmation", callback_body())
    assert (status, answer) == (200, {"ResultCode": 0, "ResultDesc": "Success"})
    payment = await store.collection(PAYMENTS).find_one({"trans_id": "RKL51ZDR4F"})
    assert payment["amount"] == 500 and payment["currency"] == "KES"
    assert payment["trans_time"].isoformat() == "2023-11-21T09:13:25+00:00"
    assert payment["msisdn"] == "2547 ***** 126" and payment["msisdn_form"] == "masked"
    assert payment["org_balance"] == 2500
    entry = await store.collection(INBOX).find_one({"kind": "confirmation"})
    assert entry["status"] == "processed" and entry["trans_id"] == "RKL51ZDR4F"
    assert json.loads(entry["body"]) == callback_body()
    assert entry["source_ip"] == "127.0.0.1"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("msisdn", "form"),
    [
        ("254708374149", "clear"),
        ("2547 ***** 126", "masked"),
        ("8a9c1b2e6f0d7a3c4b5e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c", "hashed"),
    ],
)
async def test_msisdn_is_kept_in_the_form_it_arrived(http, gateway, store, msisdn, form) -> None:
    await deliver_callback(http, gateway, "confirmation", callback_body(MSISDN=msisdn))
    payment = await store.collection(PAYMENTS).find_one({})
    assert (payment["msisdn"], payment["msisdn_form"]) == (msisdn, form)


@pytest.mark.asyncio
async def test_duplicate_confirmation_is_recorded_once(http, gateway, store, notifier) -> None:
    for _ in range(3):
        status, answer = await deliver_callback(http, gateway, "confirmation", callback_body())
        assert (status, answer["ResultCode"]) == (200, 0)
    assert await count(store, PAYMENTS) == 1
    assert await count(store, INBOX, {"status": "duplicate"}) == 2
    await gateway.services.sms.send_due()  # the job hands the payer's notice over
    assert len(notifier.sent) == 1


@pytest.mark.asyncio
async def test_concurrent_duplicate_confirmations_are_recorded_once(http, gateway, store) -> None:
    results = await asyncio.gather(
        *(deliver_callback(http, gateway, "confirmation", callback_body()) for _ in range(10))
    )
    assert {result[0] for result in results} == {200}
    assert await count(store, PAYMENTS) == 1
    assert await count(store, INBOX) == 10


@pytest.mark.asyncio
async def test_conflicting_duplicate_is_flagged_for_review_and_changes_nothing(
    http, gateway, store, operator_headers
) -> None:
    await deliver_callback(http, gateway, "confirmation", callback_body())
    status, answer = await deliver_callback(
        http, gateway, "confirmation", callback_body(TransAmount="500.00")
    )
    assert (status, answer["ResultCode"]) == (200, 0)
    payment = await store.collection(PAYMENTS).find_one({"trans_id": "RKL51ZDR4F"})
    assert payment["amount"] == 500
    assert [item["reason"] for item in payment["review"]] == ["conflicting_duplicate"]
    assert await count(store, INBOX, {"status": "conflict"}) == 1
    async with http.get(
        f"{gateway.url}/api/v1/c2b/payments",
        params={"needs_review": "true"},
        headers=operator_headers,
    ) as listing:
        assert [item["trans_id"] for item in (await listing.json())["items"]] == ["RKL51ZDR4F"]


@pytest.mark.asyncio
async def test_customer_is_notified_once_after_a_confirmed_payment(http, gateway, notifier) -> None:
    await deliver_callback(http, gateway, "confirmation", callback_body())
    for _ in range(2):  # the send-notifications job hands the notice over, once
        await gateway.services.sms.send_due()
    [sent] = notifier.sent
    assert sent.recipient == "2547 ***** 126" and sent.reference == "RKL51ZDR4F"
    assert "KES 5.00" in sent.message and "070707070" in sent.message


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b"",
        "\udcff".encode("utf-8", "surrogatepass"),
        json.dumps(callback_body(TransAmount="five")),
        json.dumps(callback_body(TransAmount="-5")),
        json.dumps(callback_body(TransAmount="0")),
        json.dumps(callback_body(TransTime="2023-11-21")),
        json.dumps({key: value for key, value in callback_body().items() if key != "TransID"}),
        json.dumps(callback_body(TransID=None)),
        json.dumps(callback_body(BusinessShortCode=["600984"])),
    ],
)
async def test_malformed_confirmation_is_kept_for_review_and_answered_in_dajara_format(
    http, gateway, store, body
) -> None:
    status, answer = await deliver_callback(http, gateway, "confirmation", body)
    assert (status, answer) == (200, {"ResultCode": 0, "ResultDesc": "Success"})
    assert await count(store, PAYMENTS) == 0
    [entry] = await store.collection(INBOX).find({}).to_list(None)
    assert entry["status"] == "needs_review" and entry["errors"]


@pytest.mark.asyncio
async def test_numeric_values_are_read_as_their_exact_text(http, gateway, store) -> None:
    body = json.dumps(callback_body()).replace('"5.00"', "5.10").replace('"600984"', "600984")
    await deliver_callback(http, gateway, "confirmation", body)
    payment = await store.collection(PAYMENTS).find_one({})
    assert payment["amount"] == 510 and payment["shortcode"] == "600984"


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["validation", "confirmation"])
async def test_wrong_secret_is_404_and_nothing_is_processed(http, gateway, store, kind) -> None:
    status, answer = await deliver_callback(http, gateway, kind, callback_body(), secret="guess")
    assert status == 404
    assert answer["ResultDesc"].startswith("Rejected")
    assert await count(store, INBOX) == 0
    assert await count(store, PAYMENTS) == 0


@pytest.mark.asyncio
async def test_validation_accepts_a_valid_payment(http, gateway, store) -> None:
    status, answer = await deliver_callback(
        http, gateway, "validation", callback_body(OrgAccountBalance="")
    )
    assert (status, answer) == (200, {"ResultCode": "0", "ResultDesc": "Accepted"})
    entry = await store.collection(INBOX).find_one({"kind": "validation"})
    assert entry["status"] == "processed" and entry["answer"]["ResultCode"] == "0"
    assert await count(store, PAYMENTS) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"BusinessShortCode": "123456"}, "C2B00015"),
        ({"TransAmount": "0.50"}, "C2B00013"),
        ({"TransAmount": "250000.01"}, "C2B00013"),
        ({"TransAmount": "abc"}, "C2B00013"),
        ({"BillRefNumber": "07 07"}, "C2B00012"),
        ({"BillRefNumber": ""}, "C2B00012"),
    ],
)
async def test_validation_rejects_with_the_matching_code(
    http, gateway, store, overrides, code
) -> None:
    status, answer = await deliver_callback(http, gateway, "validation", callback_body(**overrides))
    assert (status, answer) == (200, {"ResultCode": code, "ResultDesc": "Rejected"})
    [entry] = await store.collection(INBOX).find({}).to_list(None)  # kept, answered
    assert (entry["status"], entry["answer"], entry["attempts"]) == ("processed", answer, 1)
    assert entry["trans_id"] == "RKL51ZDR4F" and entry["body"]


@pytest.mark.asyncio
async def test_till_payment_needs_no_account_number(http, gateway) -> None:
    _, answer = await deliver_callback(
        http, gateway, "validation", callback_body(TransactionType="Buy Goods", BillRefNumber="")
    )
    assert answer["ResultCode"] == "0"


@pytest.mark.asyncio
async def test_malformed_validation_is_rejected_and_kept(http, gateway, store) -> None:
    status, answer = await deliver_callback(http, gateway, "validation", b"{oops")
    assert (status, answer) == (200, {"ResultCode": "C2B00016", "ResultDesc": "Rejected"})
    entry = await store.collection(INBOX).find_one({})
    assert entry["status"] == "needs_review" and entry["body"] == "{oops"


@pytest.mark.asyncio
async def test_source_allowlist_refuses_other_addresses(http, start_gateway_with, store) -> None:
    gateway = await start_gateway_with(make_settings(c2b={"ip_allowlist": ("196.201.214.200",)}))
    status, answer = await deliver_callback(http, gateway, "confirmation", callback_body())
    assert status == 403 and answer["ResultCode"] == 1
    assert await count(store, INBOX) == 0


@pytest.mark.asyncio
async def test_forwarded_address_is_believed_only_from_a_trusted_proxy(
    http, start_gateway_with, store
) -> None:
    allow = {"ip_allowlist": ("196.201.214.200",)}
    untrusted = await start_gateway_with(make_settings(c2b=allow))
    trusted = await start_gateway_with(
        make_settings(c2b=allow, server={"trusted_proxies": ("127.0.0.1",), "port": 0})
    )
    headers = {"X-Forwarded-For": "196.201.214.200", "Content-Type": "application/json"}
    body = json.dumps(callback_body())
    async with http.post(
        callback_url(untrusted, "confirmation"), data=body, headers=headers
    ) as answer:
        assert answer.status == 403
    async with http.post(
        callback_url(trusted, "confirmation"), data=body, headers=headers
    ) as answer:
        assert answer.status == 200
    entry = await store.collection(INBOX).find_one({})
    assert entry["source_ip"] == "196.201.214.200"
    assert entry["headers"]["X-Forwarded-For"] == "196.201.214.200"
