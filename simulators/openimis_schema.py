"""The subset of openIMIS's GraphQL schema the simulator serves, with its resolvers.

Names, argument names and types are openIMIS's (core 1.11, insuree 1.11, policy 1.11,
contribution 1.10 on graphene 2 / graphene-django 2): relay connections with
``totalCount``/``edgeCount``, filter arguments named after Django lookups
(``insureePolicies_Insuree_ChfId``; a number filter such as ``status`` is a Float),
``Decimal`` a string on the wire and, as graphene 2 parses it, only from a string
literal. The checks come in openIMIS's order with its messages: a connection field
checks the login (``unauthorized``) and then the CSRF token; ``validatePremiumCode``
checks only the login; ``createPremium`` checks only the CSRF token and reports a
missing login in its mutation log; an expired or bad bearer token fails every root
field, ``tokenAuth`` included (graphql_jwt authenticates it too).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    StringValueNode,
    Undefined,
    ValueNode,
    build_schema,
)

from simulators.common import JsonObject
from simulators.openimis_auth import TokenRefused
from simulators.openimis_engine import LoginRefused, OpenimisEngine

UNAUTHORIZED = "unauthorized"
LOGIN_REQUIRED = "You do not have permission to perform this action"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PAGING = "offset: Int, before: String, after: String, first: Int, last: Int"

SDL = f"""
scalar Date
scalar DateTime
scalar Decimal
scalar GenericScalar

interface Node {{ id: ID! }}

type PageInfo {{
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
  endCursor: String
}}

type ProductGQLType implements Node {{
  id: ID!
  uuid: String!
  code: String!
  name: String!
  lumpSum: Decimal!
}}

type FamilyGQLType implements Node {{
  id: ID!
  uuid: String!
  headInsuree: InsureeGQLType!
}}

type InsureeGQLType implements Node {{
  id: ID!
  uuid: String!
  chfId: String
  lastName: String!
  otherNames: String!
  phone: String
  status: String
  family: FamilyGQLType
}}

type PolicyGQLType implements Node {{
  id: ID!
  uuid: String!
  stage: String
  status: Int
  value: Decimal
  family: FamilyGQLType!
  enrollDate: Date!
  startDate: Date!
  effectiveDate: Date
  expiryDate: Date
  product: ProductGQLType!
  sumPremiums: Float
  insureePolicies({_PAGING}): InsureePolicyGQLTypeConnection!
}}

type InsureePolicyGQLType {{
  insuree: InsureeGQLType!
  enrollmentDate: Date
  startDate: Date
  effectiveDate: Date
  expiryDate: Date
}}

type PremiumGQLType implements Node {{
  id: ID!
  uuid: String!
  policy: PolicyGQLType!
  amount: Decimal!
  receipt: String!
  payDate: Date!
  payType: String!
  isPhotoFee: Boolean
}}

type MutationLogGQLType implements Node {{
  id: ID!
  requestDateTime: DateTime!
  clientMutationId: String
  clientMutationLabel: String
  status: Int
  error: String
}}

type InsureeGQLTypeEdge {{ node: InsureeGQLType cursor: String! }}
type PolicyGQLTypeEdge {{ node: PolicyGQLType cursor: String! }}
type PremiumGQLTypeEdge {{ node: PremiumGQLType cursor: String! }}
type InsureePolicyGQLTypeEdge {{ node: InsureePolicyGQLType cursor: String! }}
type MutationLogGQLTypeEdge {{ node: MutationLogGQLType cursor: String! }}

type InsureeGQLTypeConnection {{
  pageInfo: PageInfo! edges: [InsureeGQLTypeEdge]! totalCount: Int edgeCount: Int
}}
type PolicyGQLTypeConnection {{
  pageInfo: PageInfo! edges: [PolicyGQLTypeEdge]! totalCount: Int edgeCount: Int
}}
type InsureePolicyGQLTypeConnection {{
  pageInfo: PageInfo! edges: [InsureePolicyGQLTypeEdge]! totalCount: Int edgeCount: Int
}}
type PremiumGQLTypeConnection {{
  pageInfo: PageInfo! edges: [PremiumGQLTypeEdge]! totalCount: Int edgeCount: Int
}}
type MutationLogGQLTypeConnection {{
  pageInfo: PageInfo! edges: [MutationLogGQLTypeEdge]! totalCount: Int edgeCount: Int
}}

