"""Command line of a production gateway: serve and the set-up tasks.

`run.py` adds the sandbox's commands (server.sandbox.commands), which are the only
ones that start simulators; this module names none of them."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import aiohttp
from marshmallow import ValidationError

from server.auth.repository import UserExists
from server.integrations.notifications import make_notifier
from server.integrations.transport import ProviderError
from server.jobs.runner import FAILED, SKIPPED
from server.kernel import logs
from server.kernel.clock import Clock
from server.kernel.collector import settle_for_serving
from server.kernel.errors import ApiError
from server.kernel.store import Store
from server.mpesa.callback_urls import CallbackUrlError
from server.mpesa.client import PULL_ALREADY_REGISTERED, DarajaClient
from server.mpesa.registration import register_callback_urls, register_pull
from server.mpesa.settings import C2BSettings, DarajaSettings
from server.psps.schemas import PspCreateSchema
from server.reconciliation.statement_import import StatementImport
from server.reconciliation.statements import KINDS, MPESA, PSP, Problem
from server.startup import workers
from server.startup.config import ConfigError, Settings, load_settings
from server.startup.export_command import export_arguments, write_export
from server.startup.jobs import JOB_NAMES, job_runner
from server.startup.listen import StartupError, listen, reachable_store
from server.startup.runtime import start_gateway
from server.startup.services import (
    MAJORITY_COLLECTIONS,
    ProviderClients,
    Services,
    build_services,
    indexes,
    open_provider_clients,
)

VERBOSE = ("-v", "--verbose")
# import-statement reports its progress every this many rows.
PROGRESS_ROWS = 1000


@dataclass(frozen=True)
class Command:
    """One `python run.py NAME`: its help line, its arguments and what it runs."""

    help: str
    run: Callable[[argparse.Namespace], int | Awaitable[int]]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None


def main(
    argv: Sequence[str] | None = None,
    commands: Mapping[str, Command] | None = None,
    default: str | None = None,
) -> int:
    """Run one of `commands` (the production ones when not given); `default` is the
    command of a command line that names none."""
    commands = COMMANDS if commands is None else commands
    given = list(sys.argv[1:] if argv is None else argv)
    args = _parser(commands).parse_args(_with_default_command(given, default) if default else given)
    logs.configure(
        "INFO" if args.verbose else "WARNING", os.environ.get("GATEWAY_LOGGING_FORMAT", "text")
    )
    try:
        result = commands[args.command].run(args)
        return asyncio.run(result) if asyncio.iscoroutine(result) else int(result)  # type: ignore[arg-type]
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    except StartupError as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _with_default_command(argv: list[str], default: str) -> list[str]:
    """`python run.py [-v] [--port N]` runs the default command: it goes after `-v`."""
    leading = 0
    while leading < len(argv) and argv[leading] in VERBOSE:
        leading += 1
    rest = argv[leading:]
    if not rest or (rest[0].startswith("-") and rest[0] not in ("-h", "--help")):
        return [*argv[:leading], default, *rest]
    return argv


def _parser(commands: Mapping[str, Command]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python run.py", description=__doc__)
    parser.add_argument(
        *VERBOSE, action="store_true", help="log at INFO level (before or after the command)"
    )
    common = argparse.ArgumentParser(add_help=False)
    # Given after the command; not given leaves the value read before it.
    common.add_argument(
        *VERBOSE, action="store_true", default=argparse.SUPPRESS, help="log at INFO level"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in commands.items():
        command.arguments(subparsers.add_parser(name, parents=[common], help=command.help))
    return parser


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes sharing the port (needs MongoDB)"
    )


def _user_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("username")
    parser.add_argument("--role", required=True, choices=["admin", "operator", "psp"])
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )


def _psp_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name")
    parser.add_argument("--kind", required=True, choices=["qmoney", "mpesa", "external"])
    parser.add_argument("--account", required=True, help="merchant account at the provider")
    parser.add_argument("--currency", required=True, help="ISO code the provider settles in")
    parser.add_argument(
        "--pin-stdin",
        action="store_true",
        help="read the merchant PIN from the first line of standard input",
    )
    parser.add_argument(
        "--external-api", action="store_true", help="the provider calls the gateway's payment API"
    )
    parser.add_argument("--username", help="the provider's user (role psp) for the API")


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--include-review", action="store_true", help="also retry entries marked needs_review"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="leave entries younger than this to their own processing "
        "(default 60; 0 after a crash, when nothing else runs)",
    )


def _job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=JOB_NAMES, help="the job to run")


def _statement_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="the CSV file")
    parser.add_argument(
        "--kind",
        required=True,
        choices=KINDS,
        help="mpesa: an M-Pesa org-portal statement export; psp: a provider's settlement file",
    )
    parser.add_argument("--psp", metavar="UUID", help="kind psp: the provider the file is of")
    parser.add_argument(
        "--shortcode", help="kind mpesa: the paybill the statement is of (default daraja.shortcode)"
    )


async def run_until_signalled(shutdown: Callable[[], Awaitable[None]], announcement: str) -> None:
    """Print the announcement, wait for SIGINT or SIGTERM, then shut down cleanly. The
    signals are caught before the announcement, so a signal sent on reading it is too."""
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled.set)
    settle_for_serving()
    print(announcement, flush=True)
    try:
        await signalled.wait()
    finally:
        await shutdown()


def run_serve(args: argparse.Namespace) -> int:
    settings = load_settings()
    logs.configure(settings.logging.level, settings.logging.format)
    if args.processes < 1:
        raise ConfigError("--processes: must be at least 1")
    in_memory = settings.store.uri == "memory://"
    _require(
        args.processes == 1 or not in_memory,
        "store.uri: --processes needs MongoDB; in-memory stores are not shared "
        "between processes (set GATEWAY_STORE_URI)",
    )
    sockets = listen(settings.server.host, settings.server.port)
    internal = (
        listen(settings.server.host, settings.server.internal_port, "the internal listener")
        if settings.server.internal_port
        else None
    )
    if in_memory:
        print(
            "warning: store.uri is memory://, the in-memory store: nothing will survive a "
            "restart (set GATEWAY_STORE_URI to a MongoDB URI)",
            file=sys.stderr,
            flush=True,
        )
    if args.processes == 1:
        return asyncio.run(_serve(settings, sockets, internal))
    asyncio.run(_check_store(settings))  # once, before the workers start
    return workers.run(args.processes, lambda: asyncio.run(_serve(settings, sockets, internal)))


async def _check_store(settings: Settings) -> None:
    await (await _reachable_store(settings)).close()


async def _serve(settings: Settings, sockets: list, internal: list | None) -> int:
    store = await _reachable_store(settings)
    try:
        gateway = await start_gateway(
            settings, store=store, sockets=sockets, internal_sockets=internal
        )
    except BaseException:
        await store.close()
        raise
    announcement = f"gateway listening on {gateway.url} (pid {os.getpid()})"
    if gateway.internal_port is not None:
        announcement += (
            f"\n/metrics and /readyz on http://{settings.server.host}:{gateway.internal_port}"
        )

    async def stop() -> None:
        await gateway.stop()
        await store.close()

    await run_until_signalled(stop, announcement)
    return 0


R = TypeVar("R")


async def _call_daraja(
    settings: Settings,
    what: str,
    call: Callable[[str, DarajaSettings, C2BSettings, DarajaClient], Awaitable[R]],
) -> R | None:
    """One registration call to Daraja with the settings; a refusal is printed in one
    line (None). Daraja's credentials are required."""
    _require(
        settings.daraja.consumer_key and settings.daraja.consumer_secret,
        "daraja.consumer_key and daraja.consumer_secret: set GATEWAY_DARAJA_CONSUMER_KEY "
        "and GATEWAY_DARAJA_CONSUMER_SECRET",
    )
    async with aiohttp.ClientSession() as session:
        try:
            return await call(
                settings.server.public_url,
                settings.daraja,
                settings.c2b,
                DarajaClient(session, settings.daraja, Clock()),
            )
        except (ProviderError, CallbackUrlError) as err:
            print(f"{what} failed: {err}", file=sys.stderr)
            return None


