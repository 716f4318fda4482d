"""Base request handler: JSON in and out, one error rendering, auth, client address."""

from __future__ import annotations

import ipaddress
import json
import logging
import uuid
from collections.abc import Awaitable
from typing import Any

from marshmallow import Schema
from marshmallow import ValidationError as SchemaError
from tornado.web import HTTPError, RequestHandler, StaticFileHandler

from server.kernel.errors import (
    ApiError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from server.kernel.identity import Identity
from server.kernel.logs import redact
from server.kernel.schemas import shared
from server.web.body_limit import declared_length
from server.web.json_body import parse_json

log = logging.getLogger("gateway.http")

_REASON_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def implemented_methods(handler: type[RequestHandler]) -> set[str]:
    """The HTTP methods the handler (or a base of ours) defines; Tornado's defaults say 405."""
    return {
        method.lower()
        for method in handler.SUPPORTED_METHODS
        if getattr(handler, method.lower()) is not getattr(RequestHandler, method.lower())
    }


class TrackedRequest(RequestHandler):
    """A request id (echoed as X-Request-ID) and in-flight tracking for graceful
    shutdown: for every handler, the pages and their files included."""

    def prepare(self) -> Awaitable[None] | None:  # subclasses may prepare asynchronously
        self.settings["services"].inflight.add(self)
        self.request_id = _request_id(self.request.headers.get("X-Request-ID"))
        self.set_header("X-Request-ID", self.request_id)
        # A body over the limit reaches here unread (server.body_limit): refused whole.
        limit = self.settings["gateway"].server.max_body_bytes
        if max(len(self.request.body), declared_length(self.request.headers) or 0) > limit:
            raise self.body_too_large()
        return None

    def body_too_large(self) -> Exception:
        """The refusal of a body over server.max_body_bytes; pages answer Tornado's own."""
        return HTTPError(413)

    def clear(self) -> None:
        """Errors clear the headers; the request id stays for the caller to quote. No
        answer says which server software it is, or may be sniffed as another type."""
        super().clear()
        self.clear_header("Server")
        self.set_header("X-Content-Type-Options", "nosniff")
        if hasattr(self, "request_id"):
            self.set_header("X-Request-ID", self.request_id)

    def on_finish(self) -> None:
        self.settings["services"].inflight.discard(self)
        super().on_finish()

    def on_connection_close(self) -> None:
        self.settings["services"].inflight.discard(self)
        super().on_connection_close()


class BaseHandler(TrackedRequest):
    """Every handler answers JSON; every error uses the API's single error shape."""

    identity: Identity | None = None

    def body_too_large(self) -> Exception:
        return PayloadTooLarge("request body is too large")

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")

    def write_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(body, separators=(",", ":")))

    # --- errors ---------------------------------------------------------

    def error_body(self, status: int, error: BaseException | None) -> dict[str, Any]:
        """The answer for a failed request; callback handlers answer in Daraja's format."""
        if isinstance(error, ApiError):
            return error.to_body()
        reason = self._reason
        code = _REASON_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
        message = "internal error" if status >= 500 else reason.lower()
        return {"error": {"code": code, "message": message, "details": {}}}

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, ApiError):
            status_code = error.status
            self.set_status(status_code)
            for name, value in error.headers.items():
                self.set_header(name, value)
        if status_code == 405:  # RFC 9110: a 405 names the methods that do work
            allowed = sorted(implemented_methods(type(self)))
            self.set_header("Allow", ", ".join(method.upper() for method in allowed))
        self.finish(json.dumps(self.error_body(status_code, error)))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, (ApiError, HTTPError)):
            log.info(
                "request_refused request_id=%s status=%s code=%s path=%s",
                getattr(self, "request_id", "-"),
                getattr(value, "status", None) or getattr(value, "status_code", None),
                getattr(value, "code", "-"),
                redact(self.request.path),
            )
            return
        log.error(
            "request_failed request_id=%s path=%s",
            getattr(self, "request_id", "-"),
            redact(self.request.path),
            exc_info=(typ, value, tb),
        )

    # --- input ----------------------------------------------------------

    def load_json(self, schema: type[Schema]) -> Any:
        """Parse the body with a marshmallow schema: a body sent as another type than
        JSON is a 415 (so no HTML form can post one), any other problem a 400."""
        if self.request.body and not is_json(self.request.headers.get("Content-Type", "")):
            raise UnsupportedMediaType("send the body as Content-Type: application/json")
        body = parse_json(self.request.body)
        if not isinstance(body, dict):
            raise ValidationFailed("request body must be a JSON object")
        try:
            return shared(schema).load(body)
        except SchemaError as err:
            raise ValidationFailed("request body is invalid", {"fields": err.messages}) from None

    def load_query(self, schema: type[Schema]) -> Any:
        args = {key: self.get_query_argument(key) for key in self.request.query_arguments}
        try:
            return shared(schema).load(args)
        except SchemaError as err:
            raise ValidationFailed(
                "query parameters are invalid", {"fields": err.messages}
            ) from None

    # --- identity -------------------------------------------------------

    async def require_role(self, *roles: str) -> Identity:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing bearer token", code="missing_token")
        self.identity = await self.settings["services"].auth.authenticate(token.strip())
        if self.identity.role not in roles:
            raise Forbidden(f"this endpoint needs the role {' or '.join(roles)}")
        return self.identity

    @property
    def client_ip(self) -> str:
        """The caller's address; X-Forwarded-For is honoured only from trusted proxies."""
        peer = self.request.remote_ip
        if peer is None:
            # Tornado's HTTP server always sets it (0.0.0.0 on a Unix socket).
            raise RuntimeError(
                "the request has no remote_ip: it did not come through an HTTP server"
            )
        trusted = self.settings["gateway"].server.trusted_proxies
        forwarded = self.request.headers.get("X-Forwarded-For")
        if not forwarded or not in_networks(peer, trusted):
            return peer
        # Walk right to left past our own proxies; the first other hop is the client.
        for hop in reversed([part.strip() for part in forwarded.split(",")]):
            if not in_networks(hop, trusted):
                return hop
        return peer


def is_json(content_type: str) -> bool:
    """application/json, with or without parameters (charset), in any case."""
    return content_type.partition(";")[0].strip().lower() == "application/json"


def _request_id(given: str | None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a new one."""
    if given and len(given) <= 64 and all(c.isalnum() or c in "-_." for c in given):
        return given
    return uuid.uuid4().hex


def in_networks(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in networks)


class StaticFiles(TrackedRequest, StaticFileHandler):
    """A directory of files. A path no file can have (a NUL byte) is a 404, not the
    500 of the operating system refusing it."""

    def parse_url_path(self, url_path: str) -> str:
        if "\x00" in url_path:
            raise HTTPError(404)
        return super().parse_url_path(url_path)


class NotFoundHandler(BaseHandler):
    """Unknown paths get the standard error body."""

    def prepare(self) -> None:
        super().prepare()
        raise NotFound("no such endpoint")
