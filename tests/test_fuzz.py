"""Property-based fuzzing of every JSON endpoint: arbitrary JSON never produces a 500 or a
stored partial record. The gateway runs in a thread with its own event loop so hypothesis
drives it synchronously over real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.startup.runtime import start_gateway

from support import (
    INBOX,
    INSUREES,
    PAYMENTS,
    TRANSACTIONS,
    LoopThread,
    bearer,
    callback_body,
    create_user,
    external_psp,
    idle_policy,
    make_settings,
    password_for,
)

EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


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
        await idle_policy(services)
        headers = {}
        for name, role in (("admin", "admin"), ("operator", "operator"), ("afri", "psp")):
            await create_user(services, name, role)
            pair = await services.auth.login(name, password_for(name))
            headers[role] = bearer(pair.access_token)
        await external_psp(services, "afri", name="Afrimoney", account="A")
        return headers

    def post(self, path: str, body: bytes, role: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", **(self.headers[role] if role else {})}
        request = urllib.request.Request(
            self.gateway.url + path, data=body, headers=headers, method="POST"
        )
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
    ("/api/v1/payments", "psp", ["chf_id", "amount", "psp_transaction_id", "policy", "json_ext"]),
    ("/api/v1/transactions", "operator", ["policy_uuid", "psp_uuid", "amount"]),
    ("/api/v1/insurees", "admin", ["chf_id", "first_name", "last_name", "phone", "wallet"]),
    ("/api/v1/products", "admin", ["code", "name", "price", "currency"]),
    (
        "/api/v1/policies",
        "admin",
        ["chf_id", "product_code", "amount", "start_date", "expiry_date", "status"],
    ),
    (
        "/api/v1/psps",
        "admin",
        ["name", "kind", "account", "currency", "pin", "is_external_api", "username", "active"],
    ),
]


@pytest.mark.parametrize(
    ("path", "role", "fields"), ENDPOINTS, ids=[path for path, _, _ in ENDPOINTS]
)
def test_arbitrary_json_never_gets_a_500(target, path, role, fields) -> None:
    @EXAMPLES
    @given(body=bodies(fields))
    def check(body: bytes) -> None:
        status, answer = target.post(path, body, role)
        assert_error_shape(status, answer)

    check()
    for transaction in target.documents(TRANSACTIONS):  # nothing half-written
        assert transaction["status"] != "processing"
        assert transaction["status"] != "succeeded" or transaction["settlement"]


CALLBACK_FIELDS = [
    "TransactionType",
    "TransID",
    "TransTime",
    "TransAmount",
    "BusinessShortCode",
    "BillRefNumber",
    "MSISDN",
    "OrgAccountBalance",
]


@pytest.mark.parametrize("kind", ["validation", "confirmation"])
def test_arbitrary_callbacks_are_answered_in_darajas_format_and_kept(target, kind) -> None:
    @EXAMPLES
    @given(body=bodies(CALLBACK_FIELDS))
    def check(body: bytes) -> None:
        status, answer = target.post(f"/api/v1/c2b/{kind}/test-callback", body)
        assert status == 200 and set(answer) == {"ResultCode", "ResultDesc"}

    check()
    entries = target.documents(INBOX)
    assert entries and all(entry["status"] != "received" for entry in entries)
    for payment in target.documents(PAYMENTS):
        assert isinstance(payment["amount"], int) and payment["amount"] > 0
        assert payment["currency"] == "KES" and payment["trans_time"].tzinfo is not None


# Whitespace a resend may wrap an identifier in; the stored identifier never has it.
padding = st.text(alphabet=" \t\r\n\x0b\x0c", max_size=3)


def spelt(identifier: str, *, any_case: bool) -> st.SearchStrategy[str]:
    cases = st.sampled_from([identifier, identifier.lower()] if any_case else [identifier])
    return st.tuples(padding, cases, padding).map("".join)


def test_padded_or_lower_case_trans_ids_never_store_a_second_payment(target) -> None:
    @EXAMPLES
    @given(core=st.from_regex(r"[A-Z0-9]{1,10}", fullmatch=True), data=st.data())
    def check(core: str, data: st.DataObject) -> None:
        trans_id = f"NLFZ{core}"
        for _ in range(2):
            body = callback_body(TransID=data.draw(spelt(trans_id, any_case=True)))
            status, answer = target.post(
                "/api/v1/c2b/confirmation/test-callback", json.dumps(body).encode()
            )
            assert (status, answer["ResultCode"]) == (200, 0)
        stored = [
            payment
            for payment in target.documents(PAYMENTS)
            if payment["trans_id"].strip().upper() == trans_id
        ]
        assert [payment["trans_id"] for payment in stored] == [trans_id]

    check()


def test_padded_insuree_numbers_never_create_a_second_insuree(target) -> None:
    @EXAMPLES
    @given(digits=st.from_regex(r"[0-9]{1,12}", fullmatch=True), data=st.data())
    def check(digits: str, data: st.DataObject) -> None:
        chf_id = f"31{digits}"
        statuses = []
        for _ in range(2):
            body = {
                "chf_id": data.draw(spelt(chf_id, any_case=False)),
                "first_name": "A",
                "last_name": "B",
            }
            statuses.append(target.post("/api/v1/insurees", json.dumps(body).encode(), "admin")[0])
        assert statuses in ([201, 409], [409, 409])
        stored = [
            item["chf_id"]
            for item in target.documents(INSUREES)
            if item["chf_id"].strip() == chf_id
        ]
        assert stored == [chf_id]

    check()


# --- hostile JSON and paths -------------------------------------------------
# Nesting past any body of the API (to thousands deep: Python's parser recurses),
# integers past Python's 4,300-digit conversion limit, NaN and Infinity: always a 400.
# NUL bytes, escaped or raw, in any value: never a 500.


def nested(depth: int, shape: tuple[bytes, bytes, bytes]) -> bytes:
    opener, leaf, closer = shape
    return opener * depth + leaf + closer * depth


too_deep = st.builds(
    nested,
    st.integers(33, 3000),
    st.sampled_from([(b"[", b"", b"]"), (b'{"a": ', b"1", b"}"), (b'[{"b": ', b"null", b"}]")]),
)
too_long = st.builds(
    lambda sign, digits: sign + b"9" * digits, st.sampled_from([b"", b"-"]), st.integers(4301, 8000)
)
not_finite = st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-2.5e400"])
with_nul = st.one_of(
    st.tuples(st.text(max_size=6), st.text(max_size=6)).map(
        lambda parts: json.dumps("\x00".join(parts)).encode()
    ),  # escaped: \u0000
    st.binary(max_size=6).map(lambda raw: b'"' + raw.replace(b'"', b"") + b'\x00"'),
)


def placed(values: st.SearchStrategy[bytes], fields: list[str]) -> st.SearchStrategy[bytes]:
    """The value as the body, or as the value of one of the endpoint's fields."""
    return values | st.builds(
        lambda name, value: b'{"%s": %s}' % (name.encode(), value), st.sampled_from(fields), values
    )


