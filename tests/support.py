"""Helpers shared by the test modules."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import signal
import socket
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest
from pymongo.errors import ServerSelectionTimeoutError

from server.auth import attempts, refresh_tokens
from server.auth import repository as auth_repository
from server.inbox.repository import INBOX as INBOX
from server.insurance.repository import IDLE
from server.insurance.repository import INSUREES as INSUREES
from server.insurance.repository import POLICIES as POLICIES
from server.insurance.repository import PRODUCTS as PRODUCTS
from server.insurance.schemas import InsureeCreateSchema, PolicyCreateSchema, ProductCreateSchema
from server.kernel.errors import NotFound
from server.kernel.store import Store
from server.ledger.repository import PREMIUMS as PREMIUMS
from server.ledger.repository import TRANSACTIONS as TRANSACTIONS
from server.mpesa.repository import PAYMENTS as PAYMENTS
from server.mpesa.repository import C2BPaymentRepository
from server.psp_api import repository as psp_api_repository
from server.psps.repository import PSPS as PSPS
from server.psps.schemas import PspCreateSchema
from server.startup.config import Settings, load_settings
from server.startup.services import PROVIDER_CALLS as PROVIDER_CALLS

# The collections, by the names their repositories give them (tests name none by a
# literal): INBOX, PAYMENTS, INSUREES, PRODUCTS, POLICIES, TRANSACTIONS, PREMIUMS, PSPS and
# PROVIDER_CALLS are imported above under the repositories' own names.
USERS = auth_repository.COLLECTION
REFRESH_TOKENS = refresh_tokens.COLLECTION
LOGIN_ATTEMPTS = attempts.COLLECTION
PSP_AUDIT = psp_api_repository.AUDIT

TEST_ENV = {
    "GATEWAY_AUTH_JWT_SECRET": "test-only-jwt-secret-of-at-least-32-chars",
    "GATEWAY_C2B_CALLBACK_SECRET": "test-callback",
    "GATEWAY_DARAJA_CONSUMER_KEY": "sandbox-key",
    "GATEWAY_DARAJA_CONSUMER_SECRET": "sandbox-secret",
    "GATEWAY_SERVER_PORT": "0",
    "GATEWAY_SECURITY_PIN_KEY": "dGVzdC1vbmx5LXBpbi1rZXktMzItYnl0ZXMtbG9uZyE=",
    "GATEWAY_QMONEY_CHANNEL_ID": "sandbox-channel",
    "GATEWAY_QMONEY_CHANNEL_SECRET": "sandbox-channel-secret",
    "GATEWAY_QMONEY_USERNAME": "14001502",
    "GATEWAY_QMONEY_PASSWORD": "sandbox-qmoney",
}


def make_settings(**sections: dict[str, Any]) -> Settings:
    """Production-mode settings with test secrets; `c2b={"currency": "KES"}` overrides."""
    settings = load_settings(env=TEST_ENV)
    for name, values in sections.items():
        settings = replace(settings, **{name: replace(getattr(settings, name), **values)})
    return settings


def callback_body(**overrides: str) -> dict[str, str]:
    body = {
        "TransactionType": "Pay Bill",
        "TransID": "RKL51ZDR4F",
        "TransTime": "20231121121325",
        "TransAmount": "5.00",
        "BusinessShortCode": "600984",
        "BillRefNumber": "070707070",
        "InvoiceNumber": "",
        "OrgAccountBalance": "25.00",
        "ThirdPartyTransID": "",
        "MSISDN": "2547 ***** 126",
        "FirstName": "NICHOLAS",
        "MiddleName": "",
        "LastName": "",
    }
    body.update(overrides)
    return body


class FailingPayments(C2BPaymentRepository):
    failing = True

    async def insert_once(self, payment):
        if self.failing:
            raise ServerSelectionTimeoutError("store unreachable")
        return await super().insert_once(payment)


class LoopThread:
    """An event loop in a daemon thread, so synchronous code (hypothesis, requests) can
    drive servers started on it over real sockets."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


SUMMARY_LINES = pytest.StashKey[list[str]]()


def report_in_summary(config: pytest.Config, line: str) -> None:
    """A line for the end of the test run's output (see conftest.pytest_terminal_summary)."""
    config.stash.setdefault(SUMMARY_LINES, []).append(line)


