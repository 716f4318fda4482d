"""Fixtures the simulator tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio

from simulators.daraja import DarajaSimSettings, DarajaSimulator

StartSim = Callable[..., Awaitable[str]]


@pytest_asyncio.fixture
async def start_daraja() -> AsyncIterator[StartSim]:
    """Start Daraja simulators (local_mode on, settings overridable); each answers its
    base URL, and all are stopped afterwards."""
    started: list[DarajaSimulator] = []

    async def start(**overrides: Any) -> str:
        simulator = DarajaSimulator(DarajaSimSettings(**{"local_mode": True, **overrides}))
        started.append(simulator)
        return await simulator.start()

    yield start
    for simulator in started:
        await simulator.stop()
