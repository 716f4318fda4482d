"""openIMIS simulator: the scheme's GraphQL API (``POST /api/graphql``) for the gateway's
openIMIS adapter, on Tornado, with a JSON control API under ``/_sim/``.

It follows PROTOCOLS.md section 4 and the openIMIS modules it names (the schema subset
is in ``openimis_schema``, the records and premium rules in ``openimis_state``, logins,
CSRF and mutation timing in ``openimis_engine``). As graphene-django answers: a
document that does not parse or validate, unknown variables or operation included, is
HTTP 400 with ``errors`` only; a body that is not JSON is HTTP 400
``POST body sent invalid JSON.``; everything else is HTTP 200 with ``data`` (and
``errors`` for the fields that failed).

Faults are armed on a root field name (``createPremium``, ``tokenAuth``, ...) and
apply to the next ``times`` calls whose document selects that field: ``latency``
waits ``seconds`` then answers, ``http500`` answers Django's HTTP 500 page without
acting, ``drop`` closes the connection without acting, ``drop_after`` acts then
closes the connection, ``mutation_error`` (createPremium only) logs the mutation as
failed, ``[{"message": <message>}]``, and changes nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    Undefined,
    execute_sync,
    get_operation_ast,
    parse,
    validate,
    value_from_ast_untyped,
)
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPServerRequest
from tornado.netutil import bind_sockets
from tornado.web import Application, HTTPError, RequestHandler

from simulators.common import ControlError, JsonObject, json_object, redact
from simulators.openimis_engine import OpenimisEngine, OpenimisSimSettings
from simulators.openimis_schema import SCHEMA, RequestContext, field_resolver, jwt_middleware
from simulators.openimis_state import SeedError
from simulators.openimis_traffic import Traffic

__all__ = ["OpenimisSimSettings", "OpenimisSimulator"]

SERVER_ERROR_PAGE = "<h1>Server Error (500)</h1>"  # Django's answer with DEBUG off
SESSION_SECONDS = 8 * 3600  # openIMIS's SESSION_COOKIE_AGE
REDACTED_FIELDS = ("password", "token", "csrfToken")


def _invalid(error: GraphQLError) -> JsonObject:
    """A document error as graphene 2's graphql-core words it: names in double quotes
    (``Cannot query field "insuree" on type "PolicyGQLType".``)."""
    formatted = dict(error.formatted)
    formatted["message"] = re.sub(r"'([_A-Za-z\[][_0-9A-Za-z\[\]!]*)'", r'"\1"', error.message)
    return formatted


class _BadRequest(Exception):
    """A body graphene-django cannot read (HTTP 400)."""


class _Refused(Exception):
    """A call answered HTTP 400 with these errors and no data."""

    def __init__(self, errors: list[JsonObject]) -> None:
        super().__init__(errors)
        self.errors = errors


@dataclass(frozen=True)
class _Answer:
    status: int
    body: JsonObject


@dataclass(frozen=True)
class _Params:
    query: str
    variables: JsonObject | None
    operation_name: str | None


def _graphql_params(request: HTTPServerRequest) -> _Params:
    """query, variables and operationName from the body, as graphene-django reads them."""
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    body: dict[str, Any] = {}
    if content_type == "application/graphql":
        body = {"query": request.body.decode("utf-8", "replace")}
    elif content_type == "application/json":
        try:
            body = json.loads(request.body)
        except (ValueError, RecursionError):
            raise _BadRequest("POST body sent invalid JSON.") from None
        if not isinstance(body, dict):
            raise _BadRequest("The received data is not a valid JSON query.")
    query = body.get("query")
    if not isinstance(query, str) or not query:
        raise _BadRequest("Must provide query string.")
    variables = body.get("variables")
    if isinstance(variables, str):
        variables = json_object(variables)
        if variables is None:
            raise _BadRequest("Variables are invalid JSON.")
    if variables is not None and not isinstance(variables, dict):
        raise _BadRequest("Variables are invalid JSON.")
    operation_name = body.get("operationName")
    return _Params(query, variables, operation_name if isinstance(operation_name, str) else None)


def _plain(value: Any) -> Any:
    """A literal argument as JSON: a variable the call did not give becomes null."""
    if value is Undefined:
        return None
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _root_fields(
    operation: OperationDefinitionNode | None, variables: JsonObject | None
) -> list[JsonObject]:
    """The selected operation's root fields and their arguments, for the request log."""
    if operation is None:
        return []
    fields = []
    for selection in operation.selection_set.selections:
        if isinstance(selection, FieldNode):
            arguments = {
                argument.name.value: _plain(value_from_ast_untyped(argument.value, variables))
                for argument in selection.arguments
            }
            fields.append({"name": selection.name.value, "arguments": arguments})
    return fields