# Running `python run.py ...` as a user does, and ports for it.

ROOT = Path(__file__).resolve().parent.parent


async def serve(
    env: Mapping[str, str], lines: int = 1, within: float = 30
) -> tuple[asyncio.subprocess.Process, list[str]]:
    """A `python run.py serve` process with exactly the environment `env`, and the first
    `lines` lines it printed (the first says where it listens)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "run.py",
        "serve",
        cwd=ROOT,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    printed = [
        (await asyncio.wait_for(process.stdout.readline(), within)).decode() for _ in range(lines)
    ]
    assert "gateway listening" in printed[0], printed
    return process, printed


async def run_py(*args: str, env: dict[str, str], stdin: str = "") -> tuple[int, str, str]:
    """Exit status, standard output and standard error of one command."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "run.py",
        *args,
        cwd=ROOT,
        env={**os.environ, **env},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    return process.returncode, out.decode(), err.decode()


def free_port_triple() -> int:
    """A port N with N, N+1 and N+2 free at the time of asking."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port >= 65000:
            continue
        with socket.socket() as first, socket.socket() as second, socket.socket() as third:
            try:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
                third.bind(("127.0.0.1", port + 2))
            except OSError:
                continue
        return port
    raise RuntimeError("no three free ports in a row")


def occupied_port(port: int = 0) -> socket.socket:
    """A listening socket on 127.0.0.1:port (0 = any); close it when done."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    return holder


async def paste(commands: str) -> tuple[int, str, str]:
    """Run printed commands as pasted into an interactive shell (no `set -e`; `python` is
    this interpreter): exit status, standard output, standard error."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        commands,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


# Waiting for what happens in the background (an audit entry written after the answer, a
# simulator delivering a callback): poll for it, never sleep a fixed time.

WAIT_SECONDS = 10.0


async def wait_until(
    condition: Callable[[], Any], what: str, *, within: float = WAIT_SECONDS, every: float = 0.02
) -> Any:
    """Poll `condition` (a function whose result may be awaitable) until its result is
    truthy, and return that result; after `within` seconds fail, naming `what` was
    awaited and the last result seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() >= deadline:
            raise AssertionError(f"waited {within:g} s for {what}; last saw {result!r:.300}")
        await asyncio.sleep(every)


# HTTP: JSON requests to the gateway (or a simulator) and their answers.

CALLBACK_SECRET = TEST_ENV["GATEWAY_C2B_CALLBACK_SECRET"]
JSON_TYPE = {"Content-Type": "application/json"}


