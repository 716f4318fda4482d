"""Command line: sandbox (default), serve, simulators and set-up tasks."""

from __future__ import annotations

import argparse
import asyncio
import functools
import getpass
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import aiohttp
from marshmallow import ValidationError

from server.auth.repository import UserExists
from server.integrations.notifications import make_notifier
from server.integrations.transport import ProviderError
from server.kernel import logs
from server.kernel.clock import Clock
from server.kernel.errors import ApiError
from server.kernel.store import Store
from server.mpesa.callback_urls import CallbackUrlError
from server.mpesa.registration import register_callback_urls
from server.psps.schemas import PspCreateSchema
from server.sandbox.environment import (
    ARRIVAL_TIMEOUT_SECONDS,
    NothingPaid,
    daraja_client,
    sandbox_settings,
    simulate_paybill_payment,
    start_sandbox,
    start_simulator,
    summary,
    unmatched_explanation,
)
from server.startup import workers
from server.startup.config import ConfigError, Settings, load_settings
from server.startup.listen import StartupError, listen, reachable_store
from server.startup.runtime import start_gateway
from server.startup.services import Services, build_services, indexes
from simulators.daraja import DarajaSimSettings, DarajaSimulator
from simulators.qmoney import QmoneySimulator

VERBOSE = ("-v", "--verbose")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(_with_default_command(
        list(sys.argv[1:] if argv is None else argv)))
    logs.configure("INFO" if args.verbose else "WARNING", os.environ.get(
        "GATEWAY_LOGGING_FORMAT", "text"))
    command = COMMANDS[args.command]
    try:
        result = command(args)
        return asyncio.run(result) if asyncio.iscoroutine(result) else result
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    except StartupError as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _with_default_command(argv: list[str]) -> list[str]:
    """`python run.py [-v] [--port N]` is the sandbox: the command goes after `-v`."""
    leading = 0
    while leading < len(argv) and argv[leading] in VERBOSE:
        leading += 1
    rest = argv[leading:]
    if not rest or (rest[0].startswith("-") and rest[0] not in ("-h", "--help")):
        return [*argv[:leading], "sandbox", *rest]
    return argv


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python run.py", description=__doc__)
    parser.add_argument(*VERBOSE, action="store_true",
                        help="log at INFO level (before or after the command)")
    common = argparse.ArgumentParser(add_help=False)
    # Given after the command; not given leaves the value read before it.
    common.add_argument(*VERBOSE, action="store_true", default=argparse.SUPPRESS,
                        help="log at INFO level")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_command = functools.partial(commands.add_parser, parents=[common])

    sandbox = add_command("sandbox", help="gateway + simulators + demo data (default)")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8080,
                         help="gateway port; the Daraja simulator gets PORT+1, Qmoney PORT+2")

    serve = add_command("serve", help="run the gateway from config.yaml and the environment")
    serve.add_argument("--processes", type=int, default=1,
                       help="worker processes sharing the port (needs MongoDB)")

    simulators = add_command("simulators", help="run the provider simulators only")
    simulators.add_argument("--host", default="127.0.0.1")
    simulators.add_argument("--port", type=int, default=8081,
                            help="Daraja simulator port; the Qmoney simulator gets PORT+1")

    add_command("register-urls", help="register the C2B callback URLs with Daraja")

    user = add_command("create-user", help="create a gateway user")
    user.add_argument("username")
    user.add_argument("--role", required=True, choices=["admin", "operator", "psp"])
    user.add_argument("--password-stdin", action="store_true",
                      help="read the password from the first line of standard input")

    psp = add_command("create-psp", help="create a payment service provider")
    psp.add_argument("name")
    psp.add_argument("--kind", required=True, choices=["qmoney", "mpesa", "external"])
    psp.add_argument("--account", required=True, help="merchant account at the provider")
    psp.add_argument("--currency", required=True, help="ISO code the provider settles in")
    psp.add_argument("--pin-stdin", action="store_true",
                     help="read the merchant PIN from the first line of standard input")
    psp.add_argument("--external-api", action="store_true",
                     help="the provider calls the gateway's payment API")
    psp.add_argument("--username", help="the provider's user (role psp) for the API")

    replay = add_command("replay-inbox",
                                 help="process again confirmations that failed or were cut off")
    replay.add_argument("--include-review", action="store_true",
                        help="also retry entries marked needs_review")
    replay.add_argument("--grace", type=float, default=60.0, metavar="SECONDS",
                        help="leave entries younger than this to their own processing "
                             "(default 60; 0 after a crash, when nothing else runs)")

    pay = add_command("simulate-payment",
                              help="sandbox: make a paybill payment and wait for it to arrive")
    pay.add_argument("--host", default="127.0.0.1")
    pay.add_argument("--port", type=int, default=8080, help="the sandbox's gateway port")
    pay.add_argument("--account", required=True, help="BillRefNumber (insuree number)")
    pay.add_argument("--amount", required=True, help="decimal amount, e.g. 150.00")
    pay.add_argument("--msisdn", default="254708374149")
    pay.add_argument("--username", default="operator")
    pay.add_argument("--password", default="sandbox-operator")
    return parser


