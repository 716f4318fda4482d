"""Restart safety on a store that survives the gateway (the MongoDB lane): kill the gateway
in the middle of a burst of confirmations, restart it, replay the inbox; every
confirmation the simulator saw acknowledged is stored exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from pathlib import Path

import pytest

from server.kernel.clock import Clock
from server.kernel.store import open_store
from server.mpesa.client import DarajaClient
from server.mpesa.settings import DarajaSettings

from support import PAYMENTS as PAYMENTS_COLLECTION
from support import TEST_ENV, serve, sim_control, wait_until

ROOT = Path(__file__).resolve().parent.parent
MONGODB_URI = os.environ.get("TEST_MONGODB_URI")
PAYMENTS = 120


async def start(env: dict[str, str]) -> asyncio.subprocess.Process:
    process, _ = await serve(env)
    return process


@pytest.mark.asyncio
@pytest.mark.skipif(not MONGODB_URI, reason="needs a MongoDB server: set TEST_MONGODB_URI")
async def test_killed_gateway_loses_no_acknowledged_confirmation(http, daraja_sim) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    database = f"restart_{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        **TEST_ENV,
        "GATEWAY_STORE_URI": MONGODB_URI,
        "GATEWAY_STORE_DATABASE": database,
        "GATEWAY_SERVER_PORT": str(port),
        "GATEWAY_SERVER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "GATEWAY_DARAJA_BASE_URL": daraja_sim.base_url,
    }
    store = open_store(MONGODB_URI, database)
    gateway = await start(env)
    try:
        register = await asyncio.create_subprocess_exec(
            sys.executable,
            "run.py",
            "register-urls",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
        )
        assert await register.wait() == 0
        client = DarajaClient(
            http,
            DarajaSettings(
                base_url=daraja_sim.base_url,
                consumer_key="sandbox-key",
                consumer_secret="sandbox-secret",
                timeout_seconds=5.0,
            ),
            Clock(),
        )

        async def pay(number: int) -> None:
            await client.simulate_payment(
                "600984", f"{10 + number}.00", "254708374149", f"ACC{number}"
            )

        async def confirmations() -> list[dict]:
            return (
                await sim_control(http, daraja_sim.base_url, "GET", "deliveries?kind=confirmation")
            )["items"]

        def acknowledged_in(items: list[dict]) -> set[str]:
            return {
                item["trans_id"]
                for item in items
                if item["outcome"] == "answered"
                and isinstance(item["answer"], dict)
                and item["answer"].get("ResultCode") == 0
            }

        async def under_way() -> bool:
            return bool(acknowledged_in(await confirmations()))

        async def all_finished() -> list[dict] | None:
            items = await confirmations()
            done = len(items) == PAYMENTS and all(item["finished_at"] for item in items)
            return items if done else None

        first = asyncio.gather(*(pay(number) for number in range(PAYMENTS)))
        await wait_until(under_way, "the gateway to acknowledge a first confirmation")
        gateway.send_signal(signal.SIGKILL)  # no goodbye, mid-burst
        await gateway.wait()
        await first
        gateway = await start(env)  # same port, same store
        deliveries = await wait_until(
            all_finished, f"the simulator to finish {PAYMENTS} confirmations", within=30, every=0.1
        )
        replay = await asyncio.create_subprocess_exec(
            sys.executable,
            "run.py",
            "replay-inbox",
            "--grace",
            "0",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert await replay.wait() == 0
        acknowledged = acknowledged_in(deliveries)
        assert len(acknowledged) < PAYMENTS  # the kill was mid-burst
        stored = [
            payment["trans_id"]
            for payment in await store.collection(PAYMENTS_COLLECTION).find({}).to_list(None)
        ]
        assert len(stored) == len(set(stored))  # once each
        assert acknowledged <= set(stored)  # none acknowledged is lost
    finally:
        gateway.send_signal(signal.SIGTERM)
        await gateway.wait()
        await store.client.drop_database(database)
        await store.close()
