"""The operators' dashboard page: one HTML page and its script and stylesheet.

Everything the page needs is served from here (no CDN, no web fonts, no build step).
The page itself needs no authentication: it logs in from the browser and reads the
JSON API (`/api/v1/dashboard` and the operator actions) with a bearer token."""

from __future__ import annotations

from pathlib import Path

from tornado.web import RequestHandler, StaticFileHandler

from server.web import TrackedRequest

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE = STATIC_DIR / "dashboard.html"

# The page runs only its own script and stylesheet and talks only to this origin.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


def _protective_headers(handler: RequestHandler) -> None:
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Referrer-Policy", "no-referrer")
    handler.set_header("X-Frame-Options", "DENY")


class DashboardPageHandler(TrackedRequest):
    """GET /dashboard: the page (never cached: it is small and changes with releases)."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        _protective_headers(self)
        self.finish(PAGE.read_bytes())


class DashboardStaticHandler(TrackedRequest, StaticFileHandler):
    """GET /dashboard/static/<file>: the page's script and stylesheet. Browsers
    revalidate them (ETag) on every load, so a new release is picked up at once."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")
        _protective_headers(self)

