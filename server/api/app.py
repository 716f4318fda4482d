"""The route table, its OpenAPI document, and the Tornado application built from explicit parts."""

from __future__ import annotations

import functools
from typing import Any

from tornado.web import Application

from server.api import admin
from server.auth import handlers as auth
from server.debits import handlers as debits
from server.jobs.runner import JobRunner
from server.kernel.logs import log_request, redact_tornado_logs
from server.mpesa import action_handlers as mpesa_actions
from server.mpesa import detail_handlers as mpesa_details
from server.mpesa import handlers as mpesa
from server.notifications import handlers as sms
from server.ops import routes as ops
from server.ops.openapi import build_spec
from server.psp_api import handlers as psp_api
from server.reconciliation import handlers as statements
from server.reconciliation import openimis_handlers as openimis_check
from server.reconciliation import view_handlers as reconciliation
from server.seed_graphql import handlers as seed_graphql
from server.web.handler import NotFoundHandler

# Each package routes its own handlers; each handler says what its methods take and
# answer (server.web.operations), which is what openapi_spec documents.
ROUTES = [
    *auth.ROUTES,
    *mpesa.ROUTES,
    *mpesa_details.ROUTES,  # one inbox entry, its body read
    *mpesa_actions.ROUTES,  # allocation candidates, dismissals, replay
    *psp_api.ROUTES,
    *seed_graphql.ROUTES,  # the provider API and debits in the seed module's GraphQL
    *debits.ROUTES,  # the transactions API, the ledger's read of one included
    *reconciliation.ROUTES,  # the reconciliation view
    *openimis_check.ROUTES,  # the premiums against openIMIS's
    *statements.ROUTES,  # statement import
    *sms.ROUTES,  # SMS receipts: delivery reports, the outbox
    *ops.ROUTES,  # the jobs API included
    *admin.ROUTES,
    *ops.PAGE_ROUTES,
]


# Served by the internal listener instead when server.internal_port is set.
INTERNAL_ROUTES = [route for route in ROUTES if route[0] in (r"/readyz", r"/metrics")]


def public_routes(*, internal_listener: bool) -> list:
    """Every route, less the internal ones when they have a listener of their own."""
    return [route for route in ROUTES if not (internal_listener and route in INTERNAL_ROUTES)]


@functools.cache
def openapi_spec() -> dict[str, Any]:
    """The document of every route of the gateway, built once per process from the
    routes' handlers."""
    return build_spec(ROUTES)


def make_app(
    settings: Any, services: Any, routes: list = ROUTES, *, jobs: JobRunner
) -> Application:
    """The application serving `routes`. `settings`, `services` and the job runner `jobs`
    are start-up's (server.startup): handlers reach them as self.settings["gateway"],
    ["services"] and ["jobs"]. The jobs API runs jobs through `jobs` whether or not its
    loops run in this process."""
    redact_tornado_logs()
    return Application(
        routes,
        gateway=settings,
        services=services,
        jobs=jobs,
        body_limits=body_limits(settings, routes),
        openapi=openapi_spec,
        default_handler_class=NotFoundHandler,
        log_function=log_request,
    )


def body_limits(settings: Any, routes: list) -> dict[str, int]:
    """The routes whose bodies have a limit of their own instead of
    server.max_body_bytes (server.web.body_limit): a handler with a `body_limit(settings)`
    on a literal path."""
    return {
        pattern: handler.body_limit(settings)
        for pattern, handler, *_ in routes
        if callable(getattr(handler, "body_limit", None))
    }
