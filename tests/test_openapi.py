"""The OpenAPI document: valid, covers every route, its examples and answers are true."""

import re
from typing import Any

import pytest
from openapi_schema_validator import (
    OAS30ReadValidator,
    OAS30WriteValidator,
    oas30_format_checker,
)
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from tornado.web import RequestHandler

from server.api.admin import CollectionHandler, ItemHandler
from server.api.app import ROUTES, openapi_spec
from server.ops.openapi import SpecOutOfDate, build_spec, operations_for
from server.web.operations import Operation

from support import (
    TEST_ENV,
    callback_body,
    create_user,
    external_psp,
    idle_policy,
    request_json,
)

SPEC_URI = "urn:gateway-openapi"
# OpenAPI path -> method -> Operation, as the routes' handlers declare them.
OPERATIONS = operations_for(ROUTES)
CALLBACK_SECRET = TEST_ENV["GATEWAY_C2B_CALLBACK_SECRET"]


def shape(path: str) -> str:
    """A Tornado pattern or an OpenAPI path with its parameters blanked out."""
    return re.sub(r"\([^)]*\)|\{[^}]*\}", "{}", path)


def route_operations() -> set[tuple[str, str]]:
    """(path shape, method) of every method a routed handler implements."""
    return {
        (shape(pattern), method.lower())
        for pattern, handler, *_ in ROUTES
        for method in handler.SUPPORTED_METHODS
        if getattr(handler, method.lower()) is not getattr(RequestHandler, method.lower())
    }


def template_for(path: str, spec: dict[str, Any]) -> str:
    """The documented template a concrete path falls under."""
    for template in spec["paths"]:
        if re.fullmatch(re.sub(r"\{[^}]*\}", "[^/]+", template), path):
            return template
    raise AssertionError(f"{path} is not documented")


def check_against(
    spec: dict[str, Any],
    schema: dict[str, Any],
    instance: Any,
    validator: type = OAS30ReadValidator,
) -> None:
    """Validate with the document's components resolvable from `schema`'s $refs."""
    registry = Registry().with_resource(
        SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT4)
    )
    if "$ref" in schema:
        schema = {"$ref": SPEC_URI + schema["$ref"]}
    errors = [
        error.message
        for error in validator(
            schema, registry=registry, format_checker=oas30_format_checker
        ).iter_errors(instance)
    ]
    assert not errors, errors


def answer_schema(spec: dict[str, Any], template: str, method: str, status: int) -> dict[str, Any]:
    response = spec["paths"][template][method]["responses"][str(status)]
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response["content"]["application/json"]["schema"]


# --- the document ----------------------------------------------------------


def test_the_document_is_valid_openapi_3_0() -> None:
    spec = openapi_spec()
    validate(spec)
    assert spec["openapi"] == "3.0.3"
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]


def test_every_route_and_method_is_documented_and_nothing_else() -> None:
    documented = {
        (shape(path), method) for path, item in openapi_spec()["paths"].items() for method in item
    }
    assert documented == route_operations()


def test_a_handler_and_its_operations_disagreeing_stops_the_build() -> None:
    class NewHandler(RequestHandler):
        def get(self, key: str) -> None: ...

        def post(self, key: str) -> None: ...

    def new(pattern: str = r"/api/v1/new/([^/]+)", **attributes: Any) -> list:
        handler = type(
            "NewHandler",
            (NewHandler,),
            {
                "path_parameters": {"key": "the key"},
                "operations": {
                    method: Operation("New", "operations", None) for method in ("get", "post")
                },
                **attributes,
            },
        )
        return [*ROUTES, (pattern, handler)]

    assert "/api/v1/new/{key}" in build_spec(new())["paths"]
    with pytest.raises(SpecOutOfDate, match=r"no Operation for \['get', 'post'\]"):
        build_spec([*ROUTES, (r"/api/v1/new", NewHandler)])
    with pytest.raises(SpecOutOfDate, match=r"no Operation for \['post'\]"):
        build_spec(new(operations={"get": Operation("New", "operations", None)}))
    with pytest.raises(SpecOutOfDate, match=r"describes \['delete'\], which it does not"):
        build_spec(
            new(
                operations={
                    method: Operation("New", "operations", None)
                    for method in ("get", "post", "delete")
                }
            )
        )
    with pytest.raises(SpecOutOfDate, match="names 1 path parameters for its 2 groups"):
        build_spec(new(r"/api/v1/new/([^/]+)/([^/]+)"))
    with pytest.raises(SpecOutOfDate, match="unknown tag 'new'"):
        build_spec(
            new(operations={method: Operation("New", "new", None) for method in ("get", "post")})
        )
    with pytest.raises(SpecOutOfDate, match="more than one route"):
        build_spec([*ROUTES, ROUTES[0]])


