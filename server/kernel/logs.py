"""Structured logs: one line per event, key=value text or JSON, never a secret.

Messages are written as `event key=value ...`; the JSON format parses that into
fields. Secrets never reach a log call in the first place (OTPs and PINs are not
passed to loggers), and the request log has the path but never a body. Paths that
end in a secret (the callback URLs) are logged through `redact`; Tornado's own
loggers, which may quote a request's path or headers, redact their records where
they are made, and the handler `configure` installs redacts whatever else is written."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from typing import Any

from tornado.web import RequestHandler

access = logging.getLogger("gateway.access")

# key=value, where a value with spaces is a JSON string: reason="the payer cannot..."
FIELD = re.compile(r'(?:^|\s)([A-Za-z_]\w*)=("(?:[^"\\]|\\.)*"|\S*)')

# Paths followed by a secret segment. Whatever follows one in a log line is shown as
# `<secret>`; a callback added later is one more entry.
SECRET_PATH_PREFIXES: tuple[str, ...] = (
    "/api/v1/c2b/validation",
    "/api/v1/c2b/confirmation",
    "/api/v1/stk/callback",
)
_SECRET_PATHS = re.compile(
    "(" + "|".join(re.escape(prefix) for prefix in SECRET_PATH_PREFIXES) + ")([^\\s\"']*)",
    re.IGNORECASE,
)
_DOT_SEGMENT = re.compile(r"/\.(?=/)")
_PARENT_SEGMENT = re.compile(r"/[^/\s]+/\.\.(?=/)")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_OBFUSCATION = ("%", "//", "/.")
TORNADO_LOGGERS = ("tornado.access", "tornado.application", "tornado.general")


def redact(text: str) -> str:
    """`text` with whatever follows a secret path prefix replaced by `/<secret>`, also
    when the prefix is spelt in another case, percent-encoded, with doubled slashes or
    with dot segments: the line is then shown in the least decoded spelling that
    reveals every such prefix."""
    forms = _spellings(text) if any(mark in text for mark in _OBFUSCATION) else [text]
    counts = [len(_SECRET_PATHS.findall(form)) for form in forms]
    if not max(counts):
        return text
    return _SECRET_PATHS.sub(_hide, forms[counts.index(max(counts))])


def _visible(escape: re.Match[str]) -> str:
    """A percent escape decoded when it stands for a visible ASCII character; spaces,
    control characters and quotes stay encoded, so a decoded line cannot be split
    and a secret cannot be cut off from the path that precedes it."""
    char = chr(int(escape.group(1), 16))
    return char if "!" <= char <= "~" and char not in "\"'" else escape.group()


def _hide(match: re.Match[str]) -> str:
    return match.group(1) + ("/<secret>" if match.group(2) else "")


def _spellings(text: str) -> list[str]:
    """The text as written; percent-decoded (nested encodings too); with single
    slashes; without dot segments."""
    decoded = text
    for _ in range(4):
        once = _ESCAPE.sub(_visible, decoded)
        if once == decoded:
            break
        decoded = once
    single = re.sub("/{2,}", "/", decoded)
    resolved = _DOT_SEGMENT.sub("", single)
    while (shorter := _PARENT_SEGMENT.sub("", resolved, count=1)) != resolved:
        resolved = shorter
    return [text, decoded, single, resolved]


class RedactSecrets(logging.Filter):
    """The record's message goes through `redact` (as a logger's filter, before any
    handler sees the record; as a handler's, before it is written)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a malformed call: the formatter reports it
        safe = redact(message)
        if safe != message:
            record.msg, record.args = safe, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        event, _, rest = message.partition(" ")
        body: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "event": event,
        }
        fields = FIELD.findall(rest)
        for key, value in fields:
            if value.startswith('"'):
                with contextlib.suppress(json.JSONDecodeError):
                    value = json.loads(value)
            body[key] = value
        if not fields:
            body["message"] = message
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body)


def configure(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("tornado.access").setLevel(logging.WARNING)


def redact_tornado_logs() -> None:
    """Tornado quotes request lines and header values (a malformed header, a static file
    refused, an uncaught error in a handler of its own): redact those records."""
    for name in TORNADO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(item, RedactSecrets) for item in logger.filters):
            logger.addFilter(RedactSecrets())


def log_request(handler: RequestHandler) -> None:
    """Tornado's log_function: one line per request, and the request metrics."""
    status = handler.get_status()
    seconds = handler.request.request_time()
    route = type(handler).__name__
    services = handler.settings.get("services")
    if services is not None:
        labels = (route, handler.request.method, str(status))
        services.metrics.requests.labels(*labels).inc()
        services.metrics.request_seconds.labels(*labels).observe(seconds)
    level = logging.INFO if status < 500 else logging.ERROR
    access.log(
        level,
        "request request_id=%s method=%s path=%s status=%s duration_ms=%.1f client=%s",
        getattr(handler, "request_id", "-"),
        handler.request.method,
        redact(handler.request.path),
        status,
        seconds * 1000,
        handler.request.remote_ip,
    )