HOSTILE_ENDPOINTS = [
    *[
        (path, role, fields)
        for path, fields in (
            ("/api/v1/auth/token", ["username", "password"]),
            ("/api/v1/auth/refresh", ["refresh_token"]),
            ("/api/v1/auth/logout", ["refresh_token"]),
        )
        for role in (None, "operator")
    ],
    *[endpoint for endpoint in ENDPOINTS if endpoint[1] is not None],
]
HOSTILE_IDS = [f"{path} {role or 'no token'}" for path, role, _ in HOSTILE_ENDPOINTS]


@pytest.mark.parametrize(("path", "role", "fields"), HOSTILE_ENDPOINTS, ids=HOSTILE_IDS)
def test_deep_nesting_huge_numbers_nan_and_infinity_are_a_400(target, path, role, fields) -> None:
    @EXAMPLES
    @given(body=placed(too_deep | too_long | not_finite, fields))
    def check(body: bytes) -> None:
        status, answer = target.post(path, body, role)
        assert status == 400, answer
        assert answer["error"]["code"] == "validation_error"

    check()


@pytest.mark.parametrize(("path", "role", "fields"), HOSTILE_ENDPOINTS, ids=HOSTILE_IDS)
def test_nul_bytes_in_json_never_get_a_500(target, path, role, fields) -> None:
    @EXAMPLES
    @given(body=placed(with_nul, fields))
    def check(body: bytes) -> None:
        status, answer = target.post(path, body, role)
        assert_error_shape(status, answer)

    check()


def status_of(method: str, url: str) -> int:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, method=method), timeout=30
        ) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_nul_bytes_in_page_file_paths_are_a_404(target) -> None:
    @EXAMPLES
    @given(
        directory=st.sampled_from(["/dashboard/static/", "/docs/static/"]),
        name=st.sampled_from(["", "dashboard.js", "swagger-ui.css", "../app.py"]),
        before=st.text(max_size=8),
        after=st.text(max_size=8),
        method=st.sampled_from(["GET", "HEAD"]),
    )
    def check(directory: str, name: str, before: str, after: str, method: str) -> None:
        path = directory + urllib.parse.quote(f"{before}{name}\x00{after}", safe="/")
        assert status_of(method, target.gateway.url + path) == 404

    check()
