"""Operations: dashboard figures, operator actions, health, metrics, request ids, shutdown."""

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.kernel.logs import JsonFormatter
from server.kernel.store import open_store
from server.ops.health import readiness_problem
from server.startup.services import INDEXES

from support import (
    INBOX,
    PAYMENTS,
    PROVIDER_CALLS,
    PSPS,
    TRANSACTIONS,
    callback_body,
    idle_policy,
    make_settings,
    request_json,
    wait_until,
)

NOW = datetime.now(UTC).replace(microsecond=0)


def transaction(
    channel: str,
    status: str,
    amount: int,
    currency: str,
    *,
    hours_ago: float = 1,
    psp: str | None = None,
    chf_id: str = "1",
    policy: str | None = None,
    updated_hours_ago: float | None = None,
) -> dict:
    created = NOW - timedelta(hours=hours_ago)
    updated = NOW - timedelta(
        hours=updated_hours_ago if updated_hours_ago is not None else hours_ago
    )
    return {
        "_id": str(uuid.uuid4()),
        "channel": channel,
        "status": status,
        "open": False,
        "amount": amount,
        "currency": currency,
        "policy_uuid": policy or str(uuid.uuid4()),
        "chf_id": chf_id,
        "psp_uuid": psp,
        "provider_reference": "ref",
        "failure": None,
        "settlement": None,
        "created_by": "test",
        "created_at": created,
        "updated_at": updated,
        "history": [],
        "otp_attempts": 0,
    }


async def seed_ledger(store) -> str:
    psp = {
        "_id": "psp-q",
        "name": "Qmoney",
        "kind": "qmoney",
        "account": "1",
        "currency": "GMD",
        "is_external_api": False,
        "username": None,
        "active": True,
        "pin_encrypted": None,
        "created_at": NOW,
        "updated_at": NOW,
    }
    await store.collection(PSPS).insert_one(psp)
    await store.collection(TRANSACTIONS).insert_many(
        [
            transaction("mpesa_c2b", "succeeded", 150000, "KES", hours_ago=2),
            transaction("mpesa_c2b", "succeeded", 100000, "KES", hours_ago=1),
            transaction("qmoney", "succeeded", 50000, "GMD", hours_ago=3, psp="psp-q"),
            transaction("qmoney", "failed", 50000, "GMD", hours_ago=3, psp="psp-q"),
            transaction(
                "qmoney", "unknown", 50000, "GMD", hours_ago=5, psp="psp-q", updated_hours_ago=1
            ),
            transaction("psp_api", "succeeded", 50000, "GMD", hours_ago=4, psp="psp-q"),
            transaction("qmoney", "succeeded", 99900, "GMD", hours_ago=48, psp="psp-q"),
        ]
    )
    await store.collection(PAYMENTS).insert_one(
        {
            "trans_id": "UNM1",
            "bill_ref": "090909090",
            "amount": 35000,
            "currency": "KES",
            "status": "unmatched",
            "unmatched_reason": "amount_mismatch",
            "received_at": NOW - timedelta(hours=1),
            "review": [],
            "trans_time": NOW,
        }
    )
    await store.collection(INBOX).insert_one(
        {
            "_id": "inbox-1",
            "kind": "confirmation",
            "status": "failed",
            "body": "{}",
            "body_encoding": "utf-8",
            "source_ip": "1.2.3.4",
            "headers": {},
            "received_at": NOW - timedelta(hours=2),
            "attempts": 1,
        }
    )
    await store.collection(PROVIDER_CALLS).insert_many(
        [
            {
                "provider": "qmoney",
                "endpoint": "verifyCode",
                "at": NOW - timedelta(minutes=m),
                "duration_ms": float(10 * m),
                "outcome": "ok" if m != 3 else "unknown",
                "error": None if m != 3 else "no answer (timed out)",
            }
            for m in range(1, 11)
        ]
    )
    return psp["_id"]