# --------------------------------------------------------------------------- GraphQL endpoint


def _document(request: HTTPServerRequest) -> tuple[_Params, DocumentNode]:
    """The call's parameters and its valid document; _Refused as graphene-django would."""
    try:
        params = _graphql_params(request)
    except _BadRequest as exc:
        raise _Refused([{"message": str(exc)}]) from None
    try:
        document = parse(params.query)
    except GraphQLError as exc:
        raise _Refused([dict(exc.formatted)]) from None
    if errors := validate(SCHEMA, document):
        raise _Refused([_invalid(error) for error in errors])
    return params, document


def _execute(params: _Params, document: DocumentNode, context: RequestContext) -> _Answer:
    """Run the document: errors without a path (variables, operation name) make it invalid."""
    result = execute_sync(
        SCHEMA,
        document,
        context_value=context,
        variable_values=params.variables,
        operation_name=params.operation_name,
        field_resolver=field_resolver,
        middleware=[jwt_middleware],
    )
    errors = result.errors or []
    if any(error.path is None for error in errors):
        return _Answer(
            400, {"errors": [_invalid(e) if e.path is None else e.formatted for e in errors]}
        )
    body: JsonObject = {"errors": [error.formatted for error in errors]} if errors else {}
    return _Answer(200, {**body, "data": result.data})


class _GraphQLHandler(RequestHandler):
    def initialize(self, simulator: OpenimisSimulator) -> None:
        self.engine = simulator.engine
        self.traffic = simulator.traffic

    async def post(self) -> None:
        record = self.traffic.record()
        try:
            params, document = _document(self.request)
        except _Refused as refused:
            return self._answer(record, _Answer(400, {"errors": refused.errors}))
        operation = get_operation_ast(document, params.operation_name)
        fields = _root_fields(operation, params.variables)
        record.update(
            operation=None if operation is None else operation.operation.value,
            operation_name=params.operation_name,
            fields=redact(fields, REDACTED_FIELDS),
        )
        fault, message = self.traffic.take(fields) or (None, None)
        kind = record["fault"] = None if fault is None else fault.kind
        if kind == "drop":
            self.detach().close()
            return
        if kind == "http500":
            record["status"] = 500
            self.set_status(500)
            self.set_header("Content-Type", "text/html")
            self.finish(SERVER_ERROR_PAGE)
            return
        if kind == "latency" and fault is not None:
            await self.traffic.pause(fault.seconds or 0.0)
        context = RequestContext.of(
            self.engine,
            self.request.headers.get("Authorization"),
            self.get_cookie(self.engine.settings.session_cookie),
            self.request.headers.get("X-CSRFToken"),
        )
        if kind == "mutation_error":
            context.fault_message = message
        self.engine.settle()
        answer = _execute(params, document, context)
        if context.new_session_id is not None:
            self.set_cookie(
                self.engine.settings.session_cookie,
                context.new_session_id,
                max_age=SESSION_SECONDS,
                httponly=True,
                samesite="Lax",
            )
        if kind == "drop_after":
            record.update(status=answer.status, answer=redact(answer.body, REDACTED_FIELDS))
            self.detach().close()
            return
        self._answer(record, answer)

    def _answer(self, record: JsonObject, answer: _Answer) -> None:
        record.update(status=answer.status, answer=redact(answer.body, REDACTED_FIELDS))
        self.set_status(answer.status)
        self.finish(answer.body)


# --------------------------------------------------------------------------- control API


