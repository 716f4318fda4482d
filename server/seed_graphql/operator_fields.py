"""initiateTransaction and processTransaction: the debit engine's start and process
(`POST /api/v1/transactions`, `POST /api/v1/transactions/<uuid>/process`), for the
same roles, answered in the seed's shapes.

The seed names the payer's insuree (`insureeUuid`), the gateway's start names a policy.
The gateway knows an insuree by its number, so `insureeUuid` carries the insuree's
number, and the policy is the insuree's only policy awaiting payment; an insuree with
several names one with `policyUuid` (the gateway's own field), and one with none is
refused. The amount is checked against that policy's value, as the REST start checks it.
Processing reads amount, payer and provider from the stored transaction, never from
the request: the seed's other process fields are taken and not used."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLResolveInfo

from server.debits.schemas import DebitRequestSchema, ProcessRequestSchema
from server.kernel.errors import ApiError, Conflict, Unauthorized, ValidationFailed
from server.ledger import states
from server.ledger.documents import Transaction
from server.psp_api.service import PspApiService
from server.seed_graphql import answers
from server.seed_graphql.inputs import DEBIT_NAMES, load
from server.web.operations import STAFF

log = logging.getLogger("gateway.seed_graphql")

UNKNOWN_DETAIL = (
    "unknown: the provider's answer was lost; the transaction holds the policy until "
    "an operator or the provider's status resolves it"
)


async def initiate_transaction(
    _root: Any,
    info: GraphQLResolveInfo,
    input: dict[str, Any],
) -> dict[str, Any]:
    caller, mutation_id = info.context, input.get("clientMutationId")
    try:
        identity = await caller.with_role(*STAFF)
        policy_uuid = await idle_policy_of(
            caller.services.psp_api, input.get("insureeUuid"), input.get("policyUuid")
        )
        request = load(
            DebitRequestSchema,
            {
                "policy_uuid": policy_uuid,
                "psp_uuid": input.get("paymentServiceProviderUuid"),
                "amount": input.get("amount"),
            },
            DEBIT_NAMES,
        )
        transaction = await caller.services.debits.initiate(
            request["policy_uuid"], request["psp_uuid"], request["amount"], identity.username
        )
    except Unauthorized as err:
        raise answers.graphql_error(err) from None
    except ApiError as err:
        message = answers.NO_WALLET if err.code == "no_wallet" else answers.INITIATE_FAILED
        return _initiated(None, False, message, answers.detail_of(err), mutation_id)
    except Exception:
        log.exception("seed_graphql_failed operation=initiateTransaction")
        return _initiated(None, False, answers.INITIATE_FAILED, answers.INTERNAL, mutation_id)
    if transaction["status"] == states.UNKNOWN:
        return _initiated(
            transaction["_id"], False, answers.INITIATE_FAILED, UNKNOWN_DETAIL, mutation_id
        )
    return _initiated(transaction["_id"], True, answers.SUCCESS, None, mutation_id)


def _initiated(
    uuid: str | None, success: bool, message: str, detail: str | None, mutation_id: str | None
) -> dict[str, Any]:
    """`internalId` (the transaction's uuid too) answers the seed's older documents."""
    return {
        "uuids": uuid,
        "internalId": uuid,
        "Success": success,
        "responseMessage": message,
        "detail": detail,
        "clientMutationId": mutation_id,
    }


async def idle_policy_of(
    psp_api: PspApiService, chf_id: str | None, policy_uuid: str | None
) -> str:
    """The policy a debit of insuree `chf_id` pays: `policy_uuid` when given (it must
    be one of the insuree's awaiting payment), else the insuree's only one."""
    if not chf_id:
        raise ValidationFailed(
            "the input is invalid", {"fields": {"insureeUuid": ["the insuree's number"]}}
        )
    insuree, policies = await psp_api.verify(chf_id)
    idle = [policy["_id"] for policy in policies]
    if policy_uuid:
        if policy_uuid not in idle:
            raise Conflict(
                f"policy {policy_uuid} is not a policy of insuree {insuree['chf_id']} "
                "awaiting payment",
                code="policy_not_idle",
            )
        return policy_uuid
    if not idle:
        raise Conflict(
            f"insuree {insuree['chf_id']} has no policy awaiting payment", code="no_idle_policy"
        )
    if len(idle) > 1:
        raise Conflict(
            f"insuree {insuree['chf_id']} has {len(idle)} policies awaiting payment: "
            "name one with policyUuid",
            {"policies": idle},
            code="policy_ambiguous",
        )
    return idle[0]


async def process_transaction(
    _root: Any,
    info: GraphQLResolveInfo,
    input: dict[str, Any],
) -> dict[str, Any]:
    caller, mutation_id = info.context, input.get("clientMutationId")
    try:
        identity = await caller.with_role(*STAFF)
        if not input.get("uuid"):
            raise ValidationFailed(
                "the input is invalid", {"fields": {"uuid": ["the transaction's uuid"]}}
            )
        request = load(ProcessRequestSchema, {"otp": input.get("otp")}, {})
        transaction = await caller.services.debits.process(
            input["uuid"], request["otp"], identity.username
        )
    except Unauthorized as err:
        raise answers.graphql_error(err) from None
    except ApiError as err:
        return _processed("0", False, answers.PROCESS_FAILED, answers.detail_of(err), mutation_id)
    except Exception:
        log.exception("seed_graphql_failed operation=processTransaction")
        return _processed("0", False, answers.PROCESS_FAILED, answers.INTERNAL, mutation_id)
    return processed(transaction, mutation_id)


def processed(transaction: Transaction, mutation_id: str | None) -> dict[str, Any]:
    """The seed's answer for a debit after the payer's code: "1" when it succeeded, else
    the provider's code and message (a wrong code leaves it waiting for the right one)."""
    status, uuid = transaction["status"], transaction["_id"]
    if status == states.SUCCEEDED:
        return _processed("1", True, answers.SUCCESS, None, mutation_id, uuid)
    if status == states.UNKNOWN:
        return _processed("0", False, answers.PROCESS_FAILED, UNKNOWN_DETAIL, mutation_id, uuid)
    failure: dict[str, Any] = dict(transaction.get("failure") or {})
    code = str(failure.get("code") or "0")
    message = (
        answers.INSUFFICIENT_BALANCE
        if code == answers.INSUFFICIENT_BALANCE_CODE
        else failure.get("message") or answers.PROCESS_FAILED
    )
    return _processed(code, False, message, f"the transaction is {status}", mutation_id, uuid)


def _processed(
    code: str,
    success: bool,
    message: str,
    detail: str | None,
    mutation_id: str | None,
    uuid: str | None = None,
) -> dict[str, Any]:
    """`internalId` (the transaction's uuid) answers the seed's older documents."""
    return {
        "internalId": uuid,
        "responseCode": code,
        "responseMessage": message,
        "Success": success,
        "detail": detail,
        "clientMutationId": mutation_id,
    }
