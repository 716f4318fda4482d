"""Structured logs: one line per event, key=value text or JSON, never a secret.

Messages are written as `event key=value ...`; the JSON format parses that into
fields. Secrets never reach a log call in the first place (OTPs and PINs are not
passed to loggers), and the request log has the path but never a body."""

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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        event, _, rest = message.partition(" ")
        body: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                                "level": record.levelname, "logger": record.name,
                                "event": event}
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
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("tornado.access").setLevel(logging.WARNING)


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
    path = getattr(handler, "log_path", handler.request.path)
    access.log(level, "request request_id=%s method=%s path=%s status=%s duration_ms=%.1f "
               "client=%s", getattr(handler, "request_id", "-"), handler.request.method,
               path, status, seconds * 1000, handler.request.remote_ip)


