"""The sandbox: gateway + Daraja simulator + in-memory store + demo data, one command."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import aiohttp

from server.clock import Clock
from server.config import Settings, load_settings
from server.demo import MPESA_INSUREES, QMONEY_INSUREE, QMONEY_PSP, USERS, DemoData, seed
from server.demo_history import History, seed_history
from server.money import format_amount
from server.mpesa.callback_urls import callback_urls
from server.mpesa.client import DarajaClient
from server.mpesa.registration import register_callback_urls
from server.providers import CallLog
from server.runtime import Gateway, start_gateway
from simulators.daraja import DarajaSimSettings, DarajaSimulator
from simulators.qmoney import QmoneySimSettings, QmoneySimulator

log = logging.getLogger("gateway.sandbox")

DEMO_ACCOUNT = "040404040"
# Paybill payments made through the simulator at start-up: one settles a policy, one
# has the wrong amount, one pays a Gambian insuree in KES; the last two stay unmatched.
DEMO_PAYMENTS = (("080808080", "1500.00"), ("090909090", "350.00"), ("070707070", "500.00"))
DEMO_MSISDN = "254708374149"
ARRIVAL_TIMEOUT_SECONDS = 20.0


@dataclass
class Sandbox:
    settings: Settings
    gateway: Gateway
    daraja: DarajaSimulator
    qmoney: QmoneySimulator
    session: aiohttp.ClientSession
    demo: DemoData | None = None

    async def stop(self) -> None:
        await self.gateway.stop()
        await self.daraja.stop()
        await self.qmoney.stop()
        await self.session.close()


def sandbox_settings(host: str, port: int) -> Settings:
    """Sandbox settings: gateway on `port`, Daraja simulator on `port + 1`, Qmoney
    simulator on `port + 2`. `port=0` (tests) gives every part a free port."""
    settings = load_settings(sandbox=True)

    def url(offset: int) -> str:
        return f"http://{host}:{port + offset if port else 0}"

    return replace(
        settings,
        server=replace(settings.server, host=host, port=port, public_url=url(0)),
        daraja=replace(settings.daraja, base_url=url(1)),
        qmoney=replace(settings.qmoney, base_url=url(2)),
        notifications=replace(settings.notifications, kind="record"),
    )


async def start_sandbox(host: str = "127.0.0.1", port: int = 8080,
                        progress: Callable[[str], None] = lambda _: None) -> Sandbox:
    settings = sandbox_settings(host, port)
    daraja = DarajaSimulator(DarajaSimSettings(
        consumer_key=settings.daraja.consumer_key,
        consumer_secret=settings.daraja.consumer_secret, local_mode=True))
    qmoney = QmoneySimulator(QmoneySimSettings(
        channel_id=settings.qmoney.channel_id, channel_secret=settings.qmoney.channel_secret,
        username=settings.qmoney.username, password=settings.qmoney.password,
        merchant_account=QMONEY_PSP["account"], merchant_pin=QMONEY_PSP["pin"]))
    daraja_url = await daraja.start(host, port + 1 if port else 0)
    qmoney_url = await qmoney.start(host, port + 2 if port else 0)
    settings = replace(settings, daraja=replace(settings.daraja, base_url=daraja_url),
                       qmoney=replace(settings.qmoney, base_url=qmoney_url))
    try:
        gateway = await start_gateway(settings, port=port)
    except BaseException:
        await daraja.stop()
        await qmoney.stop()
        raise
    settings = replace(settings, server=replace(settings.server, port=gateway.port,
                                                public_url=gateway.url))
    sandbox = Sandbox(settings, gateway, daraja, qmoney, aiohttp.ClientSession())
    try:
        sandbox.demo = await seed(gateway.services, date.today())
        progress("demo data: users, products, insurees, policies, PSPs")
        await seed_history(History(settings, gateway.services.store, gateway.providers,
                                   sandbox.session, qmoney_url, sandbox.demo), progress)
        client = daraja_client(settings, sandbox.session, gateway.providers.calls)
        registration = await register_callback_urls(settings, client)
        await _make_demo_payments(settings, client, gateway)
    except BaseException:
        await sandbox.stop()
        raise
    log.info("sandbox_ready gateway=%s daraja=%s qmoney=%s registration=%s", gateway.url,
             daraja_url, qmoney_url, registration.conversation_id)
    return sandbox


async def _make_demo_payments(settings: Settings, client: DarajaClient,
                              gateway: Gateway) -> None:
    _, before = await gateway.services.c2b.list_payments({}, 1, 0)
    for account, amount in DEMO_PAYMENTS:
        await client.simulate_payment(settings.daraja.shortcode, amount, DEMO_MSISDN, account,
                                      settings.daraja.register_version)
    async with asyncio.timeout(ARRIVAL_TIMEOUT_SECONDS):
        while True:
            _, stored = await gateway.services.c2b.list_payments({}, 1, 0)
            if stored >= before + len(DEMO_PAYMENTS):
                return
            await asyncio.sleep(0.05)


def daraja_client(settings: Settings, session: aiohttp.ClientSession,
                  calls: CallLog | None = None) -> DarajaClient:
    return DarajaClient(session, settings.daraja.base_url, settings.daraja.consumer_key,
                        settings.daraja.consumer_secret, Clock(),
                        settings.daraja.timeout_seconds, calls)


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


def _read_json(*path: str | int) -> str:
    """A shell filter printing one value of a JSON answer, e.g. ("policies", 0, "token")."""
    subscript = "".join(f'["{key}"]' if isinstance(key, str) else f"[{key}]" for key in path)
    return f"python -c 'import json,sys; print(json.load(sys.stdin){subscript})'"


def _login(settings: Settings, variable: str, username: str, password: str) -> str:
    credentials = json.dumps({"username": username, "password": password})
    return (f"{variable}=$(curl -s {settings.server.public_url}/api/v1/auth/token \\\n"
            f"  -d '{credentials}' | {_read_json('access_token')})")


def _operator_login(settings: Settings) -> str:
    return _login(settings, "OP", "operator", "sandbox-operator")


def c2b_walkthrough(settings: Settings) -> str:
    """Shell commands: a paybill payment through the simulator, then the payment list."""
    daraja, gateway = settings.daraja.base_url, settings.server.public_url
    body = json.dumps({"ShortCode": settings.daraja.shortcode,
                       "CommandID": "CustomerPayBillOnline", "Amount": "1500.00",
                       "Msisdn": DEMO_MSISDN, "BillRefNumber": DEMO_ACCOUNT})
    return "\n".join([
        "TOKEN=$(curl -s -u sandbox-key:sandbox-secret \\",
        f"  '{daraja}/oauth/v1/generate?grant_type=client_credentials' \\",
        f"  | {_read_json('access_token')})",
        f'curl -s {daraja}/mpesa/c2b/v2/simulate -H "Authorization: Bearer $TOKEN" \\',
        f"  -H 'Content-Type: application/json' -d '{body}'; echo",
        "sleep 1",
        _operator_login(settings),
        f"curl -s -H \"Authorization: Bearer $OP\" '{gateway}/api/v1/c2b/payments?limit=5'; echo",
    ])


def qmoney_walkthrough(settings: Settings, demo: DemoData) -> str:
    """Shell commands: start a debit, read the OTP the payer got, process it, see the policy."""
    gateway, qmoney = settings.server.public_url, settings.qmoney.base_url
    policy, psp = demo.qmoney_policy, demo.qmoney_psp
    body = json.dumps({"policy_uuid": policy["_id"], "psp_uuid": psp["_id"],
                       "amount": format_amount(policy["value"], policy["currency"])})
    auth = '-H "Authorization: Bearer $OP" -H "Content-Type: application/json"'
    wallet = QMONEY_INSUREE["wallet"]
    return "\n".join([
        _operator_login(settings),
        f"TXN=$(curl -s {auth} {gateway}/api/v1/transactions \\",
        f"  -d '{body}' | {_read_json('uuid')})",
        f"OTP=$(curl -s {qmoney}/_sim/otp/{wallet} | {_read_json('otp')})",
        f"curl -s {auth} {gateway}/api/v1/transactions/$TXN/process \\",
        '  -d "{\\"otp\\": \\"$OTP\\"}"; echo',
        f"curl -s {auth} {gateway}/api/v1/policies/{policy['_id']}; echo",
    ])


def provider_walkthrough(settings: Settings, demo: DemoData) -> str:
    """Shell commands: a payment provider verifies an insuree and pays the idle policy."""
    gateway, policy = settings.server.public_url, demo.provider_policy
    auth = '-H "Authorization: Bearer $AFRI" -H "Content-Type: application/json"'
    verify = f"{gateway}/api/v1/insurees/{policy['chf_id']}/policies"
    body = json.dumps({"chf_id": policy["chf_id"],
                       "amount": format_amount(policy["value"], policy["currency"]),
                       "psp_transaction_id": "AFR-DEMO-0001",
                       "policy": {"token": "TOKEN", "product_code": policy["product_code"],
                                  "product_name": policy["product_name"]}})
    body = body.replace('"TOKEN"', "\"'$TOKEN'\"")
    return "\n".join([
        _login(settings, "AFRI", "afrimoney", "sandbox-afrimoney"),
        f"curl -s {auth} {verify}; echo",
        f"TOKEN=$(curl -s {auth} {verify} | {_read_json('policies', 0, 'token')})",
        f"curl -s {auth} {gateway}/api/v1/payments \\",
        f"  -d '{body}'; echo",
    ])


def _indented(commands: str) -> str:
    return "\n".join(f"    {line}" for line in commands.splitlines())


def summary(sandbox: Sandbox) -> str:
    settings = sandbox.settings
    validation_url, confirmation_url = callback_urls(settings.server.public_url,
                                                     settings.c2b.callback_secret)
    port_option = "" if settings.server.port == 8080 else f" --port {settings.server.port}"
    users = "\n".join(f"    {name} / {password} ({role})" for name, password, role in USERS)
    policy = sandbox.demo.qmoney_policy
    return f"""
