"""The operators' dashboard page: one HTML page and its script and stylesheet.

Everything the page needs is served from here (no CDN, no web fonts, no build step).
The page itself needs no authentication: it logs in from the browser and reads the
JSON API (`/api/v1/dashboard`, the desk's search, lists and details, the operator
actions, the exports and the close) with a bearer token. The one setting it takes from
the gateway, the zone it shows times in, is written on its <body>."""

from __future__ import annotations

from html import escape
from pathlib import Path

from server.ops.page_headers import content_security_policy, protective_headers
from server.ops.settings import DashboardSettings
from server.web.handler import StaticFiles, TrackedRequest
from server.web.operations import FILE_PATH, page_operations, static_file_operations

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE = STATIC_DIR / "dashboard.html"

# The page runs only its own script and stylesheet and talks only to this origin.
CONTENT_SECURITY_POLICY = content_security_policy()
# Where the page's settings go: attributes of its <body>, read by its script.
DISPLAY_TIMEZONE = "__DISPLAY_TIMEZONE__"


def page(display_timezone: str) -> bytes:
    """The page with its display time zone (dashboard.display_timezone) filled in."""
    text = PAGE.read_text(encoding="utf-8")
    return text.replace(DISPLAY_TIMEZONE, escape(display_timezone, quote=True)).encode()


class DashboardPageHandler(TrackedRequest):
    """GET /dashboard: the page (never cached: it is small and changes with releases)."""

    operations = page_operations("The operators' dashboard page")

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        protective_headers(self)
        dashboard: DashboardSettings = self.settings["gateway"].dashboard
        self.finish(page(dashboard.display_timezone))


class DashboardStaticHandler(StaticFiles):
    """GET /dashboard/static/<file>: the page's script and stylesheet. Browsers
    revalidate them (ETag) on every load, so a new release is picked up at once."""

    path_parameters = FILE_PATH
    operations = static_file_operations("the dashboard page")

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")
        protective_headers(self)
