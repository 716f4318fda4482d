"""Daraja's wire conventions that every part of the Daraja simulator shares: Nairobi
time, the shapes of its ids, how it checks fields and URLs, and its error envelope.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import string
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from aiohttp import web

from simulators.common import JsonObject

NAIROBI = timezone(timedelta(hours=3), "EAT")

# Longest words first so the error names "EXEC" rather than "EXE" for ".../exec/...".
FORBIDDEN_URL_WORDS = ("m-pesa", "mpesa", "safaricom", "exec", "exe", "cmd", "sql", "query")
KENYAN_PHONE = re.compile(r"254[71]\d{8}")
SHORTCODE = re.compile(r"\d{5,7}")

ALPHANUMERIC = string.ascii_letters + string.digits


def random_string(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_request_id() -> str:
    """Daraja-looking requestId (also a MerchantRequestID), e.g. ``11728-2929992-1``."""
    return f"{10000 + secrets.randbelow(90000)}-{1000000 + secrets.randbelow(9000000)}-1"


def new_conversation_id() -> str:
    """OriginatorCoversationID shaped like ``6e86-45dd-91ac-fd5d4178ab523408729``."""
    hexdigits = secrets.token_hex(12)
    serial = 1000000 + secrets.randbelow(9000000)
    return f"{hexdigits[:4]}-{hexdigits[4:8]}-{hexdigits[8:12]}-{hexdigits[12:]}{serial}"


def nairobi_now() -> datetime:
    return datetime.now(NAIROBI)


def digits(value: object) -> str | None:
    """A number sent as JSON integer or string of digits, as a string; None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value).strip()
    return text if text.isascii() and text.isdigit() else None


def kenyan_phone(value: object) -> str | None:
    text = digits(value)
    return text if text is not None and KENYAN_PHONE.fullmatch(text) else None


def short_text(value: object, longest: int) -> str | None:
    """A string (or a number, as clients send references) of at most `longest` characters."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return text if len(text) <= longest else None


def _is_local_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def is_http_url(url: object) -> bool:
    """Whether url is an absolute http(s) URL: how the STK and initiator APIs check theirs."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        hostname, _ = parts.hostname, parts.port  # port: ValueError when not a number
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https") and bool(hostname) and not any(c.isspace() for c in url)
    )


def url_problem(url: str, local_mode: bool) -> str | None:
    """Why Daraja would refuse this C2B callback URL, or None when it is acceptable."""
    lowered = url.lower()
    for word in FORBIDDEN_URL_WORDS:
        if word in lowered:
            return f"URL has the word {word.upper()}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "URL must be an absolute http(s) URL"
    if not local_mode and _is_local_host(parts.hostname):
        return "localhost URLs are not allowed"
    return None


def daraja_error(status: int, code: str, message: str) -> web.Response:
    body = {"requestId": new_request_id(), "errorCode": code, "errorMessage": message}
    return web.json_response(body, status=status)


def invalid_payload(missing: list[str] | None = None) -> web.Response:
    message = "Invalid Request Payload"
    if missing:
        message += " - missing " + ", ".join(missing)
    return daraja_error(400, "400.002.05", message)


def bad_request(detail: str) -> web.Response:
    return daraja_error(400, "400.003.02", f"Bad Request - {detail}")


def invalid_field(name: str) -> web.Response:
    """How the STK and initiator APIs refuse a missing or malformed field."""
    return daraja_error(400, "400.002.02", f"Bad Request - Invalid {name}")


def missing_fields(payload: JsonObject, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if payload.get(name) is None]