def test_admin_operations_document_the_schemas_their_handlers_load() -> None:
    spec = openapi_spec()
    for pattern, handler, *_ in ROUTES:
        if issubclass(handler, CollectionHandler):
            operations = OPERATIONS[template_for(pattern, spec)]
            assert operations["get"].query is handler.query_schema
            assert operations["post"].body is handler.create_schema
        if issubclass(handler, ItemHandler):
            item = template_for(pattern.replace("([^/]+)", "key"), spec)
            assert OPERATIONS[item]["patch"].body is handler.update_schema


def test_authentication_is_required_except_for_tokens_callbacks_and_public_pages() -> None:
    public = {
        "/api/v1/auth/token",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/c2b/validation/{secret}",
        "/api/v1/c2b/confirmation/{secret}",
        "/api/v1/stk/callback/{secret}",
        "/api/v1/daraja/results/{secret}",
        "/api/v1/daraja/timeouts/{secret}",
        "/api/v1/sms/delivery-reports/{secret}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs/static/{path}",
        "/dashboard",
        "/dashboard/static/{path}",
    }
    for path, item in openapi_spec()["paths"].items():
        for method, operation in item.items():
            expected = [] if path in public else [{"bearerAuth": []}]
            assert operation["security"] == expected, (path, method)
            if expected:
                assert {"401", "403"} <= set(operation["responses"]), (path, method)


