"""Connections that stop sending are closed: idle ones and half-sent headers after
server.idle_timeout_seconds, half-sent bodies after server.body_timeout_seconds."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from server.kernel.errors import Unauthorized

from support import make_settings

TIMEOUT = 0.3
# How long a test waits for the gateway to close (a guard, far above TIMEOUT; without
# the timeouts the gateway keeps the connection for an hour).
GUARD = 20


@pytest_asyncio.fixture
async def quick(start_gateway_with):
    return await start_gateway_with(
        make_settings(server={"idle_timeout_seconds": TIMEOUT, "body_timeout_seconds": TIMEOUT})
    )


async def connect(gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(gateway.settings.server.host, gateway.port)


async def closed_by_gateway(reader: asyncio.StreamReader) -> bytes:
    """Everything the gateway sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), GUARD)


@pytest.mark.asyncio
async def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(quick) -> None:
    reader, writer = await connect(quick)
    assert await closed_by_gateway(reader) == b""
    writer.close()


@pytest.mark.asyncio
async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(quick) -> None:
    reader, writer = await connect(quick)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
    answer = await closed_by_gateway(reader)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"status":"ok"}')
    writer.close()


@pytest.mark.asyncio
async def test_half_sent_headers_are_closed_after_the_idle_timeout(quick) -> None:
    reader, writer = await connect(quick)
    writer.write(b"POST /api/v1/auth/token HTTP/1.1\r\nHost: gateway\r\nContent-Ty")
    assert await closed_by_gateway(reader) == b""
    writer.close()


@pytest.mark.asyncio
async def test_a_half_sent_body_is_closed_after_the_body_timeout(quick) -> None:
    reader, writer = await connect(quick)
    writer.write(
        b"POST /api/v1/auth/token HTTP/1.1\r\nHost: gateway\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        b'{"username": '
    )
    assert await closed_by_gateway(reader) == b""
    writer.close()


@pytest.mark.asyncio
async def test_a_half_sent_chunked_body_is_closed_after_the_body_timeout(quick) -> None:
    reader, writer = await connect(quick)
    writer.write(
        b"POST /api/v1/auth/token HTTP/1.1\r\nHost: gateway\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'd\r\n{"username": \r\n'
    )
    assert await closed_by_gateway(reader) == b""
    writer.close()


@pytest.mark.asyncio
async def test_a_request_sent_in_time_is_answered(quick) -> None:
    reader, writer = await connect(quick)
    body = b'{"username": "nobody", "password": "wrong"}'
    writer.write(
        b"POST /api/v1/auth/token HTTP/1.1\r\nHost: gateway\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    answer = await closed_by_gateway(reader)
    assert answer.startswith(b"HTTP/1.1 401 ")
    writer.close()


# The body timeout of the tests that send bodies in time: long enough that a busy
# machine does not make a body late.
PATIENT_BODY_TIMEOUT = 1.0
# A login body the schema refuses (400) before any password is hashed.
REFUSED_LOGIN = b'{"username": 1, "password": 2}'


@pytest_asyncio.fixture
async def patient(start_gateway_with):
    """Idle connections kept far longer than a body may take."""
    return await start_gateway_with(
        make_settings(
            server={
                "idle_timeout_seconds": GUARD,
                "body_timeout_seconds": PATIENT_BODY_TIMEOUT,
            }
        )
    )


def login_request(body: bytes) -> bytes:
    return (
        b"POST /api/v1/auth/token HTTP/1.1\r\nHost: gateway\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )


async def answer_head(reader: asyncio.StreamReader) -> bytes:
    """One answer's status line and headers, and its body read past."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD)
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return head


@pytest.mark.asyncio
async def test_a_body_sent_slowly_but_in_time_is_answered(patient) -> None:
    reader, writer = await connect(patient)
    body = REFUSED_LOGIN
    writer.write(login_request(body) + body[:10])
    await asyncio.sleep(PATIENT_BODY_TIMEOUT / 5)
    writer.write(body[10:])
    assert (await answer_head(reader)).startswith(b"HTTP/1.1 400 ")
    writer.close()


@pytest.mark.asyncio
async def test_a_body_read_in_time_leaves_its_connection_open_past_the_body_timeout(
    patient,
) -> None:
    reader, writer = await connect(patient)
    body = REFUSED_LOGIN
    writer.write(login_request(body) + body)
    assert (await answer_head(reader)).startswith(b"HTTP/1.1 400 ")
    await asyncio.sleep(PATIENT_BODY_TIMEOUT * 2)
    writer.write(login_request(body) + body)
    assert (await answer_head(reader)).startswith(b"HTTP/1.1 400 ")
    writer.close()


@pytest.mark.asyncio
async def test_a_request_without_a_body_is_answered_however_long_it_takes(
    quick, monkeypatch
) -> None:
    """Only a body is timed: a GET to a streaming route, whose preparation (here its
    token check) takes longer than the body timeout, is answered, not cut off."""

    async def slow_refusal(token: str) -> None:
        await asyncio.sleep(TIMEOUT * 3)
        raise Unauthorized("slowly refused")

    monkeypatch.setattr(quick.services.auth, "authenticate", slow_refusal)
    reader, writer = await connect(quick)
    writer.write(
        b"GET /api/v1/reconciliation/statements HTTP/1.1\r\nHost: gateway\r\n"
        b"Authorization: Bearer some-token\r\n\r\n"
    )
    assert (await answer_head(reader)).startswith(b"HTTP/1.1 401 ")
    writer.close()
