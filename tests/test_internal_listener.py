"""server.internal_port: /metrics and /readyz on a listener of their own, the public
port answering them 404 in the error shape; without it they stay on the public port."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import aiohttp
import pytest
from tornado.netutil import bind_sockets

from server.startup.runtime import start_gateway

from support import TEST_ENV, make_settings, serve

ROOT = Path(__file__).resolve().parent.parent
INTERNAL = ("/metrics", "/readyz")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def assert_moved(http: aiohttp.ClientSession, public: str, internal: str) -> None:
    for path in INTERNAL:
        async with http.get(internal + path) as answer:
            assert answer.status == 200, path
        async with http.get(public + path) as answer:
            assert answer.status == 404, path
            assert (await answer.json())["error"]["code"] == "not_found"


@pytest.mark.asyncio
async def test_metrics_and_readiness_move_to_the_internal_listener(
    http, start_gateway_with
) -> None:
    gateway = await start_gateway_with(internal_sockets=bind_sockets(0, "127.0.0.1"))
    internal = f"http://127.0.0.1:{gateway.internal_port}"
    await assert_moved(http, gateway.url, internal)
    async with http.get(f"{internal}/metrics") as answer:
        assert answer.content_type == "text/plain"
    for path in ("/healthz", "/api/v1/auth/token", "/dashboard"):  # only those two
        async with http.get(internal + path) as answer:
            assert answer.status == 404, path
    async with http.get(f"{gateway.url}/healthz") as answer:
        assert answer.status == 200


@pytest.mark.asyncio
async def test_without_an_internal_port_they_stay_on_the_public_port(http, gateway) -> None:
    assert gateway.internal_port is None
    for path in INTERNAL:
        async with http.get(gateway.url + path) as answer:
            assert answer.status == 200, path


@pytest.mark.asyncio
async def test_the_internal_port_setting_starts_the_listener(http, store) -> None:
    port = free_port()
    gateway = await start_gateway(
        make_settings(server={"internal_port": port}), store=store, port=0
    )
    try:
        assert gateway.internal_port == port
        await assert_moved(http, gateway.url, f"http://127.0.0.1:{port}")
    finally:
        await gateway.stop()
    with pytest.raises(OSError):  # stopped with the gateway
        await asyncio.open_connection("127.0.0.1", port)


@pytest.mark.asyncio
async def test_serve_starts_the_internal_listener(http) -> None:
    port, internal_port = free_port(), free_port()
    env = {
        **os.environ,
        **TEST_ENV,
        "GATEWAY_SERVER_PORT": str(port),
        "GATEWAY_SERVER_INTERNAL_PORT": str(internal_port),
    }
    process, printed = await serve(env, lines=2, within=60)
    try:
        assert printed[1] == f"/metrics and /readyz on http://127.0.0.1:{internal_port}\n"
        await assert_moved(http, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{internal_port}")
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