@pytest.mark.asyncio
async def test_dashboard_totals_channels_psps_and_statuses(
    http, gateway, store, operator_headers
) -> None:
    await seed_ledger(store)
    status, board = await request_json(
        http, "GET", f"{gateway.url}/api/v1/dashboard", headers=operator_headers
    )
    assert status == 200
    assert board["window"]["bucket"] == "hour"
    assert board["totals"] == [
        {"currency": "GMD", "amount": "1000.00", "count": 2},
        {"currency": "KES", "amount": "2500.00", "count": 2},
    ]
    channels = {(row["channel"], row["currency"]): row for row in board["by_channel"]}
    qmoney = channels[("qmoney", "GMD")]
    assert (qmoney["count"], qmoney["succeeded"], qmoney["failed"]) == (3, 1, 1)
    assert qmoney["amount"] == "500.00" and qmoney["success_rate"] == 0.5
    assert channels[("mpesa_c2b", "KES")]["success_rate"] == 1.0
    assert board["by_psp"] == [
        {
            "psp_uuid": "psp-q",
            "psp_name": "Qmoney",
            "currency": "GMD",
            "amount": "1000.00",
            "count": 2,
        }
    ]
    assert {row["status"]: row["count"] for row in board["by_status"]} == {
        "succeeded": 4,
        "failed": 1,
        "unknown": 1,
    }
    assert sum(row["count"] for row in board["series"]) == 4
    assert all(row["start"].endswith(":00:00+00:00") for row in board["series"])


@pytest.mark.asyncio
async def test_dashboard_lists_what_needs_attention_and_provider_health(
    http, gateway, store, operator_headers
) -> None:
    await seed_ledger(store)
    waiting = []
    for status, minutes_ago in (("otp_sent", 6), ("otp_sent", 0.5), ("processing", 6)):
        debit = transaction("qmoney", status, 50000, "GMD", psp="psp-q")
        debit["updated_at"] = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        waiting.append(debit)
    await store.collection(TRANSACTIONS).insert_many(waiting)
    _, board = await request_json(
        http, "GET", f"{gateway.url}/api/v1/dashboard", headers=operator_headers
    )
    attention = board["attention"]
    assert attention["c2b_unmatched"]["count"] == 1
    assert attention["c2b_unmatched"]["oldest"][0]["reason"] == "amount_mismatch"
    # unknown for an hour, otp_sent for 6 minutes; not: otp_sent for 30 s, processing 6 min
    assert attention["stuck_debits"]["count"] == 2
    assert [item["status"] for item in attention["stuck_debits"]["oldest"]] == [
        "unknown",
        "otp_sent",
    ]
    assert attention["failed_inbox"]["oldest"][0]["id"] == "inbox-1"
    [provider] = board["providers"]
    assert (provider["provider"], provider["endpoint"], provider["count"]) == (
        "qmoney",
        "verifyCode",
        10,
    )
    assert provider["error_rate"] == 0.1
    assert provider["p50_ms"] == 55.0 and provider["p95_ms"] == 95.5
    assert provider["last_error"]["message"] == "no answer (timed out)"


@pytest.mark.asyncio
async def test_dashboard_window_and_currency_filters(
    http, gateway, store, operator_headers
) -> None:
    await seed_ledger(store)
    week_ago = (NOW - timedelta(days=7)).isoformat()
    _, board = await request_json(
        http,
        "GET",
        f"{gateway.url}/api/v1/dashboard",
        headers=operator_headers,
        params={"from": week_ago, "currency": "GMD"},
    )
    assert board["window"]["bucket"] == "day"
    assert board["totals"] == [{"currency": "GMD", "amount": "1999.00", "count": 3}]
    assert board["attention"]["c2b_unmatched"]["count"] == 0
    status, body = await request_json(
        http,
        "GET",
        f"{gateway.url}/api/v1/dashboard",
        headers=operator_headers,
        params={"currency": "XXX"},
    )
    assert status == 400 and body["error"]["code"] == "validation_error"


@pytest.mark.asyncio
async def test_dashboard_needs_an_operator(http, gateway, headers_for) -> None:
    status, _ = await request_json(
        http, "GET", f"{gateway.url}/api/v1/dashboard", headers=await headers_for("afri", "psp")
    )
    assert status == 403


