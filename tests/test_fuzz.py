"""Property-based fuzzing of every JSON endpoint: arbitrary JSON never produces a 500 or a
stored partial record. The gateway runs in a thread with its own event loop so hypothesis
drives it synchronously over real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.insurance.schemas import InsureeCreateSchema, PolicyCreateSchema, ProductCreateSchema
from server.psps.schemas import PspCreateSchema
from server.runtime import start_gateway

from support import LoopThread, make_settings

EXAMPLES = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.text(max_size=30))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=12)


def shaped(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects using the endpoint's own field names (and one stranger), random values."""
    names = st.sampled_from([*fields, "unexpected"])
    return st.dictionaries(names, json_values | st.text(max_size=12), max_size=len(fields) + 1)


def bodies(fields: list[str]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        json_values.map(lambda value: json.dumps(value).encode()),
        shaped(fields).map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=64),
    )


class ThreadedGateway(LoopThread):
    def __init__(self) -> None:
        super().__init__()
        self.gateway = self.run(start_gateway(make_settings(), port=0))
        self.headers = self.run(self._seed())

    async def _seed(self) -> dict[str, dict[str, str]]:
        services = self.gateway.services
        await services.products.create(ProductCreateSchema().load(
            {"code": "BASIC-GMD", "name": "Basic cover", "price": "500.00",
             "currency": "GMD"}))
        await services.insurees.create(InsureeCreateSchema().load(
            {"chf_id": "070707070", "first_name": "Awa", "last_name": "Jallow"}))
        await services.policies.create(PolicyCreateSchema().load(
            {"chf_id": "070707070", "product_code": "BASIC-GMD", "start_date": "2026-01-01"}))
        headers = {}
        for name, role in (("admin", "admin"), ("operator", "operator"), ("afri", "psp")):
            await services.auth.create_user(name, f"{name}-password", role)
            pair = await services.auth.login(name, f"{name}-password")
            headers[role] = {"Authorization": f"Bearer {pair.access_token}"}
        await services.psps.create(PspCreateSchema().load(
            {"name": "Afrimoney", "kind": "external", "account": "A", "currency": "GMD",
             "is_external_api": True, "username": "afri"}))
        return headers

    def post(self, path: str, body: bytes, role: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", **(self.headers[role] if role else {})}
        request = urllib.request.Request(self.gateway.url + path, data=body, headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def documents(self, collection: str) -> list[dict[str, Any]]:
        store = self.gateway.services.store
        return self.run(store.collection(collection).find({}).to_list(None))

    def close(self) -> None:
        self.run(self.gateway.stop())
        super().close()


@pytest.fixture(scope="module")
def target() -> Iterator[ThreadedGateway]:
    gateway = ThreadedGateway()
    yield gateway
    gateway.close()


def assert_error_shape(status: int, body: Any) -> None:
    assert status != 500 and status < 600
    if status >= 400:
        assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])


ENDPOINTS = [
    ("/api/v1/auth/token", None, ["username", "password"]),
    ("/api/v1/auth/refresh", None, ["refresh_token"]),
    ("/api/v1/payments", "psp", ["chf_id", "amount", "psp_transaction_id", "policy",
                                 "json_ext"]),
    ("/api/v1/transactions", "operator", ["policy_uuid", "psp_uuid", "amount"]),
    ("/api/v1/insurees", "admin", ["chf_id", "first_name", "last_name", "phone", "wallet"]),
    ("/api/v1/products", "admin", ["code", "name", "price", "currency"]),
    ("/api/v1/policies", "admin", ["chf_id", "product_code", "amount", "start_date",
                                   "expiry_date", "status"]),
    ("/api/v1/psps", "admin", ["name", "kind", "account", "currency", "pin",
                               "is_external_api", "username", "active"]),
]


@pytest.mark.parametrize(("path", "role", "fields"), ENDPOINTS,
                         ids=[path for path, _, _ in ENDPOINTS])
def test_arbitrary_json_never_gets_a_500(target, path, role, fields) -> None:
    @EXAMPLES
    @given(body=bodies(fields))
    def check(body: bytes) -> None:
        status, answer = target.post(path, body, role)
        assert_error_shape(status, answer)

    check()
    for transaction in target.documents("transactions"):      # nothing half-written
        assert transaction["status"] != "processing"
        assert transaction["status"] != "succeeded" or transaction["settlement"]


CALLBACK_FIELDS = ["TransactionType", "TransID", "TransTime", "TransAmount",
                   "BusinessShortCode", "BillRefNumber", "MSISDN", "OrgAccountBalance"]


@pytest.mark.parametrize("kind", ["validation", "confirmation"])
def test_arbitrary_callbacks_are_answered_in_darajas_format_and_kept(target, kind) -> None:
    @EXAMPLES
    @given(body=bodies(CALLBACK_FIELDS))
    def check(body: bytes) -> None:
        status, answer = target.post(f"/api/v1/c2b/{kind}/test-callback", body)
        assert status == 200 and set(answer) == {"ResultCode", "ResultDesc"}

    check()
    entries = target.documents("c2b_inbox")
    assert entries and all(entry["status"] != "received" for entry in entries)
    for payment in target.documents("c2b_payments"):
        assert isinstance(payment["amount"], int) and payment["amount"] > 0
        assert payment["currency"] == "KES" and payment["trans_time"].tzinfo is not None