async def run_register_urls(args: argparse.Namespace) -> int:
    settings = load_settings()
    registration = await _call_daraja(settings, "registration", register_callback_urls)
    if registration is None:
        return 1
    print(
        f"registered shortcode {settings.daraja.shortcode} "
        f"(conversation {registration.conversation_id}: {registration.description})"
    )
    return 0


async def run_register_pull(args: argparse.Namespace) -> int:
    settings = load_settings()
    _require(
        settings.daraja.pull_nominated_number,
        "daraja.pull_nominated_number: the phone number M-Pesa registers the pull for",
    )
    registration = await _call_daraja(settings, "pull registration", register_pull)
    if registration is None:
        return 1
    already = registration.status == PULL_ALREADY_REGISTERED
    print(
        f"shortcode {settings.daraja.shortcode} "
        f"{'was already' if already else 'is now'} registered for Pull Transactions "
        f"({registration.status}: {registration.description}); "
        "set daraja.pull_enabled: true to run the mpesa-pull job"
    )
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
    data = {
        "name": args.name,
        "kind": args.kind,
        "account": args.account,
        "currency": args.currency,
        "is_external_api": args.external_api,
        "username": args.username,
        "active": True,
        "pin": sys.stdin.readline().rstrip("\n") if args.pin_stdin else None,
    }
    try:
        data = PspCreateSchema().load(
            {key: value for key, value in data.items() if value is not None}
        )
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
        results = await services.inbox.replay(
            include_review=args.include_review,
            grace=timedelta(seconds=args.grace),
            progress=_report_progress,
        )
    finally:
        await store.close()
    for result in results:
        print(f"{result.entry_id} {result.status}")
    print(f"replayed {len(results)} inbox entries")
    return 0


