"""The payment-provider API's audit stays bounded whatever a caller sends: a refused or
anonymous request is kept as a summary, an accepted one as the API validated it. The
provider call log keeps a bounded error message."""

import asyncio
import hashlib
import json

import bson
import pytest
import pytest_asyncio

from server.integrations.transport import CallLog, ProviderRejected
from server.kernel.clock import Clock
from server.psp_api.audit import EXCERPT_BYTES, PATH_CHARS, excerpt

from support import (
    JSON_TYPE,
    PROVIDER_CALLS,
    PSP_AUDIT,
    PspUser,
    ensure_insuree,
    psp_user,
    request_json,
    wait_until,
)

# The largest summary: its fields, 1 KB of body, a cut path.
SUMMARY_BYTES = 2048


def big_body(size: int = 60 * 1024) -> bytes:
    """A JSON payment request padded to `size` bytes."""
    request = {
        "chf_id": "070707070",
        "amount": "500.00",
        "psp_transaction_id": "AFR-1",
        "policy": {"token": "t", "product_code": "P", "product_name": "N"},
        "json_ext": {"padding": ""},
    }
    request["json_ext"]["padding"] = "x" * (size - len(json.dumps(request)))
    return json.dumps(request).encode()


async def audited(store, count: int = 1) -> list[dict]:
    """The audit entries, once `count` are written (they are written after the answer)."""

    async def written() -> list[dict] | None:
        entries = await store.collection(PSP_AUDIT).find({}).sort("at", 1).to_list(None)
        return entries if len(entries) >= count else None

    return await wait_until(written, f"{count} audit entries")


async def send(
    http, gateway, method: str, path: str, body: bytes = b"", headers: dict | None = None
) -> int:
    answer = await request_json(
        http, method, gateway.url + path, data=body, headers={**JSON_TYPE, **(headers or {})}
    )
    return answer.status


@pytest_asyncio.fixture
async def provider(http, gateway) -> PspUser:
    """An active external-API provider: its Authorization headers and its document."""
    return await psp_user(http, gateway, "afrimoney")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("headers", "reason"),
    [({}, "missing_token"), ({"Authorization": "Bearer forged.token.value"}, "invalid_token")],
)
async def test_a_request_without_a_valid_token_is_audited_as_a_bounded_summary(
    http, gateway, store, headers, reason
) -> None:
    body = big_body()
    assert await send(http, gateway, "POST", "/api/v1/payments", body, headers) == 401
    [entry] = await audited(store)
    assert (entry["method"], entry["path"], entry["status"], entry["reason"]) == (
        "POST",
        "/api/v1/payments",
        401,
        reason,
    )
    assert entry["source"] == "127.0.0.1" and entry["psp_uuid"] is None
    assert entry["body_bytes"] == len(body)
    assert entry["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert entry["body_excerpt"] == body[:EXCERPT_BYTES].decode()
    assert "request" not in entry and "answer" not in entry
    assert len(bson.encode(entry)) < SUMMARY_BYTES
    assert "forged" not in str(entry)


@pytest.mark.asyncio
async def test_a_refused_request_of_a_provider_is_a_summary_naming_the_provider(
    http, gateway, store, provider
) -> None:
    body = big_body()
    headers, psp = provider
    assert await send(http, gateway, "POST", "/api/v1/payments", body, headers) == 400
    [entry] = await audited(store)
    assert (entry["psp_uuid"], entry["user"]) == (psp["_id"], "afrimoney")
    assert entry["reason"] == "validation_error" and entry["body_bytes"] == len(body)
    assert len(bson.encode(entry)) < SUMMARY_BYTES


@pytest.mark.asyncio
async def test_an_accepted_request_keeps_what_was_validated_not_its_raw_body(
    http, gateway, store, provider
) -> None:
    await ensure_insuree(gateway.services, "070707070")
    body = big_body()
    assert (
        await send(http, gateway, "GET", "/api/v1/insurees/070707070/policies", body, provider[0])
        == 200
    )
    [entry] = await audited(store)
    assert entry["status"] == 200 and entry["request"] is None
    assert entry["answer"]["chf_id"] == "070707070"
    assert entry["body_bytes"] == len(body) and "body_excerpt" not in entry
    assert len(bson.encode(entry)) < SUMMARY_BYTES


@pytest.mark.asyncio
async def test_a_long_path_is_cut_in_the_audit(http, gateway, store) -> None:
    chf_id = "7" * 20000
    assert await send(http, gateway, "GET", f"/api/v1/insurees/{chf_id}/policies") == 401
    [entry] = await audited(store)
    assert len(entry["path"]) == PATH_CHARS and entry["path"].startswith("/api/v1/insurees/7")


@pytest.mark.asyncio
async def test_token_less_posts_add_a_bounded_amount_to_the_store(http, gateway, store) -> None:
    body = big_body()
    statuses = await asyncio.gather(
        *(send(http, gateway, "POST", "/api/v1/payments", body) for _ in range(40))
    )
    assert set(statuses) == {401}
    entries = await audited(store, 40)
    stored = sum(len(bson.encode(entry)) for entry in entries)
    assert stored < 40 * SUMMARY_BYTES < 40 * len(body) / 25


@pytest.mark.parametrize(
    "body", ["é".encode() * 1000, b"\xff" * 3000, b"a" * 1023 + "€".encode(), b"", b"{}"]
)
def test_an_excerpt_is_at_most_1_kb_whatever_the_bytes(body) -> None:
    text = excerpt(body)
    assert len(text.encode()) <= EXCERPT_BYTES
    if len(body) <= EXCERPT_BYTES:
        assert text == body.decode()


@pytest.mark.asyncio
async def test_a_provider_error_message_is_cut_in_the_call_log(store) -> None:
    calls = CallLog(store.collection(PROVIDER_CALLS), Clock())
    with pytest.raises(ProviderRejected):
        async with calls.call("qmoney", "getMoney"):
            raise ProviderRejected("qmoney", "E1", "x" * 100_000)
    entry = await wait_until(
        lambda: store.collection(PROVIDER_CALLS).find_one({}), "the provider call to be logged"
    )
    assert entry["outcome"] == "rejected" and entry["error"].startswith("E1 xxx")
    assert len(entry["error"]) == CallLog.ERROR_CHARS
