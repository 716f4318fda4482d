"""The sandbox's commands, beside the production ones of server.startup.cli:
`python run.py` (the sandbox), `simulators` and `simulate-payment`.

The sandbox and the simulators are imported when one of these commands runs, so a
production command (`python run.py serve`) loads neither."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from server.insurance.settings import BUILT_IN, OPENIMIS
from server.integrations.transport import ProviderError
from server.startup import cli
from server.startup.cli import Command, run_until_signalled
from server.startup.listen import StartupError


def main(argv: Sequence[str] | None = None) -> int:
    """`python run.py`: every command, the sandbox when none is named."""
    return cli.main(argv, COMMANDS, default="sandbox")


def _sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port",
        type=int,
        default=8080,
        help="gateway port; the Daraja simulator gets PORT+1, Qmoney PORT+2, openIMIS PORT+3",
    )
    parser.add_argument(
        "--insurance",
        choices=(BUILT_IN, OPENIMIS),
        default=BUILT_IN,
        help="where insurees, policies and premiums are kept: the gateway's own collections, "
        "or the openIMIS simulator (demo data there; premiums written into it)",
    )


def _simulators_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port",
        type=int,
        default=8081,
        help="Daraja simulator port; the Qmoney simulator gets PORT+1",
    )


def _payment_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="the sandbox's gateway port")
    parser.add_argument("--account", required=True, help="BillRefNumber (insuree number)")
    parser.add_argument("--amount", required=True, help="decimal amount, e.g. 150.00")
    parser.add_argument("--msisdn", default="254708374149")
    parser.add_argument("--username", default="operator")
    parser.add_argument("--password", default="sandbox-operator")


async def run_sandbox(args: argparse.Namespace) -> int:
    from server.sandbox.environment import start_sandbox, summary

    print("starting the sandbox...", flush=True)
    sandbox = await start_sandbox(
        args.host,
        args.port,
        progress=lambda step: print(f"  {step}", flush=True),
        insurance=args.insurance,
    )
    await run_until_signalled(sandbox.stop, summary(sandbox))
    print("sandbox stopped")
    return 0


async def run_simulators(args: argparse.Namespace) -> int:
    from server.sandbox.environment import start_simulator
    from simulators.daraja import DarajaSimSettings, DarajaSimulator
    from simulators.qmoney import QmoneySimulator

    daraja = DarajaSimulator(DarajaSimSettings(local_mode=True))
    qmoney = QmoneySimulator()
    daraja_url = await start_simulator(daraja, args.host, args.port, "the Daraja simulator")
    try:
        qmoney_url = await start_simulator(qmoney, args.host, args.port + 1, "the Qmoney simulator")
    except StartupError:
        await daraja.stop()
        raise

    async def stop_both() -> None:
        await daraja.stop()
        await qmoney.stop()

    await run_until_signalled(
        stop_both, f"Daraja simulator on {daraja_url}\nQmoney simulator on {qmoney_url}"
    )
    return 0


async def run_simulate_payment(args: argparse.Namespace) -> int:
    from server.sandbox.environment import (
        ARRIVAL_TIMEOUT_SECONDS,
        NothingPaid,
        payer_sms,
        sandbox_settings,
        simulate_paybill_payment,
        unmatched_explanation,
    )

    settings = sandbox_settings(args.host, args.port)
    try:
        payment = await simulate_paybill_payment(
            settings, args.account, args.amount, args.msisdn, args.username, args.password
        )
    except NothingPaid as err:
        print(err, file=sys.stderr)
        return 1
    except TimeoutError:
        print(
            f"payment did not arrive: the Daraja simulator took it, but the gateway at "
            f"{settings.server.public_url} has not listed it within "
            f"{ARRIVAL_TIMEOUT_SECONDS:.0f} s",
            file=sys.stderr,
        )
        return 1
    except ProviderError as err:
        print(f"payment did not arrive: {err}", file=sys.stderr)
        return 1
    print("payment arrived at the gateway:")
    for key in ("trans_id", "bill_ref", "amount", "currency", "msisdn", "trans_time", "status"):
        print(f"  {key:<11} {payment[key]}")
    if payment["status"] != "settled":
        print(f"  {'reason':<11} {unmatched_explanation(payment)}")
        print(
            "it waits for an operator to allocate it (dashboard, or "
            "POST /api/v1/c2b/payments/<trans_id>/allocate)"
        )
    sms = await payer_sms(settings, payment["trans_id"], args.username, args.password)
    if sms is None:
        print("no SMS receipt yet (the send-notifications job sends it within seconds)")
    elif sms["status"] in ("sent", "delivered"):
        print(f"SMS to {sms['recipient']} ({sms['status']}):\n  {sms['text']}")
    else:
        reason = sms["failure"]["reason"] if sms["failure"] else sms["status"]
        print(f"no SMS was sent to the payer: {reason}")
    return 0


COMMANDS: dict[str, Command] = {
    "sandbox": Command(
        "gateway + simulators + demo data (default)", run_sandbox, _sandbox_arguments
    ),
    "serve": cli.COMMANDS["serve"],
    "simulators": Command(
        "run the provider simulators only", run_simulators, _simulators_arguments
    ),
    **{name: command for name, command in cli.COMMANDS.items() if name != "serve"},
    "simulate-payment": Command(
        "sandbox: make a paybill payment and wait for it to arrive",
        run_simulate_payment,
        _payment_arguments,
    ),
}
