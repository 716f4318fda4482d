"""The sandbox: gateway + Daraja simulator + in-memory store + demo data, one command."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from server.clock import Clock
from server.config import Settings, load_settings
from server.mpesa.callback_urls import callback_urls
from server.mpesa.client import DarajaClient
from server.mpesa.registration import register_callback_urls
from server.runtime import Gateway, start_gateway
from simulators.daraja import DarajaSimSettings, DarajaSimulator

log = logging.getLogger("gateway.sandbox")

DEMO_USERS = (("admin", "sandbox-admin", "admin"), ("operator", "sandbox-operator", "operator"))
DEMO_ACCOUNT = "070707070"
# Paybill payments made through the simulator at start-up, so the lists are not empty.
DEMO_PAYMENTS = (("070707070", "500.00"), ("080808080", "1200.00"), ("090909090", "350.00"))
DEMO_MSISDN = "254708374149"
ARRIVAL_TIMEOUT_SECONDS = 20.0


@dataclass
class Sandbox:
    settings: Settings
    gateway: Gateway
    daraja: DarajaSimulator
    session: aiohttp.ClientSession

    async def stop(self) -> None:
        await self.gateway.stop()
        await self.daraja.stop()
        await self.session.close()


def sandbox_settings(host: str, port: int) -> Settings:
    """Sandbox settings; gateway on `port`, Daraja simulator on `port + 1`.

    `port=0` is for tests: the caller sets real ports once they are bound."""
    settings = load_settings(sandbox=True)
    return replace(
        settings,
        server=replace(settings.server, host=host, port=port,
                       public_url=f"http://{host}:{port}"),
        daraja=replace(settings.daraja, base_url=f"http://{host}:{port + 1 if port else 0}"),
        notifications=replace(settings.notifications, kind="record"),
    )


async def start_sandbox(host: str = "127.0.0.1", port: int = 8080) -> Sandbox:
    settings = sandbox_settings(host, port)
    simulator = DarajaSimulator(DarajaSimSettings(
        consumer_key=settings.daraja.consumer_key,
        consumer_secret=settings.daraja.consumer_secret, local_mode=True))
    daraja_url = await simulator.start(host, port + 1 if port else 0)
    gateway = await start_gateway(settings, port=port)
    settings = replace(settings,
                       server=replace(settings.server, port=gateway.port, public_url=gateway.url),
                       daraja=replace(settings.daraja, base_url=daraja_url))
    session = aiohttp.ClientSession()
    sandbox = Sandbox(settings, gateway, simulator, session)
    try:
        for username, password, role in DEMO_USERS:
            await gateway.services.auth.create_user(username, password, role)
        client = daraja_client(settings, session)
        registration = await register_callback_urls(settings, client)
        await _make_demo_payments(settings, client, gateway)
    except BaseException:
        await sandbox.stop()
        raise
    log.info("sandbox_ready gateway=%s daraja=%s registration=%s", gateway.url, daraja_url,
             registration.conversation_id)
    return sandbox


async def _make_demo_payments(settings: Settings, client: DarajaClient,
                              gateway: Gateway) -> None:
    for account, amount in DEMO_PAYMENTS:
        await client.simulate_payment(settings.daraja.shortcode, amount, DEMO_MSISDN, account,
                                      settings.daraja.register_version)
    async with asyncio.timeout(ARRIVAL_TIMEOUT_SECONDS):
        while True:
            _, stored = await gateway.services.c2b.list_payments({}, 1, 0)
            if stored >= len(DEMO_PAYMENTS):
                return
            await asyncio.sleep(0.05)


def daraja_client(settings: Settings, session: aiohttp.ClientSession) -> DarajaClient:
    return DarajaClient(session, settings.daraja.base_url, settings.daraja.consumer_key,
                        settings.daraja.consumer_secret, Clock(),
                        settings.daraja.timeout_seconds)


async def simulate_paybill_payment(settings: Settings, account: str, amount: str, msisdn: str,
                                   username: str, password: str) -> dict[str, Any]:
    """Pay through the Daraja (simulator's) simulate API, then wait until the gateway
    lists the new payment and return it as the API shows it."""
    gateway = settings.server.public_url
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        async with session.post(f"{gateway}/api/v1/auth/token",
                                json={"username": username, "password": password}) as answer:
            headers = {"Authorization": f"Bearer {(await answer.json())['access_token']}"}
        listing = f"{gateway}/api/v1/c2b/payments"
        params = {"bill_ref": account, "limit": "50"}

        async def trans_ids() -> tuple[set[str], list[dict[str, Any]]]:
            async with session.get(listing, params=params, headers=headers) as answer:
                items = (await answer.json())["items"]
            return {item["trans_id"] for item in items}, items

        before, _ = await trans_ids()
        await daraja_client(settings, session).simulate_payment(
            settings.daraja.shortcode, amount, msisdn, account, settings.daraja.register_version)
        async with asyncio.timeout(ARRIVAL_TIMEOUT_SECONDS):
            while True:
                seen, items = await trans_ids()
                new = [item for item in items if item["trans_id"] not in before]
                if new:
                    return new[0]
                await asyncio.sleep(0.2)


def summary(sandbox: Sandbox) -> str:
    settings = sandbox.settings
    validation_url, confirmation_url = callback_urls(settings.server.public_url,
                                                     settings.c2b.callback_secret)
    port_option = "" if settings.server.port == 8080 else f" --port {settings.server.port}"
    simulate_body = json.dumps({"ShortCode": settings.daraja.shortcode,
                                "CommandID": "CustomerPayBillOnline", "Amount": "150.00",
                                "Msisdn": DEMO_MSISDN, "BillRefNumber": DEMO_ACCOUNT})
    users = "\n".join(f"    {name} / {password} ({role})" for name, password, role in DEMO_USERS)
    return f"""
Sandbox is running (in-memory store: everything is lost on exit).
{len(DEMO_PAYMENTS)} demo paybill payments have been made through the simulator.

  Gateway            {settings.server.public_url}
  Daraja simulator   {settings.daraja.base_url}  (key sandbox-key / secret sandbox-secret,
                     shortcode {settings.daraja.shortcode}, control API under /_sim/)
  Callback URLs      {validation_url}
                     {confirmation_url}

  Demo users:
{users}

Simulate a paybill payment and watch it arrive (in another terminal):

    python run.py simulate-payment{port_option} --account {DEMO_ACCOUNT} --amount 150.00

or with curl:

    TOKEN=$(curl -s -u sandbox-key:sandbox-secret \\
      '{settings.daraja.base_url}/oauth/v1/generate?grant_type=client_credentials' \\
      | python -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
    curl -s {settings.daraja.base_url}/mpesa/c2b/v2/simulate -H "Authorization: Bearer $TOKEN" \\
      -H 'Content-Type: application/json' \\
      -d '{simulate_body}'
    OP=$(curl -s {settings.server.public_url}/api/v1/auth/token \\
      -d '{{"username": "operator", "password": "sandbox-operator"}}' \\
      | python -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
    curl -s -H "Authorization: Bearer $OP" \\
      '{settings.server.public_url}/api/v1/c2b/payments?limit=5'

Press Ctrl-C to stop.
"""