async def _run_until_signalled(shutdown: Callable[[], Awaitable[None]],
                               announcement: str) -> None:
    """Print the announcement, wait for SIGINT or SIGTERM, then shut down cleanly. The
    signals are caught before the announcement, so a signal sent on reading it is too."""
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled.set)
    print(announcement, flush=True)
    try:
        await signalled.wait()
    finally:
        await shutdown()


async def run_sandbox(args: argparse.Namespace) -> int:
    print("starting the sandbox...", flush=True)
    sandbox = await start_sandbox(args.host, args.port,
                                  progress=lambda step: print(f"  {step}", flush=True))
    await _run_until_signalled(sandbox.stop, summary(sandbox))
    print("sandbox stopped")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    settings = load_settings()
    logs.configure(settings.logging.level, settings.logging.format)
    if args.processes < 1:
        raise ConfigError("--processes: must be at least 1")
    in_memory = settings.store.uri == "memory://"
    _require(args.processes == 1 or not in_memory,
             "store.uri: --processes needs MongoDB; in-memory stores are not shared "
             "between processes (set GATEWAY_STORE_URI)")
    sockets = listen(settings.server.host, settings.server.port)
    internal = (listen(settings.server.host, settings.server.internal_port,
                       "the internal listener") if settings.server.internal_port else None)
    if in_memory:
        print("warning: store.uri is memory://, the in-memory store: nothing will survive a "
              "restart (set GATEWAY_STORE_URI to a MongoDB URI)", file=sys.stderr, flush=True)
    if args.processes == 1:
        return asyncio.run(_serve(settings, sockets, internal))
    asyncio.run(_check_store(settings))     # once, before the workers start
    return workers.run(args.processes,
                       lambda: asyncio.run(_serve(settings, sockets, internal)))


async def _check_store(settings: Settings) -> None:
    await (await _reachable_store(settings)).close()


async def _serve(settings: Settings, sockets: list, internal: list | None) -> int:
    store = await _reachable_store(settings)
    try:
        gateway = await start_gateway(settings, store=store, sockets=sockets,
                                      internal_sockets=internal)
    except BaseException:
        await store.close()
        raise
    announcement = f"gateway listening on {gateway.url} (pid {os.getpid()})"
    if gateway.internal_port is not None:
        announcement += (f"\n/metrics and /readyz on http://{settings.server.host}:"
                         f"{gateway.internal_port}")

    async def stop() -> None:
        await gateway.stop()
        await store.close()

    await _run_until_signalled(stop, announcement)
    return 0


async def run_simulators(args: argparse.Namespace) -> int:
    daraja = DarajaSimulator(DarajaSimSettings(local_mode=True))
    qmoney = QmoneySimulator()
    daraja_url = await start_simulator(daraja, args.host, args.port, "the Daraja simulator")
    try:
        qmoney_url = await start_simulator(qmoney, args.host, args.port + 1,
                                           "the Qmoney simulator")
    except StartupError:
        await daraja.stop()
        raise

    async def stop_both() -> None:
        await daraja.stop()
        await qmoney.stop()

    await _run_until_signalled(stop_both, f"Daraja simulator on {daraja_url}\n"
                                          f"Qmoney simulator on {qmoney_url}")
    return 0


async def run_register_urls(args: argparse.Namespace) -> int:
    settings = load_settings()
    _require(settings.daraja.consumer_key and settings.daraja.consumer_secret,
             "daraja.consumer_key and daraja.consumer_secret: set GATEWAY_DARAJA_CONSUMER_KEY "
             "and GATEWAY_DARAJA_CONSUMER_SECRET")
    async with aiohttp.ClientSession() as session:
        try:
            registration = await register_callback_urls(settings,
                                                        daraja_client(settings, session))
        except (ProviderError, CallbackUrlError) as err:
            print(f"registration failed: {err}", file=sys.stderr)
            return 1
    print(f"registered shortcode {settings.daraja.shortcode} "
          f"(conversation {registration.conversation_id}: {registration.description})")
    return 0


