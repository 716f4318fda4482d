"""The openIMIS backends to test against, as fixtures, and a raw GraphQL client for them.

`openimis_backend` is parametrized over the backends that exist: `sim` (the openIMIS
simulator on an ephemeral port) always, and `real` (an openIMIS backend built from its
PyPI modules by scripts/openimis_lane.py) when TEST_OPENIMIS_URL, TEST_OPENIMIS_USERNAME
and TEST_OPENIMIS_PASSWORD are set; `simulator_backend()` starts the simulator alone,
for tests that reconfigure it. `RawOpenimis` sends the gateway's documents raw. Both
backends take the same seeding body (products, insurees, idle policies) at their
`seed_path`; only the simulator can be reconfigured (CSRF off, faults,
ready-instead-of-active) through `/_sim/`.

The fixture is registered in conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from simulators.openimis import OpenimisSimulator

REAL_VARIABLES = ("TEST_OPENIMIS_URL", "TEST_OPENIMIS_USERNAME", "TEST_OPENIMIS_PASSWORD")
REAL = all(os.environ.get(name) for name in REAL_VARIABLES)
OPENIMIS_BACKENDS = ["real", "sim"] if REAL else ["sim"]

SIM_USERNAME = "gateway"
SIM_PASSWORD = "gateway-secret"


@dataclass(frozen=True)
class OpenimisBackend:
    """Where a backend answers, who may log in, and what a test may do to it."""

    name: str
    url: str
    username: str
    password: str
    seed_path: str
    reconfigurable: bool
    simulator: OpenimisSimulator | None = None

    async def seed(self, http: aiohttp.ClientSession, body: Any) -> dict:
        """Products, insurees and idle policies; answers what was made (200 expected)."""
        async with http.post(f"{self.url}{self.seed_path}", json=body) as response:
            assert response.status == 200, await response.text()
            return await response.json()


class RawOpenimis:
    """The adapter's documents sent raw: inlined literals, the bearer after login, the
    X-CSRFToken header and the `sessionid` cookie after getCsrfToken. The cookie is
    kept here, not in the session's jar (aiohttp's jar refuses cookies from an IP)."""

    def __init__(self, http: aiohttp.ClientSession, backend: OpenimisBackend) -> None:
        self.http, self.backend = http, backend
        self.token: str | None = None
        self.csrf: str | None = None
        self.session_id: str | None = None

    async def post(self, query: str, send_csrf: bool = True) -> tuple[int, dict]:
        """One GraphQL call: its HTTP status and JSON body."""
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.csrf and send_csrf:
            headers["X-CSRFToken"] = self.csrf
        if self.session_id:
            headers["Cookie"] = f"sessionid={self.session_id}"
        async with self.http.post(
            f"{self.backend.url}/api/graphql", json={"query": query}, headers=headers
        ) as response:
            if "sessionid" in response.cookies:
                self.session_id = response.cookies["sessionid"].value
            return response.status, await response.json(content_type=None)

    async def gql(self, query: str, send_csrf: bool = True) -> dict:
        """A call answered with HTTP 200 (errors included)."""
        status, body = await self.post(query, send_csrf)
        assert status == 200, body
        return body

    async def data(self, query: str) -> dict:
        """A call that must succeed (logging in first if needed): its `data`."""
        if self.token is None:
            await self.login()
        body = await self.gql(query)
        assert "errors" not in body, body
        return body["data"]

    async def token_auth(self, password: str | None = None) -> dict:
        password = self.backend.password if password is None else password
        return await self.gql(
            f"mutation {{ tokenAuth(username: {json.dumps(self.backend.username)}, "
            f"password: {json.dumps(password)}) {{ token payload refreshExpiresIn }} }}"
        )

    async def login(self, csrf: bool = True) -> None:
        """tokenAuth, then (unless told not to) getCsrfToken for the session."""
        body = await self.token_auth()
        assert "errors" not in body, body
        self.token = body["data"]["tokenAuth"]["token"]
        if csrf:
            data = await self.data("mutation { getCsrfToken { csrfToken } }")
            self.csrf = data["getCsrfToken"]["csrfToken"]

    async def seed(self, body: Any) -> dict:
        return await self.backend.seed(self.http, body)

    async def idle_policy(
        self, value: str = "1500.00", start_date: str = "2026-12-01"
    ) -> tuple[str, str, str]:
        """Seed a product, an insuree and an idle policy of their own (the real
        backend's database is shared): (chf_id, product code, policy uuid)."""
        chf_id = f"9{secrets.randbelow(10**8):08d}"
        code = f"P{secrets.token_hex(3).upper()}"
        answer = await self.seed(
            {
                "products": [{"code": code, "name": f"Cover {code}", "lump_sum": value}],
                "insurees": [
                    {
                        "chf_id": chf_id,
                        "last_name": "Doe",
                        "other_names": "Jane",
                        "phone": "0700000001",
                    }
                ],
                "policies": [
                    {
                        "chf_id": chf_id,
                        "product_code": code,
                        "value": value,
                        "start_date": start_date,
                    }
                ],
            }
        )
        policy = answer["policies"][0]
        assert policy["status"] == 1 and policy["value"] == value
        return chf_id, code, policy["uuid"]

    async def policy(self, policy_uuid: str) -> dict:
        """The policy (with its family head's number); exactly one must match."""
        data = await self.data(
            f'{{ policies(uuid: "{policy_uuid}") {{ edges {{ node {{ uuid status value '
            "startDate effectiveDate expiryDate sumPremiums product { code name } "
            "family { headInsuree { chfId } } } } } }"
        )
        edges = data["policies"]["edges"]
        assert len(edges) == 1, data
        return edges[0]["node"]

    async def create_premium(
        self, policy_uuid: str, receipt: str, amount: str = "1500.00", pay_date: str = "2026-12-02"
    ) -> str:
        """Send createPremium; answers its clientMutationId (see `outcome`)."""
        mutation_id = str(uuid.uuid4())
        label = json.dumps(f"Mobile payment {receipt}")
        data = await self.data(
            "mutation { createPremium(input: {"
            f'clientMutationId: "{mutation_id}", clientMutationLabel: {label}, '
            f'policyUuid: "{policy_uuid}", amount: "{amount}", '
            f'receipt: {json.dumps(receipt)}, payDate: "{pay_date}", payType: "M", '
            "isPhotoFee: false}) { clientMutationId internalId } }"
        )
        assert data["createPremium"]["clientMutationId"] == mutation_id
        return mutation_id

    async def mutation_logs(self, mutation_id: str) -> list[dict]:
        data = await self.data(
            f'{{ mutationLogs(clientMutationId: "{mutation_id}") '
            "{ edges { node { status error } } } }"
        )
        return [edge["node"] for edge in data["mutationLogs"]["edges"]]

    async def outcome(self, mutation_id: str, deadline_seconds: float = 15.0) -> dict:
        """Poll mutationLogs until the mutation leaves status 0 (received), or the
        deadline passes: its log node (status 2 done, 1 failed with `error`)."""
        deadline = time.monotonic() + deadline_seconds
        while True:
            [node] = await self.mutation_logs(mutation_id)
            if node["status"] != 0 or time.monotonic() > deadline:
                return node
            await asyncio.sleep(0.2)

    async def pay(self, policy_uuid: str, receipt: str, **kwargs: str) -> dict:
        """createPremium (amount, pay_date as create_premium's), then its outcome."""
        return await self.outcome(await self.create_premium(policy_uuid, receipt, **kwargs))

    async def receipt_is_free(self, receipt: str, policy_uuid: str) -> bool:
        data = await self.data(
            f'{{ validatePremiumCode(code: {json.dumps(receipt)}, policyUuid: "{policy_uuid}") }}'
        )
        return data["validatePremiumCode"]

    async def premiums(self, policy_uuid: str) -> list[dict]:
        data = await self.data(
            f'{{ premiumsByPolicies(policyUuids: ["{policy_uuid}"]) '
            "{ edges { node { uuid receipt amount payDate payType } } } }"
        )
        return [edge["node"] for edge in data["premiumsByPolicies"]["edges"]]


def _real_backend() -> OpenimisBackend:
    return OpenimisBackend(
        name="real",
        url=os.environ["TEST_OPENIMIS_URL"].rstrip("/"),
        username=os.environ["TEST_OPENIMIS_USERNAME"],
        password=os.environ["TEST_OPENIMIS_PASSWORD"],
        seed_path="/_lane/seed",
        reconfigurable=False,
    )


@contextlib.asynccontextmanager
async def simulator_backend() -> AsyncIterator[OpenimisBackend]:
    """The simulator alone, started on an ephemeral port and stopped after."""
    # Imported here so that collecting the rest of the suite never depends on it.
    from simulators.openimis import OpenimisSimSettings, OpenimisSimulator

    simulator = OpenimisSimulator(OpenimisSimSettings(users={SIM_USERNAME: SIM_PASSWORD}))
    url = await simulator.start("127.0.0.1", 0)
    try:
        yield OpenimisBackend(
            name="sim",
            url=url.rstrip("/"),
            username=SIM_USERNAME,
            password=SIM_PASSWORD,
            seed_path="/_sim/seed",
            reconfigurable=True,
            simulator=simulator,
        )
    finally:
        await simulator.stop()


@pytest_asyncio.fixture(params=OPENIMIS_BACKENDS)
async def openimis_backend(request: pytest.FixtureRequest) -> AsyncIterator[OpenimisBackend]:
    """Each existing openIMIS backend in turn. The real one is shared by every test
    (and kept between runs): tests seed their own insurees, products and receipts."""
    if request.param == "real":
        yield _real_backend()
        return
    async with simulator_backend() as backend:
        yield backend