async def run_run_job(args: argparse.Namespace) -> int:
    settings = load_settings()
    _require_mongodb(settings, "run-job")
    store = await _reachable_store(settings)
    # A job may call out (a debit's status, M-Pesa's records, an SMS, openIMIS): every
    # run has the providers' session, as in the gateway.
    providers = open_provider_clients()
    try:
        await store.ensure_indexes(indexes(settings))
        runner = job_runner(settings.jobs, _services(settings, store, providers), Clock())
        report = await runner.run_now(args.name)
    finally:
        await providers.close()
        await store.close()
    if report.outcome == SKIPPED:
        print(
            f"job {report.name} not run: {report.held_by} holds its lease (a run is in progress)",
            file=sys.stderr,
        )
        return 1
    if report.outcome == FAILED:
        print(
            f"job {report.name} failed after {report.duration_ms:.0f} ms: {report.error}",
            file=sys.stderr,
        )
        return 1
    counts = " ".join(f"{name}={count}" for name, count in report.summary.items())
    print(
        f"job {report.name} ok in {report.duration_ms:.0f} ms" + (f": {counts}" if counts else "")
    )
    return 0


async def run_import_statement(args: argparse.Namespace) -> int:
    settings = load_settings()
    _require_mongodb(settings, "import-statement")
    try:
        raw = args.file.read_bytes()
    except OSError as err:
        print(f"cannot read {args.file}: {err.strerror or err}", file=sys.stderr)
        return 1
    store = await _reachable_store(settings)
    try:
        await store.ensure_indexes(indexes(settings))
        return await import_statement(_services(settings, store).statements, raw, args)
    finally:
        await store.close()


async def run_export(args: argparse.Namespace) -> int:
    settings = load_settings()
    _require_mongodb(settings, "export")
    store = await _reachable_store(settings)
    try:
        await store.ensure_indexes(indexes(settings))
        return await write_export(_services(settings, store).exports, args)
    finally:
        await store.close()