async def run_create_user(args: argparse.Namespace) -> int:
    settings = load_settings()
    _require_mongodb(settings, "create-user")
    store = await _reachable_store(settings)
    try:
        password = _read_password(args.password_stdin)
        await store.ensure_indexes(indexes(settings))
        services = _services(settings, store)
        await services.auth.create_user(args.username, password, args.role)
    except UserExists:
        print(f"user {args.username!r} already exists", file=sys.stderr)
        return 1
    except ApiError as err:
        print(f"refused: {err.message}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    print(f"created user {args.username!r} with role {args.role}")
    return 0


async def run_create_psp(args: argparse.Namespace) -> int:
    settings = load_settings()
    _require_mongodb(settings, "create-psp")
    data = {"name": args.name, "kind": args.kind, "account": args.account,
            "currency": args.currency, "is_external_api": args.external_api,
            "username": args.username, "active": True,
            "pin": sys.stdin.readline().rstrip("\n") if args.pin_stdin else None}
    try:
        data = PspCreateSchema().load({key: value for key, value in data.items()
                                       if value is not None})
    except ValidationError as err:
        print(f"refused: {err.messages}", file=sys.stderr)
        return 1
    store = await _reachable_store(settings)
    try:
        await store.ensure_indexes(indexes(settings))
        psp = await _services(settings, store).psps.create(data)
    except ApiError as err:
        print(f"refused: {err.message}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    print(f"created PSP {psp['name']!r} ({psp['kind']}) with uuid {psp['_id']}")
    return 0


async def run_replay_inbox(args: argparse.Namespace) -> int:
    settings = load_settings()
    _require_mongodb(settings, "replay-inbox")
    store = await _reachable_store(settings)
    try:
        services = _services(settings, store)
        results = await services.c2b.replay(include_review=args.include_review,
                                            grace=timedelta(seconds=args.grace),
                                            progress=_report_progress)
    finally:
        await store.close()
    for result in results:
        print(f"{result.entry_id} {result.status}")
    print(f"replayed {len(results)} inbox entries")
    return 0


async def run_simulate_payment(args: argparse.Namespace) -> int:
    settings = sandbox_settings(args.host, args.port)
    try:
        payment = await simulate_paybill_payment(settings, args.account, args.amount,
                                                 args.msisdn, args.username, args.password)
    except NothingPaid as err:
        print(err, file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"payment did not arrive: the Daraja simulator took it, but the gateway at "
              f"{settings.server.public_url} has not listed it within "
              f"{ARRIVAL_TIMEOUT_SECONDS:.0f} s", file=sys.stderr)
        return 1
    except ProviderError as err:
        print(f"payment did not arrive: {err}", file=sys.stderr)
        return 1
    print("payment arrived at the gateway:")
    for key in ("trans_id", "bill_ref", "amount", "currency", "msisdn", "trans_time", "status"):
        print(f"  {key:<11} {payment[key]}")
    if payment["status"] != "settled":
        print(f"  {'reason':<11} {unmatched_explanation(payment)}")
        print("it waits for an operator to allocate it (dashboard, or "
              "POST /api/v1/c2b/payments/<trans_id>/allocate)")
    return 0


async def _reachable_store(settings: Settings) -> Store:
    return await reachable_store(settings.store.uri, settings.store.database)


def _services(settings: Settings, store: Store) -> Services:
    return build_services(settings, store, None, make_notifier(settings.notifications.kind),
                          Clock())


def _report_progress(done: int, total: int) -> None:
    if done == total or done % 100 == 0:
        print(f"  {done}/{total} processed", file=sys.stderr, flush=True)


def _require_mongodb(settings: Settings, command: str) -> None:
    _require(settings.store.uri != "memory://",
             f"store.uri: {command} needs a persistent MongoDB store (set GATEWAY_STORE_URI)")


def _require(condition: object, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise SystemExit("passwords do not match")
    return first


COMMANDS = {
    "sandbox": run_sandbox,
    "serve": run_serve,
    "simulators": run_simulators,
    "register-urls": run_register_urls,
    "create-user": run_create_user,
    "create-psp": run_create_psp,
    "replay-inbox": run_replay_inbox,
    "simulate-payment": run_simulate_payment,
}
