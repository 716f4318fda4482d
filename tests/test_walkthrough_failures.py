"""A printed walkthrough step the gateway refuses stops the walkthrough with the
gateway's error; simulate-payment says why a payment did not settle, and pays nothing
when the gateway cannot be reached."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from server.sandbox.demo import STK_CANCEL_PHONE
from server.sandbox.environment import (
    NothingPaid,
    daraja_client,
    provider_walkthrough,
    qmoney_walkthrough,
    sandbox_settings,
    simulate_paybill_payment,
    start_sandbox,
    stk_walkthrough,
    unmatched_explanation,
)
from simulators.daraja import DarajaSimSettings, DarajaSimulator

from support import ROOT, free_port_triple, occupied_port, paste, run_py


@pytest.mark.asyncio
async def test_a_rerun_qmoney_walkthrough_stops_with_the_gateways_error() -> None:
    sandbox = await start_sandbox("127.0.0.1", 0)
    try:
        commands = qmoney_walkthrough(sandbox.settings, sandbox.demo)
        code, out, err = await paste(commands)
        assert code == 0, err
        code, out, err = await paste(commands)
    finally:
        await sandbox.stop()
    assert code == 1
    assert err.strip() == "policy_not_idle: the policy is not awaiting payment"
    assert out == ""  # the OTP, process and policy steps did not run


@pytest.mark.asyncio
async def test_a_rerun_provider_walkthrough_stops_with_the_gateways_message() -> None:
    sandbox = await start_sandbox("127.0.0.1", 0)
    try:
        commands = provider_walkthrough(sandbox.settings, sandbox.demo)
        assert (await paste(commands))[0] == 0
        code, out, err = await paste(commands)
    finally:
        await sandbox.stop()
    assert code == 1
    assert err.strip() == "the insuree has no policy awaiting payment"
    assert '"policies": []' in out and "payment_id" not in out


@pytest.mark.asyncio
async def test_a_rerun_stk_walkthrough_stops_with_the_gateways_error() -> None:
    sandbox = await start_sandbox("127.0.0.1", 0)
    try:
        commands = stk_walkthrough(sandbox.settings, sandbox.demo.stk_policy)
        code, out, err = await paste(commands)
        assert code == 0, err
        code, out, err = await paste(commands)
    finally:
        await sandbox.stop()
    assert code == 1
    assert err.strip() == "policy_not_idle: the policy is not awaiting payment"
    assert out == ""  # no status, debit or policy was printed


@pytest.mark.asyncio
async def test_a_cancelled_prompt_frees_the_policy_and_a_quick_repeat_is_refused() -> None:
    sandbox = await start_sandbox("127.0.0.1", 0)
    try:
        commands = stk_walkthrough(
            sandbox.settings, sandbox.demo.stk_cancel_policy, STK_CANCEL_PHONE
        )
        runs = [await paste(commands), await paste(commands)]
    finally:
        await sandbox.stop()
    assert all(code == 0 for code, _, _ in runs), runs
    first, second = (json.loads(out.strip().splitlines()[-2]) for _, out, _ in runs)
    assert first["status"] == "cancelled"
    # The policy stayed idle, so it could be prompted again; M-Pesa refuses the same
    # phone and amount within 2 minutes as a repeat (result 17).
    assert second["status"] == "failed" and second["failure"]["code"] == "17"


@pytest.mark.asyncio
async def test_simulate_payment_explains_an_unmatched_payment() -> None:
    sandbox = await start_sandbox("127.0.0.1", 0)
    try:
        payment = await simulate_paybill_payment(
            sandbox.settings, "090909090", "10.00", "254708374149", "operator", "sandbox-operator"
        )
    finally:
        await sandbox.stop()
    assert payment["status"] == "unmatched"
    assert unmatched_explanation(payment) == (
        "amount_mismatch: the amount is not the value of an idle policy of the insuree"
    )


@pytest.mark.asyncio
async def test_simulate_payment_pays_nothing_when_the_gateway_cannot_be_reached(http) -> None:
    with occupied_port() as holder:  # a free port nobody answers on once closed
        port = holder.getsockname()[1]
    simulator = DarajaSimulator(DarajaSimSettings(local_mode=True))
    settings = sandbox_settings("127.0.0.1", port)
    settings = replace(settings, daraja=replace(settings.daraja, base_url=await simulator.start()))
    try:
        await daraja_client(settings, http).register_urls(
            "600984",
            "Completed",
            f"http://127.0.0.1:{port}/api/v1/c2b/confirmation/x",
            f"http://127.0.0.1:{port}/api/v1/c2b/validation/x",
        )
        with pytest.raises(NothingPaid) as refused:
            await simulate_paybill_payment(
                settings, "040404040", "1500.00", "254708374149", "operator", "sandbox-operator"
            )
        async with http.get(f"{simulator.base_url}/_sim/transactions") as answer:
            transactions = await answer.json()
    finally:
        await simulator.stop()
    assert str(refused.value).startswith(
        f"nothing was paid: the gateway at http://127.0.0.1:{port} cannot be reached ("
    )
    assert not transactions["items"]


@pytest.mark.asyncio
async def test_simulate_payment_command_names_the_address_it_tried() -> None:
    with occupied_port() as holder:
        port = holder.getsockname()[1]
    code, out, err = await run_py(
        "simulate-payment",
        "--port",
        str(port),
        "--account",
        "040404040",
        "--amount",
        "1500.00",
        env={},
    )
    assert code == 1 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith(
        f"nothing was paid: the gateway at http://127.0.0.1:{port} cannot be reached"
    )


def test_simulate_payment_command_prints_the_unmatched_reason() -> None:
    port = free_port_triple()
    sandbox = subprocess.Popen(
        [sys.executable, "run.py", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = sandbox.stdout.readline()
            if "Press Ctrl-C to stop." in line or sandbox.poll() is not None:
                break
        paid = subprocess.run(
            [
                sys.executable,
                "run.py",
                "simulate-payment",
                "--port",
                str(port),
                "--account",
                "090909090",
                "--amount",
                "10.00",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        sandbox.send_signal(signal.SIGINT)
        sandbox.communicate(timeout=30)
    assert paid.returncode == 0, paid.stderr
    assert "  status      unmatched\n" in paid.stdout
    assert (
        "  reason      amount_mismatch: the amount is not the value of an idle policy of "
        "the insuree\n"
    ) in paid.stdout