async def unknown_debit(gateway, store) -> dict:
    policy = await idle_policy(gateway.services, "1", wallet="w")
    debit = transaction("qmoney", "unknown", 50000, "GMD", policy=policy["_id"])
    debit["open"] = True
    await store.collection(TRANSACTIONS).insert_one(debit)
    return debit


@pytest.mark.asyncio
async def test_operator_resolves_an_unknown_debit_as_succeeded_and_it_settles(
    http, gateway, store, operator_headers
) -> None:
    debit = await unknown_debit(gateway, store)
    url = f"{gateway.url}/api/v1/transactions/{debit['_id']}/resolve"
    status, body = await request_json(
        http,
        "POST",
        url,
        {"outcome": "succeeded", "reason": "checked the statement"},
        headers=operator_headers,
    )
    assert status == 400 and "provider_reference" in body["error"]["details"]["fields"]
    status, body = await request_json(
        http,
        "POST",
        url,
        {"outcome": "succeeded", "provider_reference": "QM-889", "reason": "on the statement"},
        headers=operator_headers,
    )
    assert status == 200 and body["status"] == "succeeded"
    assert body["settlement"]["status"] == "settled"
    assert body["history"][-1] == {
        **body["history"][-1],
        "actor": "operator",
        "reason": "on the statement",
        "to": "succeeded",
    }
    assert (await gateway.services.policies.get(debit["policy_uuid"]))["status"] == 2
    status, body = await request_json(
        http,
        "POST",
        url,
        {"outcome": "failed", "reason": "changed my mind"},
        headers=operator_headers,
    )
    assert status == 409 and body["error"]["details"]["status"] == "succeeded"


@pytest.mark.asyncio
async def test_operator_resolves_an_unknown_debit_as_failed(
    http, gateway, store, operator_headers
) -> None:
    debit = await unknown_debit(gateway, store)
    status, body = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/transactions/{debit['_id']}/resolve",
        {"outcome": "failed", "reason": "provider says never debited"},
        headers=operator_headers,
    )
    assert status == 200 and body["status"] == "failed"
    assert body["failure"] == {"code": "resolved_failed", "message": "provider says never debited"}
    assert (await gateway.services.policies.get(debit["policy_uuid"]))["status"] == 1


@pytest.mark.asyncio
async def test_operator_expires_a_stale_debit_but_not_a_finished_one(
    http, gateway, store, operator_headers
) -> None:
    waiting = transaction("qmoney", "otp_sent", 50000, "GMD")
    done = transaction("qmoney", "succeeded", 50000, "GMD")
    await store.collection(TRANSACTIONS).insert_many([waiting, done])
    status, body = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/transactions/{waiting['_id']}/expire",
        {"reason": "payer unreachable"},
        headers=operator_headers,
    )
    assert status == 200 and body["status"] == "expired"
    assert body["history"][-1]["actor"] == "operator"
    status, body = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/transactions/{done['_id']}/expire",
        {"reason": "oops"},
        headers=operator_headers,
    )
    assert status == 409


@pytest.mark.asyncio
async def test_operator_replays_a_failed_inbox_entry(
    http, gateway, store, operator_headers
) -> None:
    raw = json.dumps(callback_body())
    await store.collection(INBOX).insert_one(
        {
            "_id": "entry-9",
            "kind": "confirmation",
            "status": "failed",
            "body": raw,
            "body_encoding": "utf-8",
            "source_ip": "196.201.214.200",
            "headers": {},
            "received_at": NOW,
            "attempts": 1,
        }
    )
    status, failed = await request_json(
        http,
        "GET",
        f"{gateway.url}/api/v1/c2b/inbox",
        headers=operator_headers,
        params={"status": "failed"},
    )
    assert status == 200 and [item["id"] for item in failed["items"]] == ["entry-9"]
    replay = f"{gateway.url}/api/v1/c2b/inbox/entry-9/replay"
    status, entry = await request_json(
        http, "POST", replay, {"reason": "store was down"}, headers=operator_headers
    )
    assert status == 200 and entry["status"] == "processed"
    assert entry["replays"][0]["by"] == "operator"
    assert await store.collection(PAYMENTS).count_documents({}) == 1
    status, body = await request_json(
        http, "POST", replay, {"reason": "again"}, headers=operator_headers
    )
    assert status == 409