Sandbox is running (in-memory store: everything is lost on exit).

  Gateway            {settings.server.public_url}
  Dashboard          {settings.server.public_url}/dashboard  (sign in as operator)
  API description    {settings.server.public_url}/docs  ({settings.server.public_url}/openapi.json)
  Daraja simulator   {settings.daraja.base_url}  (key sandbox-key / secret sandbox-secret,
                     shortcode {settings.daraja.shortcode}, control API under /_sim/)
  Qmoney simulator   {settings.qmoney.base_url}  (payer wallet {QMONEY_INSUREE["wallet"]}, \
control API under /_sim/)
  Callback URLs      {validation_url}
                     {confirmation_url}

  Demo users:
{users}
  Demo data: insurees with idle policies: {QMONEY_INSUREE["chf_id"]} (Qmoney wallet \
{QMONEY_INSUREE["wallet"]}, {format_amount(policy["value"], policy["currency"])} \
{policy["currency"]}),
  {sandbox.demo.provider_policy["chf_id"]} (for the payment provider, GMD), \
{", ".join(item["chf_id"] for item in MPESA_INSUREES)} (M-Pesa, 1500.00 KES);
  {len(DEMO_PAYMENTS)} paybill payments made through the Daraja simulator (one settled, \
two unmatched).

M-Pesa: simulate a paybill payment to insuree {DEMO_ACCOUNT} and watch it arrive and settle
the policy (in another terminal):

    python run.py simulate-payment{port_option} --account {DEMO_ACCOUNT} --amount 1500.00

or with curl:

{_indented(c2b_walkthrough(settings))}

Qmoney: an OTP debit for the idle policy, read the OTP the payer received, process it,
and see the policy active (status 2):

{_indented(qmoney_walkthrough(settings, sandbox.demo))}

Payment provider (Afrimoney, user afrimoney / sandbox-afrimoney): verify insuree
{sandbox.demo.provider_policy["chf_id"]}, then pay its idle policy (repeat the last command: \
the same answer, one payment):

{_indented(provider_walkthrough(settings, sandbox.demo))}

Press Ctrl-C to stop.
"""
