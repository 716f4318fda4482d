"""POST /api/v1/reconciliation/statements over the real app: an M-Pesa statement against
payments stored through the real confirmation callback, a provider's file against
payments made through the provider API, what is refused (and that a refused file
leaves nothing behind), the route's own body limit, and the list of imports."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from test_openapi import answer_schema, check_against, template_for
from test_statements import Charge, Paid, mpesa_statement, psp_file

from server.api.app import openapi_spec
from server.reconciliation import items
from server.reconciliation.statement_store import STATEMENT_ROWS, STATEMENTS

from support import (
    BASIC_GMD,
    BASIC_KES,
    INBOX,
    PAYMENTS,
    PREMIUMS,
    TRANSACTIONS,
    deliver_callback,
    headers_for_role,
    idle_policy,
    make_settings,
    psp_user,
    request_json,
)

PATH = "/api/v1/reconciliation/statements"
CSV = {"Content-Type": "text/csv"}
ITEMS = items.ITEMS

A = Paid("TXA0000001", "08:00:00", "1500.00", "111111111")
B = Paid("TXB0000002", "08:30:00", "200.00", "222222222")
C_HERE = Paid("TXC0000003", "09:00:00", "300.00", "333333333")
C_THERE = Paid("TXC0000003", "09:00:00", "350.00", "333333333")
D = Paid("TXD0000004", "09:30:00", "75.00", "444444444")  # here only
E = Paid("TXE0000005", "10:00:00", "1500.00", "070707070")  # there only: an idle policy's
F = Paid("TXF0000006", "11:00:00", "1500.00", "080808080")  # there only: an idle policy's
G = Paid("TXG0000007", "12:00:00", "50.00", "555555555")
CHARGE = Charge("TXK0000009", "11:30:00", "15.00")
FIRST = mpesa_statement([A, B, C_THERE, E, F, CHARGE])


async def send(http, gateway, headers, body, *, content_type=CSV, **params):
    return await request_json(
        http,
        "POST",
        gateway.url + PATH,
        data=body,
        headers={**content_type, **headers},
        params=params or {"kind": "mpesa"},
    )


def documented(answer, method: str = "post") -> None:
    """The answer is the one the OpenAPI document gives for its status."""
    spec = openapi_spec()
    schema = answer_schema(spec, template_for(PATH, spec), method, answer.status)
    check_against(spec, schema, answer.body)


async def counts(store) -> dict[str, int]:
    return {
        name: await store.collection(name).count_documents({})
        for name in (PAYMENTS, INBOX, ITEMS, STATEMENTS, STATEMENT_ROWS, PREMIUMS)
    }


@pytest.mark.asyncio
async def test_a_statement_is_matched_recovered_flagged_and_imported_once(
    http, gateway, store, operator_headers
) -> None:
    services = gateway.services
    for chf_id in ("070707070", "080808080"):
        await idle_policy(services, chf_id, BASIC_KES)
    for payment in (A, B, C_HERE, D):
        status, _ = await deliver_callback(http, gateway, "confirmation", payment.confirmation())
        assert status == 200

    answer = await send(http, gateway, operator_headers, FIRST)
    assert answer.status == 201, answer.body
    documented(answer)
    assert answer.body["summary"] == {
        "matched": 2,
        "recovered": 2,
        "differing": 1,
        "missing_here": 0,
        "missing_at_provider": 1,
        "other": 1,
        "seen_before": 0,
    }
    assert answer.body["already_imported"] is False
    statement = answer.body["statement"]
    assert (statement["kind"], statement["provider"], statement["rows"]) == ("mpesa", "600984", 6)
    assert statement["period_from"] == "2026-12-01T05:00:00+00:00"  # 08:00 Nairobi
    assert statement["period_to"] == "2026-12-01T08:30:00+00:00"
    assert statement["imported_by"] == "operator"

    # The two the gateway lacked: stored once each, through the inbox, and settled.
    for recovered in (E, F):
        payment = await store.collection(PAYMENTS).find_one({"trans_id": recovered.receipt})
        assert payment["status"] == "settled"
        assert payment["recovered"]["source"] == "statement"
        item = await store.collection(ITEMS).find_one({"key": recovered.receipt})
        assert (item["outcome"], item["recovered_by"]) == ("matched", "statement")
    assert await store.collection(PREMIUMS).count_documents({}) == 2
    # The differing one: flagged on the payment, the row kept in the inbox.
    differing = await store.collection(PAYMENTS).find_one({"trans_id": C_HERE.receipt})
    assert [flag["reason"] for flag in differing["review"]] == ["differs_from_statement"]
    item = await store.collection(ITEMS).find_one({"key": C_HERE.receipt})
    assert (item["outcome"], item["amount"], item["amount_here"]) == ("differing", 35000, 30000)
    assert await store.collection(INBOX).count_documents({"source": "statement"}) == 3
    missing = await store.collection(ITEMS).find_one({"key": D.receipt})
    assert (missing["outcome"], missing["amount"]) == ("missing_at_provider", 7500)
    for matched in (A, B):
        item = await store.collection(ITEMS).find_one({"key": matched.receipt})
        assert item["outcome"] == "matched" and "recovered_by" not in item

    # The same file again: its first summary, nothing changed.
    before = await counts(store)
    again = await send(http, gateway, operator_headers, FIRST)
    assert again.status == 200, again.body
    documented(again)
    assert again.body["already_imported"] is True
    assert again.body["summary"] == answer.body["summary"]
    assert again.body["statement"]["id"] == statement["id"]
    assert await counts(store) == before

    # A later file that overlaps: a row already imported is not checked again.
    second = await send(http, gateway, operator_headers, mpesa_statement([F, G]))
    assert second.status == 201, second.body
    assert second.body["summary"] == {
        "matched": 0,
        "recovered": 1,
        "differing": 0,
        "missing_here": 0,
        "missing_at_provider": 0,
        "other": 0,
        "seen_before": 1,
    }
    assert await store.collection(PAYMENTS).count_documents({"trans_id": F.receipt}) == 1
    assert await store.collection(STATEMENT_ROWS).count_documents({}) == 6  # payment rows

    listed = await request_json(http, "GET", gateway.url + PATH, headers=operator_headers)
    assert listed.status == 200
    documented(listed, "get")
    assert [item["id"] for item in listed.body["items"]] == [
        second.body["statement"]["id"],
        statement["id"],
    ]
    assert listed.body["items"][1]["summary"] == answer.body["summary"]


@pytest.mark.asyncio
async def test_a_malformed_statement_is_refused_whole_and_leaves_nothing(
    http, gateway, store, operator_headers
) -> None:
    raw = mpesa_statement([E, Paid("TXF0000006", "11:00:00", "15OO.00", "080808080")])
    answer = await send(http, gateway, operator_headers, raw)
    assert answer.status == 400, answer.body
    documented(answer)
    error = answer.body["error"]
    assert error["code"] == "statement_malformed"
    assert (error["details"]["row"], error["details"]["column"]) == (7, "Paid In")
    assert error["details"]["problems"] == [
        {
            "row": 7,
            "column": "Paid In",
            "message": "amount '15OO.00' is not a decimal number like '10.50'",
        }
    ]
    assert "row 7, Paid In" in error["message"] and "nothing was imported" in error["message"]
    assert all(count == 0 for count in (await counts(store)).values())


@pytest.mark.asyncio
async def test_a_provider_file_is_matched_against_its_payments(
    http, gateway, store, operator_headers
) -> None:
    services = gateway.services
    provider = await psp_user(http, gateway, "afrimoney")
    for reference in ("AFR-1", "AFR-2", "AFR-3"):
        policy = await idle_policy(services, "060606060", BASIC_GMD)
        body = {
            "chf_id": "060606060",
            "amount": "500.00",
            "psp_transaction_id": reference,
            "policy": {
                "token": policy["payment_token"],
                "product_code": policy["product_code"],
                "product_name": policy["product_name"],
            },
        }
        paid = await request_json(
            http, "POST", f"{gateway.url}/api/v1/payments", body, headers=provider.headers
        )
        assert paid.status == 201, paid.body
    today = datetime.now(UTC).date().isoformat()
    raw = psp_file(
        [
            ("AFR-1", "500.00", "GMD", today),
            ("AFR-2", "450.00", "GMD", today),
            ("AFR-9", "500.00", "GMD", f"{today}T09:00:00Z"),
        ]
    )
    psp_uuid = provider.psp["_id"]
    answer = await send(http, gateway, operator_headers, raw, kind="psp", psp=psp_uuid)
    assert answer.status == 201, answer.body
    documented(answer)
    assert answer.body["summary"] == {
        "matched": 1,
        "recovered": 0,
        "differing": 1,
        "missing_here": 1,
        "missing_at_provider": 1,
        "other": 0,
        "seen_before": 0,
    }
    assert answer.body["statement"]["provider"] == psp_uuid
    found = {item["key"]: item for item in await store.collection(ITEMS).find({}).to_list(None)}
    assert {key: item["outcome"] for key, item in found.items()} == {
        f"{psp_uuid}:AFR-1": "matched",
        f"{psp_uuid}:AFR-2": "differing",
        f"{psp_uuid}:AFR-9": "missing_here",
        f"{psp_uuid}:AFR-3": "missing_at_provider",
    }
    assert found[f"{psp_uuid}:AFR-9"]["amount_here"] is None
    assert found[f"{psp_uuid}:AFR-2"]["amount_here"] == 50000
    assert await store.collection(TRANSACTIONS).count_documents({}) == 3  # nothing recovered

    unknown = await send(http, gateway, operator_headers, raw, kind="psp", psp="no-such-provider")
    assert unknown.status == 404 and unknown.body["error"]["code"] == "unknown_psp"
    documented(unknown)
    without = await send(http, gateway, operator_headers, raw, kind="psp")
    assert without.status == 400 and "psp" in without.body["error"]["details"]["fields"]


@pytest.mark.asyncio
async def test_only_csv_from_an_operator_is_taken(http, gateway, store, headers_for) -> None:
    operator = await headers_for("olga", "operator")
    raw = mpesa_statement([E])
    for content_type in (
        {"Content-Type": "application/json"},
        {},
        {"Content-Type": "text/csv; charset=latin-1"},
        {"Content-Type": "text/plain"},
    ):
        answer = await send(http, gateway, operator, raw, content_type=content_type)
        assert answer.status == 415, (content_type, answer.body)
        assert answer.body["error"]["code"] == "unsupported_media_type"
        documented(answer)
    answer = await send(
        http, gateway, operator, raw, content_type={"Content-Type": "Text/CSV; charset=UTF-8"}
    )
    assert answer.status == 201, answer.body
    psp = await headers_for("afrimoney", "psp")
    assert (await send(http, gateway, psp, raw)).status == 403
    assert (await send(http, gateway, {}, raw)).status == 401
    bad_query = await send(http, gateway, operator, raw, kind="bank")
    assert bad_query.status == 400 and "kind" in bad_query.body["error"]["details"]["fields"]


def large_statement(size: int) -> bytes:
    """A statement of about `size` bytes: one payment, then charges."""
    raw = mpesa_statement([E])
    charges = []
    while len(raw) + sum(len(line) for line in charges) < size:
        number = len(charges)
        charge = Charge(f"CHG{number:07d}", f"10:{number // 60:02d}:{number % 60:02d}", "1.00")
        charges.append(mpesa_statement([charge], titles=False).split(b"\r\n", 1)[1])
    return raw + b"".join(charges)


@pytest.mark.asyncio
async def test_this_route_takes_bodies_up_to_its_own_limit_and_no_other_route_does(
    http, start_gateway_with, store
) -> None:
    gateway = await start_gateway_with(
        make_settings(reconciliation={"max_statement_bytes": 100_000})
    )
    operator = await headers_for_role(http, gateway, "operator", "operator")
    admin = await headers_for_role(http, gateway, "admin", "admin")
    raw = large_statement(80_000)  # over server.max_body_bytes (64 KiB)
    assert 65536 < len(raw) < 100_000

    answer = await send(http, gateway, operator, raw)
    assert answer.status == 201, answer.body
    assert answer.body["summary"]["other"] == answer.body["statement"]["rows"] - 1

    elsewhere = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/insurees",
        data=b"{" + b" " * 80_000 + b"}",
        headers={"Content-Type": "application/json", **admin},
    )
    assert elsewhere.status == 413
    assert (await send(http, gateway, {}, raw)).status == 401  # read only for operators

    too_large = await send(http, gateway, operator, large_statement(150_000))
    assert too_large.status == 413
    assert too_large.body["error"]["code"] == "payload_too_large"
    assert too_large.body["error"]["details"] == {"limit": 100_000}

    async def chunked():
        body = large_statement(150_000)
        for start in range(0, len(body), 16_384):
            yield body[start : start + 16_384]

    streamed = await request_json(
        http,
        "POST",
        gateway.url + PATH,
        data=chunked(),
        headers={**CSV, **operator},
        params={"kind": "mpesa"},
    )
    assert streamed.status == 413
    assert await store.collection(STATEMENTS).count_documents({}) == 1
