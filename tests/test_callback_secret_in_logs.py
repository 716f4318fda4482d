"""The callback secret is never logged: not when a request carrying it is refused, not
for URL variants that miss the callback routes, not by Tornado's own loggers."""

import asyncio
import json
import logging
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import pytest

from server.kernel.logs import configure, redact

from support import callback_body, make_settings

SECRET = "test-callback"
WRONG = "wrong-guess-of-it"
BODY = json.dumps(callback_body()).encode()
STK_BODY = json.dumps(
    {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "29115-34620561-1",
                "CheckoutRequestID": "ws_CO_191220191020363925",
                "ResultCode": 1032,
                "ResultDesc": "Request cancelled by user",
            }
        }
    }
).encode()
OVERSIZE = b"x" * (65536 + 1024)


class Records(logging.Handler):
    """Every record of every logger, kept whole (message and traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(logging.Formatter("%(name)s %(message)s").format(record))


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger()
    loggers = [
        root,
        *(
            logger
            for logger in logging.root.manager.loggerDict.values()
            if isinstance(logger, logging.Logger)
        ),
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def assert_never_logged(records: Records, *secrets: str) -> None:
    assert records.texts, "nothing was logged: the check would prove nothing"
    for text in records.texts:
        for spelling in (text, unquote(text), unquote(unquote(text))):
            for secret in secrets:
                assert secret.lower() not in spelling.lower(), text


async def send(gateway, raw: bytes) -> int:
    """Send bytes as they are (no client normalises the path) and return the status."""
    address = urlsplit(gateway.url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(raw)
    await writer.drain()
    answer = await reader.read(65536)
    writer.close()
    await writer.wait_closed()
    return int(answer.split(b" ", 2)[1])


def request(method: str, target: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: gateway",
        "Connection: close",
        "Content-Type: application/json",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


REFUSED_OR_MISSED = [
    ("GET", f"/api/v1/c2b/confirmation/{SECRET}", b"", 405),
    ("GET", f"/api/v1/c2b/validation/{SECRET}?from=browser", b"", 405),
    ("POST", f"/api/v1/c2b/confirmation/{SECRET}", OVERSIZE, 413),
    ("POST", f"/api/v1/c2b/validation/{SECRET}", OVERSIZE, 413),
    ("POST", f"/api/v1/c2b/confirmation/{SECRET}/", BODY, 404),
    ("POST", f"/api/v1/c2b/validation/{SECRET}/", BODY, 404),
    ("POST", f"/api/v1/c2b//confirmation/{SECRET}", BODY, 404),
    ("POST", f"//api/v1/c2b/confirmation/{SECRET}", BODY, 404),
    ("POST", f"/api/v1/c2b/confirmation//{SECRET}", BODY, 404),
    ("POST", f"/api/v1/c2b/confirmation%2F{SECRET}", BODY, 404),
    ("POST", f"/api/v1/c2b/%63onfirmation/{SECRET}", BODY, 404),
    ("POST", f"/api/v1/c2b/%2563onfirmation/{SECRET}", BODY, 404),
    ("POST", f"/API/V1/C2B/CONFIRMATION/{SECRET}", BODY, 404),
    ("POST", f"/api/v1/c2b/x/../confirmation/{SECRET}", BODY, 404),
    ("POST", f"/api/v1/c2b/./validation/{SECRET}", BODY, 404),
    ("POST", f"http://gateway/api/v1/c2b/confirmation/{SECRET}/", BODY, 404),
    ("GET", f"/dashboard/static/..%2F..%2Fapi/v1/c2b/confirmation/{SECRET}", b"", 403),
    ("GET", f"/api/v1/stk/callback/{SECRET}", b"", 405),
    ("POST", f"/api/v1/stk/callback/{SECRET}/", STK_BODY, 404),
    ("POST", f"/API/V1/STK/CALLBACK/{SECRET}", STK_BODY, 404),
    ("POST", f"/api/v1/stk//callback/{SECRET}", STK_BODY, 404),
]
ANSWERED = [
    ("POST", f"/api/v1/c2b/confirmation/{SECRET}?source=daraja", BODY, 200),
    ("POST", f"/api/v1/c2b/validation/{SECRET}?source=daraja", BODY, 200),
    ("POST", "/api/v1/c2b/confirmation/test%2Dcallback", BODY, 200),
    ("POST", "/api/v1/c2b/validation/%74est-callback", BODY, 200),
    ("POST", f"/api/v1/stk/callback/{SECRET}", STK_BODY, 200),
    ("POST", "/api/v1/stk/callback/test%2Dcallback", STK_BODY, 200),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "target", "body", "status"),
    REFUSED_OR_MISSED + ANSWERED,
    ids=[f"{m} {t} {s}" for m, t, _, s in REFUSED_OR_MISSED + ANSWERED],
)
async def test_secret_is_never_logged_for_any_spelling_of_a_callback_url(
    gateway, records, method, target, body, status
) -> None:
    assert await send(gateway, request(method, target, body)) == status
    assert_never_logged(records, SECRET)


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["c2b/validation", "c2b/confirmation", "stk/callback"])
async def test_wrong_secret_is_not_logged_either(gateway, records, path) -> None:
    assert await send(gateway, request("POST", f"/api/v1/{path}/{WRONG}", BODY)) == 404
    assert_never_logged(records, WRONG, SECRET)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["validation", "confirmation"])
async def test_right_secret_refused_by_the_allowlist_is_not_logged(
    start_gateway_with, records, kind
) -> None:
    gateway = await start_gateway_with(make_settings(c2b={"ip_allowlist": ("10.0.0.0/8",)}))
    assert await send(gateway, request("POST", f"/api/v1/c2b/{kind}/{SECRET}", BODY)) == 403
    assert_never_logged(records, SECRET)


@pytest.mark.asyncio
async def test_secret_is_not_logged_when_handling_the_callback_fails(gateway, records) -> None:
    async def broken(*_args):
        raise RuntimeError("processing broke")

    gateway.services.c2b.confirm = broken
    assert await send(gateway, request("POST", f"/api/v1/c2b/confirmation/{SECRET}", BODY)) == 500
    assert any("request_failed" in text and "processing broke" in text for text in records.texts)
    assert_never_logged(records, SECRET)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "raw",
    [
        request("GET", "/healthz", Referer=f"http://h/api/v1/c2b/confirmation/{SECRET}\x01"),
        request("GET", "/healthz").replace(
            b"Host: gateway", f"Host: h/api/v1/c2b/validation/{SECRET}".encode()
        ),
    ],
    ids=["bad referer", "bad host"],
)
async def test_tornado_does_not_log_the_secret_from_a_malformed_request(
    gateway, records, raw
) -> None:
    assert await send(gateway, raw) == 400
    assert any(text.startswith("tornado.general") for text in records.texts)
    assert_never_logged(records, SECRET)


def test_console_handler_redacts_any_logger_that_names_a_callback_url(capsys) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure("INFO", "json")
        logging.getLogger("elsewhere").warning("calling %s", f"/api/v1/c2b/confirmation/{SECRET}")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    written = capsys.readouterr().err
    assert "/api/v1/c2b/confirmation/<secret>" in written and SECRET not in written


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            f"path=/api/v1/c2b/confirmation/{SECRET} status=404",
            "path=/api/v1/c2b/confirmation/<secret> status=404",
        ),
        ("path=/api/v1/c2b/confirmation/<secret>", "path=/api/v1/c2b/confirmation/<secret>"),
        ("path=/api/v1/c2b/confirmation", "path=/api/v1/c2b/confirmation"),
        (f"/api/v1/c2b/%63onfirmation/%20{SECRET}", "/api/v1/c2b/confirmation/<secret>"),
        (
            f"/x/%2e%2e/api/v1/c2b/%76alidation/{SECRET}%0Aforged=line",
            "/x/../api/v1/c2b/validation/<secret>",
        ),
        (
            f"a /api/v1/c2b/confirmation/{SECRET} b /api/v1//c2b/validation/{SECRET}",
            "a /api/v1/c2b/confirmation/<secret> b /api/v1/c2b/validation/<secret>",
        ),
        ("path=/api/v1/c2b/payments/RP5878D37Z", "path=/api/v1/c2b/payments/RP5878D37Z"),
        (
            f"path=/api/v1/stk/callback/{SECRET} status=200",
            "path=/api/v1/stk/callback/<secret> status=200",
        ),
        ("path=/api/v1/stk-pushes status=201", "path=/api/v1/stk-pushes status=201"),
    ],
    ids=repr,
)
def test_redact_hides_what_follows_a_callback_prefix_and_nothing_else(text, shown) -> None:
    assert redact(text) == shown