@pytest.mark.asyncio
async def test_health_and_readiness(http, gateway, store) -> None:
    async with http.get(f"{gateway.url}/healthz") as answer:
        assert answer.status == 200 and (await answer.json()) == {"status": "ok"}
    async with http.get(f"{gateway.url}/readyz") as answer:
        assert answer.status == 200
    await store.collection(PAYMENTS).drop_index("trans_id_1")
    async with http.get(f"{gateway.url}/readyz") as answer:
        body = await answer.json()
        assert answer.status == 503 and body["error"]["code"] == "not_ready"
        assert "c2b_payments(trans_id)" in body["error"]["message"]


@pytest.mark.asyncio
async def test_unreachable_store_is_not_ready() -> None:
    dead = open_store("mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=5000", "x")
    try:
        problem = await readiness_problem(dead, INDEXES)
    finally:
        await dead.close()
    assert problem == "store did not answer within 2 s"


def scraped(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.asyncio
async def test_metrics_count_provider_calls_token_refreshes_and_latency(debits) -> None:
    policy = await debits.policy()
    _, started = await debits.start(policy)
    await debits.process(started, await debits.otp())
    async with debits.http.get(f"{debits.gateway.url}/metrics") as answer:
        samples = scraped(await answer.text())
    for endpoint in ("login", "getMoney", "verifyCode"):
        labels = (("endpoint", endpoint), ("outcome", "ok"), ("provider", "qmoney"))
        assert samples[("gateway_provider_calls_total", labels)] == 1, endpoint
        assert (
            samples[
                (
                    "gateway_provider_call_seconds_count",
                    (("endpoint", endpoint), ("provider", "qmoney")),
                )
            ]
            == 1
        )
    assert samples[("gateway_provider_token_refreshes_total", (("provider", "qmoney"),))] == 1
    assert (
        samples[
            (
                "gateway_http_request_seconds_count",
                (("method", "POST"), ("route", "TransactionCollectionHandler"), ("status", "201")),
            )
        ]
        == 1
    )


@pytest.mark.asyncio
async def test_refused_callbacks_are_counted_by_reason(http, gateway) -> None:
    async with http.post(
        f"{gateway.url}/api/v1/c2b/confirmation/wrong-secret", data=json.dumps(callback_body())
    ) as answer:
        assert answer.status == 404
    async with http.get(f"{gateway.url}/metrics") as answer:
        samples = scraped(await answer.text())
    assert (
        samples[
            (
                "gateway_c2b_callbacks_total",
                (("kind", "confirmation"), ("outcome", "refused_wrong_secret")),
            )
        ]
        == 1
    )


@pytest.mark.asyncio
async def test_metrics_scrape_cleanly(http, gateway, store, operator_headers) -> None:
    await seed_ledger(store)
    async with http.post(
        f"{gateway.url}/api/v1/c2b/confirmation/test-callback", data=json.dumps(callback_body())
    ) as answer:
        assert answer.status == 200
    async with http.get(f"{gateway.url}/metrics") as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = await answer.text()
    samples = scraped(text)
    assert (
        samples[
            ("gateway_c2b_callbacks_total", (("kind", "confirmation"), ("outcome", "processed")))
        ]
        == 1
    )
    assert samples[("gateway_payments", (("channel", "qmoney"), ("status", "succeeded")))] == 2
    assert samples[("gateway_c2b_inbox_backlog", ())] == 1
    assert (
        samples[
            (
                "gateway_http_requests_total",
                (("method", "POST"), ("route", "ConfirmationHandler"), ("status", "200")),
            )
        ]
        == 1
    )


@pytest.mark.asyncio
async def test_request_id_is_echoed_or_made(http, gateway) -> None:
    async with http.get(f"{gateway.url}/healthz", headers={"X-Request-ID": "abc-123"}) as answer:
        assert answer.headers["X-Request-ID"] == "abc-123"
    async with http.get(f"{gateway.url}/nope") as answer:
        assert answer.status == 404 and len(answer.headers["X-Request-ID"]) == 32
    async with http.get(
        f"{gateway.url}/healthz", headers={"X-Request-ID": "bad id\twith spaces"}
    ) as answer:
        assert answer.headers["X-Request-ID"] != "bad id\twith spaces"
    for page in (
        "/dashboard",
        "/dashboard/static/dashboard.js",
        "/docs",
        "/docs/static/swagger-ui.css",
        "/docs/static/index.html",
    ):
        async with http.get(gateway.url + page, headers={"X-Request-ID": "page-1"}) as answer:
            assert answer.headers["X-Request-ID"] == "page-1", page


@pytest.mark.asyncio
async def test_one_log_line_per_request_with_its_id(http, gateway, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    async with http.get(f"{gateway.url}/healthz", headers={"X-Request-ID": "req-42"}):
        pass
    [line] = [record.getMessage() for record in caplog.records if record.name == "gateway.access"]
    assert line.startswith("request request_id=req-42 method=GET path=/healthz status=200")


def test_json_log_format_keeps_a_quoted_value_whole() -> None:
    record = logging.LogRecord(
        "gateway.ledger",
        logging.INFO,
        __file__,
        1,
        "transaction_state transaction=%s channel=%s from=%s to=%s reason=%s actor=%s",
        ("t-1", "qmoney", "otp_sent", "expired", json.dumps('payer "away" today'), "olga"),
        None,
    )
    body = json.loads(JsonFormatter().format(record))
    assert (body["event"], body["to"], body["reason"], body["actor"]) == (
        "transaction_state",
        "expired",
        'payer "away" today',
        "olga",
    )


def test_json_log_format_parses_key_values() -> None:
    record = logging.LogRecord(
        "gateway.c2b",
        logging.INFO,
        __file__,
        1,
        "confirmation trans_id=%s outcome=%s",
        ("RKL1", "new"),
        None,
    )
    body = json.loads(JsonFormatter().format(record))
    assert body["event"] == "confirmation"
    assert (body["trans_id"], body["outcome"], body["level"]) == ("RKL1", "new", "INFO")


@pytest.mark.asyncio
async def test_stopping_lets_requests_in_flight_finish(http, start_gateway_with) -> None:
    gateway = await start_gateway_with(make_settings(c2b={"validation_deadline_seconds": 3.0}))
    service = gateway.services.c2b
    original_add = service.inbox.add

    arrived = asyncio.Event()

    async def slow_add(*args, **kwargs):
        arrived.set()
        await asyncio.sleep(0.8)  # a slow store: still busy when the gateway stops
        return await original_add(*args, **kwargs)

    service.inbox.add = slow_add

    async def validate() -> tuple[int, dict]:
        async with http.post(
            f"{gateway.url}/api/v1/c2b/validation/test-callback", data=json.dumps(callback_body())
        ) as answer:
            return answer.status, await answer.json()

    request = asyncio.ensure_future(validate())
    await wait_until(arrived.is_set, "the validation to reach the store")
    await gateway.stop()
    status, answer = await request
    assert (status, answer["ResultCode"]) == (200, "0")


@pytest.mark.asyncio
async def test_stopping_cuts_requests_still_running_at_the_deadline(
    http, start_gateway_with, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway")
    gateway = await start_gateway_with(make_settings(c2b={"validation_deadline_seconds": 5.0}))
    service = gateway.services.c2b
    original_add = service.inbox.add
    arrived, release = asyncio.Event(), asyncio.Event()

    async def stuck_add(*args, **kwargs):
        arrived.set()
        await release.wait()
        return await original_add(*args, **kwargs)

    service.inbox.add = stuck_add

    async def validate() -> int:
        async with http.post(
            f"{gateway.url}/api/v1/c2b/validation/test-callback", data=json.dumps(callback_body())
        ) as answer:
            return answer.status

    request = asyncio.ensure_future(validate())
    await arrived.wait()
    await gateway.stop(grace_seconds=0.2)
    release.set()
    with pytest.raises(aiohttp.ClientError):
        await request
    assert "shutdown_cut_requests count=1" in [record.getMessage() for record in caplog.records]
