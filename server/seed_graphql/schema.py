"""The GraphQL schema: the seed module's operations with its names, argument names and
types (graphene's type names, so documents that declare variables validate as they
did), wired to the resolvers."""

from __future__ import annotations

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLString,
)

from server.seed_graphql.login import token_auth
from server.seed_graphql.operator_fields import initiate_transaction, process_transaction
from server.seed_graphql.provider_fields import process_payment, verify_insuree
from server.seed_graphql.scalars import DECIMAL, EXACT_FLOAT, JSON_STRING

STRING = GraphQLString
REQUIRED_STRING = GraphQLNonNull(GraphQLString)


def _fields(**types: GraphQLOutputType) -> dict[str, GraphQLField]:
    return {name: GraphQLField(type_) for name, type_ in types.items()}


def _inputs(**types: GraphQLInputType) -> dict[str, GraphQLInputField]:
    return {name: GraphQLInputField(type_) for name, type_ in types.items()}


POLICY = GraphQLObjectType(
    "PolicyType",
    _fields(
        productName=STRING, amount=EXACT_FLOAT, status=GraphQLInt, productCode=STRING, token=STRING
    ),
    description="A policy awaiting payment: `token` names it in processPayment; `amount` "
    "is its exact value, `status` 1 (idle).",
)
VERIFICATION = GraphQLObjectType(
    "VerifyGQLtype",
    _fields(firstName=STRING, lastName=STRING, policies=GraphQLList(POLICY), message=STRING),
)

PRODUCT_INPUT = GraphQLInputObjectType(
    "ProductInput",
    _inputs(productName=REQUIRED_STRING, productCode=REQUIRED_STRING, token=REQUIRED_STRING),
)
_PAYMENT_FIELDS = _inputs(
    chfId=REQUIRED_STRING,
    amount=GraphQLNonNull(DECIMAL),
    pspTransactionId=REQUIRED_STRING,
    policy=GraphQLNonNull(PRODUCT_INPUT),
    jsonExt=JSON_STRING,
)
PAYMENT_PAYLOAD = GraphQLObjectType(
    "ProcessPaymentMutationPayload",
    _fields(Success=GraphQLBoolean, responseMessage=STRING, detail=STRING, clientMutationId=STRING),
)
PROCESS_PAYMENT = GraphQLField(
    PAYMENT_PAYLOAD,
    args={
        "inputData": GraphQLArgument(
            GraphQLInputObjectType("ProcessPaymentInput", _PAYMENT_FIELDS)
        ),
        "input": GraphQLArgument(
            GraphQLInputObjectType(
                "ProcessPaymentMutationInput",
                {**_PAYMENT_FIELDS, **_inputs(clientMutationId=STRING)},
            )
        ),
    },
    resolve=process_payment,
    description="Pay a policy (POST /api/v1/payments), idempotently per pspTransactionId.",
)

INITIATE_INPUT = GraphQLInputObjectType(
    "InitiateTransactionMutationInput",
    _inputs(
        amount=DECIMAL,
        paymentServiceProviderUuid=STRING,
        insureeUuid=STRING,
        policyUuid=STRING,
        clientMutationId=STRING,
    ),
    description="`insureeUuid`: the insuree's number; `policyUuid` (the gateway's): which "
    "of its policies awaiting payment, when it has more than one.",
)
INITIATE_TRANSACTION = GraphQLField(
    GraphQLObjectType(
        "InitiateTransactionMutationPayload",
        _fields(
            uuids=STRING,
            internalId=STRING,
            Success=GraphQLBoolean,
            responseMessage=STRING,
            detail=STRING,
            clientMutationId=STRING,
        ),
    ),
    args={"input": GraphQLArgument(GraphQLNonNull(INITIATE_INPUT))},
    resolve=initiate_transaction,
    description="Start an OTP debit (POST /api/v1/transactions); `uuids` is the transaction.",
)
PROCESS_INPUT = GraphQLInputObjectType(
    "ProcessTransactionMutationInput",
    _inputs(
        uuid=STRING,
        amount=DECIMAL,
        otp=STRING,
        paymentServiceProviderUuid=STRING,
        insureeUuid=STRING,
        clientMutationId=STRING,
    ),
    description="`uuid` and `otp` are used; amount, provider and insuree are the stored "
    "transaction's.",
)
PROCESS_TRANSACTION = GraphQLField(
    GraphQLObjectType(
        "ProcessTransactionMutationPayload",
        _fields(
            internalId=STRING,
            responseCode=STRING,
            responseMessage=STRING,
            Success=GraphQLBoolean,
            detail=STRING,
            clientMutationId=STRING,
        ),
    ),
    args={"input": GraphQLArgument(GraphQLNonNull(PROCESS_INPUT))},
    resolve=process_transaction,
    description="Complete an OTP debit with the payer's code "
    "(POST /api/v1/transactions/<uuid>/process).",
)

TOKEN_AUTH = GraphQLField(
    GraphQLObjectType(
        "ObtainJSONWebToken",
        _fields(token=REQUIRED_STRING, refreshToken=REQUIRED_STRING),
    ),
    args={
        "username": GraphQLArgument(REQUIRED_STRING),
        "password": GraphQLArgument(REQUIRED_STRING),
    },
    resolve=token_auth,
    description="Log in (POST /api/v1/auth/token): the access and the refresh token.",
)

SCHEMA = GraphQLSchema(
    query=GraphQLObjectType(
        "Query",
        {
            "verifyInsuree": GraphQLField(
                VERIFICATION,
                args={"chfId": GraphQLArgument(REQUIRED_STRING)},
                resolve=verify_insuree,
                description="An insuree's policies awaiting payment "
                "(GET /api/v1/insurees/<chf_id>/policies).",
            )
        },
    ),
    mutation=GraphQLObjectType(
        "Mutation",
        {
            "tokenAuth": TOKEN_AUTH,
            "processPayment": PROCESS_PAYMENT,
            "initiateTransaction": INITIATE_TRANSACTION,
            "processTransaction": PROCESS_TRANSACTION,
        },
    ),
)
