"""Fixtures: the store lanes, settings, the real gateway and simulator on ephemeral ports.

Every store-backed test runs against the in-memory store, and also against a real
MongoDB server when TEST_MONGODB_URI is set (the second lane)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from server.integrations.notifications import RecordingNotifier
from server.kernel.store import Store, open_store
from server.startup.config import Settings
from server.startup.runtime import Gateway, start_gateway
from server.startup.services import INDEXES
from simulators.daraja import DarajaSimSettings, DarajaSimulator

from openimis_backends import openimis_backend  # noqa: F401  (fixture)
from support import SUMMARY_LINES, headers_for_role, make_settings
from systems import debits, qmoney_sim, system  # noqa: F401  (fixtures)

MONGODB_URI = os.environ.get("TEST_MONGODB_URI")
STORE_LANES = ["memory", "mongodb"] if MONGODB_URI else ["memory"]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for line in config.stash.get(SUMMARY_LINES, []):
        terminalreporter.write_line(line)


@pytest.fixture(params=STORE_LANES)
def store_lane(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest_asyncio.fixture
async def store(store_lane: str) -> AsyncIterator[Store]:
    """The lane's store with the gateway's indexes, as start-up leaves it."""
    if store_lane == "memory":
        opened = open_store("memory://", "test")
        await opened.ensure_indexes(INDEXES)
        yield opened
        await opened.close()
        return
    name = f"test_{uuid.uuid4().hex[:16]}"
    opened = open_store(MONGODB_URI, name)
    await opened.ensure_indexes(INDEXES)
    yield opened
    await opened.client.drop_database(name)
    await opened.close()


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def notifier() -> RecordingNotifier:
    return RecordingNotifier()


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest_asyncio.fixture
async def start_gateway_with(
    store: Store, notifier: RecordingNotifier
) -> AsyncIterator[GatewayFactory]:
    """Start the real gateway (on the lane's store) with given settings; stopped after."""
    started: list[Gateway] = []

    async def start(settings: Settings | None = None, **kwargs: Any) -> Gateway:
        gateway = await start_gateway(
            settings or make_settings(), store=store, notifier=notifier, port=0, **kwargs
        )
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        await gateway.stop()


@pytest_asyncio.fixture
async def gateway(start_gateway_with: GatewayFactory, settings: Settings) -> Gateway:
    return await start_gateway_with(settings)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture
async def daraja_sim() -> AsyncIterator[DarajaSimulator]:
    simulator = DarajaSimulator(DarajaSimSettings(local_mode=True, validation_timeout=1.0))
    await simulator.start()
    yield simulator
    await simulator.stop()


HeadersFactory = Callable[[str, str], Awaitable[dict[str, str]]]


@pytest_asyncio.fixture
async def headers_for(http: aiohttp.ClientSession, gateway: Gateway) -> HeadersFactory:
    """Create a user with a role and return Authorization headers for it."""

    async def make(username: str, role: str) -> dict[str, str]:
        return await headers_for_role(http, gateway, username, role)

    return make


@pytest_asyncio.fixture
async def operator_headers(headers_for: HeadersFactory) -> dict[str, str]:
    return await headers_for("operator", "operator")
