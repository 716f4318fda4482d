"""Running systems for end-to-end tests: the gateway wired to a simulator, as fixtures.

The fixtures are registered in conftest.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest_asyncio

from server.kernel.clock import Clock
from server.mpesa.client import DarajaClient
from server.mpesa.registration import register_callback_urls
from server.mpesa.settings import DarajaSettings
from simulators.qmoney import QmoneySimSettings, QmoneySimulator

from support import (
    BASIC_GMD,
    PAYMENTS,
    ensure_product,
    headers_for_role,
    idle_policy,
    make_settings,
    request_json,
    sim_control,
    wait_until,
)

WALLET = "5811724c"


class ManualClock(Clock):
    """Real time plus an offset the test can move forward."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class Debits:
    """A gateway wired to a Qmoney simulator, with demo data and an operator."""

    def __init__(self, http, gateway, sim, headers, clock, store) -> None:
        self.http, self.gateway, self.sim = http, gateway, sim
        self.headers, self.clock, self.store = headers, clock, store
        self.services = gateway.services

    async def policy(
        self, chf_id: str = "070707070", wallet: str = WALLET, amount: str = "500.00"
    ) -> dict:
        return await idle_policy(self.services, chf_id, amount=amount, wallet=wallet)

    async def api(self, method: str, path: str, body=None) -> tuple[int, dict]:
        return await request_json(
            self.http, method, f"{self.gateway.url}{path}", body, headers=self.headers
        )

    async def start(
        self, policy: dict, amount: str = "500.00", psp: dict | None = None
    ) -> tuple[int, dict]:
        return await self.api(
            "POST",
            "/api/v1/transactions",
            {"policy_uuid": policy["_id"], "psp_uuid": (psp or self.psp)["_id"], "amount": amount},
        )

    async def process(self, transaction: dict, otp: str) -> tuple[int, dict]:
        return await self.api(
            "POST", f"/api/v1/transactions/{transaction['uuid']}/process", {"otp": otp}
        )

    async def control(self, method: str, path: str, body=None) -> dict:
        return await sim_control(self.http, self.sim.base_url, method, path, body)

    async def otp(self, wallet: str = WALLET) -> str:
        return (await self.control("GET", f"otp/{wallet}"))["otp"]

    async def requests(self, path: str) -> list[dict]:
        items = (await self.control("GET", "requests"))["items"]
        return [item for item in items if item["path"] == path]

    async def answered(self, path: str) -> None:
        """Wait until the simulator has acted on every request to `path` it received
        (answered it, however late, or dropped it without acting)."""

        async def all_answered() -> bool:
            return all(
                item["status"] is not None or item["fault"] == "drop"
                for item in await self.requests(path)
            )

        await wait_until(all_answered, f"the simulator to answer every {path} request")

    async def balance(self, wallet: str = WALLET) -> str:
        return (await self.control("GET", "state"))["wallets"][wallet]


@pytest_asyncio.fixture
async def qmoney_sim():
    simulator = QmoneySimulator(QmoneySimSettings(token_expiry="3600"))
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest_asyncio.fixture
async def debits(http, start_gateway_with, qmoney_sim, store) -> Debits:
    clock = ManualClock()
    settings = make_settings(qmoney={"base_url": qmoney_sim.base_url, "timeout_seconds": 2.0})
    gateway = await start_gateway_with(settings, clock=clock)
    services = gateway.services
    headers = await headers_for_role(http, gateway, "olga", "operator")
    system = Debits(http, gateway, qmoney_sim, headers, clock, store)
    await ensure_product(services, BASIC_GMD)
    system.psp = await services.psps.create(
        {
            "name": "Qmoney",
            "kind": "qmoney",
            "account": "14001502",
            "currency": "GMD",
            "pin": "1234",
            "is_external_api": False,
            "username": None,
            "active": True,
        }
    )
    return system


class System:
    """A running gateway registered with a running Daraja simulator."""

    def __init__(self, http, gateway, sim, settings, store, notifier) -> None:
        self.http, self.gateway, self.sim = http, gateway, sim
        self.settings, self.store, self.notifier = settings, store, notifier
        self.daraja = DarajaSettings(
            base_url=sim.base_url,
            consumer_key="sandbox-key",
            consumer_secret="sandbox-secret",
            timeout_seconds=5.0,
        )
        self.client = DarajaClient(http, self.daraja, Clock())

    async def register(self, **daraja) -> None:
        settings = replace(self.settings, daraja=replace(self.settings.daraja, **daraja))
        await register_callback_urls(
            settings.server.public_url, settings.daraja, settings.c2b, self.client
        )

    async def control(self, method: str, path: str, body: dict | None = None) -> dict:
        return await sim_control(self.http, self.sim.base_url, method, path, body)

    async def pay(
        self, amount: str = "150.00", account: str = "070707070", version: str = "v2"
    ) -> dict:
        """Simulate a paybill payment and wait until the simulator has finished with it."""
        conversation = await self.client.simulate_payment(
            "600984", amount, "254708374149", account, version
        )

        async def finished() -> dict | None:
            txn = await self.control("GET", f"transactions/{conversation}")
            deliveries = await self.control("GET", f"deliveries?trans_id={txn['trans_id']}")
            done = [item for item in deliveries["items"] if item.get("finished_at")]
            if txn["status"] != "pending" and len(done) == len(deliveries["items"]):
                return {**txn, "deliveries": deliveries["items"]}
            return None

        return await wait_until(
            finished, f"the simulator to finish transaction {conversation}", every=0.05
        )

    async def payments(self) -> list[dict]:
        return await self.store.collection(PAYMENTS).find({}).to_list(None)


@pytest_asyncio.fixture
async def system(http, start_gateway_with, daraja_sim, store, notifier) -> System:
    settings = make_settings(daraja={"base_url": daraja_sim.base_url})
    gateway = await start_gateway_with(settings)
    settings = replace(settings, server=replace(settings.server, public_url=gateway.url))
    system = System(http, gateway, daraja_sim, settings, store, notifier)
    await system.register()
    return system
