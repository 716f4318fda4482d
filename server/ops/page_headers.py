"""The headers of the pages for browsers (the dashboard, the API docs) and their files:
a Content-Security-Policy that lets a page run only what the gateway serves, and no
framing or referrers."""

from __future__ import annotations

from tornado.web import RequestHandler


def content_security_policy(*, scripts: str = "'self'") -> str:
    """Only this origin's files (and `scripts`), no framing, no other site's forms."""
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {scripts}",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def protective_headers(handler: RequestHandler) -> None:
    """(X-Content-Type-Options: nosniff is on every answer: server.web.TrackedRequest.)"""
    handler.set_header("Referrer-Policy", "no-referrer")
    handler.set_header("X-Frame-Options", "DENY")
