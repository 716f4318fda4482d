"""The sandbox: gateway + Daraja simulator + in-memory store + demo data, one command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from datetime import date
from typing import Any, Protocol

import aiohttp

from server.insurance.documents import Policy
from server.insurance.settings import BUILT_IN, OPENIMIS
from server.integrations.transport import CallLog, ProviderRejected, ProviderUnavailable
from server.jobs.settings import JobsSettings
from server.kernel.clock import Clock
from server.kernel.money import format_amount
from server.mpesa.callback_urls import callback_urls, stk_callback_url
from server.mpesa.client import DarajaClient
from server.mpesa.registration import register_callback_urls, register_pull
from server.notifications.settings import DELIVERY_REPORT_PATH
from server.sandbox.demo import (
    MPESA_INSUREES,
    QMONEY_INSUREE,
    QMONEY_PSP,
    RECOVERY_ACCOUNT,
    STK_CANCEL_PHONE,
    STK_INSUREE,
    USERS,
    DemoData,
    seed,
)
from server.sandbox.demo_history import History, seed_history
from server.startup.config import Settings, env_name, load_settings
from server.startup.listen import listen, listen_error
from server.startup.runtime import Gateway, start_gateway
from simulators.daraja import (
    SANDBOX_CERTIFICATE_PATH,
    SANDBOX_PASSKEY,
    SANDBOX_SHORTCODES,
    DarajaSimSettings,
    DarajaSimulator,
)
from simulators.openimis import OpenimisSimSettings, OpenimisSimulator
from simulators.qmoney import QmoneySimSettings, QmoneySimulator
from simulators.sms import SmsSimSettings, SmsSimulator

log = logging.getLogger("gateway.sandbox")

DEMO_ACCOUNT = "040404040"
# A payer of 090909090 who typed one digit too few: no insuree has that account number,
# but the amount is the value of 090909090's idle policy, so an operator can allocate it.
MISTYPED_ACCOUNT, MISTYPED_FOR = "09090909", "090909090"
# Paybill payments made through the simulator at start-up: one settles a policy, one
# has the wrong amount, one pays a Gambian insuree in KES, one has a mistyped account;
# the last three stay unmatched.
DEMO_PAYMENTS = (
    ("080808080", "1500.00"),
    ("090909090", "350.00"),
    ("070707070", "500.00"),
    (MISTYPED_ACCOUNT, "1500.00"),
)
# Beside openIMIS every policy is in openimis.currency: the Gambian insuree's payment
# would settle the policy the Qmoney walkthrough debits, so it is not made.
CURRENCY_DEMO_ACCOUNT = "070707070"


def demo_payments(settings: Settings) -> tuple[tuple[str, str], ...]:
    if settings.insurance.backend == BUILT_IN:
        return DEMO_PAYMENTS
    return tuple(item for item in DEMO_PAYMENTS if item[0] != CURRENCY_DEMO_ACCOUNT)


DEMO_MSISDN = "254708374149"
# The simulator's magic payer whose confirmation is never delivered.
NEVER_DELIVERED_MSISDN = "254700000103"
# The phone Pull Transactions is registered for in the sandbox.
SANDBOX_NOMINATED_NUMBER = "254722000000"
# How long the printed M-Pesa Express walkthroughs wait for the payer's answer (the
# simulated payer answers after about a second), polling once a second.
STK_WAIT_SECONDS = 10
ARRIVAL_TIMEOUT_SECONDS = 20.0
GATEWAY_TIMEOUT_SECONDS = 10.0
# The longest interval of a job in the sandbox (sandbox_settings).
SANDBOX_JOB_INTERVAL_SECONDS = 15.0
# How often the sandbox sends the payers' SMS receipts.
SANDBOX_SMS_INTERVAL_SECONDS = 2.0
# How long simulate-payment waits for the payer's SMS receipt.
SMS_WAIT_SECONDS = 10.0
# Why a paybill payment stays unmatched, as simulate-payment explains it.
UNMATCHED_REASONS = {
    "unknown_account": "no insuree has this account number",
    "no_idle_policy": "the insuree has no policy awaiting payment",
    "amount_mismatch": "the amount is not the value of an idle policy of the insuree",
    "several_candidates": "several idle policies of the insuree have this value",
    "policy_not_idle": "the policy is no longer awaiting payment",
    "payment_in_progress": "another payment of the policy is under way",
}


class NothingPaid(Exception):
    """simulate-payment stopped before any money moved; the message says why and where."""


@dataclass(frozen=True)
class Allocatable:
    """An unmatched demo payment and the idle policy it can be allocated to."""

    trans_id: str
    policy: Policy


@dataclass
class Sandbox:
    settings: Settings
    gateway: Gateway
    daraja: DarajaSimulator
    qmoney: QmoneySimulator
    sms: SmsSimulator
    session: aiohttp.ClientSession
    demo: DemoData | None = None
    allocatable: Allocatable | None = None
    # With `--insurance openimis`: the openIMIS simulator the gateway is pointed at.
    openimis: OpenimisSimulator | None = None

    async def stop(self) -> None:
        await self.gateway.stop()
        await self.daraja.stop()
        await self.qmoney.stop()
        await self.sms.stop()
        if self.openimis is not None:
            await self.openimis.stop()
        await self.session.close()


def sandbox_settings(host: str, port: int, insurance: str = BUILT_IN) -> Settings:
    """Sandbox settings: gateway on `port`, Daraja simulator on `port + 1`, Qmoney
    simulator on `port + 2`, with `insurance` openimis the openIMIS simulator on
    `port + 3`. `port=0` (tests) gives every part a free port."""
    settings = load_settings(sandbox=True)

    def url(offset: int) -> str:
        return f"http://{host}:{port + offset if port else 0}"

    return replace(
        settings,
        server=replace(settings.server, host=host, port=port, public_url=url(0)),
        daraja=replace(
            settings.daraja,
            base_url=url(1),
            # Reconciliation against the simulator: its certificate, the pull registered
            # at start.
            certificate_path=str(SANDBOX_CERTIFICATE_PATH),
            pull_enabled=True,
            pull_nominated_number=SANDBOX_NOMINATED_NUMBER,
        ),
        qmoney=replace(settings.qmoney, base_url=url(2)),
        # Payers' receipts through the SMS simulator (port N+4), sent within seconds.
        notifications=replace(
            settings.notifications,
            kind="africastalking",
            base_url=url(4),
            send_interval_seconds=SANDBOX_SMS_INTERVAL_SECONDS,
        ),
        jobs=short_job_intervals(settings.jobs, os.environ),
        insurance=replace(settings.insurance, backend=insurance),
        openimis=replace(settings.openimis, url=url(3)),
    )


def short_job_intervals(jobs: JobsSettings, env: Mapping[str, str]) -> JobsSettings:
    """Every job at most SANDBOX_JOB_INTERVAL_SECONDS apart, so what the jobs do shows
    within seconds; an interval the environment sets is kept."""
    return replace(
        jobs,
        **{
            spec.name: min(getattr(jobs, spec.name), SANDBOX_JOB_INTERVAL_SECONDS)
            for spec in fields(jobs)
            if spec.name.endswith("_interval_seconds") and env_name("jobs", spec.name) not in env
        },
    )


async def start_sandbox(
    host: str = "127.0.0.1",
    port: int = 8080,
    progress: Callable[[str], None] = lambda _: None,
    insurance: str = BUILT_IN,
) -> Sandbox:
    settings = sandbox_settings(host, port, insurance)
    sockets = listen(host, port, "the gateway")
    # The gateway's own address as the simulators call it back (M-Pesa Express prompts
    # carry it, SMS delivery reports go to it), known once its socket is bound.
    public_url = f"http://{host}:{sockets[0].getsockname()[1]}"
    report_path = DELIVERY_REPORT_PATH.format(secret=settings.notifications.delivery_report_secret)
    sms = SmsSimulator(SmsSimSettings(delivery_report_url=public_url + report_path))
    daraja = DarajaSimulator(
        DarajaSimSettings(
            consumer_key=settings.daraja.consumer_key,
            consumer_secret=settings.daraja.consumer_secret,
            local_mode=True,
            stk_passkeys=stk_passkeys(settings),
        )
    )
    qmoney = QmoneySimulator(
        QmoneySimSettings(
            channel_id=settings.qmoney.channel_id,
            channel_secret=settings.qmoney.channel_secret,
            username=settings.qmoney.username,
            password=settings.qmoney.password,
            merchant_account=QMONEY_PSP["account"],
            merchant_pin=QMONEY_PSP["pin"],
        )
    )
    openimis = (
        OpenimisSimulator(
            OpenimisSimSettings(users={settings.openimis.username: settings.openimis.password})
        )
        if insurance == OPENIMIS
        else None
    )
    try:
        if openimis is not None:
            openimis_url = await start_simulator(
                openimis, host, port + 3 if port else 0, "the openIMIS simulator"
            )
            settings = replace(settings, openimis=replace(settings.openimis, url=openimis_url))
        daraja_url = await start_simulator(
            daraja, host, port + 1 if port else 0, "the Daraja simulator"
        )
        qmoney_url = await start_simulator(
            qmoney, host, port + 2 if port else 0, "the Qmoney simulator"
        )
        sms_url = await start_simulator(sms, host, port + 4 if port else 0, "the SMS simulator")
        settings = replace(
            settings,
            server=replace(settings.server, public_url=public_url),
            daraja=replace(settings.daraja, base_url=daraja_url),
            qmoney=replace(settings.qmoney, base_url=qmoney_url),
            notifications=replace(settings.notifications, base_url=sms_url),
        )
        gateway = await start_gateway(settings, sockets=sockets)
    except BaseException:
        await daraja.stop()
        await qmoney.stop()
        await sms.stop()
        if openimis is not None:
            await openimis.stop()
        _close(sockets)
        raise
    settings = replace(
        settings, server=replace(settings.server, port=gateway.port, public_url=gateway.url)
    )
    sandbox = Sandbox(
        settings, gateway, daraja, qmoney, sms, aiohttp.ClientSession(), openimis=openimis
    )
    try:
        sandbox.demo = await seed(
            gateway.services, date.today(), None if openimis is None else openimis.seed
        )
        if openimis is None:
            progress("demo data: users, products, insurees, policies, PSPs")
            with _staged_failures_off_the_console():
                await seed_history(
                    History(
                        settings,
                        gateway.services.store,
                        gateway.providers,
                        sandbox.session,
                        qmoney_url,
                        sandbox.demo,
                    ),
                    progress,
                )
        else:
            # The demo history is made with the gateway's own insurees: none here.
            progress("demo data: users and PSPs here; insurees and policies in openIMIS")
        client = daraja_client(settings, sandbox.session, gateway.providers.calls)
        registration = await register_callback_urls(
            settings.server.public_url, settings.daraja, settings.c2b, client
        )
        await register_pull(settings.server.public_url, settings.daraja, settings.c2b, client)
        await _make_demo_payments(settings, client, gateway)
        sandbox.allocatable = await _allocatable(gateway)
    except BaseException:
        await sandbox.stop()
        raise
    log.info(
        "sandbox_ready gateway=%s daraja=%s qmoney=%s registration=%s",
        gateway.url,
        daraja_url,
        qmoney_url,
        registration.conversation_id,
    )
    return sandbox


def _openimis_line(sandbox: Sandbox) -> str:
    """The summary's line for the openIMIS simulator, when the sandbox runs one."""
    if sandbox.openimis is None:
        return ""
    settings = sandbox.settings.openimis
    return (
        f"  openIMIS simulator {settings.url}  (GraphQL at /api/graphql, user "
        f"{settings.username} / {settings.password}; the insurees and policies are there, "
        "and each premium the gateway settles is written there within seconds by "
        "write-premiums; control API under /_sim/)\n"
    )