class _ControlHandler(RequestHandler):
    def initialize(self, simulator: OpenimisSimulator) -> None:
        self.simulator = simulator
        self.engine = simulator.engine
        self.traffic = simulator.traffic

    def prepare(self) -> None:
        self.engine.settle()

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """A ControlError is the caller's mistake: HTTP 400 with its message."""
        error = kwargs.get("exc_info", (None, None))[1]
        super().send_error(400 if isinstance(error, ControlError) else status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        self.finish({"error": str(error) if isinstance(error, ControlError) else self._reason})

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        if not isinstance(value, ControlError):
            super().log_exception(typ, value, tb)

    def body(self, *, exact_decimals: bool = False) -> JsonObject:
        text = self.request.body.decode("utf-8", "replace")
        payload = json_object(text, exact_decimals=exact_decimals)
        if payload is None:
            raise ControlError("body must be a JSON object")
        return payload


class _SeedHandler(_ControlHandler):
    def post(self) -> None:
        try:
            self.finish(self.simulator.seed(self.body(exact_decimals=True)))
        except SeedError as exc:
            raise ControlError(str(exc)) from None


class _ConfigHandler(_ControlHandler):
    def get(self) -> None:
        self.finish(dict(self.engine.config))

    def post(self) -> None:
        try:
            self.finish(self.engine.configure(self.body()))
        except ValueError as exc:
            raise ControlError(str(exc)) from None


class _FaultsHandler(_ControlHandler):
    def get(self) -> None:
        faults = self.traffic.faults.as_json()
        self.finish({"items": [self.traffic.fault_json(fault) for fault in faults]})

    def post(self) -> None:
        self.finish(self.traffic.arm(self.body()))

    def delete(self) -> None:
        self.finish({"cleared": self.traffic.faults.clear()})


class _RequestsHandler(_ControlHandler):
    def get(self) -> None:
        self.finish({"items": self.traffic.requests})


class _PremiumsHandler(_ControlHandler):
    def get(self) -> None:
        self.finish({"items": [premium.as_json() for premium in self.engine.data.premiums]})


class _PoliciesHandler(_ControlHandler):
    def get(self) -> None:
        policies = self.engine.data.policies.values()
        self.finish({"items": [policy.as_json() for policy in policies]})


class _ResetHandler(_ControlHandler):
    def post(self) -> None:
        self.engine.reset()
        self.traffic.clear()
        self.finish(dict(self.engine.config))


class _NotFoundHandler(_ControlHandler):
    def prepare(self) -> None:
        raise HTTPError(404)


def create_app(simulator: OpenimisSimulator) -> Application:
    routes: list[tuple[str, type[RequestHandler]]] = [
        (r"/api/graphql", _GraphQLHandler),
        (r"/_sim/seed", _SeedHandler),
        (r"/_sim/config", _ConfigHandler),
        (r"/_sim/faults", _FaultsHandler),
        (r"/_sim/requests", _RequestsHandler),
        (r"/_sim/premiums", _PremiumsHandler),
        (r"/_sim/policies", _PoliciesHandler),
        (r"/_sim/reset", _ResetHandler),
        (r"/_sim/.*", _NotFoundHandler),
    ]
    return Application([(path, handler, {"simulator": simulator}) for path, handler in routes])


class OpenimisSimulator:
    """The simulator on a real socket, for tests, the sandbox and ``python -m simulators
    openimis``. Its records live as long as the object: seed before or after start."""

    def __init__(self, settings: OpenimisSimSettings | None = None) -> None:
        self.settings = settings or OpenimisSimSettings()
        self.engine = OpenimisEngine(self.settings)
        self.traffic = Traffic()
        self.base_url = ""
        self._server: HTTPServer | None = None

    def seed(self, body: Any) -> JsonObject:
        """Add products, insurees and idle policies (``POST /_sim/seed``); SeedError if bad."""
        return self.engine.data.seed(body)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 = ephemeral); returns the base URL."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        sockets = bind_sockets(port, host)
        server = HTTPServer(create_app(self))
        server.add_sockets(sockets)
        self.traffic.closing.clear()
        self._server = server
        url_host = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{url_host}:{sockets[0].getsockname()[1]}"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving; faults sleeping in a latency are cut short."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.stop()
        self.traffic.closing.set()
        await server.close_all_connections()
