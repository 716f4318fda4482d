"""The GraphQL documents the gateway sends to openIMIS (PROTOCOLS.md section 4), one
function each, so that what is sent is also what the tests validate against a real
openIMIS's schema and the simulator's.

Values are written into the documents as GraphQL literals (strings JSON-escaped), so
no variable has to name openIMIS's argument types; the login's credentials alone go as
variables (`String!`, as graphql_jwt declares them), never in a document's text, which
an error message may quote."""

from __future__ import annotations

import json
from datetime import date

# Nodes asked for per page of a connection (openIMIS's most).
PAGE = 100

LOGIN = (
    "mutation Login($username: String!, $password: String!) { "
    "tokenAuth(username: $username, password: $password) "
    "{ token payload refreshExpiresIn } }"
)
CSRF = "mutation { getCsrfToken { csrfToken } }"

_POLICY_FIELDS = "uuid status value startDate effectiveDate expiryDate product { code name }"


def literal(value: str) -> str:
    """A GraphQL string literal: JSON's escapes are GraphQL's."""
    return json.dumps(value)


def insuree(chf_id: str) -> str:
    return (
        f"{{ insurees(chfId: {literal(chf_id)}) {{ edges {{ node {{ uuid chfId lastName "
        "otherNames phone status } } } }"
    )


def policies_of(chf_id: str) -> str:
    """Every policy covering the insuree, whatever its status."""
    return (
        f"{{ policies(insureePolicies_Insuree_ChfId: {literal(chf_id)}) "
        f"{{ edges {{ node {{ {_POLICY_FIELDS} }} }} }} }}"
    )


def policy(policy_uuid: str) -> str:
    """The policy, with the insurees it covers (`insureePolicies`: no right beyond reading
    policies, where its family's head would need reading families too)."""
    return (
        f"{{ policies(uuid: {literal(policy_uuid)}) {{ edges {{ node {{ {_POLICY_FIELDS} "
        "insureePolicies { edges { node { insuree { chfId } } } } } } } }"
    )


def receipt_free(receipt: str, policy_uuid: str) -> str:
    return (
        f"{{ validatePremiumCode(code: {literal(receipt)}, policyUuid: {literal(policy_uuid)}) }}"
    )


def premiums_of(policy_uuids: list[str], after: str = "") -> str:
    """One page of the policies' premiums, each naming its policy. Their amounts are
    decimal strings, where a policy's own `sumPremiums` is a float: what is paid is
    added up from these."""
    uuids = ", ".join(literal(policy_uuid) for policy_uuid in policy_uuids)
    cursor = f", after: {literal(after)}" if after else ""
    return (
        f"{{ premiumsByPolicies(policyUuids: [{uuids}], first: {PAGE}{cursor}) "
        "{ pageInfo { hasNextPage endCursor } "
        "edges { node { uuid receipt amount payDate payType isPhotoFee policy { uuid } } } } }"
    )


def create_premium(
    mutation_id: str,
    policy_uuid: str,
    amount: str,
    receipt: str,
    pay_date: date,
    pay_type: str,
) -> str:
    return (
        "mutation { createPremium(input: {"
        f"clientMutationId: {literal(mutation_id)}, "
        f"clientMutationLabel: {literal('Mobile payment ' + receipt)}, "
        f"policyUuid: {literal(policy_uuid)}, amount: {literal(amount)}, "
        f"receipt: {literal(receipt)}, payDate: {literal(pay_date.isoformat())}, "
        f"payType: {literal(pay_type)}, isPhotoFee: false"
        "}) { clientMutationId internalId } }"
    )


def mutation_log(mutation_id: str) -> str:
    return (
        f"{{ mutationLogs(clientMutationId: {literal(mutation_id)}) "
        "{ edges { node { status error } } } }"
    )
