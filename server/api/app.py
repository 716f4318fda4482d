"""The route table, its OpenAPI document, and the Tornado application built from explicit parts."""

from __future__ import annotations

import functools
from typing import Any

from tornado.web import Application

from server.api.admin import admin_routes
from server.auth.handlers import LogoutHandler, RefreshHandler, TokenHandler
from server.insurance.schemas import (
    InsureeCreateSchema,
    InsureeQuerySchema,
    InsureeUpdateSchema,
    PolicyCreateSchema,
    PolicyQuerySchema,
    PolicyUpdateSchema,
    ProductCreateSchema,
    ProductUpdateSchema,
    render_insuree,
    render_policy,
    render_product,
)
from server.kernel.logs import log_request, redact_tornado_logs
from server.kernel.schemas import PageQuerySchema
from server.ledger.handlers import TransactionHandler
from server.mpesa.handlers import (
    AllocateHandler,
    ConfirmationHandler,
    InboxListHandler,
    InboxReplayHandler,
    PaymentHandler,
    PaymentListHandler,
    ValidationHandler,
)
from server.ops.dashboard_page import STATIC_DIR, DashboardPageHandler, DashboardStaticHandler
from server.ops.docs import DocsAssetHandler, DocsHandler, OpenApiHandler
from server.ops.handlers import DashboardHandler, HealthHandler, MetricsHandler, ReadyHandler
from server.ops.openapi import build_spec
from server.psp_api.handlers import ProviderPaymentHandler, VerifyInsureeHandler
from server.psps.schemas import PspCreateSchema, PspQuerySchema, PspUpdateSchema, render_psp
from server.qmoney.handlers import (
    ExpireHandler,
    ProcessDebitHandler,
    ResolveHandler,
    TransactionCollectionHandler,
)
from server.web.handler import NotFoundHandler

ROUTES = [
    (r"/api/v1/auth/token", TokenHandler),
    (r"/api/v1/auth/refresh", RefreshHandler),
    (r"/api/v1/auth/logout", LogoutHandler),
    (r"/api/v1/c2b/validation/([^/]*)", ValidationHandler),
    (r"/api/v1/c2b/confirmation/([^/]*)", ConfirmationHandler),
    (r"/api/v1/c2b/payments", PaymentListHandler),
    (r"/api/v1/c2b/payments/([^/]+)", PaymentHandler),
    (r"/api/v1/c2b/payments/([^/]+)/allocate", AllocateHandler),
    (r"/api/v1/c2b/inbox", InboxListHandler),
    (r"/api/v1/c2b/inbox/([^/]+)/replay", InboxReplayHandler),
    (r"/api/v1/insurees/([^/]+)/policies", VerifyInsureeHandler),
    (r"/api/v1/payments", ProviderPaymentHandler),
    (r"/api/v1/transactions", TransactionCollectionHandler),
    (r"/api/v1/transactions/([^/]+)", TransactionHandler),
    (r"/api/v1/transactions/([^/]+)/process", ProcessDebitHandler),
    (r"/api/v1/transactions/([^/]+)/resolve", ResolveHandler),
    (r"/api/v1/transactions/([^/]+)/expire", ExpireHandler),
    (r"/api/v1/dashboard", DashboardHandler),
    (r"/healthz", HealthHandler),
    (r"/readyz", ReadyHandler),
    (r"/metrics", MetricsHandler),
    *admin_routes(r"/api/v1/insurees", "insurees", render_insuree, InsureeQuerySchema,
                  InsureeCreateSchema, InsureeUpdateSchema),
    *admin_routes(r"/api/v1/products", "products", render_product, PageQuerySchema,
                  ProductCreateSchema, ProductUpdateSchema),
    *admin_routes(r"/api/v1/policies", "policies", render_policy, PolicyQuerySchema,
                  PolicyCreateSchema, PolicyUpdateSchema),
    *admin_routes(r"/api/v1/psps", "psps", render_psp, PspQuerySchema, PspCreateSchema,
                  PspUpdateSchema),
    (r"/dashboard", DashboardPageHandler),
    (r"/dashboard/static/(.*)", DashboardStaticHandler, {"path": str(STATIC_DIR)}),
    (r"/openapi.json", OpenApiHandler),
    (r"/docs", DocsHandler),
    (r"/docs/static/(.*)", DocsAssetHandler),
]


# Served by the internal listener instead when server.internal_port is set.
INTERNAL_ROUTES = [route for route in ROUTES if route[0] in (r"/readyz", r"/metrics")]


def public_routes(*, internal_listener: bool) -> list:
    """Every route, less the internal ones when they have a listener of their own."""
    return [route for route in ROUTES
            if not (internal_listener and route in INTERNAL_ROUTES)]


@functools.cache
def openapi_spec() -> dict[str, Any]:
    """The document of every route of the gateway, built once per process."""
    return build_spec(ROUTES)


def make_app(settings: Any, services: Any, routes: list = ROUTES) -> Application:
    """The application serving `routes`. `settings` and `services` are start-up's
    (server.startup): handlers reach them as self.settings["gateway"] and ["services"]."""
    redact_tornado_logs()
    return Application(routes, gateway=settings, services=services, openapi=openapi_spec,
                       default_handler_class=NotFoundHandler, log_function=log_request)