type Query {{
  insurees({_PAGING}, uuid: String, chfId: String): InsureeGQLTypeConnection
  policies(
    {_PAGING}, uuid: String, status: Float, insureePolicies_Insuree_ChfId: String,
    product_Code: String
  ): PolicyGQLTypeConnection
  premiumsByPolicies({_PAGING}, policyUuids: [String]!): PremiumGQLTypeConnection
  validatePremiumCode(code: String!, policyUuid: String!): Boolean
  mutationLogs({_PAGING}, clientMutationId: String): MutationLogGQLTypeConnection
}}

input CreatePremiumMutationInput {{
  clientMutationLabel: String
  policyUuid: String!
  amount: Decimal
  receipt: String
  payDate: Date
  payType: String
  isPhotoFee: Boolean
  action: String
  clientMutationId: String
}}

type CreatePremiumMutationPayload {{ internalId: String clientMutationId: String }}
type OpenimisObtainJSONWebToken {{
  payload: GenericScalar!
  refreshExpiresIn: Int!
  token: String!
}}
type GetCsrfTokenMutation {{ csrfToken: String }}

type Mutation {{
  tokenAuth(username: String!, password: String!): OpenimisObtainJSONWebToken
  getCsrfToken: GetCsrfTokenMutation
  createPremium(input: CreatePremiumMutationInput!): CreatePremiumMutationPayload
}}
"""


@dataclass
class RequestContext:
    """What one GraphQL call knows of its caller, and what it hands back to the HTTP layer."""

    engine: OpenimisEngine
    user: str | None  # None: anonymous
    token_problem: str | None  # a bearer token graphql_jwt refuses: fails every root field
    session_id: str | None  # the session cookie's value
    csrf_header: str | None
    fault_message: str | None = None  # a mutation_error fault armed on this call
    new_session_id: str | None = None  # set when getCsrfToken opened a session

    @classmethod
    def of(
        cls,
        engine: OpenimisEngine,
        authorization: str | None,
        session_id: str | None,
        csrf_header: str | None,
    ) -> RequestContext:
        try:
            return cls(engine, engine.tokens.user(authorization), None, session_id, csrf_header)
        except TokenRefused as refused:
            return cls(engine, None, str(refused), session_id, csrf_header)

    def csrf_problem(self) -> str | None:
        return self.engine.csrf_problem(self.session_id, self.csrf_header)


def _context(info: GraphQLResolveInfo) -> RequestContext:
    context: RequestContext = info.context
    return context


# --------------------------------------------------------------------------- scalars


def _decimal(value: Any) -> Decimal:
    if not isinstance(value, str):
        raise GraphQLError(f"Decimal cannot represent a non string value: {value!r}")
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        raise GraphQLError(f"Decimal cannot represent value: {value!r}") from None
    if not number.is_finite():
        raise GraphQLError(f"Decimal cannot represent value: {value!r}")
    return number


def _date(value: Any) -> date:
    try:
        if isinstance(value, str) and _DATE.fullmatch(value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise GraphQLError(f"Date cannot represent value: {value!r}")


def _from_string_literal(parse: Callable[[Any], Any]) -> Callable[..., Any]:
    def parse_literal(node: ValueNode, _variables: Any = None) -> Any:
        if not isinstance(node, StringValueNode):
            return Undefined  # "Expected value of type 'Decimal', found 1500."
        return parse(node.value)

    return parse_literal


def _iso(value: Any) -> str:
    if not isinstance(value, date | datetime):
        raise GraphQLError(f"Cannot serialize as a date: {value!r}")
    return value.isoformat()


def _decimal_out(value: Any) -> str:
    if not isinstance(value, Decimal):
        raise GraphQLError(f"Cannot serialize as a Decimal: {value!r}")
    return str(value)


_SCALARS: dict[str, dict[str, Callable[..., Any]]] = {
    "Decimal": {
        "serialize": _decimal_out,
        "parse_value": _decimal,
        "parse_literal": _from_string_literal(_decimal),
    },
    "Date": {"serialize": _iso, "parse_value": _date, "parse_literal": _from_string_literal(_date)},
    "DateTime": {"serialize": _iso},
}


# --------------------------------------------------------------------------- relay


def _global_id(type_name: str) -> Callable[..., str]:
    def resolve(source: Any, _info: GraphQLResolveInfo) -> str:
        return base64.b64encode(f"{type_name}:{source.pk}".encode()).decode()

    return resolve


def _cursor(index: int) -> str:
    return base64.b64encode(f"arrayconnection:{index}".encode()).decode()


def _cursor_index(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        prefix, _, index = base64.b64decode(cursor).decode().partition(":")
        return int(index) if prefix == "arrayconnection" else None
    except ValueError:
        return None


def _connection(items: Sequence[Any], args: JsonObject) -> JsonObject:
    """A relay connection over items, paged as graphene's list slices are."""
    start, end = 0, len(items)
    if (after := _cursor_index(args.get("after"))) is not None:
        start = max(start, after + 1)
    if (before := _cursor_index(args.get("before"))) is not None:
        end = min(end, before)
    start += max(args.get("offset") or 0, 0)
    first, last = args.get("first"), args.get("last")
    if first is not None:
        end = min(end, start + max(first, 0))
    if last is not None:
        start = max(start, end - max(last, 0))
    start = min(start, end)
    edges = [{"node": item, "cursor": _cursor(i)} for i, item in enumerate(items[start:end], start)]
    return {
        "edges": edges,
        "totalCount": len(items),
        "edgeCount": len(edges),
        "pageInfo": {
            "hasPreviousPage": last is not None and start > 0,
            "hasNextPage": first is not None and end < len(items),
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


# --------------------------------------------------------------------------- resolvers


def _listing_allowed(info: GraphQLResolveInfo) -> OpenimisEngine:
    """A connection field's checks: the login, then the CSRF token."""
    context = _context(info)
    if context.user is None:
        raise GraphQLError(UNAUTHORIZED)
    if (problem := context.csrf_problem()) is not None:
        raise GraphQLError(problem)
    return context.engine


def _insurees(_root: None, info: GraphQLResolveInfo, **args: Any) -> JsonObject:
    data = _listing_allowed(info).data
    items = [
        insuree
        for insuree in data.insurees.values()
        if args.get("chfId") in (None, insuree.chf_id) and args.get("uuid") in (None, insuree.uuid)
    ]
    return _connection(items, args)


def _policies(_root: None, info: GraphQLResolveInfo, **args: Any) -> JsonObject:
    data = _listing_allowed(info).data
    wanted = {
        "uuid": args.get("uuid"),
        "status": args.get("status"),
        "chf_id": args.get("insureePolicies_Insuree_ChfId"),
        "product_code": args.get("product_Code"),
    }
    items = [
        policy
        for policy in data.policies.values()
        if all(
            expected is None or expected == actual
            for expected, actual in (
                (wanted["uuid"], policy.uuid),
                (wanted["status"], policy.status),
                (wanted["chf_id"], policy.family.head_insuree.chf_id),
                (wanted["product_code"], policy.product.code),
            )
        )
    ]
    return _connection(items, args)


def _insuree_policies(policy: Any, _info: GraphQLResolveInfo, **args: Any) -> JsonObject:
    """The insurees a policy covers: here its family's head, the one insuree seeded."""
    covered = {
        "insuree": policy.family.head_insuree,
        "enrollmentDate": policy.enroll_date,
        "startDate": policy.start_date,
        "effectiveDate": policy.effective_date,
        "expiryDate": policy.expiry_date,
    }
    return _connection([covered], args)


def _premiums_by_policies(_root: None, info: GraphQLResolveInfo, **args: Any) -> JsonObject:
    data = _listing_allowed(info).data
    uuids = set(args["policyUuids"])
    return _connection([p for p in data.premiums if p.policy.uuid in uuids], args)


def _mutation_logs(_root: None, info: GraphQLResolveInfo, **args: Any) -> JsonObject:
    data = _listing_allowed(info).data
    wanted = args.get("clientMutationId")
    logs = [log for log in data.mutation_logs if wanted in (None, log.client_mutation_id)]
    return _connection(logs, args)


def _validate_premium_code(
    _root: None, info: GraphQLResolveInfo, code: str, policyUuid: str
) -> bool:
    """True when the receipt is free for the policy's product (no CSRF check in openIMIS)."""
    context = _context(info)
    if context.user is None:
        raise GraphQLError(UNAUTHORIZED)
    try:
        return not context.engine.data.receipt_taken(code, policyUuid)
    except AttributeError as exc:
        raise GraphQLError(str(exc)) from None


def _token_auth(_root: None, info: GraphQLResolveInfo, username: str, password: str) -> JsonObject:
    try:
        return _context(info).engine.login(username, password)
    except LoginRefused as refused:
        raise GraphQLError(str(refused)) from None


def _get_csrf_token(_root: None, info: GraphQLResolveInfo) -> JsonObject:
    context = _context(info)
    if context.user is None:
        raise GraphQLError(LOGIN_REQUIRED)
    session_id, token = context.engine.sessions.new_csrf_token(context.session_id)
    if session_id != context.session_id:
        context.new_session_id = session_id
    return {"csrfToken": token}


_INPUT_NAMES = {
    "clientMutationId": "client_mutation_id",
    "clientMutationLabel": "client_mutation_label",
    "policyUuid": "policy_uuid",
    "amount": "amount",
    "receipt": "receipt",
    "payDate": "pay_date",
    "payType": "pay_type",
    "isPhotoFee": "is_photo_fee",
    "action": "action",
}


def _create_premium(_root: None, info: GraphQLResolveInfo, input: JsonObject) -> JsonObject:
    context = _context(info)
    if (problem := context.csrf_problem()) is not None:
        raise GraphQLError(problem)
    data = {_INPUT_NAMES[name]: value for name, value in input.items()}
    log = context.engine.submit_premium(data, context.user, context.fault_message)
    return {"internalId": log.uuid, "clientMutationId": input.get("clientMutationId")}


_ROOT_RESOLVERS: dict[str, dict[str, Callable[..., Any]]] = {
    "Query": {
        "insurees": _insurees,
        "policies": _policies,
        "premiumsByPolicies": _premiums_by_policies,
        "validatePremiumCode": _validate_premium_code,
        "mutationLogs": _mutation_logs,
    },
    "Mutation": {
        "tokenAuth": _token_auth,
        "getCsrfToken": _get_csrf_token,
        "createPremium": _create_premium,
    },
}


def field_resolver(source: Any, info: GraphQLResolveInfo, **_args: Any) -> Any:
    """A dict's key as named, else the object's attribute in snake case (``chfId``: chf_id)."""
    name = info.field_name
    if isinstance(source, dict):
        return source.get(name)
    return getattr(source, re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower(), None)


def jwt_middleware(
    next_: Callable[..., Any], root: Any, info: GraphQLResolveInfo, **args: Any
) -> Any:
    """graphql_jwt's check: a refused bearer token fails every root field."""
    problem = _context(info).token_problem
    if problem is not None and info.path.prev is None:
        raise GraphQLError(problem)
    return next_(root, info, **args)


def build() -> GraphQLSchema:
    """The executable schema."""
    schema = build_schema(SDL)
    for name, hooks in _SCALARS.items():
        scalar = schema.type_map[name]
        assert isinstance(scalar, GraphQLScalarType)
        for hook, function in hooks.items():
            setattr(scalar, hook, function)  # the SDL declares them; the behaviour is set here
    for type_name, resolvers in _ROOT_RESOLVERS.items():
        root = schema.type_map[type_name]
        assert isinstance(root, GraphQLObjectType)
        for field_name, resolver in resolvers.items():
            root.fields[field_name].resolve = resolver
    policy_type = schema.type_map["PolicyGQLType"]
    assert isinstance(policy_type, GraphQLObjectType)
    policy_type.fields["insureePolicies"].resolve = _insuree_policies
    for named in schema.type_map.values():
        if isinstance(named, GraphQLObjectType) and "id" in named.fields and named.interfaces:
            named.fields["id"].resolve = _global_id(named.name)
    return schema


SCHEMA = build()
OPERATIONS = tuple(
    name for resolvers in _ROOT_RESOLVERS.values() for name in resolvers
)  # root field names: what faults are armed on
