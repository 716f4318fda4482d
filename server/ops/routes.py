"""The routes of the operations endpoints (the jobs API, the exports and the period close
among them), and of the pages for browsers and their files."""

from __future__ import annotations

from server.ops import close_handlers, desk_handlers, export_handlers
from server.ops.dashboard_page import STATIC_DIR, DashboardPageHandler, DashboardStaticHandler
from server.ops.docs import DocsAssetHandler, DocsHandler, OpenApiHandler
from server.ops.handlers import DashboardHandler, HealthHandler, MetricsHandler, ReadyHandler
from server.ops.jobs import JobRunHandler, JobsHandler

ROUTES = [
    (r"/api/v1/dashboard", DashboardHandler),
    (r"/api/v1/jobs", JobsHandler),
    (r"/api/v1/jobs/([^/]+)/run", JobRunHandler),
    (r"/healthz", HealthHandler),
    (r"/readyz", ReadyHandler),
    (r"/metrics", MetricsHandler),
    *export_handlers.ROUTES,
    *close_handlers.ROUTES,
    *desk_handlers.ROUTES,
]

PAGE_ROUTES = [
    (r"/dashboard", DashboardPageHandler),
    (r"/dashboard/static/(.*)", DashboardStaticHandler, {"path": str(STATIC_DIR)}),
    (r"/openapi.json", OpenApiHandler),
    (r"/docs", DocsHandler),
    (r"/docs/static/(.*)", DocsAssetHandler),
]
