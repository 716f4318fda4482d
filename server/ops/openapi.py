"""The OpenAPI 3.0.3 document of the gateway, built with apispec from the routes' handlers.

Each handler class declares what its methods take and answer (server.web.operations:
`operations` and `path_parameters`), with the marshmallow schemas it loads requests
with and the schemas of what it renders. build_spec walks the route table and refuses
to build when a method a handler implements has no Operation, or an Operation has no
method: the document cannot silently fall behind the API."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin, OpenAPIConverter
from marshmallow import Schema

from server.web.answer_schemas import ErrorSchema
from server.web.handler import implemented_methods
from server.web.operations import Operation

Route = Sequence[Any]  # (pattern, handler) or (pattern, handler, kwargs)


class SpecOutOfDate(RuntimeError):
    """A route's handler and its declared operations disagree."""


ERROR_RESPONSES = {
    400: (
        "BadRequest",
        "Bad input: malformed JSON (also: nested deeper than 32 levels, "
        "NaN, Infinity or a number out of range), missing, unknown or "
        "invalid fields (named in `details.fields`), or a rule of the "
        "operation",
    ),
    401: ("Unauthorized", "Missing, invalid or expired token, or wrong credentials"),
    403: ("Forbidden", "The caller's role may not do this"),
    404: ("NotFound", "Nothing with that key"),
    409: ("Conflict", "The current state does not allow it (`details` says why)"),
    413: ("PayloadTooLarge", "The body is larger than server.max_body_bytes"),
    415: (
        "UnsupportedMediaType",
        "The body is not sent as `Content-Type: application/json` "
        "(parameters such as charset may follow)",
    ),
    429: (
        "TooManyRequests",
        "Over psp_api.rate_limit_per_minute, or too many failed logins "
        "(auth.login_*); retry after `Retry-After`",
    ),
    502: ("BadGateway", "The provider refused (`details.provider_code`)"),
    503: ("ServiceUnavailable", "A dependency is unavailable or not configured; retry later"),
}

TAGS = [
    ("auth", "Access and refresh tokens"),
    ("c2b-callbacks", "Daraja's C2B callbacks (Daraja's own body and answer formats)"),
    ("c2b-payments", "M-Pesa paybill payments and the raw callback inbox"),
    ("mpesa-express", "M-Pesa Express (STK Push): prompt the payer's phone for a premium"),
    ("stk-callbacks", "Daraja's M-Pesa Express result callback (Daraja's own formats)"),
    ("payment-providers", "External payment providers: verify an insuree, pay a policy"),
    ("transactions", "Transactions of every channel; Qmoney OTP debits"),
    ("operations", "Dashboard, health, readiness, metrics, this document"),
    ("reconciliation", "The gateway against the providers' records: M-Pesa checks, statements"),
    ("reports", "For accountants: streamed CSV exports, the period close"),
    ("desk", "The operators' desk: search across channels, review items, insuree overview"),
    ("sms", "Payer receipts by SMS: the outbox, delivery reports"),
    ("jobs", "The background jobs: their schedule and last runs; run one now"),
    ("insurees", "Insurees (admin)"),
    ("products", "Products (admin)"),
    ("policies", "Policies (admin)"),
    ("psps", "Payment service providers (admin)"),
    ("pages", "Pages for browsers and their files (no JSON)"),
]
TAG_NAMES = frozenset(name for name, _ in TAGS)


# --- reading the routes' handlers --------------------------------------------


@dataclass(frozen=True)
class Documented:
    """One route as documented: its OpenAPI path, its path parameters (name ->
    description) and its operations (method -> Operation)."""

    template: str
    parameters: dict[str, str]
    operations: dict[str, Operation]


_GROUP = re.compile(r"\([^)]*\)")


def _documented(route: Route) -> Documented:
    pattern, handler, *_ = route
    name = handler.__name__
    parameters: dict[str, str] = getattr(handler, "path_parameters", {})
    groups = len(_GROUP.findall(pattern))
    if groups != len(parameters):
        raise SpecOutOfDate(
            f"route {pattern}: {name} names {len(parameters)} path "
            f"parameters for its {groups} groups"
        )
    names = iter(parameters)
    template = _GROUP.sub(lambda _: "{" + next(names) + "}", pattern)
    operations: dict[str, Operation] = getattr(handler, "operations", {})
    implemented = implemented_methods(handler)
    missing, extra = implemented - set(operations), set(operations) - implemented
    if missing:
        raise SpecOutOfDate(f"route {pattern}: {name} has no Operation for {sorted(missing)}")
    if extra:
        raise SpecOutOfDate(
            f"route {pattern}: {name} describes {sorted(extra)}, which it does not implement"
        )
    for method, operation in operations.items():
        if operation.tag not in TAG_NAMES:
            raise SpecOutOfDate(
                f"route {pattern}: {name}.{method} has the unknown tag {operation.tag!r}"
            )
    return Documented(template, parameters, dict(operations))


