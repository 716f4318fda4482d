"""The openIMIS GraphQL simulator on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import jwt
import pytest
import pytest_asyncio

from simulators.openimis import OpenimisSimSettings, OpenimisSimulator
from simulators.openimis_state import SeedError

from support import simulator_command, wait_until

pytestmark = pytest.mark.asyncio

USERNAME, PASSWORD = "Admin", "admin123"
CHF_ID = "070707070"
SEED = {
    "products": [{"code": "FAM01", "name": "Family cover", "lump_sum": "1500.00"}],
    "insurees": [
        {"chf_id": CHF_ID, "last_name": "Doe", "other_names": "Jane", "phone": "0700000001"}
    ],
    "policies": [
        {"chf_id": CHF_ID, "product_code": "FAM01", "value": "1500.00", "start_date": "2026-12-01"}
    ],
}
POLICY_FIELDS = (
    "uuid status value startDate effectiveDate expiryDate sumPremiums product { code name }"
)

StartSim = Callable[..., Awaitable[OpenimisSimulator]]


class Client:
    """GraphQL over HTTP as the gateway's adapter sends it, with its own cookie jar."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url
        self.token: str | None = None
        self.csrf: str | None = None

    async def post(self, query: str, **headers: str) -> tuple[int, Any]:
        sent = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if self.csrf:
            sent["X-CSRFToken"] = self.csrf
        async with self.http.post(
            f"{self.url}/api/graphql", json={"query": query}, headers={**sent, **headers}
        ) as response:
            return response.status, await response.json(content_type=None)

    async def gql(self, query: str) -> Any:
        """The body of an answer that must be HTTP 200."""
        status, body = await self.post(query)
        assert status == 200, body
        return body

    async def data(self, query: str) -> Any:
        body = await self.gql(query)
        assert "errors" not in body, body
        return body["data"]

    async def error(self, query: str) -> str:
        """The message of the one error of an HTTP 200 answer."""
        [error] = (await self.gql(query))["errors"]
        return str(error["message"])

    async def token_auth(self, username: str = USERNAME, password: str = PASSWORD) -> Any:
        return await self.gql(
            f"mutation {{ tokenAuth(username: {json.dumps(username)}, "
            f"password: {json.dumps(password)}) {{ token payload refreshExpiresIn }} }}"
        )

    async def login(self, csrf: bool = True) -> Client:
        self.token = (await self.token_auth())["data"]["tokenAuth"]["token"]
        if csrf:
            data = await self.data("mutation { getCsrfToken { csrfToken } }")
            self.csrf = data["getCsrfToken"]["csrfToken"]
        return self

    async def policy(self, uuid: str) -> Any:
        query = f'{{ policies(uuid: "{uuid}") {{ edges {{ node {{ {POLICY_FIELDS} }} }} }} }}'
        [edge] = (await self.data(query))["policies"]["edges"]
        return edge["node"]

    async def create_premium(
        self, policy: str, receipt: str, mutation_id: str | None = None, **fields: str
    ) -> Any:
        """createPremium's answer (mutation id "mutation-<receipt>" unless given); fields
        override amount and payDate or add others (JSON-quoted)."""
        values = {"amount": "1500.00", "payDate": "2026-12-02", "payType": "M", **fields}
        given = ", ".join(f"{name}: {json.dumps(value)}" for name, value in values.items())
        mutation_id = mutation_id or f"mutation-{receipt}"
        body = await self.gql(
            f'mutation {{ createPremium(input: {{clientMutationId: "{mutation_id}", '
            f'clientMutationLabel: "Mobile payment {receipt}", policyUuid: "{policy}", '
            f'receipt: "{receipt}", isPhotoFee: false, {given}}}) '
            "{ clientMutationId internalId } }"
        )
        return body

    async def pay(self, policy: str, receipt: str, **fields: str) -> Any:
        """Create a premium (the call must succeed); its mutation log node."""
        body = await self.create_premium(policy, receipt, **fields)
        assert "errors" not in body, body
        return await self.log(f"mutation-{receipt}")

    async def log(self, mutation_id: str) -> Any:
        data = await self.data(
            f'{{ mutationLogs(clientMutationId: "{mutation_id}") '
            "{ edges { node { status error } } } }"
        )
        [edge] = data["mutationLogs"]["edges"]
        return edge["node"]


@pytest_asyncio.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """Start seeded simulators (settings overridable); all are stopped afterwards."""
    started: list[OpenimisSimulator] = []

    async def start(**overrides: Any) -> OpenimisSimulator:
        simulator = OpenimisSimulator(OpenimisSimSettings(**overrides))
        started.append(simulator)
        simulator.seed(SEED)
        await simulator.start()
        return simulator

    yield start
    for simulator in started:
        await simulator.stop()


@pytest_asyncio.fixture
async def sim(start_sim: StartSim) -> OpenimisSimulator:
    return await start_sim()


