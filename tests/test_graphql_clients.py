"""An outside GraphQL client as the judge: gql (graphql-python's client library) pointed
at every openIMIS there is (the simulator, and a real one when its lane is built) and at
the gateway's own `/api/graphql`. It reads each schema by introspection and validates
against it, on its side, every document it sends; the gateway's openIMIS documents
(server.insurance.openimis_documents) are validated against each openIMIS's schema."""

from __future__ import annotations

import json
from datetime import date
from http.cookies import SimpleCookie

import pytest
from gql import Client, gql
from gql.transport.aiohttp import AIOHTTPTransport
from graphql import GraphQLSchema

from server.insurance import openimis_documents as documents

from openimis_backends import OpenimisBackend, RawOpenimis
from support import BASIC_GMD, idle_policy, psp_user

UUID = "5f58bcdc-ad3d-498f-b165-4f0dc0a998df"

ADAPTER_DOCUMENTS = {
    "login": documents.LOGIN,
    "csrf": documents.CSRF,
    "insuree": documents.insuree("070707070"),
    "policies_of": documents.policies_of("070707070"),
    "policy": documents.policy(UUID),
    "receipt_free": documents.receipt_free("R-0123456789AB", UUID),
    "premiums_of": documents.premiums_of([UUID, UUID], after="YXJyYXljb25uZWN0aW9uOjk5"),
    "create_premium": documents.create_premium(
        UUID, UUID, "1500.00", "R-0123456789AB", date(2026, 12, 6), "M"
    ),
    "mutation_log": documents.mutation_log(UUID),
}


async def introspected(url: str) -> GraphQLSchema:
    async with Client(
        transport=AIOHTTPTransport(url=url), fetch_schema_from_transport=True
    ) as session:
        assert session.client.schema is not None
        return session.client.schema


@pytest.mark.asyncio
async def test_the_gateway_s_openimis_documents_are_valid_on_every_openimis(
    openimis_backend: OpenimisBackend,
) -> None:
    schema = await introspected(f"{openimis_backend.url}/api/graphql")
    judge = Client(schema=schema)
    for name, document in ADAPTER_DOCUMENTS.items():
        try:
            judge.validate(gql(document))
        except Exception as err:  # gql raises graphql-core's GraphQLError list as one
            pytest.fail(f"{name} does not validate on {openimis_backend.name}: {err}")


@pytest.mark.asyncio
async def test_gql_logs_in_and_reads_an_insuree_through_the_csrf_handshake(
    http, openimis_backend: OpenimisBackend
) -> None:
    raw = RawOpenimis(http, openimis_backend)
    chf_id, _, policy_uuid = await raw.idle_policy()
    url = f"{openimis_backend.url}/api/graphql"
    credentials = {"username": openimis_backend.username, "password": openimis_backend.password}
    login = AIOHTTPTransport(url=url)
    async with Client(transport=login, fetch_schema_from_transport=True) as session:
        token = (await session.execute(gql(documents.LOGIN), variable_values=credentials))[
            "tokenAuth"
        ]["token"]
    csrf = AIOHTTPTransport(url=url, headers={"Authorization": f"Bearer {token}"})
    async with Client(transport=csrf) as session:
        granted = await session.execute(gql(documents.CSRF))
        cookies: SimpleCookie = SimpleCookie()
        for header in csrf.response_headers.getall("Set-Cookie", []):
            cookies.load(header)
    session_cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in cookies.items())
    headers = {
        "Authorization": f"Bearer {token}",
        "X-CSRFToken": granted["getCsrfToken"]["csrfToken"],
        "Cookie": session_cookie,
    }
    reader = AIOHTTPTransport(url=url, headers=headers)
    async with Client(transport=reader, fetch_schema_from_transport=True) as session:
        found = await session.execute(gql(documents.insuree(chf_id)))
        policies = await session.execute(gql(documents.policies_of(chf_id)))
    [insuree] = found["insurees"]["edges"]
    assert insuree["node"]["chfId"] == chf_id
    [policy] = policies["policies"]["edges"]
    assert policy["node"]["uuid"] == policy_uuid and policy["node"]["status"] == 1


# The seed module's documents, as payment providers send them (PROTOCOLS.md section 5).
SEED_LOGIN = 'mutation { tokenAuth(username: "%s", password: "%s") { token refreshToken } }'
SEED_VERIFY = (
    'query { verifyInsuree(chfId: "%s") { lastName firstName message '
    "policies { amount status productName productCode token } } }"
)
SEED_PAY = (
    'mutation { processPayment(inputData: { chfId: "%s", amount: "500.00", '
    'pspTransactionId: "GQL-CLIENT-1", policy: { productName: "%s", productCode: "%s", '
    'token: "%s" }, jsonExt: %s }) { Success responseMessage detail } }'
)


@pytest.mark.asyncio
async def test_gql_pays_through_the_gateway_s_graphql_as_a_seed_provider(http, gateway) -> None:
    services = gateway.services
    policy = await idle_policy(services, "070707070", BASIC_GMD)
    await psp_user(http, gateway, "afrimoney", currency="GMD")
    url = f"{gateway.url}/api/graphql"
    async with Client(
        transport=AIOHTTPTransport(url=url), fetch_schema_from_transport=True
    ) as session:
        login = await session.execute(gql(SEED_LOGIN % ("afrimoney", "afrimoney-password")))
    token = login["tokenAuth"]["token"]
    transport = AIOHTTPTransport(url=url, headers={"Authorization": f"Bearer {token}"})
    async with Client(transport=transport, fetch_schema_from_transport=True) as session:
        verified = (await session.execute(gql(SEED_VERIFY % "070707070")))["verifyInsuree"]
        [offered] = verified["policies"]
        ext = json.dumps(json.dumps({"channel": "gql"}))
        pay = SEED_PAY % (
            "070707070",
            offered["productName"],
            offered["productCode"],
            offered["token"],
            ext,
        )
        paid = (await session.execute(gql(pay)))["processPayment"]
    assert paid["Success"] is True, paid
    assert (await services.policies.get(policy["_id"]))["status"] == 2