async def import_statement(
    statements: StatementImport, raw: bytes, args: argparse.Namespace
) -> int:
    """Import the file's bytes as `import-statement` was asked to: progress on standard
    error, the summary on standard output; a refusal names each row and column at fault."""
    if args.kind == PSP and (not args.psp or args.shortcode):
        print(
            "refused: --kind psp takes --psp UUID (the file's provider), no --shortcode",
            file=sys.stderr,
        )
        return 1
    if args.kind == MPESA and args.psp:
        print("refused: --psp is for a provider's file (--kind psp)", file=sys.stderr)
        return 1
    try:
        result = await statements.import_statement(
            args.kind,
            raw,
            actor="cli",
            shortcode=args.shortcode,
            psp_uuid=args.psp,
            file_name=args.file.name,
            progress=_RowProgress(),
        )
    except ApiError as err:
        print(f"refused: {err.message}", file=sys.stderr)
        for problem in err.details.get("problems", [])[1:]:  # the first is in the message
            print(f"  {Problem(**problem)}", file=sys.stderr)
        return 1
    statement = result.statement
    counts = " ".join(f"{name}={count}" for name, count in result.summary.items())
    imported_at = statement["imported_at"].isoformat() if statement["imported_at"] else "-"
    if result.already_imported:
        print(
            f"statement {statement['_id']} was imported before ({imported_at} by "
            f"{statement['imported_by']}): nothing changed"
        )
    else:
        print(
            f"statement {statement['_id']} imported: {statement['kind']} "
            f"{statement['provider']}, {statement['rows']} rows from "
            f"{statement['period_from'].isoformat()} to {statement['period_to'].isoformat()}"
        )
    print(counts)
    return 0


class _RowProgress:
    """`done/total rows` on standard error, every PROGRESS_ROWS rows and at the end."""

    def __init__(self) -> None:
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        if done == self.shown or (done < total and done - self.shown < PROGRESS_ROWS):
            return
        self.shown = done
        print(f"  {done}/{total} rows", file=sys.stderr, flush=True)


async def _reachable_store(settings: Settings) -> Store:
    """The store once its server answered, with majority concerns where they apply."""
    store = await reachable_store(settings.store.uri, settings.store.database)
    try:
        await store.use_majority(MAJORITY_COLLECTIONS, enabled=settings.store.majority_writes)
    except BaseException:
        await store.close()
        raise
    return store


def _services(
    settings: Settings, store: Store, providers: ProviderClients | None = None
) -> Services:
    return build_services(
        settings, store, providers, make_notifier(settings.notifications.kind), Clock()
    )


def _report_progress(done: int, total: int) -> None:
    if done == total or done % 100 == 0:
        print(f"  {done}/{total} processed", file=sys.stderr, flush=True)


def _require_mongodb(settings: Settings, command: str) -> None:
    _require(
        settings.store.uri != "memory://",
        f"store.uri: {command} needs a persistent MongoDB store (set GATEWAY_STORE_URI)",
    )


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


COMMANDS: dict[str, Command] = {
    "serve": Command(
        "run the gateway from config.yaml and the environment", run_serve, _serve_arguments
    ),
    "register-urls": Command("register the C2B callback URLs with Daraja", run_register_urls),
    "register-pull": Command(
        "register the shortcode for Pull Transactions with Daraja", run_register_pull
    ),
    "create-user": Command("create a gateway user", run_create_user, _user_arguments),
    "create-psp": Command("create a payment service provider", run_create_psp, _psp_arguments),
    "replay-inbox": Command(
        "process again confirmations that failed or were cut off",
        run_replay_inbox,
        _replay_arguments,
    ),
    "run-job": Command(
        "run one job now, unless another process is running it", run_run_job, _job_arguments
    ),
    "import-statement": Command(
        "import an M-Pesa statement or a provider's settlement file (CSV) for reconciliation",
        run_import_statement,
        _statement_arguments,
    ),
    "export": Command(
        "write an export (payments, unmatched, transactions, premiums, reconciliation) "
        "as CSV, with progress on standard error",
        run_export,
        export_arguments,
    ),
}