def test_the_callbacks_document_darajas_formats_not_the_error_shape() -> None:
    spec = openapi_spec()
    for kind, answer in (
        ("validation", "DarajaValidationAnswer"),
        ("confirmation", "DarajaConfirmationAnswer"),
    ):
        operation = spec["paths"][f"/api/v1/c2b/{kind}/{{secret}}"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/C2BCallback"}
        for status, response in operation["responses"].items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{answer}"}, status


def test_request_examples_load_with_the_handlers_schemas_and_match_the_document() -> None:
    spec = openapi_spec()
    checked = 0
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if "requestBody" not in operation:
                continue
            media = operation["requestBody"]["content"]["application/json"]
            OPERATIONS[path][method].body().load(media["example"])
            check_against(spec, media["schema"], media["example"], OAS30WriteValidator)
            checked += 1
    assert checked == sum(
        operation.body is not None for item in OPERATIONS.values() for operation in item.values()
    )


def test_a_wrong_body_does_not_validate_against_the_document() -> None:
    spec = openapi_spec()
    schema = {"$ref": "#/components/schemas/PaymentRequest"}
    with pytest.raises(AssertionError, match="unexpected"):
        check_against(
            spec,
            schema,
            {
                "chf_id": "1",
                "amount": "1",
                "psp_transaction_id": "x",
                "policy": {"token": "t", "product_code": "p", "product_name": "n"},
                "extra": 1,
            },
            OAS30WriteValidator,
        )


# --- over HTTP -------------------------------------------------------------


@pytest.mark.asyncio
async def test_openapi_json_is_served(http, gateway) -> None:
    async with http.get(f"{gateway.url}/openapi.json") as answer:
        assert answer.status == 200
        assert answer.content_type == "application/json"
        assert await answer.json() == openapi_spec()


@pytest.mark.asyncio
async def test_docs_page_uses_only_local_assets(http, gateway) -> None:
    async with http.get(f"{gateway.url}/docs") as answer:
        assert answer.status == 200 and answer.content_type == "text/html"
        page = await answer.text()
    assert "http://" not in page and "https://" not in page
    assert '"/openapi.json"' in page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "/docs/static/swagger-ui-bundle.js" in assets
    for asset in assets:
        assert asset.startswith("/docs/static/")
        async with http.get(gateway.url + asset) as answer:
            assert answer.status == 200, asset
    for other in ("no-such-file.js", "index.html", "swagger-initializer.js"):
        async with http.get(f"{gateway.url}/docs/static/{other}") as answer:
            assert answer.status == 404, other


class Caller:
    """Calls the running gateway and checks each answer against the document."""

    def __init__(self, http, gateway) -> None:
        self.http, self.url, self.spec = http, gateway.url, openapi_spec()

    async def __call__(
        self, method: str, path: str, status: int, *, headers=None, body=None, params=None
    ) -> Any:
        answered, payload = await request_json(
            self.http, method, self.url + path, body, headers=headers, params=params
        )
        assert answered == status, payload
        schema = answer_schema(self.spec, template_for(path, self.spec), method.lower(), status)
        check_against(self.spec, schema, payload)
        return payload


@pytest.mark.asyncio
async def test_provider_and_transaction_answers_match_the_document(
    http, gateway, operator_headers
) -> None:
    call, services = Caller(http, gateway), gateway.services
    await create_user(services, "afrimoney", "psp")
    psp = await external_psp(services, "afrimoney", account="AFR-1")
    policy = await idle_policy(services, "060606060", first_name="Fatou", last_name="Ceesay")

    tokens = await call(
        "POST",
        "/api/v1/auth/token",
        200,
        body={"username": "afrimoney", "password": "afrimoney-password"},
    )
    provider = {"Authorization": f"Bearer {tokens['access_token']}"}
    await call("GET", "/api/v1/insurees/060606060/policies", 200, headers=provider)
    paid = await call(
        "POST",
        "/api/v1/payments",
        201,
        headers=provider,
        body={
            "chf_id": "060606060",
            "amount": "500.00",
            "psp_transaction_id": "AFR-1",
            "policy": {
                "token": policy["payment_token"],
                "product_code": "BASIC-GMD",
                "product_name": "Basic cover",
            },
        },
    )
    await call("POST", "/api/v1/payments", 400, headers=provider, body={"chf_id": "x"})
    await call("GET", "/api/v1/insurees/060606060/policies", 403, headers=operator_headers)

    transaction = await call(
        "GET", f"/api/v1/transactions/{paid['payment_id']}", 200, headers=operator_headers
    )
    assert transaction["settlement"]["status"] == "settled"
    await call(
        "GET",
        "/api/v1/transactions",
        200,
        headers=operator_headers,
        params={"psp_uuid": psp["_id"]},
    )
    await call("GET", "/api/v1/transactions/nope", 404, headers=operator_headers)
    for path in ("/api/v1/insurees", "/api/v1/products", "/api/v1/policies", "/api/v1/psps"):
        page = await call("GET", path, 200, headers=operator_headers)
        assert page["total"] == 1
    await call("GET", f"/api/v1/policies/{policy['_id']}", 200, headers=operator_headers)
    await call("GET", "/api/v1/dashboard", 200, headers=operator_headers)


@pytest.mark.asyncio
async def test_c2b_and_operations_answers_match_the_document(
    http, gateway, operator_headers
) -> None:
    call = Caller(http, gateway)
    for kind in ("validation", "confirmation"):
        await call("POST", f"/api/v1/c2b/{kind}/{CALLBACK_SECRET}", 200, body=callback_body())
    await call("POST", "/api/v1/c2b/confirmation/wrong-secret", 404, body=callback_body())

    page = await call("GET", "/api/v1/c2b/payments", 200, headers=operator_headers)
    assert [item["trans_id"] for item in page["items"]] == ["RKL51ZDR4F"]
    assert page["items"][0]["status"] == "unmatched"
    await call("GET", "/api/v1/c2b/payments/RKL51ZDR4F", 200, headers=operator_headers)
    await call("GET", "/api/v1/c2b/payments/NOPE", 404, headers=operator_headers)
    await call(
        "GET", "/api/v1/c2b/payments", 400, headers=operator_headers, params={"status": "lost"}
    )
    await call("GET", "/api/v1/c2b/payments", 401)
    inbox = await call("GET", "/api/v1/c2b/inbox", 200, headers=operator_headers)
    assert inbox["total"] == 2
    await call("GET", "/api/v1/dashboard", 200, headers=operator_headers)
    await call("GET", "/healthz", 200)
    await call("GET", "/readyz", 200)