def documented_routes(routes: Iterable[Route]) -> list[Documented]:
    """Every route as documented, in route order; SpecOutOfDate when a route's handler
    and its operations disagree."""
    found = [_documented(route) for route in routes]
    templates = [route.template for route in found]
    repeated = sorted({template for template in templates if templates.count(template) > 1})
    if repeated:
        raise SpecOutOfDate(f"more than one route for {repeated}")
    return found


def operations_for(routes: Iterable[Route]) -> dict[str, dict[str, Operation]]:
    """OpenAPI path -> method -> Operation, of every route (in route order)."""
    return {route.template: route.operations for route in documented_routes(routes)}


# --- building -------------------------------------------------------------


def _response(
    description: str,
    media_type: str,
    schema: type[Schema] | dict[str, Any] | None,
    other_media: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {media_type: {"schema": schema}}
        for other, other_schema in (other_media or {}).items():
            response["content"][other] = {"schema": other_schema}
    return response


def _responses(operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(status): _response(text, operation.media_type, operation.answer, operation.other_media)
        for status, text in operation.success.items()
    }
    for status in sorted(set(operation.errors)):
        if operation.error_answer is ErrorSchema:
            responses[str(status)] = ERROR_RESPONSES[status][0]  # a shared component
        else:
            text = operation.error_descriptions.get(status, ERROR_RESPONSES[status][1])
            responses[str(status)] = _response(text, "application/json", operation.error_answer)
    return responses


def _parameters(route: Documented, operation: Operation) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {
            "in": "path",
            "name": name,
            "required": True,
            "schema": {"type": "string"},
            "description": description,
        }
        for name, description in route.parameters.items()
    ]
    if operation.query is not None:
        parameters.append({"in": "query", "schema": operation.query})
    return parameters


def _description(operation: Operation) -> str:
    who = (
        f"Needs the role {' or '.join(operation.roles)}." if operation.roles else "No token needed."
    )
    return f"{operation.description} {who}".strip()


def _operation(route: Documented, operation: Operation) -> dict[str, Any]:
    document: dict[str, Any] = {
        "summary": operation.summary,
        "description": _description(operation),
        "tags": [operation.tag],
        "security": [{"bearerAuth": []}] if operation.roles else [],
        "responses": _responses(operation),
    }
    parameters = _parameters(route, operation)
    if parameters:
        document["parameters"] = parameters
    if operation.body is not None:
        media = {"schema": operation.body, "example": operation.example}
        document["requestBody"] = {"required": True, "content": {"application/json": media}}
    return document


ANY_OBJECT_OR_NULL = {"type": "object", "nullable": True}
NULL_ONLY = {**ANY_OBJECT_OR_NULL, "enum": [None]}


def _null_or_the_schema(
    _converter: Any, _field: Any, ret: dict[str, Any], **_: Any
) -> dict[str, Any]:
    """apispec writes a nullable Nested for OpenAPI 3.0 as anyOf [any object or null, the
    schema], which lets any object through; narrow that first branch to null alone."""
    if "anyOf" not in ret:
        return {}
    return {
        "anyOf": [NULL_ONLY if branch == ANY_OBJECT_OR_NULL else branch for branch in ret["anyOf"]]
    }


class _Converter(OpenAPIConverter):
    """Also documents the keys an answer has beside its fields: a schema whose Meta has
    `additional_properties` (a JSON schema) gets it as its `additionalProperties`."""

    def schema2jsonschema(self, schema: Any) -> dict[str, Any]:
        jsonschema: dict[str, Any] = super().schema2jsonschema(schema)
        extra = getattr(getattr(schema, "Meta", None), "additional_properties", None)
        if extra is not None:
            jsonschema["additionalProperties"] = extra
        return jsonschema


class _Plugin(MarshmallowPlugin):
    Converter = _Converter


def _new_spec() -> APISpec:
    marshmallow = _Plugin()
    spec = APISpec(
        title="Mobile Payments Gateway",
        version=version("mobile-payments-gateway"),
        openapi_version="3.0.3",
        plugins=[marshmallow],
        info={
            "description": "Health-insurance premiums through mobile money. Amounts are "
            "decimal strings; every error outside the Daraja callbacks is "
            '`{"error": {"code", "message", "details"}}`.'
        },
    )
    if marshmallow.converter is None:  # APISpec sets it up (init_spec)
        raise RuntimeError("APISpec did not initialise the marshmallow plugin")
    marshmallow.converter.add_attribute_function(_null_or_the_schema)
    spec.components.security_scheme(
        "bearerAuth",
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "The access token of POST /api/v1/auth/token",
        },
    )
    spec.components.schema("Error", schema=ErrorSchema)
    for status, (name, text) in ERROR_RESPONSES.items():
        response = _response(text, "application/json", ErrorSchema)
        if status == 429:
            response["headers"] = {
                "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
            }
        spec.components.response(name, response)
    for name, text in TAGS:
        spec.tag({"name": name, "description": text})
    return spec


def build_spec(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI document of `routes`; SpecOutOfDate when a route's handler and its
    operations disagree."""
    spec = _new_spec()
    for route in documented_routes(routes):
        spec.path(
            path=route.template,
            operations={
                method: _operation(route, operation)
                for method, operation in route.operations.items()
            },
        )
    return spec.to_dict()
