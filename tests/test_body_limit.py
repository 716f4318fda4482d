"""A body over server.max_body_bytes is refused from its Content-Length before it is
sent, and a chunked one as soon as it passes the limit: 413 in the API's error shape,
Daraja's format on the callbacks, Tornado's page on the pages."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import NamedTuple

import pytest

from support import INBOX, callback_body

LIMIT = 65536  # server.max_body_bytes in the test settings
GUARD = 20  # seconds to wait for an answer that should come at once


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes
    reader: asyncio.StreamReader  # the connection, still open
    writer: asyncio.StreamWriter


async def exchange(gateway, head: bytes, body: bytes = b"") -> Answer:
    """Send a request head (and the start of a body); read one answer without sending
    more."""
    reader, writer = await asyncio.open_connection(gateway.settings.server.host, gateway.port)
    writer.write(head + body)
    status_line = await asyncio.wait_for(reader.readline(), GUARD)
    headers = {}
    while (line := await asyncio.wait_for(reader.readline(), GUARD)) != b"\r\n":
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    answer = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), GUARD)
    return Answer(int(status_line.split()[1]), headers, answer, reader, writer)


def head(path: str, *fields: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        + "".join(f"{field}\r\n" for field in fields)
        + "\r\n"
    ).encode()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path", ["/api/v1/auth/token", "/api/v1/payments", "/api/v1/insurees", "/api/v1/nothing-here"]
)
async def test_a_body_declared_too_large_is_refused_before_it_is_sent(gateway, path) -> None:
    answer = await exchange(gateway, head(path, f"Content-Length: {10 * 1024 * 1024}"))
    answer.writer.close()
    assert answer.status == 413
    assert json.loads(answer.body)["error"]["code"] == "payload_too_large"


@pytest.mark.asyncio
async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(gateway) -> None:
    chunk = b"x" * (LIMIT + 1)
    answer = await exchange(
        gateway,
        head("/api/v1/auth/token", "Transfer-Encoding: chunked"),
        b"%x\r\n%s\r\n" % (len(chunk), chunk),
    )  # no end: more follows
    answer.writer.close()
    assert answer.status == 413
    assert json.loads(answer.body)["error"]["code"] == "payload_too_large"


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["validation", "confirmation"])
async def test_a_callback_declared_too_large_is_refused_in_darajas_format(
    gateway, store, kind
) -> None:
    answer = await exchange(
        gateway, head(f"/api/v1/c2b/{kind}/test-callback", f"Content-Length: {LIMIT + 1}")
    )
    answer.writer.close()
    assert answer.status == 413
    assert set(json.loads(answer.body)) == {"ResultCode", "ResultDesc"}
    assert await store.collection(INBOX).count_documents({}) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path",
    [
        "/dashboard",
        "/dashboard/static/dashboard.js",
        "/docs",
        "/docs/static/swagger-ui.css",
        "/openapi.json",
    ],
)
async def test_pages_and_their_files_refuse_a_body_declared_too_large(gateway, path) -> None:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: gateway\r\nContent-Length: {LIMIT + 1}\r\n\r\n"
    ).encode()
    answer = await exchange(gateway, request)
    answer.writer.close()
    assert answer.status == 413


@pytest.mark.asyncio
async def test_a_body_of_exactly_the_limit_is_read(gateway) -> None:
    body = json.dumps({"username": "nobody", "password": "wrong"}).encode()
    body += b" " * (LIMIT - len(body))  # JSON may end in white space
    answer = await exchange(
        gateway, head("/api/v1/auth/token", f"Content-Length: {len(body)}"), body
    )
    answer.writer.close()
    assert answer.status == 401


@pytest.mark.asyncio
async def test_a_chunked_body_within_the_limit_is_read(gateway) -> None:
    body = json.dumps({"username": "nobody", "password": "wrong"}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:]))
    answer = await exchange(
        gateway, head("/api/v1/auth/token", "Transfer-Encoding: chunked"), chunked + b"0\r\n\r\n"
    )
    answer.writer.close()
    assert answer.status == 401


@pytest.mark.asyncio
async def test_the_connection_stays_usable_after_a_refused_body_is_sent_whole(gateway) -> None:
    """The rest of a refused body is read and dropped, so the client that sends it all
    reads the 413 and can send its next request on the same connection."""
    body = b"x" * (LIMIT * 4)
    answer = await exchange(
        gateway, head("/api/v1/auth/token", f"Content-Length: {len(body)}"), body
    )
    assert answer.status == 413 and answer.headers.get("connection") != "close"
    answer.writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
    following = await asyncio.wait_for(answer.reader.read(), GUARD)
    answer.writer.close()
    assert following.startswith(b"HTTP/1.1 200 ")


@pytest.mark.asyncio
async def test_a_client_that_sends_the_whole_body_before_reading_gets_the_413(gateway) -> None:
    def post() -> int:
        request = urllib.request.Request(
            f"{gateway.url}/api/v1/c2b/confirmation/test-callback",
            data=json.dumps(callback_body(BillRefNumber="x" * (3 * 1024 * 1024))).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=GUARD) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code

    assert await asyncio.to_thread(post) == 413