def stk_passkeys(settings: Settings) -> dict[str, str]:
    """The M-Pesa Express shortcodes the sandbox's Daraja simulator knows: 600984 and
    174379 with Daraja's published sandbox passkey (what the gateway's sandbox settings
    use, and third-party clients' sandbox defaults), and the gateway's own STK shortcode
    with the gateway's passkey, so its prompts are taken even when the environment
    changes either."""
    return {
        **dict.fromkeys(SANDBOX_SHORTCODES, SANDBOX_PASSKEY),
        settings.daraja.stk_business_shortcode: settings.daraja.passkey,
    }


class Startable(Protocol):
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str: ...


async def start_simulator(simulator: Startable, host: str, port: int, what: str) -> str:
    """Start a simulator; a port it cannot have is one line naming it (StartupError)."""
    try:
        return await simulator.start(host, port)
    except OSError as err:
        raise listen_error(host, port, err, what) from None


def _close(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


@contextlib.contextmanager
def _staged_failures_off_the_console() -> Iterator[None]:
    """The history stages failures on purpose (a lost Qmoney answer, an unreadable
    confirmation): while it is written, only errors reach the log, so start-up shows no
    warning that is not a real one. The staged events stay visible on the dashboard."""
    gateway_log = logging.getLogger("gateway")
    level = gateway_log.level
    gateway_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        gateway_log.setLevel(level)


async def _make_demo_payments(settings: Settings, client: DarajaClient, gateway: Gateway) -> None:
    _, before = await gateway.services.c2b.list_payments({}, 1, 0)
    payments = demo_payments(settings)
    for account, amount in payments:
        await client.simulate_payment(
            settings.daraja.shortcode,
            amount,
            DEMO_MSISDN,
            account,
            settings.daraja.register_version,
        )
    async with asyncio.timeout(ARRIVAL_TIMEOUT_SECONDS):
        while True:
            _, stored = await gateway.services.c2b.list_payments({}, 1, 0)
            if stored >= before + len(payments):
                return
            await asyncio.sleep(0.05)


async def _allocatable(gateway: Gateway) -> Allocatable:
    """The mistyped demo payment and the idle policy it fits."""
    [payment], _ = await gateway.services.c2b.list_payments({"bill_ref": MISTYPED_ACCOUNT}, 1, 0)
    [policy] = await gateway.services.policies.idle_of(MISTYPED_FOR)
    return Allocatable(payment["trans_id"], policy)


def daraja_client(
    settings: Settings, session: aiohttp.ClientSession, calls: CallLog | None = None
) -> DarajaClient:
    return DarajaClient(session, settings.daraja, Clock(), calls)


async def simulate_paybill_payment(
    settings: Settings, account: str, amount: str, msisdn: str, username: str, password: str
) -> dict[str, Any]:
    """Pay through the Daraja (simulator's) simulate API, then wait until the gateway
    lists the new payment, settled or unmatched, and return it as the API shows it.
    The gateway is asked first: when it cannot be reached, nothing is paid (NothingPaid)."""
    gateway = settings.server.public_url
    timeout = aiohttp.ClientTimeout(total=GATEWAY_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        signed_in = await _gateway_json(
            session,
            "POST",
            f"{gateway}/api/v1/auth/token",
            gateway,
            json={"username": username, "password": password},
        )
        headers = {"Authorization": f"Bearer {signed_in['access_token']}"}
        listing = f"{gateway}/api/v1/c2b/payments"
        params = {"bill_ref": account, "limit": "50"}

        async def payments() -> list[dict[str, Any]]:
            answer = await _gateway_json(
                session, "GET", listing, gateway, params=params, headers=headers
            )
            return answer["items"]

        before = {item["trans_id"] for item in await payments()}
        try:
            await daraja_client(settings, session).simulate_payment(
                settings.daraja.shortcode, amount, msisdn, account, settings.daraja.register_version
            )
        except (ProviderRejected, ProviderUnavailable) as err:
            raise NothingPaid(
                f"nothing was paid: the Daraja simulator at "
                f"{settings.daraja.base_url} did not take the payment ({err})"
            ) from None
        async with asyncio.timeout(ARRIVAL_TIMEOUT_SECONDS):
            while True:
                new = [item for item in await payments() if item["trans_id"] not in before]
                if new and new[0]["status"] != "allocating":
                    return new[0]
                await asyncio.sleep(0.2)


async def payer_sms(
    settings: Settings, trans_id: str, username: str, password: str
) -> dict[str, Any] | None:
    """The SMS receipt the gateway sent for a payment (as GET /api/v1/sms/messages shows
    it), once its send-notifications job has dealt with it; None after SMS_WAIT_SECONDS."""
    gateway = settings.server.public_url
    timeout = aiohttp.ClientTimeout(total=GATEWAY_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        signed_in = await _gateway_json(
            session,
            "POST",
            f"{gateway}/api/v1/auth/token",
            gateway,
            json={"username": username, "password": password},
        )
        headers = {"Authorization": f"Bearer {signed_in['access_token']}"}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SMS_WAIT_SECONDS):
                while True:
                    listed = await _gateway_json(
                        session,
                        "GET",
                        f"{gateway}/api/v1/sms/messages",
                        gateway,
                        params={"limit": "50"},
                        headers=headers,
                    )
                    for message in listed["items"]:
                        if message["receipt"] == trans_id and message["status"] not in (
                            "pending",
                            "sending",
                        ):
                            return dict(message)
                    await asyncio.sleep(0.5)
    return None


async def _gateway_json(
    session: aiohttp.ClientSession, method: str, url: str, gateway: str, **options: Any
) -> Any:
    """A gateway answer's JSON; a gateway out of reach or saying no is NothingPaid."""
    try:
        async with session.request(method, url, **options) as answer:
            body = await answer.json(content_type=None)
            status = answer.status
    except aiohttp.ClientConnectorError as err:
        raise NothingPaid(
            f"nothing was paid: the gateway at {gateway} cannot be reached "
            f"({err.os_error.strerror or err.os_error})"
        ) from None
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        raise NothingPaid(
            f"nothing was paid: the gateway at {gateway} did not answer ({err.__class__.__name__})"
        ) from None
    if status >= 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        raise NothingPaid(
            f"nothing was paid: the gateway at {gateway} answered {status} "
            f"({error.get('code')}: {error.get('message')})"
        )
    return body


def unmatched_explanation(payment: dict[str, Any]) -> str:
    """`amount_mismatch: the amount is not ...`, for a payment that was not settled."""
    reason = payment.get("unmatched_reason") or payment["status"]
    explanation = UNMATCHED_REASONS.get(reason)
    return f"{reason}: {explanation}" if explanation else reason


def _answer(expression: str) -> str:
    """A shell filter for a gateway answer `a`: an error answer stops the walkthrough
    with the gateway's code and message; any other answer prints `expression`."""
    return (
        'python -c \'import json,sys; a=json.load(sys.stdin); "error" in a and '
        'sys.exit("{code}: {message}".format(**a["error"])); '
        f"print({expression})'"
    )


def _read_json(key: str) -> str:
    """A shell filter printing one field of a JSON answer."""
    return _answer(f'a["{key}"]')


SHOW_JSON = _answer("json.dumps(a)")
JSON_TYPE = '-H "Content-Type: application/json"'


def _steps(*steps: str) -> str:
    """Commands run one after the other; the first that fails stops the rest."""
    return " &&\n".join(steps)


def _login(settings: Settings, variable: str, username: str, password: str) -> str:
    credentials = json.dumps({"username": username, "password": password})
    return (
        f"{variable}=$(curl -s {JSON_TYPE} {settings.server.public_url}/api/v1/auth/token \\\n"
        f"  -d '{credentials}' | {_read_json('access_token')})"
    )


def _operator_login(settings: Settings) -> str:
    return _login(settings, "OP", "operator", "sandbox-operator")


def c2b_walkthrough(settings: Settings) -> str:
    """Shell commands: a paybill payment through the simulator, then the payment list."""
    daraja, gateway = settings.daraja.base_url, settings.server.public_url
    body = json.dumps(
        {
            "ShortCode": settings.daraja.shortcode,
            "CommandID": "CustomerPayBillOnline",
            "Amount": "1500.00",
            "Msisdn": DEMO_MSISDN,
            "BillRefNumber": DEMO_ACCOUNT,
        }
    )
    return _steps(
        "TOKEN=$(curl -s -u sandbox-key:sandbox-secret \\\n"
        f"  '{daraja}/oauth/v1/generate?grant_type=client_credentials' \\\n"
        f"  | {_read_json('access_token')})",
        f'curl -s {daraja}/mpesa/c2b/v2/simulate -H "Authorization: Bearer $TOKEN" \\\n'
        f"  {JSON_TYPE} -d '{body}' && echo",
        "sleep 1",
        _operator_login(settings),
        f"curl -s -H \"Authorization: Bearer $OP\" '{gateway}/api/v1/c2b/payments?limit=5' \\\n"
        f"  | {SHOW_JSON}",
    )


def recovery_walkthrough(settings: Settings) -> str:
    """Shell commands: a paybill payment whose confirmation the simulator never delivers,
    recovered by the M-Pesa pull; then the payment, and the reconciliation view's totals."""
    daraja, gateway = settings.daraja.base_url, settings.server.public_url
    body = json.dumps(
        {
            "ShortCode": settings.daraja.shortcode,
            "CommandID": "CustomerPayBillOnline",
            "Amount": "1500.00",
            "Msisdn": NEVER_DELIVERED_MSISDN,
            "BillRefNumber": RECOVERY_ACCOUNT,
        }
    )
    admin = '-H "Authorization: Bearer $ADMIN"'
    first_payment = _answer('json.dumps(a["items"][0])')
    totals = _answer('json.dumps(a["totals"])')
    return _steps(
        "TOKEN=$(curl -s -u sandbox-key:sandbox-secret \\\n"
        f"  '{daraja}/oauth/v1/generate?grant_type=client_credentials' \\\n"
        f"  | {_read_json('access_token')})",
        f'curl -s {daraja}/mpesa/c2b/v2/simulate -H "Authorization: Bearer $TOKEN" \\\n'
        f"  {JSON_TYPE} -d '{body}' && echo",
        "sleep 1",
        _login(settings, "ADMIN", "admin", "sandbox-admin"),
        # A job's answer carries `error` (null when it ran well): printed whole.
        f"curl -s -X POST {admin} {gateway}/api/v1/jobs/mpesa-pull/run \\\n"
        "  | python -m json.tool --compact",
        f"curl -s {admin} '{gateway}/api/v1/c2b/payments?bill_ref={RECOVERY_ACCOUNT}' \\\n"
        f"  | {first_payment}",
        f"curl -s {admin} {gateway}/api/v1/reconciliation | {totals}",
    )


def qmoney_walkthrough(settings: Settings, demo: DemoData) -> str:
    """Shell commands: start a debit, read the OTP the payer got, process it, see the policy."""
    gateway, qmoney = settings.server.public_url, settings.qmoney.base_url
    policy, psp = demo.qmoney_policy, demo.qmoney_psp
    body = json.dumps(
        {
            "policy_uuid": policy["_id"],
            "psp_uuid": psp["_id"],
            "amount": format_amount(policy["value"], policy["currency"]),
        }
    )
    auth = f'-H "Authorization: Bearer $OP" {JSON_TYPE}'
    wallet = QMONEY_INSUREE["wallet"]
    return _steps(
        _operator_login(settings),
        f"TXN=$(curl -s {auth} {gateway}/api/v1/transactions \\\n"
        f"  -d '{body}' | {_read_json('uuid')})",
        f"OTP=$(curl -s {qmoney}/_sim/otp/{wallet} | {_read_json('otp')})",
        f"curl -s {auth} {gateway}/api/v1/transactions/$TXN/process \\\n"
        f'  -d "{{\\"otp\\": \\"$OTP\\"}}" | {SHOW_JSON}',
        f"curl -s {auth} {gateway}/api/v1/policies/{policy['_id']} | {SHOW_JSON}",
    )


def provider_walkthrough(settings: Settings, demo: DemoData) -> str:
    """Shell commands: a payment provider verifies an insuree and pays the idle policy."""
    gateway, policy = settings.server.public_url, demo.provider_policy
    auth = f'-H "Authorization: Bearer $AFRI" {JSON_TYPE}'
    verify = f"{gateway}/api/v1/insurees/{policy['chf_id']}/policies"
    body = json.dumps(
        {
            "chf_id": policy["chf_id"],
            "amount": format_amount(policy["value"], policy["currency"]),
            "psp_transaction_id": "AFR-DEMO-0001",
            "policy": {
                "token": "TOKEN",
                "product_code": policy["product_code"],
                "product_name": policy["product_name"],
            },
        }
    )
    body = body.replace('"TOKEN"', "\"'$TOKEN'\"")
    first_token = '(a["policies"] or sys.exit(a["message"]))[0]["token"]'
    return _steps(
        _login(settings, "AFRI", "afrimoney", "sandbox-afrimoney"),
        f"curl -s {auth} {verify} | {SHOW_JSON}",
        f"TOKEN=$(curl -s {auth} {verify} | {_answer(first_token)})",
        f"curl -s {auth} {gateway}/api/v1/payments \\\n  -d '{body}' | {SHOW_JSON}",
    )


def stk_walkthrough(settings: Settings, policy: Policy, phone: str | None = None) -> str:
    """Shell commands: prompt the payer's phone for the policy's premium (the insuree's
    own phone, or `phone`), print the debit's status each second until the payer has
    answered (STK_WAIT_SECONDS at most), then the debit and the policy."""
    gateway = settings.server.public_url
    request: dict[str, str] = {
        "policy_uuid": policy["_id"],
        "amount": format_amount(policy["value"], policy["currency"]),
    }
    if phone is not None:
        request["phone"] = phone
    auth = f'-H "Authorization: Bearer $OP" {JSON_TYPE}'
    transaction = f"{gateway}/api/v1/transactions/$TXN"
    return _steps(
        _operator_login(settings),
        f"TXN=$(curl -s {auth} {gateway}/api/v1/stk-pushes \\\n"
        f"  -d '{json.dumps(request)}' | {_read_json('uuid')})",
        f"for i in $(seq {STK_WAIT_SECONDS}); do "
        f"STATUS=$(curl -s {auth} {transaction} \\\n"
        f'  | {_read_json("status")}) && echo "$STATUS" &&\n'
        '  [ "$STATUS" != prompt_sent ] && break; sleep 1; done',
        f"curl -s {auth} {transaction} | {SHOW_JSON}",
        f"curl -s {auth} {gateway}/api/v1/policies/{policy['_id']} | {SHOW_JSON}",
    )


def allocation_walkthrough(settings: Settings, allocatable: Allocatable) -> str:
    """Shell commands: an operator allocates the mistyped demo payment to its policy."""
    gateway = settings.server.public_url
    body = json.dumps(
        {
            "policy_uuid": allocatable.policy["_id"],
            "note": f"the payer typed {MISTYPED_ACCOUNT} for {MISTYPED_FOR}",
        }
    )
    return _steps(
        _operator_login(settings),
        f'curl -s -H "Authorization: Bearer $OP" {JSON_TYPE} \\\n'
        f"  {gateway}/api/v1/c2b/payments/{allocatable.trans_id}/allocate \\\n"
        f"  -d '{body}' | {SHOW_JSON}",
    )


def _indented(commands: str) -> str:
    return "\n".join(f"    {line}" for line in commands.splitlines())


def summary(sandbox: Sandbox) -> str:
    settings = sandbox.settings
    validation_url, confirmation_url = callback_urls(
        settings.server.public_url, settings.c2b.callback_secret
    )
    stk_url = stk_callback_url(settings.server.public_url, settings.c2b.callback_secret)
    port_option = "" if settings.server.port == 8080 else f" --port {settings.server.port}"
    users = "\n".join(f"    {name} / {password} ({role})" for name, password, role in USERS)
    demo, allocatable = sandbox.demo, sandbox.allocatable
    if demo is None or allocatable is None:
        raise RuntimeError("the sandbox has no demo data: start it with start_sandbox")
    policy, stk = demo.qmoney_policy, demo.stk_policy
    stk_amount = format_amount(stk["value"], stk["currency"])
    passkey = (
        "Daraja's sandbox passkey"
        if settings.daraja.passkey == SANDBOX_PASSKEY
        else "the passkey of GATEWAY_DARAJA_PASSKEY"
    )
    return f"""
Sandbox is running (in-memory store: everything is lost on exit).

  Gateway            {settings.server.public_url}
  Dashboard          {settings.server.public_url}/dashboard  (sign in as operator)
  API description    {settings.server.public_url}/docs  ({settings.server.public_url}/openapi.json)
  Daraja simulator   {settings.daraja.base_url}  (key sandbox-key / secret sandbox-secret,
                     shortcode {settings.daraja.shortcode}, control API under /_sim/;
                     M-Pesa Express: shortcode {settings.daraja.stk_business_shortcode}, \
{passkey})
  Qmoney simulator   {settings.qmoney.base_url}  (payer wallet {QMONEY_INSUREE["wallet"]}, \
control API under /_sim/)
  SMS simulator      {settings.notifications.base_url}  (Africa's Talking: the payers' SMS \
receipts, /_sim/outbox/<number>)
{_openimis_line(sandbox)}  Callback URLs      {validation_url}
                     {confirmation_url}
                     {stk_url}  (M-Pesa Express results)

  Demo users:
{users}
  Demo data: insurees with idle policies: {QMONEY_INSUREE["chf_id"]} (Qmoney wallet \
{QMONEY_INSUREE["wallet"]}, {format_amount(policy["value"], policy["currency"])} \
{policy["currency"]}),
  {demo.provider_policy["chf_id"]} (for the payment provider, \
{demo.provider_policy["currency"]}), \
{", ".join(item["chf_id"] for item in MPESA_INSUREES)} (M-Pesa, 1500.00 KES),
  {stk["chf_id"]} and {demo.stk_cancel_policy["chf_id"]} (M-Pesa Express, phones \
{STK_INSUREE["phone"]} and {STK_CANCEL_PHONE}, {stk_amount} {stk["currency"]});
  {len(demo_payments(settings))} paybill payments made through the Daraja simulator \
(one settled, {len(demo_payments(settings)) - 1} unmatched).

Reconciliation: a paybill payment whose confirmation M-Pesa never sends (payer
{NEVER_DELIVERED_MSISDN}, a magic number of the simulator) is found by the M-Pesa pull
(Pull Transactions; the sandbox pulls every 15 s, here it is run at once), stored once and
settles the policy of insuree {RECOVERY_ACCOUNT}; the reconciliation view counts it as
recovered:

{_indented(recovery_walkthrough(settings))}

M-Pesa: simulate a paybill payment to insuree {DEMO_ACCOUNT} and watch it arrive and settle
the policy (in another terminal):

    python run.py simulate-payment{port_option} --account {DEMO_ACCOUNT} --amount 1500.00

or with curl:

{_indented(c2b_walkthrough(settings))}

Qmoney: an OTP debit for the idle policy, read the OTP the payer received, process it,
and see the policy active (status 2):

{_indented(qmoney_walkthrough(settings, demo))}

M-Pesa Express: prompt the phone of insuree {stk["chf_id"]} for its premium, watch the
debit become "succeeded" (the simulated payer accepts after about a second) and the
policy active (status 2):

{_indented(stk_walkthrough(settings, stk))}

and a prompt the payer cancels: {STK_CANCEL_PHONE} is a magic number of the simulator
(status "cancelled", the policy stays idle; 254700000202-207 give the other outcomes,
and the same phone and amount again within 2 minutes is refused as a repeat):

{_indented(stk_walkthrough(settings, demo.stk_cancel_policy, STK_CANCEL_PHONE))}

Payment provider (Afrimoney, user afrimoney / sandbox-afrimoney): verify insuree
{demo.provider_policy["chf_id"]}, then pay its idle policy (repeat the last command: \
the same answer, one payment):

{_indented(provider_walkthrough(settings, demo))}

Allocation: the paybill payment {allocatable.trans_id} (1500.00 KES to account \
{MISTYPED_ACCOUNT}, no insuree, so
unmatched) fits the idle policy of insuree {MISTYPED_FOR}, {allocatable.policy["_id"]};
allocate it on the dashboard, or:

{_indented(allocation_walkthrough(settings, allocatable))}

Every command stops at the first step that fails and prints the gateway's error.

SMS receipts: every payment that settles a policy (and every paybill payment left
unmatched) sends the payer an SMS through the SMS simulator within seconds; see them on
the dashboard, in the simulator's outbox ({settings.notifications.base_url}/_sim/outbox),
or with (after a walkthrough's operator login):

    curl -s -H "Authorization: Bearer $OP" \\
      '{settings.server.public_url}/api/v1/sms/messages?limit=5'

Press Ctrl-C to stop.
"""
