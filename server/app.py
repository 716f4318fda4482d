"""The route table and the Tornado application built from explicit parts."""

from __future__ import annotations

from tornado.web import Application

from server.auth.handlers import RefreshHandler, TokenHandler
from server.config import Settings
from server.mpesa.handlers import (
    ConfirmationHandler,
    PaymentHandler,
    PaymentListHandler,
    ValidationHandler,
)
from server.services import Services
from server.web import NotFoundHandler

ROUTES = [
    (r"/api/v1/auth/token", TokenHandler),
    (r"/api/v1/auth/refresh", RefreshHandler),
    (r"/api/v1/c2b/validation/([^/]*)", ValidationHandler),
    (r"/api/v1/c2b/confirmation/([^/]*)", ConfirmationHandler),
    (r"/api/v1/c2b/payments", PaymentListHandler),
    (r"/api/v1/c2b/payments/([^/]+)", PaymentHandler),
]


def make_app(settings: Settings, services: Services) -> Application:
    return Application(ROUTES, gateway=settings, services=services,
                       default_handler_class=NotFoundHandler)
