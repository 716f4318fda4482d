"""The seed module's answers, word for word (its providers may match on them, spelling
included), and how the gateway's refusals are told in them.

Every refusal also names the gateway's own error in `detail` ("code: message"), the
same code the REST twin answers."""

from __future__ import annotations

import json
from typing import Any

from graphql import GraphQLError

from server.kernel.errors import ApiError

# verifyInsuree
UNKNOWN_INSUREE = "chf_id does not exist"
IDLE_POLICIES = "1 for idle policy"
NO_IDLE_POLICY = "insuree does not have any idle policy that requires payment,"
NOT_A_PROVIDER = "You are not authorized to perform this operation"

# processPayment
PAID = "Payment processed successfully"
PAYMENT_FAILED = "Process failed to work"
PAYMENT_REFUSALS = {
    "unknown_insuree": "Please pass in the correct CH ID.",
    "invalid_policy_token": "Unable to process payment. insuree does not have any idle "
    "policy that requires payment.",
    "amount_too_small": "Amount is too small. It needs to be the exact amount of the product.",
    "amount_too_large": "Amount is too large. pls enter the exact amount the product cost.",
    "policy_not_idle": "Please check again if your policy you are trying to pay for is "
    "idle  or active.",
}

# initiateTransaction and processTransaction
SUCCESS = "Success"
INITIATE_FAILED = "transaction.mutation.failed_to_create_initiate_transaction"
NO_WALLET = "Insuree wallet does not exist"
PROCESS_FAILED = "transaction.mutation.failed_to_update_process_transaction"
INSUFFICIENT_BALANCE_CODE = "-120008"
INSUFFICIENT_BALANCE = "Insufficent Balance in your Qmoney wallet"

# tokenAuth (openIMIS's own word for a failed login)
INCORRECT_CREDENTIALS = "INCORRECT_CREDENTIALS"

INTERNAL = "internal error"


def detail_of(err: ApiError) -> str:
    """The gateway's error in one line: its code, its message and the fields it names."""
    fields = err.details.get("fields")
    return f"{err.code}: {err.message}" + (f" {json.dumps(fields)}" if fields else "")


def graphql_error(err: ApiError, message: str | None = None) -> GraphQLError:
    """A GraphQL error for a refusal the seed answered as one; `extensions` carry the
    gateway's code and details."""
    extensions: dict[str, Any] = {"code": err.code}
    if err.details:
        extensions["details"] = err.details
    return GraphQLError(message or err.message, extensions=extensions)


def payment_refused(err: ApiError, mutation_id: str | None) -> dict[str, Any]:
    return {
        "Success": False,
        "responseMessage": PAYMENT_REFUSALS.get(err.code, PAYMENT_FAILED),
        "detail": detail_of(err),
        "clientMutationId": mutation_id,
    }


def payment_made(mutation_id: str | None) -> dict[str, Any]:
    return {
        "Success": True,
        "responseMessage": PAID,
        "detail": None,
        "clientMutationId": mutation_id,
    }


def payment_failed(mutation_id: str | None) -> dict[str, Any]:
    """An unexpected failure (logged): the seed's answer to any exception."""
    return {
        "Success": False,
        "responseMessage": PAYMENT_FAILED,
        "detail": INTERNAL,
        "clientMutationId": mutation_id,
    }
