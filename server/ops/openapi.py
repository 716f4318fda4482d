"""The OpenAPI 3.0.3 document of the gateway, built with apispec from the marshmallow
schemas the handlers load requests with (and server/ops/response_schemas.py for answers).

OPERATIONS says, per path, what each method takes and answers. build_spec walks the
route table and refuses to build when a route or a method its handler implements has
no entry, or an entry has no route: the document cannot silently fall behind the API."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema

from server.auth.schemas import (
    LogoutRequestSchema,
    RefreshRequestSchema,
    TokenRequestSchema,
    TokenResponseSchema,
)
from server.insurance.schemas import (
    InsureeCreateSchema,
    InsureeQuerySchema,
    InsureeUpdateSchema,
    PolicyCreateSchema,
    PolicyQuerySchema,
    PolicyUpdateSchema,
    ProductCreateSchema,
    ProductUpdateSchema,
)
from server.kernel.schemas import PageQuerySchema
from server.ledger.schemas import TransactionQuerySchema
from server.mpesa.schemas import (
    AllocateRequestSchema,
    C2BCallbackSchema,
    InboxQuerySchema,
    PaymentQuerySchema,
    ReplayRequestSchema,
)
from server.ops import response_schemas as answers
from server.ops.handlers import DashboardQuerySchema
from server.psp_api.schemas import PaymentRequestSchema
from server.psps.schemas import PspCreateSchema, PspQuerySchema, PspUpdateSchema
from server.qmoney.schemas import (
    DebitRequestSchema,
    ProcessRequestSchema,
    ReasonSchema,
    ResolveRequestSchema,
)
from server.web.handler import implemented_methods

Route = Sequence[Any]       # (pattern, handler) or (pattern, handler, kwargs)

STAFF = ("operator", "admin")
ADMIN = ("admin",)
PSP = ("psp",)

# Error statuses most operations share: a bearer token with the right role, a JSON body.
AUTH = (401, 403)
BODY = (400, 413, 415)


class SpecOutOfDate(RuntimeError):
    """The route table and OPERATIONS disagree."""


@dataclass(frozen=True)
class Operation:
    """One method of one path: who may call it, what it takes and what it answers."""

    summary: str
    tag: str
    answer: type[Schema] | dict[str, Any] | None     # None: no body (HEAD)
    roles: tuple[str, ...] = ()
    body: type[Schema] | None = None
    example: dict[str, Any] | None = None
    query: type[Schema] | None = None
    success: dict[int, str] = field(default_factory=lambda: {200: "OK"})
    errors: tuple[int, ...] = ()
    # The Daraja callbacks answer errors in Daraja's format, not the API's error shape;
    # None for the browser pages, whose errors are Tornado's own HTML.
    error_answer: type[Schema] | None = answers.ErrorSchema
    error_descriptions: dict[int, str] = field(default_factory=dict)
    media_type: str = "application/json"
    description: str = ""


ERROR_RESPONSES = {
    400: ("BadRequest", "Bad input: malformed JSON (also: nested deeper than 32 levels, "
                        "NaN, Infinity or a number out of range), missing, unknown or "
                        "invalid fields (named in `details.fields`), or a rule of the "
                        "operation"),
    401: ("Unauthorized", "Missing, invalid or expired token, or wrong credentials"),
    403: ("Forbidden", "The caller's role may not do this"),
    404: ("NotFound", "Nothing with that key"),
    409: ("Conflict", "The current state does not allow it (`details` says why)"),
    413: ("PayloadTooLarge", "The body is larger than server.max_body_bytes"),
    415: ("UnsupportedMediaType", "The body is not sent as `Content-Type: application/json` "
                                  "(parameters such as charset may follow)"),
    429: ("TooManyRequests", "Over psp_api.rate_limit_per_minute, or too many failed logins "
                             "(auth.login_*); retry after `Retry-After`"),
    502: ("BadGateway", "The provider refused (`details.provider_code`)"),
    503: ("ServiceUnavailable", "A dependency is unavailable or not configured; retry later"),
}

PATH_PARAMETERS = {
    "secret": "The callback secret (c2b.callback_secret); a wrong one is 404",
    "trans_id": "M-Pesa TransID of the payment",
    "entry_id": "Id of the inbox entry",
    "chf_id": "Insuree number",
    "transaction_uuid": "Uuid of the transaction",
    "code": "Product code",
    "uuid": "Uuid of the item",
    "path": "File name",
}

TAGS = [
    ("auth", "Access and refresh tokens"),
    ("c2b-callbacks", "Daraja's C2B callbacks (Daraja's own body and answer formats)"),
    ("c2b-payments", "M-Pesa paybill payments and the raw callback inbox"),
    ("payment-providers", "External payment providers: verify an insuree, pay a policy"),
    ("transactions", "Transactions of every channel; Qmoney OTP debits"),
    ("operations", "Dashboard, health, readiness, metrics, this document"),
    ("insurees", "Insurees (admin)"),
    ("products", "Products (admin)"),
    ("policies", "Policies (admin)"),
    ("psps", "Payment service providers (admin)"),
    ("pages", "Pages for browsers and their files (no JSON)"),
]

DARAJA_ERRORS = {
    403: "The source address is not in c2b.ip_allowlist",
    404: "Wrong secret: nothing is processed",
    413: "The body is larger than server.max_body_bytes",
    503: "The inbox could not be written: not acknowledged, so Daraja delivers it again",
}

CALLBACK_EXAMPLE = {
    "TransactionType": "Pay Bill", "TransID": "RKL51ZDR4F", "TransTime": "20261123121325",
    "TransAmount": "1500.00", "BusinessShortCode": "600984", "BillRefNumber": "080808080",
    "InvoiceNumber": "", "OrgAccountBalance": "25000.00", "ThirdPartyTransID": "",
    "MSISDN": "2547 ***** 149", "FirstName": "JOHN", "MiddleName": "", "LastName": "DOE",
}

INTERNAL = ("On the internal listener (server.internal_port) when that is set; this port "
            "then answers 404.")

POLICY_UUID = "6f1c2a4e-8b3d-4f7a-9c21-5d0e8a7b3f42"
REFRESH_TOKEN_EXAMPLE = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZnJpbW9uZXkifQ."
                         "c2lnbmF0dXJl")
PSP_UUID = "2b9e1c0d-4a7f-4e3b-8d6c-91f0a2b4c5d6"


def _collection(plural: str, singular: str, page: type[Schema], item: type[Schema],
                query: type[Schema], create: type[Schema], example: dict[str, Any],
                create_errors: tuple[int, ...]) -> dict[str, Operation]:
    """GET and POST of an admin collection (server/admin.py CollectionHandler)."""
    return {
        "get": Operation(f"List {plural}", plural, page, roles=STAFF, query=query,
                         errors=(400, *AUTH)),
        "post": Operation(f"Create a {singular}", plural, item, roles=ADMIN, body=create,
                          example=example, success={201: "Created"},
                          errors=(*BODY, *AUTH, *create_errors)),
    }


def _item(singular: str, tag: str, item: type[Schema], update: type[Schema],
          example: dict[str, Any], update_errors: tuple[int, ...] = ()
          ) -> dict[str, Operation]:
    """GET and PATCH of one admin item (server/admin.py ItemHandler)."""
    return {
        "get": Operation(f"One {singular}", tag, item, roles=STAFF, errors=(*AUTH, 404)),
        "patch": Operation(f"Change a {singular}", tag, item, roles=ADMIN, body=update,
                           example=example, errors=(*BODY, *AUTH, 404, *update_errors),
                           description="Give at least one field."),
    }


def _page(summary: str) -> dict[str, Operation]:
    return {"get": Operation(summary, "pages", {"type": "string"}, media_type="text/html")}


def _static_files(whose: str) -> dict[str, Operation]:
    """GET and HEAD of a Tornado StaticFileHandler directory."""
    missing = {404: "No such file"}
    return {
        "get": Operation(f"A file of {whose}", "pages", {"type": "string", "format": "binary"},
                         media_type="*/*", errors=(404,), error_answer=None,
                         error_descriptions=missing),
        "head": Operation(f"The headers of a file of {whose}", "pages", None, errors=(404,),
                          error_answer=None, error_descriptions=missing),
    }


def _callback(kind: str, answer: type[Schema], description: str,
              errors: tuple[int, ...]) -> dict[str, Operation]:
    return {"post": Operation(
        f"Daraja {kind} callback", "c2b-callbacks", answer, body=C2BCallbackSchema,
        example=CALLBACK_EXAMPLE, errors=errors, error_answer=answer,
        error_descriptions=DARAJA_ERRORS, description=description)}


OPERATIONS: dict[str, dict[str, Operation]] = {
    "/api/v1/auth/token": {"post": Operation(
        "Log in: an access and a refresh token", "auth", TokenResponseSchema,
        body=TokenRequestSchema,
        example={"username": "afrimoney", "password": "sandbox-afrimoney"},
        errors=(*BODY, 401, 429),
        description="Failed logins are throttled per username and per source address "
                    "(auth.login_max_failures_per_user and _per_address within "
                    "auth.login_failure_window_minutes): past the limit the answer is 429 "
                    "`too_many_login_attempts` with `Retry-After`, before any password "
                    "check, known username or not.")},
    "/api/v1/auth/refresh": {"post": Operation(
        "A new token pair for a refresh token", "auth", TokenResponseSchema,
        body=RefreshRequestSchema,
        example={"refresh_token": REFRESH_TOKEN_EXAMPLE},
        errors=(*BODY, 401),
        description="Rotates: the presented refresh token is used up (401 afterwards). "
                    "Presenting a used one again revokes its whole session (401).")},
    "/api/v1/auth/logout": {"post": Operation(
        "End a session: revoke its refresh tokens", "auth", None, body=LogoutRequestSchema,
        example={"refresh_token": REFRESH_TOKEN_EXAMPLE},
        success={204: "Revoked (also when it already was)"}, errors=(*BODY, 401),
        description="Revokes every refresh token of the session; an access token "
                    "already issued stays valid until it expires. 401 for a token that "
                    "is invalid, expired or unknown.")},
    "/api/v1/c2b/validation/{secret}": _callback(
        "validation", answers.DarajaValidationAnswerSchema,
        "Kept raw in the inbox, then checked: shortcode (C2B00015), amount (C2B00013), "
        "paybill account number (C2B00012). Answered within "
        "c2b.validation_deadline_seconds; an unreadable body is C2B00016.",
        (403, 404, 413)),
    "/api/v1/c2b/confirmation/{secret}": _callback(
        "confirmation", answers.DarajaConfirmationAnswerSchema,
        "Never refused: stored once per TransID, and settles the insuree's policy when "
        "the account number and amount match exactly one idle policy.",
        (403, 404, 413, 503)),
    "/api/v1/c2b/payments": {"get": Operation(
        "List M-Pesa payments, newest first", "c2b-payments", answers.C2BPaymentPageSchema,
        roles=STAFF, query=PaymentQuerySchema, errors=(400, *AUTH))},
    "/api/v1/c2b/payments/{trans_id}": {"get": Operation(
        "One M-Pesa payment", "c2b-payments", answers.C2BPaymentSchema, roles=STAFF,
        errors=(*AUTH, 404))},
    "/api/v1/c2b/payments/{trans_id}/allocate": {"post": Operation(
        "Apply an unmatched payment to an idle policy of exactly its amount",
        "c2b-payments", answers.C2BPaymentSchema, roles=STAFF, body=AllocateRequestSchema,
        example={"policy_uuid": POLICY_UUID, "note": "payer confirmed the policy by phone"},
        errors=(*BODY, *AUTH, 404, 409))},
    "/api/v1/c2b/inbox": {"get": Operation(
        "List raw callbacks as received", "c2b-payments", answers.InboxEntryPageSchema,
        roles=STAFF, query=InboxQuerySchema, errors=(400, *AUTH))},
    "/api/v1/c2b/inbox/{entry_id}/replay": {"post": Operation(
        "Process a failed (or for-review) confirmation again", "c2b-payments",
        answers.InboxEntrySchema, roles=STAFF, body=ReplayRequestSchema,
        example={"reason": "the store was down when it arrived"},
        errors=(*BODY, *AUTH, 404, 409))},
    "/api/v1/insurees/{chf_id}/policies": {"get": Operation(
        "Verify an insuree: the policies awaiting payment", "payment-providers",
        answers.VerificationSchema, roles=PSP, errors=(*AUTH, 404, 429))},
    "/api/v1/payments": {"post": Operation(
        "Pay a policy, idempotently per psp_transaction_id", "payment-providers",
        answers.ProviderPaymentSchema, roles=PSP, body=PaymentRequestSchema,
        example={"chf_id": "060606060", "amount": "500.00",
                 "psp_transaction_id": "AFR-2026-000123",
                 "policy": {"token": "q3V0Zk1hY2tUb2tlbg", "product_code": "BASIC-GMD",
                            "product_name": "Basic cover"},
                 "json_ext": {"channel": "ussd"}},
        success={201: "Paid", 200: "The same request again: its first outcome"},
        errors=(*BODY, *AUTH, 404, 409, 429))},
    "/api/v1/transactions": {
        "get": Operation("List transactions of every channel, newest first", "transactions",
                         answers.TransactionPageSchema, roles=STAFF,
                         query=TransactionQuerySchema, errors=(400, *AUTH)),
        "post": Operation("Start a Qmoney OTP debit", "transactions",
                          answers.TransactionSchema, roles=STAFF, body=DebitRequestSchema,
                          example={"policy_uuid": POLICY_UUID, "psp_uuid": PSP_UUID,
                                   "amount": "500.00"},
                          success={201: "Started: the payer got an OTP (`otp_sent`)"},
                          errors=(*BODY, *AUTH, 404, 409, 502, 503)),
    },
    "/api/v1/transactions/{transaction_uuid}": {"get": Operation(
        "One transaction with its history", "transactions", answers.TransactionSchema,
        roles=STAFF, errors=(*AUTH, 404))},
    "/api/v1/transactions/{transaction_uuid}/process": {"post": Operation(
        "Complete an OTP debit with the payer's code", "transactions",
        answers.TransactionSchema, roles=STAFF, body=ProcessRequestSchema,
        example={"otp": "482913"}, errors=(*BODY, *AUTH, 404, 409, 503),
        description="200 with the transaction in its new state (a wrong OTP leaves it "
                    "`otp_sent`); 409 when it is not `otp_sent`.")},
    "/api/v1/transactions/{transaction_uuid}/resolve": {"post": Operation(
        "Record the true outcome of an `unknown` debit", "transactions",
        answers.TransactionSchema, roles=STAFF, body=ResolveRequestSchema,
        example={"outcome": "succeeded", "provider_reference": "QM-20261123-884213",
                 "reason": "Qmoney support confirmed the debit"},
        errors=(*BODY, *AUTH, 404, 409))},
    "/api/v1/transactions/{transaction_uuid}/expire": {"post": Operation(
        "Give up on a debit waiting for its OTP", "transactions", answers.TransactionSchema,
        roles=STAFF, body=ReasonSchema, example={"reason": "the payer cannot receive SMS"},
        errors=(*BODY, *AUTH, 404, 409))},
    "/api/v1/dashboard": {"get": Operation(
        "The operations summary of a window (default: the last 24 hours)", "operations",
        answers.DashboardSchema, roles=STAFF, query=DashboardQuerySchema,
        errors=(400, *AUTH))},
    "/healthz": {"get": Operation("Liveness", "operations", answers.HealthSchema)},
    "/readyz": {"get": Operation(
        "Readiness: the store answers within 2 s and every index exists", "operations",
        answers.ReadinessSchema, errors=(404, 503), description=INTERNAL)},
    "/metrics": {"get": Operation(
        "Prometheus metrics", "operations", {"type": "string"},
        media_type="text/plain; version=0.0.4", errors=(404,), description=INTERNAL)},
    "/api/v1/insurees": _collection(
        "insurees", "insuree", answers.InsureePageSchema, answers.InsureeSchema,
        InsureeQuerySchema, InsureeCreateSchema,
        {"chf_id": "060606060", "first_name": "Fatou", "last_name": "Ceesay",
         "phone": "+2207712345", "wallet": ""}, (409,)),
    "/api/v1/insurees/{chf_id}": _item(
        "insuree", "insurees", answers.InsureeSchema, InsureeUpdateSchema,
        {"phone": "+2207754321", "wallet": "5811724c"}),
    "/api/v1/products": _collection(
        "products", "product", answers.ProductPageSchema, answers.ProductSchema,
        PageQuerySchema, ProductCreateSchema,
        {"code": "BASIC-GMD", "name": "Basic cover", "price": "500.00", "currency": "GMD"},
        (409,)),
    "/api/v1/products/{code}": _item(
        "product", "products", answers.ProductSchema, ProductUpdateSchema,
        {"price": "550.00"}),
    "/api/v1/policies": _collection(
        "policies", "policy", answers.PolicyPageSchema, answers.PolicySchema,
        PolicyQuerySchema, PolicyCreateSchema,
        {"chf_id": "060606060", "product_code": "BASIC-GMD", "start_date": "2026-11-23",
         "expiry_date": "2027-11-22"}, (404,)),
    "/api/v1/policies/{uuid}": _item(
        "policy", "policies", answers.PolicySchema, PolicyUpdateSchema, {"status": 4}),
    "/api/v1/psps": _collection(
        "psps", "psp", answers.PspPageSchema, answers.PspSchema, PspQuerySchema,
        PspCreateSchema,
        {"name": "Afrimoney", "kind": "external", "account": "AFR-0001", "currency": "GMD",
         "is_external_api": True, "username": "afrimoney"}, (409,)),
    "/api/v1/psps/{uuid}": _item(
        "psp", "psps", answers.PspSchema, PspUpdateSchema, {"active": False}, (409,)),
    "/dashboard": _page("The operators' dashboard page"),
    "/dashboard/static/{path}": _static_files("the dashboard page"),
    "/openapi.json": {"get": Operation(
        "This OpenAPI document", "operations",
        {"type": "object", "description": "OpenAPI 3.0.3"})},
    "/docs": _page("This document in Swagger UI"),
    "/docs/static/{path}": _static_files("Swagger UI"),
}


# --- matching the route table -------------------------------------------


def _shape(path: str) -> str:
    """A Tornado pattern or an OpenAPI template with its parameters blanked out."""
    return re.sub(r"\([^)]*\)|\{[^}]*\}", "{}", path)


def operations_for(routes: Iterable[Route]) -> dict[str, dict[str, Operation]]:
    """OPERATIONS in route order, checked against the routes both ways."""
    templates = {_shape(template): template for template in OPERATIONS}
    found: dict[str, dict[str, Operation]] = {}
    for pattern, handler, *_ in routes:
        template = templates.get(_shape(pattern))
        if template is None:
            raise SpecOutOfDate(f"route {pattern} has no entry in OPERATIONS")
        implemented, declared = implemented_methods(handler), set(OPERATIONS[template])
        if implemented != declared:
            raise SpecOutOfDate(f"{template}: {handler.__name__} implements "
                                f"{sorted(implemented)}, OPERATIONS has {sorted(declared)}")
        found[template] = OPERATIONS[template]
    stale = set(OPERATIONS) - set(found)
    if stale:
        raise SpecOutOfDate(f"OPERATIONS has entries without a route: {sorted(stale)}")
    return found


# --- building -------------------------------------------------------------


def _response(description: str, media_type: str,
              schema: type[Schema] | dict[str, Any] | None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {media_type: {"schema": schema}}
    return response


def _responses(operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(status): _response(text, operation.media_type, operation.answer)
        for status, text in operation.success.items()}
    for status in sorted(set(operation.errors)):
        if operation.error_answer is answers.ErrorSchema:
            responses[str(status)] = ERROR_RESPONSES[status][0]     # a shared component
        else:
            text = operation.error_descriptions.get(status, ERROR_RESPONSES[status][1])
            responses[str(status)] = _response(text, "application/json",
                                               operation.error_answer)
    return responses


def _parameters(template: str, operation: Operation) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {"in": "path", "name": name, "required": True, "schema": {"type": "string"},
         "description": PATH_PARAMETERS[name]}
        for name in re.findall(r"\{(\w+)\}", template)]
    if operation.query is not None:
        parameters.append({"in": "query", "schema": operation.query})
    return parameters


def _description(operation: Operation) -> str:
    who = (f"Needs the role {' or '.join(operation.roles)}." if operation.roles
           else "No token needed.")
    return f"{operation.description} {who}".strip()


def _operation(template: str, operation: Operation) -> dict[str, Any]:
    document: dict[str, Any] = {
        "summary": operation.summary,
        "description": _description(operation),
        "tags": [operation.tag],
        "security": [{"bearerAuth": []}] if operation.roles else [],
        "responses": _responses(operation),
    }
    parameters = _parameters(template, operation)
    if parameters:
        document["parameters"] = parameters
    if operation.body is not None:
        media = {"schema": operation.body, "example": operation.example}
        document["requestBody"] = {"required": True, "content": {"application/json": media}}
    return document


ANY_OBJECT_OR_NULL = {"type": "object", "nullable": True}
NULL_ONLY = {**ANY_OBJECT_OR_NULL, "enum": [None]}


def _null_or_the_schema(_converter: Any, _field: Any, ret: dict[str, Any],
                        **_: Any) -> dict[str, Any]:
    """apispec writes a nullable Nested for OpenAPI 3.0 as anyOf [any object or null, the
    schema], which lets any object through; narrow that first branch to null alone."""
    if "anyOf" not in ret:
        return {}
    return {"anyOf": [NULL_ONLY if branch == ANY_OBJECT_OR_NULL else branch
                      for branch in ret["anyOf"]]}


def _new_spec() -> APISpec:
    marshmallow = MarshmallowPlugin()
    spec = APISpec(
        title="Mobile Payments Gateway", version=version("mobile-payments-gateway"),
        openapi_version="3.0.3", plugins=[marshmallow],
        info={"description": "Health-insurance premiums through mobile money. Amounts are "
                             "decimal strings; every error outside the Daraja callbacks is "
                             '`{"error": {"code", "message", "details"}}`.'})
    marshmallow.converter.add_attribute_function(_null_or_the_schema)
    spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                       "description": "The access token of POST /api/v1/auth/token"})
    spec.components.schema("Error", schema=answers.ErrorSchema)
    for status, (name, text) in ERROR_RESPONSES.items():
        response = _response(text, "application/json", answers.ErrorSchema)
        if status == 429:
            response["headers"] = {"Retry-After": {"description": "seconds to wait",
                                                   "schema": {"type": "integer"}}}
        spec.components.response(name, response)
    for name, text in TAGS:
        spec.tag({"name": name, "description": text})
    return spec


def build_spec(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI document of `routes`; SpecOutOfDate when OPERATIONS does not match."""
    spec = _new_spec()
    for template, operations in operations_for(routes).items():
        spec.path(path=template, operations={method: _operation(template, operation)
                                             for method, operation in operations.items()})
    return spec.to_dict()
