"""Schemathesis against the sandbox: requests generated from /openapi.json, for every
operation, with a token of the role the operation needs. No answer is an internal error,
and every answer (status, content type, headers, body) is the one the document gives.

The sandbox runs on an event loop in a thread (with its demo data and both simulators);
schemathesis calls it synchronously over real sockets. The number of requests sent is
printed in the test summary."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server.api.app import ROUTES, openapi_spec
from server.ops.openapi import operations_for
from server.sandbox.environment import Sandbox, start_sandbox

from support import LoopThread, report_in_summary

EXAMPLES_PER_OPERATION = 30
# The statuses a provider's failure is reported with (documented per operation).
PROVIDER_STATUSES = {502, 503}
LOGINS = {
    "admin": ("admin", "sandbox-admin"),
    "operator": ("operator", "sandbox-operator"),
    "psp": ("afrimoney", "sandbox-afrimoney"),
}

schema = schemathesis.openapi.from_dict(openapi_spec())
OPERATIONS = operations_for(ROUTES)  # OpenAPI path -> method -> Operation


@dataclass
class RunningSandbox:
    sandbox: Sandbox
    tokens: dict[str, str]
    http: requests.Session = field(default_factory=requests.Session)
    sent: int = 0
    undocumented: set[str] = field(default_factory=set)  # answered 405, checked too

    @property
    def url(self) -> str:
        return self.sandbox.gateway.url

    def headers_for(self, path: str, method: str) -> dict[str, str]:
        """A token of the role the operation needs; for a method the path does not have
        (schemathesis tries those too), one of a role the path's own methods need."""
        operations = OPERATIONS[path]
        operation = operations.get(method.lower()) or next(iter(operations.values()))
        roles = operation.roles
        return {"Authorization": f"Bearer {self.tokens[roles[0]]}"} if roles else {}


def not_an_internal_error(ctx, response, case) -> None:
    """No 500, and no other 5xx than a provider's failure (which status_code_conformance
    then checks is documented for the operation)."""
    status = response.status_code
    assert status < 500 or status in PROVIDER_STATUSES, (
        f"{case.method} {case.formatted_path} answered {status}: {response.text[:300]}"
    )


CHECKS = [
    not_an_internal_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def running(pytestconfig: pytest.Config) -> Iterator[RunningSandbox]:
    thread = LoopThread()
    sandbox = thread.run(start_sandbox(port=0), timeout=120)
    tokens = {}
    for role, (username, password) in LOGINS.items():
        answer = requests.post(
            f"{sandbox.gateway.url}/api/v1/auth/token",
            timeout=10,
            json={"username": username, "password": password},
        )
        tokens[role] = answer.json()["access_token"]
    running = RunningSandbox(sandbox, tokens)
    yield running
    running.http.close()
    thread.run(sandbox.stop())
    thread.close()
    documented = sum(len(methods) for methods in OPERATIONS.values())
    report_in_summary(
        pytestconfig,
        f"schemathesis: {running.sent} requests to the sandbox, "
        f"over all {documented} documented operations and "
        f"{len(running.undocumented)} undocumented methods",
    )


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck)
)
def test_generated_requests_get_documented_answers(case, running: RunningSandbox) -> None:
    if "secret" in case.path_parameters:  # reach the callbacks, not only their 404
        case.path_parameters["secret"] = running.sandbox.settings.c2b.callback_secret
    running.sent += 1
    if case.method.lower() not in OPERATIONS[case.path]:
        running.undocumented.add(f"{case.method} {case.path}")
    case.call_and_validate(
        base_url=running.url,
        session=running.http,
        headers=running.headers_for(case.path, case.method),
        checks=CHECKS,
    )