class JsonAnswer(tuple):
    """An answer as `(status, body)`, the body decoded from JSON (None when empty); the
    answer's headers are in `.headers`."""

    headers: Mapping[str, str]

    def __new__(cls, status: int, body: Any, headers: Mapping[str, str]) -> JsonAnswer:
        answer = super().__new__(cls, (status, body))
        answer.headers = headers
        return answer

    @property
    def status(self) -> int:
        return self[0]

    @property
    def body(self) -> Any:
        return self[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def request_json(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    data: bytes | str | None = None,
) -> JsonAnswer:
    """Send `body` as JSON (or `data` as it is), with `token` as a bearer token if given;
    the status and the decoded JSON answer."""
    sent = {**(headers or {}), **(bearer(token) if token else {})}
    async with http.request(
        method, url, json=body, data=data, headers=sent, params=params
    ) as answer:
        decoded = await answer.json() if await answer.read() else None
        return JsonAnswer(answer.status, decoded, answer.headers)


def callback_url(gateway: Any, kind: str, secret: str = CALLBACK_SECRET) -> str:
    return f"{gateway.url}/api/v1/c2b/{kind}/{secret}"


async def deliver_callback(
    http: aiohttp.ClientSession,
    gateway: Any,
    kind: str,
    body: Any,
    *,
    secret: str = CALLBACK_SECRET,
) -> JsonAnswer:
    """POST a Daraja callback (`kind`: validation or confirmation) as Daraja does: `body`
    as JSON text, or bytes or text sent as they are."""
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return await request_json(
        http, "POST", callback_url(gateway, kind, secret), data=data, headers=JSON_TYPE
    )


async def sim_control(
    http: aiohttp.ClientSession, sim_url: str, method: str, path: str, body: Any = None
) -> Any:
    """A call to a simulator's control API (/_sim/...), which must succeed."""
    status, answer = await request_json(http, method, f"{sim_url}/_sim/{path}", body)
    assert status == 200, answer
    return answer


# Users and payment providers. A test user's password is `<username>-password`.


def password_for(username: str) -> str:
    return f"{username}-password"


async def create_user(services: Any, username: str, role: str = "operator") -> None:
    await services.auth.create_user(username, password_for(username), role)


async def login_headers(
    http: aiohttp.ClientSession, base_url: str, username: str, password: str | None = None
) -> dict[str, str]:
    """Log in over HTTP; Authorization headers with the access token."""
    status, body = await request_json(
        http,
        "POST",
        f"{base_url}/api/v1/auth/token",
        {"username": username, "password": password or password_for(username)},
    )
    assert status == 200, body
    return bearer(body["access_token"])


async def headers_for_role(
    http: aiohttp.ClientSession, gateway: Any, username: str, role: str
) -> dict[str, str]:
    """A new user with `role`, logged in: its Authorization headers."""
    await create_user(gateway.services, username, role)
    return await login_headers(http, gateway.url, username)


async def external_psp(
    services: Any,
    username: str,
    *,
    name: str | None = None,
    account: str | None = None,
    currency: str = "GMD",
    active: bool = True,
) -> dict[str, Any]:
    """An external-API payment provider whose API user is `username`."""
    return await services.psps.create(
        PspCreateSchema().load(
            {
                "name": name or username.title(),
                "kind": "external",
                "account": account or f"{username}-account",
                "currency": currency,
                "is_external_api": True,
                "username": username,
                "active": active,
            }
        )
    )


class PspUser(NamedTuple):
    headers: dict[str, str]  # the provider's API user's Authorization headers
    psp: dict[str, Any]


async def psp_user(
    http: aiohttp.ClientSession, gateway: Any, username: str = "afrimoney", **psp: Any
) -> PspUser:
    """An API user with the psp role, its external-API provider (see external_psp) and
    its Authorization headers."""
    await create_user(gateway.services, username, "psp")
    document = await external_psp(gateway.services, username, **psp)
    return PspUser(await login_headers(http, gateway.url, username), document)


# Insurees, products and policies, through the services or the admin API.


@dataclass(frozen=True)
class Product:
    code: str
    price: str
    currency: str
    name: str = "Basic cover"

    def body(self) -> dict[str, str]:
        return {
            "code": self.code,
            "name": self.name,
            "price": self.price,
            "currency": self.currency,
        }


BASIC_GMD = Product("BASIC-GMD", "500.00", "GMD")
BASIC_KES = Product("BASIC-KES", "1500.00", "KES")
CHF_ID = "070707070"
POLICY_START = datetime(2026, 1, 1, tzinfo=UTC)


def insuree_body(chf_id: str = CHF_ID, **fields: str) -> dict[str, str]:
    return {"chf_id": chf_id, "first_name": "Awa", "last_name": "Jallow", **fields}


def policy_body(
    chf_id: str = CHF_ID, product: Product = BASIC_GMD, **fields: Any
) -> dict[str, Any]:
    return {
        "chf_id": chf_id,
        "product_code": product.code,
        "start_date": POLICY_START.date().isoformat(),
        **fields,
    }


async def ensure_product(services: Any, product: Product = BASIC_GMD) -> dict[str, Any]:
    try:
        return await services.products.get(product.code)
    except NotFound:
        return await services.products.create(ProductCreateSchema().load(product.body()))


async def ensure_insuree(services: Any, chf_id: str = CHF_ID, **fields: str) -> dict[str, Any]:
    """The insuree `chf_id`, created with `fields` (see insuree_body) unless it exists."""
    try:
        return await services.insurees.get(chf_id)
    except NotFound:
        return await services.insurees.create(
            InsureeCreateSchema().load(insuree_body(chf_id, **fields))
        )


async def idle_policy(
    services: Any,
    chf_id: str = CHF_ID,
    product: Product = BASIC_GMD,
    *,
    amount: str | None = None,
    **insuree: str,
) -> dict[str, Any]:
    """A new idle policy of `product` for the insuree `chf_id`, worth `amount` (the
    product's price if not given), starting on POLICY_START; the product and the insuree
    (with the fields `insuree`) are created unless they exist."""
    await ensure_product(services, product)
    await ensure_insuree(services, chf_id, **insuree)
    body = policy_body(chf_id, product, **({} if amount is None else {"amount": amount}))
    return await services.policies.create(PolicyCreateSchema().load(body))


async def idle_policy_over_api(
    http: aiohttp.ClientSession,
    base_url: str,
    headers: Mapping[str, str],
    chf_id: str = CHF_ID,
    product: Product = BASIC_GMD,
    *,
    start_date: str | None = None,
    **insuree: str,
) -> dict[str, Any]:
    """The same through the admin API, as the admin of `headers`: the policy's answer."""
    api = f"{base_url}/api/v1"
    status, body = await request_json(
        http, "POST", f"{api}/insurees", insuree_body(chf_id, **insuree), headers=headers
    )
    assert status == 201 or body["error"]["code"] == "insuree_exists", body
    status, body = await request_json(
        http, "POST", f"{api}/products", product.body(), headers=headers
    )
    assert status == 201 or body["error"]["code"] == "product_exists", body
    dates = {} if start_date is None else {"start_date": start_date}
    status, policy = await request_json(
        http, "POST", f"{api}/policies", policy_body(chf_id, product, **dates), headers=headers
    )
    assert status == 201, policy
    return policy


# Documents written straight into the store, as an older gateway (or a crash) left them.


async def stored_policy(
    store: Store, *, value: int = 50000, status: int = IDLE, start: datetime = POLICY_START
) -> dict[str, Any]:
    policy = {
        "_id": str(uuid.uuid4()),
        "chf_id": CHF_ID,
        "product_code": "BASIC",
        "product_name": "Basic",
        "value": value,
        "currency": "GMD",
        "status": status,
        "start_date": start,
        "created_at": POLICY_START,
        "updated_at": POLICY_START,
    }
    await store.collection(POLICIES).insert_one(policy)
    return policy


async def stored_debit(
    store: Store, policy: dict[str, Any], *, amount: int = 50000, paid_at: datetime
) -> dict[str, Any]:
    """A succeeded Qmoney debit of `policy`, not settled yet."""
    transaction = {
        "_id": str(uuid.uuid4()),
        "channel": "qmoney",
        "status": "succeeded",
        "open": False,
        "amount": amount,
        "currency": "GMD",
        "policy_uuid": policy["_id"],
        "chf_id": policy["chf_id"],
        "psp_uuid": "p",
        "paid_at": paid_at,
        "settlement": None,
        "created_at": POLICY_START,
        "updated_at": POLICY_START,
    }
    await store.collection(TRANSACTIONS).insert_one(transaction)
    return transaction


async def unknown_debit(store: Any, policy: Mapping[str, Any], at: datetime) -> None:
    """A Qmoney debit left `unknown` (its completing answer lost) on `policy`, stored as
    the engine leaves one."""
    await store.collection(TRANSACTIONS).insert_one(
        {
            "_id": str(uuid.uuid4()),
            "channel": "qmoney",
            "status": "unknown",
            "open": True,
            "amount": 500_00,
            "currency": "GMD",
            "policy_uuid": policy["_id"],
            "chf_id": policy["chf_id"],
            "psp_uuid": "qmoney-psp",
            "provider_reference": None,
            "failure": None,
            "settlement": None,
            "created_by": "olga",
            "created_at": at,
            "updated_at": at,
            "history": [],
        }
    )


@asynccontextmanager
async def simulator_command(*arguments: str) -> AsyncIterator[str]:
    """`python -m simulators ARGUMENTS --port 0` in its own process: its base URL, from
    the line it prints when ready. On leaving, SIGINT; it must exit 0, with no
    traceback."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulators",
        *arguments,
        "--port",
        "0",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        url = re.search(r"http://\S+", line)
        assert url, line
        yield url.group()
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0
    assert b"Traceback" not in stderr
