"""Run one provider simulator standalone: ``python -m simulators daraja --port 8081``
(or ``qmoney --port 8082``, ``sms --port 8083``, ``openimis --port 8084``).

Each simulator is one entry in ``COMMANDS``: its own options plus a factory
building it from the parsed arguments; ``--host`` and ``--port`` are common.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from simulators.daraja import DarajaSimSettings, DarajaSimulator
from simulators.openimis import OpenimisSimSettings, OpenimisSimulator
from simulators.qmoney import QmoneySimSettings, QmoneySimulator, parse_token_expiry
from simulators.sms import SmsSimSettings, SmsSimulator, parse_report_url


class Simulator(Protocol):
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class Command:
    help: str
    default_port: int
    add_arguments: Callable[[argparse.ArgumentParser], None]
    build: Callable[[argparse.Namespace], Simulator]


def _positive_float(text: str) -> float:
    seconds = float(text)
    if not 0 < seconds < math.inf:  # also refuses "nan"
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return seconds


def _stk_auto_seconds(text: str) -> float | None:
    if text == "never":
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds < math.inf:
        raise argparse.ArgumentTypeError("must be a non-negative number of seconds, or never")
    return seconds


def _stk_passkey(text: str) -> tuple[str, str]:
    shortcode, separator, passkey = text.partition("=")
    if not separator or not shortcode.isdigit() or not passkey:
        raise argparse.ArgumentTypeError("must be SHORTCODE=PASSKEY")
    return shortcode, passkey


def _daraja_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = DarajaSimSettings()
    parser.add_argument(
        "--local",
        action="store_true",
        help="accept localhost/127.x callback URLs in registerurl",
    )
    parser.add_argument("--consumer-key", default=defaults.consumer_key)
    parser.add_argument("--consumer-secret", default=defaults.consumer_secret)
    parser.add_argument(
        "--validation-timeout",
        type=_positive_float,
        default=defaults.validation_timeout,
        metavar="SECONDS",
        help="how long to wait for a validation answer (default: %(default)s)",
    )
    parser.add_argument(
        "--stk-auto-seconds",
        type=_stk_auto_seconds,
        default=defaults.stk_auto_seconds,
        metavar="SECONDS|never",
        help="when the payer answers an STK prompt by themselves; never: only the control "
        "API decides (default: %(default)s)",
    )
    parser.add_argument(
        "--stk-passkey",
        type=_stk_passkey,
        action="append",
        metavar="SHORTCODE=PASSKEY",
        help="an STK shortcode and its passkey (repeatable; default: the sandbox shortcodes "
        f"{', '.join(sorted(defaults.stk_passkeys))} with the published sandbox passkey)",
    )


def _build_daraja(args: argparse.Namespace) -> DarajaSimulator:
    passkeys = dict(args.stk_passkey) if args.stk_passkey else DarajaSimSettings().stk_passkeys
    return DarajaSimulator(
        DarajaSimSettings(
            consumer_key=args.consumer_key,
            consumer_secret=args.consumer_secret,
            local_mode=args.local,
            validation_timeout=args.validation_timeout,
            stk_auto_seconds=args.stk_auto_seconds,
            stk_passkeys=passkeys,
        )
    )


def _token_expiry(text: str) -> str:
    try:
        return parse_token_expiry(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _qmoney_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = QmoneySimSettings()
    parser.add_argument(
        "--token-expiry",
        type=_token_expiry,
        default=defaults.token_expiry,
        metavar="SECONDS|-1",
        help="accessTokenExpiry of issued tokens; -1: never expire (default: %(default)s)",
    )
    parser.add_argument(
        "--otp-lifetime",
        type=_positive_float,
        default=defaults.otp_lifetime_seconds,
        metavar="SECONDS",
        help="how long an OTP can be verified (default: %(default)s)",
    )


def _build_qmoney(args: argparse.Namespace) -> QmoneySimulator:
    return QmoneySimulator(
        QmoneySimSettings(token_expiry=args.token_expiry, otp_lifetime_seconds=args.otp_lifetime)
    )


def _report_url(text: str) -> str | None:
    try:
        return parse_report_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative_float(text: str) -> float:
    seconds = float(text)
    if not 0 <= seconds < math.inf:  # also refuses "nan"
        raise argparse.ArgumentTypeError("must be a non-negative number of seconds")
    return seconds


def _sms_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SmsSimSettings()
    parser.add_argument("--username", default=defaults.username)
    parser.add_argument("--api-key", default=defaults.api_key)
    parser.add_argument(
        "--sender-id",
        action="append",
        metavar="SENDER_ID",
        help="a sender id the account may send from (repeatable; an empty one allows no "
        f"from; default: {', '.join(repr(s) for s in defaults.sender_ids)})",
    )
    parser.add_argument(
        "--delivery-report-url",
        type=_report_url,
        default=defaults.delivery_report_url,
        metavar="URL",
        help="where delivery reports are posted (default: none posted)",
    )
    parser.add_argument(
        "--delivery-delay",
        type=_non_negative_float,
        default=defaults.delivery_delay_seconds,
        metavar="SECONDS",
        help="how long after a send each delivery report follows (default: %(default)s)",
    )


def _build_sms(args: argparse.Namespace) -> SmsSimulator:
    defaults = SmsSimSettings()
    return SmsSimulator(
        SmsSimSettings(
            username=args.username,
            api_key=args.api_key,
            sender_ids=tuple(args.sender_id) if args.sender_id else defaults.sender_ids,
            delivery_report_url=args.delivery_report_url,
            delivery_delay_seconds=args.delivery_delay,
        )
    )


def _user(text: str) -> tuple[str, str]:
    username, separator, password = text.partition("=")
    if not separator or not username or not password:
        raise argparse.ArgumentTypeError("must be USERNAME=PASSWORD")
    return username, password


def _openimis_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = OpenimisSimSettings()
    parser.add_argument(
        "--user",
        type=_user,
        action="append",
        metavar="USERNAME=PASSWORD",
        help="a user tokenAuth accepts (repeatable; default: "
        f"{', '.join(f'{u}={p}' for u, p in defaults.users.items())})",
    )
    parser.add_argument(
        "--token-seconds",
        type=_positive_float,
        default=defaults.token_seconds,
        metavar="SECONDS",
        help="lifetime of login tokens (default: %(default)s)",
    )
    parser.add_argument(
        "--csrf",
        action=argparse.BooleanOptionalAction,
        default=defaults.csrf,
        help="check the CSRF token of every query and mutation (--no-csrf: openIMIS's dev "
        "mode; default: on)",
    )
    parser.add_argument(
        "--activation",
        choices=("active", "ready"),
        default=defaults.activation,
        help="what a paid policy becomes: 2 active or 16 ready (default: %(default)s)",
    )
    parser.add_argument(
        "--async-mutations",
        type=_non_negative_float,
        default=defaults.async_mutations_seconds,
        metavar="SECONDS",
        help="mutation logs read 0 (received) for that long before the mutation runs; "
        "0: done when the call returns (default: %(default)s)",
    )


def _build_openimis(args: argparse.Namespace) -> OpenimisSimulator:
    defaults = OpenimisSimSettings()
    return OpenimisSimulator(
        OpenimisSimSettings(
            users=dict(args.user) if args.user else defaults.users,
            token_seconds=args.token_seconds,
            csrf=args.csrf,
            activation=args.activation,
            async_mutations_seconds=args.async_mutations,
        )
    )


COMMANDS: dict[str, Command] = {
    "daraja": Command(
        "Safaricom M-Pesa Daraja (C2B, STK Push)", 8081, _daraja_arguments, _build_daraja
    ),
    "qmoney": Command("Qmoney (Gambia) OTP debit", 8082, _qmoney_arguments, _build_qmoney),
    "sms": Command(
        "Africa's Talking SMS (bulk send, delivery reports)", 8083, _sms_arguments, _build_sms
    ),
    "openimis": Command(
        "openIMIS GraphQL (insurees, policies, premiums)",
        8083,
        _openimis_arguments,
        _build_openimis,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulators", description="Run a mobile-money provider simulator."
    )
    subparsers = parser.add_subparsers(dest="simulator", required=True, metavar="SIMULATOR")
    for name, command in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=command.help)
        subparser.add_argument("--host", default="127.0.0.1")
        subparser.add_argument("--port", type=int, default=command.default_port)
        command.add_arguments(subparser)
    return parser


async def serve(simulator: Simulator, host: str, port: int) -> None:
    """Run until SIGINT/SIGTERM, then stop cleanly (no KeyboardInterrupt traceback)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    url = await simulator.start(host, port)
    print(f"listening on {url} (Ctrl-C to stop)", flush=True)
    try:
        await stop.wait()
    finally:
        await simulator.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    simulator = COMMANDS[args.simulator].build(args)
    try:
        asyncio.run(serve(simulator, args.host, args.port))
    except OSError as exc:  # typically: the port is already in use
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