@pytest_asyncio.fixture
async def jar_http() -> AsyncIterator[aiohttp.ClientSession]:
    """A session whose cookie jar keeps the simulator's cookies (it is an IP address)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


@pytest.fixture
def client(jar_http: aiohttp.ClientSession, sim: OpenimisSimulator) -> Client:
    return Client(jar_http, sim.base_url)


def policy_uuid(sim: OpenimisSimulator) -> str:
    return next(iter(sim.engine.data.policies))


async def control(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as response:
        return response.status, await response.json()


async def arm(http: aiohttp.ClientSession, sim: OpenimisSimulator, **fault: Any) -> None:
    status, answer = await control(http, "POST", f"{sim.base_url}/_sim/faults", fault)
    assert status == 200, answer


async def sim_state(http: aiohttp.ClientSession, sim: OpenimisSimulator, name: str) -> Any:
    return (await control(http, "GET", f"{sim.base_url}/_sim/{name}"))[1]["items"]


# --------------------------------------------------------------------------- login


async def test_token_auth_answers_a_jwt_whose_payload_states_its_expiry(client: Client) -> None:
    answer = (await client.token_auth())["data"]["tokenAuth"]
    payload = answer["payload"]
    assert set(payload) == {"username", "exp", "origIat"}
    assert payload["username"] == USERNAME
    assert payload["exp"] - payload["origIat"] == 86400
    assert abs(payload["origIat"] - time.time()) < 5
    assert answer["refreshExpiresIn"] == payload["origIat"] + 30 * 86400
    claims = jwt.decode(answer["token"], options={"verify_signature": False})
    assert {key: claims[key] for key in payload} == payload


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        (USERNAME, "wrong", "INCORRECT_CREDENTIALS"),
        ("nobody", PASSWORD, "INCORRECT_CREDENTIALS"),
        (USERNAME, "", "Missing username or password"),
    ],
)
async def test_wrong_credentials_are_refused(
    client: Client, username: str, password: str, message: str
) -> None:
    body = await client.token_auth(username, password)
    assert body["errors"][0]["message"] == message
    assert body["data"] == {"tokenAuth": None}


async def test_configured_users_replace_the_default(
    start_sim: StartSim, jar_http: aiohttp.ClientSession
) -> None:
    sim = await start_sim(users={"gateway": "s3cret"})
    client = Client(jar_http, sim.base_url)
    assert (await client.token_auth())["errors"][0]["message"] == "INCORRECT_CREDENTIALS"
    assert (await client.token_auth("gateway", "s3cret"))["data"]["tokenAuth"]["token"]


@pytest.mark.parametrize(
    "query",
    [
        '{ insurees(chfId: "070707070") { edges { node { uuid } } } }',
        "{ policies(status: 1) { edges { node { uuid } } } }",
        '{ premiumsByPolicies(policyUuids: ["x"]) { edges { node { uuid } } } }',
        '{ mutationLogs(clientMutationId: "x") { edges { node { status } } } }',
        '{ validatePremiumCode(code: "R1", policyUuid: "x") }',
    ],
)
async def test_anonymous_queries_are_unauthorized(client: Client, query: str) -> None:
    body = await client.gql(query)
    assert body["errors"][0]["message"] == "unauthorized"
    assert list(body["data"].values()) == [None]


async def test_anonymous_get_csrf_token_is_refused(client: Client) -> None:
    message = await client.error("mutation { getCsrfToken { csrfToken } }")
    assert message == "You do not have permission to perform this action"


async def test_expired_token_fails_every_root_field_login_included(
    start_sim: StartSim, jar_http: aiohttp.ClientSession
) -> None:
    sim = await start_sim(token_seconds=1, csrf=False)
    client = await Client(jar_http, sim.base_url).login(csrf=False)
    query = '{ insurees(chfId: "070707070") { edges { node { uuid } } } }'
    assert (await client.data(query))["insurees"]["edges"]

    async def refused() -> Any:
        body = await client.gql(query)
        return body.get("errors")

    errors = await wait_until(refused, "the token to expire", within=4)
    assert errors[0]["message"] == "Signature has expired"
    body = await client.token_auth()  # still sending the expired bearer
    assert body["errors"][0]["message"] == "Signature has expired"
    client.token = None
    assert (await client.token_auth())["data"]["tokenAuth"]["token"]


async def test_a_token_that_is_not_ours_cannot_be_decoded(client: Client) -> None:
    client.token = jwt.encode({"username": USERNAME, "exp": 2**40}, "k" * 32, "HS256")
    message = await client.error('{ insurees(chfId: "070707070") { edges { node { uuid } } } }')
    assert message == "Error decoding signature"


# --------------------------------------------------------------------------- CSRF


async def test_csrf_token_comes_with_an_http_only_session_cookie(
    client: Client, sim: OpenimisSimulator
) -> None:
    await client.login(csrf=False)
    async with client.http.post(
        f"{sim.base_url}/api/graphql",
        json={"query": "mutation { getCsrfToken { csrfToken } }"},
        headers={"Authorization": f"Bearer {client.token}"},
    ) as response:
        token = (await response.json())["data"]["getCsrfToken"]["csrfToken"]
        cookie = response.cookies["sessionid"]
    assert len(token) == 64
    assert cookie["httponly"] and cookie["path"] == "/"
    assert re.fullmatch(r"[a-z0-9]{32}", cookie.value)


async def test_with_csrf_on_queries_need_the_session_and_its_latest_token(
    client: Client,
) -> None:
    query = '{ insurees(chfId: "070707070") { edges { node { chfId } } } }'
    await client.login(csrf=False)
    assert await client.error(query) == "'csrftoken'"  # no session yet
    await client.login()
    assert (await client.data(query))["insurees"]["edges"] == [{"node": {"chfId": CHF_ID}}]
    first = client.csrf
    client.csrf = None
    assert await client.error(query) == "'HTTP_X_CSRFTOKEN'"  # the session, no header
    client.csrf = "x" * 64
    assert await client.error(query) == "CSRF token missing or incorrect."
    await client.login()  # a new token in the same session replaces the first
    assert client.csrf != first
    assert (await client.data(query))["insurees"]["edges"]
    client.csrf = first
    assert await client.error(query) == "CSRF token missing or incorrect."
    client.http.cookie_jar.clear()  # the header without the session cookie
    await client.login(csrf=False)
    client.csrf = first
    assert await client.error(query) == "'csrftoken'"


async def test_create_premium_without_csrf_fails_before_it_is_logged(
    client: Client, sim: OpenimisSimulator
) -> None:
    await client.login(csrf=False)
    body = await client.create_premium(policy_uuid(sim), "R1")
    assert body["errors"][0]["message"] == "'csrftoken'"
    assert body["data"] == {"createPremium": None}
    assert sim.engine.data.mutation_logs == []
    assert sim.engine.data.premiums == []


async def test_validate_premium_code_needs_only_the_login(
    client: Client, sim: OpenimisSimulator
) -> None:
    await client.login(csrf=False)
    query = f'{{ validatePremiumCode(code: "R1", policyUuid: "{policy_uuid(sim)}") }}'
    assert await client.data(query) == {"validatePremiumCode": True}


async def test_with_csrf_off_the_bearer_is_enough_and_it_switches_at_run_time(
    client: Client, sim: OpenimisSimulator, http: aiohttp.ClientSession
) -> None:
    query = '{ insurees(chfId: "070707070") { edges { node { chfId } } } }'
    await client.login(csrf=False)
    status, config = await control(http, "POST", f"{sim.base_url}/_sim/config", {"csrf": False})
    assert (status, config["csrf"]) == (200, False)
    assert (await client.data(query))["insurees"]["edges"]
    await client.pay(policy_uuid(sim), "R1")
    await control(http, "POST", f"{sim.base_url}/_sim/config", {"csrf": True})
    assert await client.error(query) == "'csrftoken'"


# --------------------------------------------------------------------------- queries


async def test_insuree_by_number(client: Client) -> None:
    await client.login()
    data = await client.data(
        '{ insurees(chfId: "070707070") { totalCount edgeCount edges { node '
        "{ id uuid chfId lastName otherNames phone status family { headInsuree { chfId } } } } } }"
    )
    assert (data["insurees"]["totalCount"], data["insurees"]["edgeCount"]) == (1, 1)
    node = data["insurees"]["edges"][0]["node"]
    assert node | {"id": None, "uuid": None} == {
        "id": None,
        "uuid": None,
        "chfId": CHF_ID,
        "lastName": "Doe",
        "otherNames": "Jane",
        "phone": "0700000001",
        "status": "AC",
        "family": {"headInsuree": {"chfId": CHF_ID}},
    }
    assert node["id"] != node["uuid"]  # a relay global id
    empty = await client.data('{ insurees(chfId: "000000001") { edges { node { uuid } } } }')
    assert empty == {"insurees": {"edges": []}}


async def test_idle_policies_of_an_insuree(client: Client, sim: OpenimisSimulator) -> None:
    await client.login()
    data = await client.data(
        f'{{ policies(insureePolicies_Insuree_ChfId: "{CHF_ID}", status: 1) '
        f"{{ edges {{ node {{ {POLICY_FIELDS} }} }} }} }}"
    )
    assert data["policies"]["edges"] == [
        {
            "node": {
                "uuid": policy_uuid(sim),
                "status": 1,
                "value": "1500.00",
                "startDate": "2026-12-01",
                "effectiveDate": None,
                "expiryDate": "2027-11-30",
                "sumPremiums": 0.0,
                "product": {"code": "FAM01", "name": "Family cover"},
            }
        }
    ]
    active = await client.data("{ policies(status: 2) { edges { node { uuid } } } }")
    assert active == {"policies": {"edges": []}}


async def test_one_policy_by_uuid_names_its_family_head(
    client: Client, sim: OpenimisSimulator
) -> None:
    await client.login()
    data = await client.data(
        f'{{ policies(uuid: "{policy_uuid(sim)}") '
        "{ edges { node { uuid family { headInsuree { chfId } } } } } }"
    )
    [edge] = data["policies"]["edges"]
    assert edge["node"]["family"] == {"headInsuree": {"chfId": CHF_ID}}


async def test_connections_page_with_first_and_after(
    client: Client, sim: OpenimisSimulator
) -> None:
    sim.seed({"policies": [{"chf_id": CHF_ID, "product_code": "FAM01"}] * 2})
    await client.login()
    page = (
        await client.data(
            "{ policies(first: 2) { pageInfo { hasNextPage endCursor } edges { node { uuid } } } }"
        )
    )["policies"]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await client.data(
        f'{{ policies(first: 2, after: "{page["pageInfo"]["endCursor"]}") '
        "{ pageInfo { hasNextPage } edges { node { uuid } } } }"
    )
    uuids = [e["node"]["uuid"] for e in page["edges"] + rest["policies"]["edges"]]
    assert uuids == list(sim.engine.data.policies)
    assert rest["policies"]["pageInfo"]["hasNextPage"] is False


# --------------------------------------------------------------------------- premiums


async def test_full_premium_activates_the_policy_from_the_pay_date(
    client: Client, sim: OpenimisSimulator, http: aiohttp.ClientSession
) -> None:
    await client.login()
    policy = policy_uuid(sim)
    body = await client.create_premium(policy, "R1")
    answer = body["data"]["createPremium"]
    assert answer["clientMutationId"] == "mutation-R1"
    assert answer["internalId"] == sim.engine.data.mutation_logs[0].uuid
    assert await client.log("mutation-R1") == {"status": 2, "error": None}
    assert await client.policy(policy) | {"product": None} == {
        "uuid": policy,
        "status": 2,
        "value": "1500.00",
        "startDate": "2026-12-01",
        "effectiveDate": "2026-12-02",
        "expiryDate": "2027-11-30",
        "sumPremiums": 1500.0,
        "product": None,
    }
    data = await client.data(
        f'{{ premiumsByPolicies(policyUuids: ["{policy}"]) '
        "{ edges { node { uuid receipt amount payDate payType } } } }"
    )
    [edge] = data["premiumsByPolicies"]["edges"]
    assert edge["node"] | {"uuid": None} == {
        "uuid": None,
        "receipt": "R1",
        "amount": "1500.00",
        "payDate": "2026-12-02",
        "payType": "M",
    }
    [premium] = await sim_state(http, sim, "premiums")
    assert (premium["uuid"], premium["policy_uuid"], premium["amount"]) == (
        edge["node"]["uuid"],
        policy,
        "1500.00",
    )
    assert premium["client_mutation_id"] == "mutation-R1"
    [state] = await sim_state(http, sim, "policies")
    assert (state["status"], state["effective_date"], state["sum_premiums"]) == (
        2,
        "2026-12-02",
        "1500.00",
    )


async def test_a_premium_paid_before_the_start_takes_effect_at_the_start(
    client: Client, sim: OpenimisSimulator
) -> None:
    await client.login()
    assert (await client.pay(policy_uuid(sim), "R1", payDate="2026-11-20"))["status"] == 2
    assert (await client.policy(policy_uuid(sim)))["effectiveDate"] == "2026-12-01"


async def test_with_the_ready_option_a_paid_policy_is_ready(
    start_sim: StartSim, jar_http: aiohttp.ClientSession
) -> None:
    sim = await start_sim(activation="ready")
    client = await Client(jar_http, sim.base_url).login()
    assert (await client.pay(policy_uuid(sim), "R1"))["status"] == 2
    policy = await client.policy(policy_uuid(sim))
    assert (policy["status"], policy["effectiveDate"]) == (16, None)


async def test_duplicate_receipt_is_an_error_in_the_log_and_changes_nothing(
    client: Client, sim: OpenimisSimulator
) -> None:
    [other] = sim.seed({"policies": [{"chf_id": CHF_ID, "product_code": "FAM01"}]})["policies"]
    await client.login()
    assert (await client.pay(policy_uuid(sim), "R1"))["status"] == 2
    query = f'{{ validatePremiumCode(code: "R1", policyUuid: "{other["uuid"]}") }}'
    assert await client.data(query) == {"validatePremiumCode": False}

    body = await client.create_premium(other["uuid"], "R1", mutation_id="again")

    assert "errors" not in body  # the mutation is received; its log tells the outcome
    log = await client.log("again")
    assert log["status"] == 1
    assert json.loads(log["error"]) == [
        {
            "message": "contribution.mutation.failed_to_create_premium",
            "detail": "['mutation.code_already_taken']",
        }
    ]
    assert log["error"] == (
        '[{"message": "contribution.mutation.failed_to_create_premium", '
        '"detail": "[\'mutation.code_already_taken\']"}]'
    )
    assert (await client.policy(other["uuid"]))["status"] == 1
    assert len(sim.engine.data.premiums) == 1


async def test_a_receipt_is_unique_per_product_only(client: Client, sim: OpenimisSimulator) -> None:
    seeded = sim.seed(
        {
            "products": [{"code": "IND01", "name": "Individual", "lump_sum": "500.00"}],
            "policies": [{"chf_id": CHF_ID, "product_code": "IND01"}],
        }
    )
    await client.login()
    assert (await client.pay(policy_uuid(sim), "R1"))["status"] == 2
    other = seeded["policies"][0]["uuid"]
    query = f'{{ validatePremiumCode(code: "R1", policyUuid: "{other}") }}'
    assert await client.data(query) == {"validatePremiumCode": True}
    body = await client.create_premium(other, "R1", amount="500.00")
    assert "errors" not in body
    assert (await client.policy(other))["status"] == 2


async def test_instalments_add_up_to_the_policy_value(
    client: Client, sim: OpenimisSimulator
) -> None:
    await client.login()
    policy = policy_uuid(sim)
    assert await client.pay(policy, "R1", amount="1000.00", payDate="2026-12-03") == {
        "status": 2,
        "error": None,
    }
    first = await client.policy(policy)
    assert (first["status"], first["effectiveDate"], first["sumPremiums"]) == (1, None, 1000.0)
    assert (await client.pay(policy, "R2", amount="500.00", payDate="2026-12-04"))["status"] == 2
    second = await client.policy(policy)
    assert (second["status"], second["effectiveDate"], second["sumPremiums"]) == (
        2,
        "2026-12-04",
        1500.0,
    )


async def test_more_than_the_balance_takes_effect_on_the_pay_date_even_before_the_start(
    client: Client, sim: OpenimisSimulator
) -> None:
    """openIMIS activates an overpaid policy from the pay date, not the later date."""
    await client.login()
    policy = policy_uuid(sim)
    assert (await client.pay(policy, "R1", amount="2000.00", payDate="2026-11-20"))["status"] == 2
    assert (await client.policy(policy))["effectiveDate"] == "2026-11-20"


async def test_a_premium_on_an_active_policy_is_kept_and_moves_its_effective_date(
    client: Client, sim: OpenimisSimulator
) -> None:
    await client.login()
    policy = policy_uuid(sim)
    await client.pay(policy, "R1")
    assert (await client.pay(policy, "R2", amount="700.00", payDate="2026-12-05"))["status"] == 2
    current = await client.policy(policy)
    assert (current["status"], current["effectiveDate"], current["sumPremiums"]) == (
        2,
        "2026-12-05",
        2200.0,
    )


@pytest.mark.parametrize(
    ("policy", "fields", "detail"),
    [
        ("no-such-policy", {}, "not all arguments converted during string formatting"),
        ("", {}, "policy_uuid_required"),
        (
            None,
            {"payType": "MM"},
            "value too long for type character varying(1)\n",
        ),
    ],
)
async def test_create_premium_failures_are_reported_in_the_log(
    client: Client, sim: OpenimisSimulator, policy: str | None, fields: dict[str, str], detail: str
) -> None:
    await client.login()
    body = await client.create_premium(
        policy_uuid(sim) if policy is None else policy, "R1", **fields
    )
    assert "errors" not in body
    log = await client.log("mutation-R1")
    assert json.loads(log["error"]) == [
        {"message": "contribution.mutation.failed_to_create_premium", "detail": detail}
    ]
    assert sim.engine.data.premiums == []


async def test_a_premium_without_an_amount_breaks_the_not_null_column(
    client: Client, sim: OpenimisSimulator
) -> None:
    await client.login()
    await client.gql(
        f'mutation {{ createPremium(input: {{clientMutationId: "m1", '
        f'policyUuid: "{policy_uuid(sim)}", receipt: "R1", payDate: "2026-12-02", payType: "M"}}) '
        "{ internalId } }"
    )
    [detail] = [entry["detail"] for entry in json.loads((await client.log("m1"))["error"])]
    assert detail == (
        'null value in column "Amount" of relation "tblPremium" violates not-null constraint'
    )


async def test_anonymous_create_premium_with_csrf_off_fails_in_the_log(
    start_sim: StartSim, jar_http: aiohttp.ClientSession
) -> None:
    sim = await start_sim(csrf=False)
    client = Client(jar_http, sim.base_url)
    body = await client.create_premium(policy_uuid(sim), "R1")
    assert body["data"]["createPremium"]["internalId"]
    log = sim.engine.data.mutation_logs[0]
    assert (log.status, log.error) == (
        1,
        '[{"message": "contribution.mutation.failed_to_create_premium", '
        '"detail": "[\'mutation.authentication_required\']"}]',
    )


async def test_async_mutations_read_received_until_they_run(
    start_sim: StartSim, jar_http: aiohttp.ClientSession, http: aiohttp.ClientSession
) -> None:
    sim = await start_sim(async_mutations_seconds=0.5)
    client = await Client(jar_http, sim.base_url).login()
    body = await client.create_premium(policy_uuid(sim), "R1")
    assert body["data"]["createPremium"]["internalId"]
    assert await client.log("mutation-R1") == {"status": 0, "error": None}
    assert await sim_state(http, sim, "premiums") == []
    assert (await client.policy(policy_uuid(sim)))["status"] == 1

    async def done() -> Any:
        log = await client.log("mutation-R1")
        return log if log["status"] != 0 else None

    assert await wait_until(done, "the mutation to run", within=3) == {"status": 2, "error": None}
    assert (await client.policy(policy_uuid(sim)))["status"] == 2
    assert len(await sim_state(http, sim, "premiums")) == 1


async def test_async_mutations_switch_on_at_run_time(
    client: Client, sim: OpenimisSimulator, http: aiohttp.ClientSession
) -> None:
    await client.login()
    await control(http, "POST", f"{sim.base_url}/_sim/config", {"async_mutations_seconds": 30})
    await client.create_premium(policy_uuid(sim), "R1")
    assert (await client.log("mutation-R1"))["status"] == 0


# --------------------------------------------------------------------------- faults


async def test_latency_fault_delays_the_answer(
    client: Client, sim: OpenimisSimulator, http: aiohttp.ClientSession
) -> None:
    await client.login()
    await arm(http, sim, operation="insurees", fault="latency", seconds=0.4)
    started = time.monotonic()
    query = '{ insurees(chfId: "070707070") { edges { node { chfId } } } }'
    assert (await client.data(query))["insurees"]["edges"]
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    await client.data(query)  # used once
    assert time.monotonic() - started < 0.4


async def test_http500_fault_answers_django_s_error_page_without_acting(
    client: Client, sim: OpenimisSimulator, http: aiohttp.ClientSession
) -> None:
    await client.login()
    await arm(http, sim, operation="createPremium", fault="http500")
    async with client.http.post(
        f"{sim.base_url}/api/graphql",
        json={
            "query": f'mutation {{ createPremium(input: {{policyUuid: "{policy_uuid(sim)}"}}) '
            "{ internalId } }"
        },
        headers={"Authorization": f"Bearer {client.token}", "X-CSRFToken": client.csrf or ""},
    ) as response:
        assert response.status == 500
        assert response.content_type == "text/html"
        assert await response.text() == "<h1>Server Error (500)</h1>"
    assert sim.engine.data.mutation_logs == []


async def test_drop_fault_closes_the_connection_without_acting(
    client: Client, sim: OpenimisSimulator, http: aiohttp.ClientSession
) -> None:
    await client.login()
    await arm(http, sim, operation="createPremium", fault="drop")
    with pytest.raises(aiohttp.ClientConnectionError):
        await client.create_premium(policy_uuid(sim), "R1")
    assert sim.engine.data.mutation_logs == [] and sim.engine.data.premiums == []
    [*_, record] = await sim_state(http, sim, "requests")
    assert (record["fault"], record["status"]) == ("drop", None)


async def test_drop_after_fault_creates_the_premium_then_closes_the_connection(
    client: Client, sim: OpenimisSimulator, http: aiohttp.ClientSession
) -> None:
    await client.login()
    await arm(http, sim, operation="createPremium", fault="drop_after")
    with pytest.raises(aiohttp.ClientConnectionError):
        await client.create_premium(policy_uuid(sim), "R1")
    assert await client.log("mutation-R1") == {"status": 2, "error": None}
    assert (await client.policy(policy_uuid(sim)))["status"] == 2
    [record] = [r for r in await sim_state(http, sim, "requests") if r["fault"]]
    assert (record["fault"], record["status"]) == ("drop_after", 200)
    assert record["answer"]["data"]["createPremium"]["clientMutationId"] == "mutation-R1"


async def test_mutation_error_fault_fails_the_log_with_its_message_and_changes_nothing(
    client: Client, sim: OpenimisSimulator, http: aiohttp.ClientSession
) -> None:
    await client.login()
    await arm(
        http, sim, operation="createPremium", fault="mutation_error", message="database is down"
    )
    body = await client.create_premium(policy_uuid(sim), "R1")
    assert body["data"]["createPremium"]["clientMutationId"] == "mutation-R1"
    log = await client.log("mutation-R1")
    assert (log["status"], json.loads(log["error"])) == (1, [{"message": "database is down"}])
    assert sim.engine.data.premiums == []
    assert (await client.policy(policy_uuid(sim)))["status"] == 1
    assert (await client.pay(policy_uuid(sim), "R2"))["status"] == 2  # used once


async def test_fault_armed_until_cleared_stays_until_deleted(
    client: Client, sim: OpenimisSimulator, http: aiohttp.ClientSession
) -> None:
    await client.login()
    await arm(http, sim, operation="tokenAuth", fault="drop", times=0)
    for _ in range(2):
        with pytest.raises(aiohttp.ClientConnectionError):
            await client.token_auth()
    status, faults = await control(http, "GET", f"{sim.base_url}/_sim/faults")
    assert faults["items"] == [
        {
            "id": 1,
            "operation": "tokenAuth",
            "fault": "drop",
            "seconds": None,
            "times": 0,
            "message": "simulated mutation error",
        }
    ]
    assert await control(http, "DELETE", f"{sim.base_url}/_sim/faults") == (200, {"cleared": 1})
    assert (await client.token_auth())["data"]["tokenAuth"]["token"]


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"operation": "nothing", "fault": "drop"}, "operation must be one of"),
        ({"operation": "insurees", "fault": "mutation_error"}, "fault for insurees"),
        ({"operation": "insurees", "fault": "latency"}, "latency needs seconds"),
        ({"operation": "insurees", "fault": "drop", "times": -1}, "times must be"),
        ({"operation": "insurees", "fault": "drop", "target": "x"}, "unknown fields"),
        ({"operation": "createPremium", "fault": "mutation_error", "message": 1}, "message"),
    ],
)
async def test_invalid_faults_are_refused_with_http_400(
    sim: OpenimisSimulator, http: aiohttp.ClientSession, fault: dict[str, Any], error: str
) -> None:
    status, answer = await control(http, "POST", f"{sim.base_url}/_sim/faults", fault)
    assert status == 400 and error in answer["error"]
    assert await sim_state(http, sim, "faults") == []


async def test_stop_is_prompt_while_a_latency_fault_sleeps(
    sim: OpenimisSimulator, http: aiohttp.ClientSession, jar_http: aiohttp.ClientSession
) -> None:
    await arm(http, sim, operation="tokenAuth", fault="latency", seconds=30)
    call = asyncio.ensure_future(Client(jar_http, sim.base_url).token_auth())
    await wait_until(lambda: sim.traffic.requests, "the call to arrive")
    started = time.monotonic()
    await sim.stop()
    assert time.monotonic() - started < 5
    with contextlib.suppress(aiohttp.ClientError):  # answered at once, or cut off
        await asyncio.wait_for(call, 5)


# --------------------------------------------------------------------------- bad requests


async def test_documents_that_do_not_validate_are_http_400_without_data(client: Client) -> None:
    await client.login()
    cases = {
        "{ insurees( { edges": "Syntax Error: Expected Name, found '{'.",
        "{ policies { edges { node { uuid insuree { chfId } } } } }": (
            'Cannot query field "insuree" on type "PolicyGQLType".'
        ),
        '{ validatePremiumCode(code: "R1") }': (
            'Field "validatePremiumCode" argument "policyUuid" of type "String!" is required, '
            "but it was not provided."
        ),
    }
    for query, message in cases.items():
        status, body = await client.post(query)
        assert (status, body["errors"][0]["message"]) == (400, message)
        assert "data" not in body


async def test_a_decimal_is_only_taken_from_a_string(
    client: Client, sim: OpenimisSimulator
) -> None:
    await client.login()
    status, body = await client.post(
        f'mutation {{ createPremium(input: {{policyUuid: "{policy_uuid(sim)}", amount: 1500}}) '
        "{ internalId } }"
    )
    assert status == 400
    assert body["errors"][0]["message"].startswith('Expected value of type "Decimal", found 1500')
    assert sim.engine.data.mutation_logs == []


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        ("not json", "application/json", "POST body sent invalid JSON."),
        ("[1]", "application/json", "The received data is not a valid JSON query."),
        ('{"query": ""}', "application/json", "Must provide query string."),
        ('{"query": "{ x }"}', "text/plain", "Must provide query string."),
        ('{"query": "{ x }", "variables": "{"}', "application/json", "Variables are invalid JSON."),
    ],
)
async def test_bodies_graphene_cannot_read_are_http_400(
    sim: OpenimisSimulator, http: aiohttp.ClientSession, data: str, content_type: str, message: str
) -> None:
    async with http.post(
        f"{sim.base_url}/api/graphql", data=data, headers={"Content-Type": content_type}
    ) as response:
        assert response.status == 400
        assert await response.json() == {"errors": [{"message": message}]}


async def test_variables_and_operation_names_are_honoured(client: Client) -> None:
    await client.login()
    async with client.http.post(
        f"{client.url}/api/graphql",
        json={
            "query": "query A($c: String) { insurees(chfId: $c) { edges { node { chfId } } } } "
            "query B { insurees { totalCount } }",
            "variables": {"c": CHF_ID},
            "operationName": "A",
        },
        headers={"Authorization": f"Bearer {client.token}", "X-CSRFToken": client.csrf or ""},
    ) as response:
        body = await response.json()
    assert body == {"data": {"insurees": {"edges": [{"node": {"chfId": CHF_ID}}]}}}


# --------------------------------------------------------------------------- control API


async def test_seed_reuses_products_and_insurees_and_adds_every_policy(
    sim: OpenimisSimulator, http: aiohttp.ClientSession
) -> None:
    body = {
        **SEED,
        "insurees": [{**SEED["insurees"][0], "last_name": "Roe", "phone": None}],
    }
    status, answer = await control(http, "POST", f"{sim.base_url}/_sim/seed", body)
    assert status == 200
    data = sim.engine.data
    assert answer["products"] == [{"code": "FAM01", "uuid": data.products["FAM01"].uuid}]
    assert answer["insurees"] == [{"chf_id": CHF_ID, "uuid": data.insurees[CHF_ID].uuid}]
    [policy] = answer["policies"]
    assert policy | {"uuid": None} == {
        "uuid": None,
        "chf_id": CHF_ID,
        "product_code": "FAM01",
        "status": 1,
        "value": "1500.00",
    }
    assert (len(data.products), len(data.insurees), len(data.policies)) == (1, 1, 2)
    assert (data.insurees[CHF_ID].last_name, data.insurees[CHF_ID].phone) == ("Roe", None)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], "body must be a JSON object"),
        ({"products": {}}, "products must be a list of objects"),
        ({"others": []}, "unknown fields"),
        ({"products": [{"code": "X", "name": "X"}]}, "lump_sum must be an amount"),
        ({"products": [{"code": "X", "name": "X", "lump_sum": "1.001"}]}, "lump_sum"),
        ({"insurees": [{"chf_id": "1", "last_name": "A"}]}, "other_names"),
        ({"policies": [{"chf_id": "999", "product_code": "FAM01"}]}, "no insuree 999"),
        ({"policies": [{"chf_id": CHF_ID, "product_code": "NONE"}]}, "no product NONE"),
        (
            {"policies": [{"chf_id": CHF_ID, "product_code": "FAM01", "start_date": "2026-13-01"}]},
            "start_date must be a date",
        ),
        (
            {
                "products": [{"code": "NEW", "name": "New", "lump_sum": "1.00"}],
                "policies": [{"chf_id": CHF_ID, "product_code": "FAM01", "value": "x"}],
            },
            "value must be an amount",
        ),
    ],
)
async def test_bad_seed_bodies_are_refused_with_http_400_and_change_nothing(
    sim: OpenimisSimulator, http: aiohttp.ClientSession, body: Any, error: str
) -> None:
    status, answer = await control(http, "POST", f"{sim.base_url}/_sim/seed", body)
    assert status == 400 and error in answer["error"], answer
    assert (set(sim.engine.data.products), len(sim.engine.data.policies)) == ({"FAM01"}, 1)
    with pytest.raises(SeedError):
        sim.seed(body)


async def test_config_changes_are_checked_and_all_or_nothing(
    sim: OpenimisSimulator, http: aiohttp.ClientSession
) -> None:
    url = f"{sim.base_url}/_sim/config"
    before = (await control(http, "GET", url))[1]
    assert before == {
        "csrf": True,
        "activation": "active",
        "async_mutations_seconds": 0.0,
        "token_seconds": 86400.0,
    }
    for bad in (
        {"csrf": "no"},
        {"activation": "later"},
        {"token_seconds": 0},
        {"async_mutations_seconds": -1},
        {"csrf": False, "colour": "red"},
        {"activation": "ready", "token_seconds": "1"},
    ):
        status, answer = await control(http, "POST", url, bad)
        assert status == 400 and answer["error"], bad
    assert (await control(http, "GET", url))[1] == before
    status, after = await control(http, "POST", url, {"activation": "ready", "token_seconds": 60})
    assert (status, after["activation"], after["token_seconds"]) == (200, "ready", 60.0)


async def test_reset_forgets_records_tokens_faults_and_config(
    client: Client, sim: OpenimisSimulator, http: aiohttp.ClientSession
) -> None:
    await client.login()
    await client.pay(policy_uuid(sim), "R1")
    await arm(http, sim, operation="insurees", fault="drop", times=0)
    await control(http, "POST", f"{sim.base_url}/_sim/config", {"csrf": False})
    status, config = await control(http, "POST", f"{sim.base_url}/_sim/reset")
    assert (status, config["csrf"]) == (200, True)
    for name in ("premiums", "policies", "faults", "requests"):
        assert await sim_state(http, sim, name) == [], name
    message = await client.error('{ insurees(chfId: "070707070") { edges { node { uuid } } } }')
    assert message == "Error decoding signature"


async def test_the_request_log_names_each_call_its_arguments_and_fault_without_secrets(
    client: Client, sim: OpenimisSimulator, http: aiohttp.ClientSession
) -> None:
    await client.login()
    await arm(http, sim, operation="insurees", fault="latency", seconds=0.01)
    await client.data('{ insurees(chfId: "070707070") { edges { node { uuid } } } }')
    login, csrf, query = await sim_state(http, sim, "requests")
    assert login["fields"] == [
        {"name": "tokenAuth", "arguments": {"username": USERNAME, "password": "[redacted]"}}
    ]
    assert login["answer"]["data"]["tokenAuth"]["token"] == "[redacted]"
    assert (login["operation"], login["status"], login["fault"]) == ("mutation", 200, None)
    assert csrf["answer"]["data"]["getCsrfToken"]["csrfToken"] == "[redacted]"
    assert query["fields"] == [{"name": "insurees", "arguments": {"chfId": CHF_ID}}]
    assert (query["operation"], query["fault"]) == ("query", "latency")
    assert PASSWORD not in json.dumps([login, csrf, query])


async def test_unknown_control_paths_and_methods_are_json_errors(
    sim: OpenimisSimulator, http: aiohttp.ClientSession
) -> None:
    assert await control(http, "GET", f"{sim.base_url}/_sim/nothing") == (
        404,
        {"error": "Not Found"},
    )
    assert await control(http, "DELETE", f"{sim.base_url}/_sim/seed") == (
        405,
        {"error": "Method Not Allowed"},
    )


async def test_command_line_applies_its_options_and_exits_cleanly_on_sigint(
    http: aiohttp.ClientSession,
) -> None:
    async with simulator_command(
        "openimis",
        "--no-csrf",
        "--activation",
        "ready",
        "--async-mutations",
        "2",
        "--user",
        "gateway=s3cret",
    ) as url:
        status, config = await control(http, "GET", f"{url}/_sim/config")
        assert config == {
            "csrf": False,
            "activation": "ready",
            "async_mutations_seconds": 2.0,
            "token_seconds": 86400.0,
        }
        async with aiohttp.ClientSession() as session:
            body = await Client(session, url).token_auth("gateway", "s3cret")
        assert body["data"]["tokenAuth"]["token"]
