"""The GraphQL documents the gateway's openIMIS adapter sends, raw, against every openIMIS
backend (the simulator, and a real openIMIS when its lane runs), with the session CSRF
check on: what the real backend answers is what the simulator must answer."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from openimis_backends import OpenimisBackend, RawOpenimis

pytestmark = pytest.mark.asyncio


def unique_receipt() -> str:
    return f"MP{secrets.token_hex(5).upper()}"


@pytest_asyncio.fixture
async def openimis(http: aiohttp.ClientSession, openimis_backend: OpenimisBackend) -> RawOpenimis:
    return RawOpenimis(http, openimis_backend)


@pytest_asyncio.fixture
async def logged_in(openimis: RawOpenimis) -> RawOpenimis:
    await openimis.login()
    return openimis


async def test_wrong_credentials_are_refused(openimis: RawOpenimis) -> None:
    body = await openimis.token_auth(password="not-the-password")
    assert body["errors"][0]["message"] == "INCORRECT_CREDENTIALS"
    assert body["data"]["tokenAuth"] is None


async def test_login_answers_a_token_and_its_expiry(openimis: RawOpenimis) -> None:
    answer = (await openimis.token_auth())["data"]["tokenAuth"]
    assert answer["token"].count(".") == 2
    payload = answer["payload"]
    assert payload["username"] == openimis.backend.username
    assert isinstance(payload["exp"], int) and payload["exp"] > time.time() + 3600
    assert isinstance(payload["origIat"], int) and payload["origIat"] <= time.time() + 5


async def test_csrf_token_comes_with_a_session_cookie(openimis: RawOpenimis) -> None:
    await openimis.login()
    assert openimis.csrf
    assert openimis.session_id


async def test_anonymous_query_is_unauthorized(openimis: RawOpenimis) -> None:
    body = await openimis.gql('{ insurees(chfId: "070707070") { edges { node { uuid } } } }')
    assert body["errors"][0]["message"] == "unauthorized"
    assert body["data"]["insurees"] is None


async def test_query_without_the_csrf_header_fails(openimis: RawOpenimis) -> None:
    chf_id, _, _ = await openimis.idle_policy()
    await openimis.login(csrf=False)
    body = await openimis.gql(
        f'{{ insurees(chfId: "{chf_id}") {{ edges {{ node {{ uuid }} }} }} }}'
    )
    assert body["errors"][0]["message"] == "'csrftoken'"
    assert body["data"]["insurees"] is None


async def test_mutation_without_the_csrf_header_fails(openimis: RawOpenimis) -> None:
    _, _, policy_uuid = await openimis.idle_policy()
    await openimis.login()
    receipt = unique_receipt()
    body = await openimis.gql(
        "mutation { createPremium(input: {"
        f'clientMutationId: "{uuid.uuid4()}", policyUuid: "{policy_uuid}", amount: "1500.00", '
        f'receipt: "{receipt}", payDate: "2026-12-02", payType: "M", isPhotoFee: false}}) '
        "{ clientMutationId internalId } }",
        send_csrf=False,
    )
    assert body["data"]["createPremium"] is None
    assert body["errors"][0]["message"] == "'HTTP_X_CSRFTOKEN'"
    assert await openimis.premiums(policy_uuid) == []


async def test_insuree_by_number(openimis: RawOpenimis) -> None:
    chf_id, _, _ = await openimis.idle_policy()
    await openimis.login()
    data = await openimis.data(
        f'{{ insurees(chfId: "{chf_id}") {{ edges {{ node {{ uuid chfId lastName otherNames '
        "phone status } } } }"
    )
    [edge] = data["insurees"]["edges"]
    node = edge["node"]
    assert uuid.UUID(node["uuid"])
    assert node | {"uuid": None} == {
        "uuid": None,
        "chfId": chf_id,
        "lastName": "Doe",
        "otherNames": "Jane",
        "phone": "0700000001",
        "status": "AC",
    }


async def test_unknown_insuree_has_no_edges(logged_in: RawOpenimis) -> None:
    data = await logged_in.data('{ insurees(chfId: "000000001") { edges { node { uuid } } } }')
    assert data["insurees"]["edges"] == []


async def test_idle_policies_of_an_insuree(openimis: RawOpenimis) -> None:
    chf_id, code, policy_uuid = await openimis.idle_policy()
    await openimis.login()
    data = await openimis.data(
        f'{{ policies(insureePolicies_Insuree_ChfId: "{chf_id}", status: 1) {{ edges {{ node '
        "{ uuid status value startDate effectiveDate expiryDate sumPremiums "
        "product { code name } } } } }"
    )
    [edge] = data["policies"]["edges"]
    assert edge["node"] == {
        "uuid": policy_uuid,
        "status": 1,
        "value": "1500.00",
        "startDate": "2026-12-01",
        "effectiveDate": None,
        "expiryDate": "2027-11-30",
        "sumPremiums": 0.0,
        "product": {"code": code, "name": f"Cover {code}"},
    }


async def test_one_policy_by_uuid_with_its_family_head(openimis: RawOpenimis) -> None:
    chf_id, code, policy_uuid = await openimis.idle_policy()
    await openimis.login()
    policy = await openimis.policy(policy_uuid)
    assert policy["uuid"] == policy_uuid and policy["status"] == 1
    assert policy["family"] == {"headInsuree": {"chfId": chf_id}}
    assert policy["product"]["code"] == code


async def test_one_policy_by_uuid_with_its_insurees(openimis: RawOpenimis) -> None:
    """The path to the insuree's number that needs no right beyond the policies'."""
    chf_id, _, policy_uuid = await openimis.idle_policy()
    await openimis.login()
    data = await openimis.data(
        f'{{ policies(uuid: "{policy_uuid}") {{ edges {{ node {{ uuid '
        "insureePolicies { edges { node { insuree { chfId } } } } } } } }"
    )
    [edge] = data["policies"]["edges"]
    assert edge["node"] == {
        "uuid": policy_uuid,
        "insureePolicies": {"edges": [{"node": {"insuree": {"chfId": chf_id}}}]},
    }


async def test_policy_has_no_insuree_field(openimis: RawOpenimis) -> None:
    """A field the schema lacks fails validation: HTTP 400, errors and no data."""
    _, _, policy_uuid = await openimis.idle_policy()
    await openimis.login()
    status, body = await openimis.post(
        f'{{ policies(uuid: "{policy_uuid}") '
        "{ edges { node { uuid insuree { chfId } } } } }"
    )
    assert status == 400
    assert body["errors"][0]["message"] == 'Cannot query field "insuree" on type "PolicyGQLType".'
    assert "data" not in body


async def test_full_premium_activates_the_policy(openimis: RawOpenimis) -> None:
    chf_id, _, policy_uuid = await openimis.idle_policy()
    await openimis.login()
    receipt = unique_receipt()
    assert await openimis.receipt_is_free(receipt, policy_uuid) is True

    outcome = await openimis.pay(policy_uuid, receipt)

    assert outcome == {"status": 2, "error": None}
    assert await openimis.receipt_is_free(receipt, policy_uuid) is False
    policy = await openimis.policy(policy_uuid)
    assert policy["status"] == 2
    assert policy["effectiveDate"] == "2026-12-02"
    assert policy["sumPremiums"] == 1500.0
    [premium] = await openimis.premiums(policy_uuid)
    assert uuid.UUID(premium["uuid"])
    assert premium | {"uuid": None} == {
        "uuid": None,
        "receipt": receipt,
        "amount": "1500.00",
        "payDate": "2026-12-02",
        "payType": "M",
    }


async def test_payment_before_the_start_takes_effect_at_the_start(
    openimis: RawOpenimis,
) -> None:
    _, _, policy_uuid = await openimis.idle_policy(start_date="2026-12-10")
    await openimis.login()
    assert (await openimis.pay(policy_uuid, unique_receipt()))["status"] == 2
    assert (await openimis.policy(policy_uuid))["effectiveDate"] == "2026-12-10"


async def test_duplicate_receipt_fails_in_the_log(openimis: RawOpenimis) -> None:
    chf_id, code, policy_uuid = await openimis.idle_policy()
    await openimis.login()
    receipt = unique_receipt()
    assert (await openimis.pay(policy_uuid, receipt))["status"] == 2
    seeded = await openimis.seed(
        {
            "policies": [
                {
                    "chf_id": chf_id,
                    "product_code": code,
                    "value": "1500.00",
                    "start_date": "2026-12-01",
                }
            ]
        }
    )
    other = seeded["policies"][0]["uuid"]

    outcome = await openimis.pay(other, receipt)

    assert outcome["status"] == 1
    assert json.loads(outcome["error"]) == [
        {
            "message": "contribution.mutation.failed_to_create_premium",
            "detail": "['mutation.code_already_taken']",
        }
    ]
    assert await openimis.premiums(other) == []
    assert (await openimis.policy(other))["status"] == 1


async def test_two_half_premiums_add_up(openimis: RawOpenimis) -> None:
    _, _, policy_uuid = await openimis.idle_policy()
    await openimis.login()

    first = await openimis.pay(
        policy_uuid, unique_receipt(), amount="750.00", pay_date="2026-12-03"
    )
    policy = await openimis.policy(policy_uuid)
    assert first["status"] == 2
    assert (policy["status"], policy["effectiveDate"], policy["sumPremiums"]) == (1, None, 750.0)

    second = await openimis.pay(
        policy_uuid, unique_receipt(), amount="750.00", pay_date="2026-12-04"
    )
    policy = await openimis.policy(policy_uuid)
    assert second["status"] == 2
    assert (policy["status"], policy["effectiveDate"], policy["sumPremiums"]) == (
        2,
        "2026-12-04",
        1500.0,
    )
    assert [premium["amount"] for premium in await openimis.premiums(policy_uuid)] == [
        "750.00",
        "750.00",
    ]


async def test_premium_on_an_active_policy_is_recorded(openimis: RawOpenimis) -> None:
    """Nothing refuses it: the premium is kept and, the balance being zero, the policy
    is "paid" again from the new pay date."""
    _, _, policy_uuid = await openimis.idle_policy()
    await openimis.login()
    assert (await openimis.pay(policy_uuid, unique_receipt()))["status"] == 2

    outcome = await openimis.pay(
        policy_uuid, unique_receipt(), amount="700.00", pay_date="2026-12-05"
    )

    assert outcome == {"status": 2, "error": None}
    policy = await openimis.policy(policy_uuid)
    assert (policy["status"], policy["effectiveDate"], policy["sumPremiums"]) == (
        2,
        "2026-12-05",
        2200.0,
    )
    assert len(await openimis.premiums(policy_uuid)) == 2


async def test_a_new_csrf_token_replaces_the_last(logged_in: RawOpenimis) -> None:
    first = logged_in.csrf
    data = await logged_in.data("mutation { getCsrfToken { csrfToken } }")
    assert data["getCsrfToken"]["csrfToken"] != first
    body = await logged_in.gql('{ insurees(chfId: "000000001") { edges { node { uuid } } } }')
    assert body["errors"][0]["message"] == "CSRF token missing or incorrect."


async def test_receipt_check_needs_no_csrf(openimis: RawOpenimis) -> None:
    _, _, policy_uuid = await openimis.idle_policy()
    await openimis.login(csrf=False)
    body = await openimis.gql(
        f'{{ validatePremiumCode(code: "{unique_receipt()}", policyUuid: "{policy_uuid}") }}'
    )
    assert body == {"data": {"validatePremiumCode": True}}


async def test_unknown_mutation_has_no_log(logged_in: RawOpenimis) -> None:
    data = await logged_in.data(
        f'{{ mutationLogs(clientMutationId: "{uuid.uuid4()}") '
        "{ edges { node { status } } } }"
    )
    assert data["mutationLogs"]["edges"] == []


async def test_a_token_that_does_not_decode_is_refused(openimis: RawOpenimis) -> None:
    openimis.token = "not.a.token"
    body = await openimis.gql('{ insurees(chfId: "000000001") { edges { node { uuid } } } }')
    assert body["errors"][0]["message"] == "Error decoding signature"


async def test_a_body_that_is_not_json_is_refused(openimis: RawOpenimis) -> None:
    async with openimis.http.post(
        f"{openimis.backend.url}/api/graphql",
        data=b"not json",
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        assert await response.json(content_type=None) == {
            "errors": [{"message": "POST body sent invalid JSON."}]
        }


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"policies": [{"chf_id": "000000404", "product_code": "NOPE", "value": "1.00"}]},
        {"products": [{"code": "X1", "name": "X", "lump_sum": "not money"}]},
    ],
)
async def test_a_bad_seed_body_is_refused(openimis: RawOpenimis, body: Any) -> None:
    async with openimis.http.post(
        f"{openimis.backend.url}{openimis.backend.seed_path}", json=body
    ) as response:
        assert response.status == 400
        assert isinstance((await response.json())["error"], str)
