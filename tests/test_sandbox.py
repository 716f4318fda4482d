"""The sandbox as a user starts it: `python run.py`, then the printed payment command."""

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from server.sandbox.demo import STK_CANCEL_PHONE, STK_INSUREE
from server.sandbox.environment import (
    c2b_walkthrough,
    payer_sms,
    provider_walkthrough,
    qmoney_walkthrough,
    recovery_walkthrough,
    simulate_paybill_payment,
    start_sandbox,
    stk_walkthrough,
    summary,
)
from simulators.daraja import SANDBOX_PASSKEY, SANDBOX_SHORTCODES

from support import free_port_triple, paste, sim_control

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.asyncio
async def test_sandbox_payment_arrives_at_the_gateway() -> None:
    sandbox = await start_sandbox("127.0.0.1", 0)
    try:
        c2b = sandbox.gateway.services.c2b
        _, before = await c2b.list_payments({}, 1, 0)
        _, unmatched = await c2b.list_payments({"status": "unmatched"}, 10, 0)
        assert unmatched >= 2  # the demo payments that match no policy
        payment = await simulate_paybill_payment(
            sandbox.settings, "040404040", "1500.00", "254708374149", "operator", "sandbox-operator"
        )
        assert payment["amount"] == "1500.00" and payment["bill_ref"] == "040404040"
        assert payment["status"] == "settled"
        # The payer's SMS receipt, through the SMS simulator: one, naming the receipt.
        sms = await payer_sms(sandbox.settings, payment["trans_id"], "operator", "sandbox-operator")
        assert sms is not None and sms["status"] in ("sent", "delivered"), sms
        outbox = f"{sandbox.settings.notifications.base_url}/_sim/outbox/{sms['recipient']}"
        async with aiohttp.ClientSession() as http, http.get(outbox) as answer:
            texts = [item["message"] for item in (await answer.json())["items"]]
        assert [text for text in texts if payment["trans_id"] in text] == [sms["text"]]
        _, total = await c2b.list_payments({}, 1, 0)
        assert total == before + 1
        text = summary(sandbox)
        assert sandbox.settings.server.public_url in text
        assert "/api/v1/c2b/confirmation/sandbox-callback" in text
        assert "operator / sandbox-operator" in text
    finally:
        await sandbox.stop()


async def run_shell(commands: str) -> str:
    """Run printed commands as a user would paste them (`python` is this interpreter)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        commands,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


SECRETS = (
    "sandbox-admin",
    "sandbox-operator",
    "sandbox-afrimoney",
    "sandbox-qmoney",
    "sandbox-channel-secret",
    "sandbox-secret",
    "sandbox-callback",
    "sandbox-only",
)


def assert_no_secret_logged(text: str, otps: list[str]) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} logged"
    assert "eyJ" not in text, "a token was logged"
    for number in ["1234", *otps]:
        # A whole token: "otp=1234" is a leak, a hex id or receipt containing the digits is not.
        assert not re.search(rf"(?<![\w.:-]){number}(?![\w-])", text), f"{number} logged"


@pytest.mark.asyncio
async def test_printed_walkthroughs_work_as_printed(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox = await start_sandbox("127.0.0.1", 0)
    try:
        text = summary(sandbox)
        qmoney = qmoney_walkthrough(sandbox.settings, sandbox.demo)
        c2b = c2b_walkthrough(sandbox.settings)
        provider = provider_walkthrough(sandbox.settings, sandbox.demo)
        recovery = recovery_walkthrough(sandbox.settings)
        for commands in (qmoney, c2b, provider, recovery):
            assert all(line in text for line in commands.splitlines())
        lines = (await run_shell(qmoney)).strip().splitlines()
        processed, policy = json.loads(lines[-2]), json.loads(lines[-1])
        assert processed["status"] == "succeeded"
        assert policy["status"] == 2 and policy["effective_date"]
        listing = json.loads((await run_shell(c2b)).strip().splitlines()[-1])
        [paid] = [item for item in listing["items"] if item["bill_ref"] == "040404040"]
        assert paid["amount"] == "1500.00" and paid["status"] == "settled"
        repeated = "\n".join([provider, *provider.splitlines()[-2:]])
        verified, paid_once, paid_again = map(
            json.loads, (await run_shell(repeated)).strip().splitlines()
        )
        assert verified["policies"][0]["amount"] == "500.00"
        assert paid_once["status"] == "succeeded" and paid_once["policy"]["status"] == 2
        assert paid_again == paid_once
        *_, pulled, payment, totals = (await run_shell(recovery)).strip().splitlines()
        # The sandbox's own pull may have recovered it first: either way, once.
        assert json.loads(pulled)["outcome"] == "ok"
        payment = json.loads(payment)
        assert payment["status"] == "settled" and payment["recovered"]["source"] == "daraja_pull"
        [c2b_totals] = [row for row in json.loads(totals) if row["channel"] == "mpesa_c2b"]
        assert c2b_totals["recovered"]["count"] == 1
        outbox = f"{sandbox.settings.qmoney.base_url}/_sim/outbox/5811724c"
        async with aiohttp.ClientSession() as http, http.get(outbox) as answer:
            otps = [item["otp"] for item in (await answer.json())["items"]]
    finally:
        await sandbox.stop()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "request request_id=" in logged and "settled transaction=" in logged
    assert_no_secret_logged(logged, otps)


@pytest.mark.asyncio
async def test_the_sandbox_beside_openimis_writes_every_premium_there() -> None:
    """`python run.py sandbox --insurance openimis`: the demo insurees and policies are in
    the openIMIS simulator, and the printed walkthroughs (an OTP debit, a paybill payment,
    a provider's payment) each end as one premium there, the policy active."""
    sandbox = await start_sandbox("127.0.0.1", 0, insurance="openimis")
    try:
        assert sandbox.openimis is not None
        text = summary(sandbox)
        assert sandbox.openimis.base_url in text
        for walkthrough in (
            qmoney_walkthrough(sandbox.settings, sandbox.demo),
            c2b_walkthrough(sandbox.settings),
            provider_walkthrough(sandbox.settings, sandbox.demo),
        ):
            assert walkthrough.splitlines()[0] in text
            await run_shell(walkthrough)
        report = await sandbox.gateway.jobs.run_now("write-premiums")
        assert report.outcome == "ok", report
        demo = sandbox.demo
        paid = {demo.qmoney_policy["_id"], demo.provider_policy["_id"]}
        base = sandbox.openimis.base_url
        async with aiohttp.ClientSession() as http:
            premiums = (await sim_control(http, base, "GET", "premiums"))["items"]
            policies = (await sim_control(http, base, "GET", "policies"))["items"]
        written = [item["policy_uuid"] for item in premiums]
        assert paid <= set(written) and len(written) == len(set(written))
        status = {item["uuid"]: item["status"] for item in policies}
        assert all(status[uuid] == 2 for uuid in written)
        assert await sandbox.gateway.services.store.collection("premiums").count_documents(
            {"insurance_write.state": "written"}
        ) == len(written)
    finally:
        await sandbox.stop()


def test_run_py_starts_the_sandbox_and_the_printed_command_shows_a_payment() -> None:
    port = free_port_triple()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    sandbox = subprocess.Popen(
        [sys.executable, "run.py", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = sandbox.stdout.readline()
            lines.append(line)
            if "Press Ctrl-C to stop." in line or sandbox.poll() is not None:
                break
        output = "".join(lines)
        assert "Sandbox is running" in output, output
        assert f"http://127.0.0.1:{port}/dashboard" in output
        assert f"http://127.0.0.1:{port}/docs" in output
        command = next(line.strip() for line in lines if "run.py simulate-payment" in line)
        paid = subprocess.run(
            [sys.executable, *command.split()[1:]],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert paid.returncode == 0, paid.stderr
        assert "payment arrived at the gateway" in paid.stdout
        assert "1500.00" in paid.stdout and "040404040" in paid.stdout
        assert "settled" in paid.stdout
    finally:
        sandbox.send_signal(signal.SIGINT)
        rest, _ = sandbox.communicate(timeout=30)
    assert sandbox.returncode == 0
    assert "Traceback" not in rest
    assert "sandbox stopped" in rest


@pytest.mark.asyncio
async def test_sandbox_history_gives_the_dashboard_a_story() -> None:
    sandbox = await start_sandbox("127.0.0.1", 0)
    try:
        board = await sandbox.gateway.services.dashboard.summary(
            datetime.now(UTC) - timedelta(days=7), None, None
        )
    finally:
        await sandbox.stop()
    assert {row["currency"] for row in board["totals"]} == {"GMD", "KES"}
    assert {row["channel"] for row in board["by_channel"]} == {"mpesa_c2b", "qmoney", "psp_api"}
    assert len({row["start"] for row in board["series"]}) >= 6
    statuses = {row["status"] for row in board["by_status"]}
    assert {"succeeded", "failed", "unknown"} <= statuses
    attention = board["attention"]
    assert attention["c2b_unmatched"]["count"] >= 2
    assert attention["stuck_debits"]["oldest"][0]["status"] == "unknown"
    assert attention["failed_inbox"]["count"] >= 1
    assert {row["provider"] for row in board["providers"]} == {"daraja", "qmoney"}


def printed(commands: str) -> str:
    """Commands as the summary prints them: one block, indented by four spaces."""
    return "\n".join(f"    {line}" for line in commands.splitlines())


async def paste_stk(commands: str) -> tuple[list[str], dict, dict]:
    """Paste an M-Pesa Express walkthrough: the statuses it printed while waiting, then
    the debit and the policy it printed last."""
    code, out, err = await paste(commands)
    assert code == 0, err
    *statuses, transaction, policy = out.strip().splitlines()
    return statuses, json.loads(transaction), json.loads(policy)


@pytest.mark.asyncio
async def test_printed_stk_walkthroughs_work_as_printed(caplog, http) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox = await start_sandbox("127.0.0.1", 0)
    try:
        settings, demo = sandbox.settings, sandbox.demo
        # The gateway prompts through the sandbox's Daraja simulator, on a shortcode it
        # knows, with Daraja's sandbox passkey, and is called back at its own address.
        assert settings.daraja.base_url == sandbox.daraja.base_url
        assert settings.daraja.stk_business_shortcode in SANDBOX_SHORTCODES
        assert settings.daraja.passkey == SANDBOX_PASSKEY
        stk = sandbox.gateway.services.channels.debit("mpesa_stk")
        assert stk.callback_url == (
            f"{sandbox.gateway.url}/api/v1/stk/callback/{settings.c2b.callback_secret}"
        )
        text = summary(sandbox)
        paid_commands = stk_walkthrough(settings, demo.stk_policy)
        cancelled_commands = stk_walkthrough(settings, demo.stk_cancel_policy, STK_CANCEL_PHONE)
        for commands in (paid_commands, cancelled_commands):
            assert printed(commands) in text
            assert commands.count('-H "Content-Type: application/json"') == 5
        assert f"{demo.stk_policy['chf_id']} and {demo.stk_cancel_policy['chf_id']}" in text

        statuses, paid, policy = await paste_stk(paid_commands)
        assert statuses[-1] == "succeeded" and set(statuses) <= {"prompt_sent", "succeeded"}
        assert paid["channel"] == "mpesa_stk" and paid["status"] == "succeeded"
        assert paid["policy_uuid"] == demo.stk_policy["_id"]
        assert paid["phone"] == STK_INSUREE["phone"] and paid["amount"] == "1500.00"
        assert paid["mpesa_receipt"] and paid["settlement"]["status"] == "settled"
        assert policy["uuid"] == demo.stk_policy["_id"]
        assert policy["status"] == 2 and policy["effective_date"]

        statuses, cancelled, policy = await paste_stk(cancelled_commands)
        assert statuses[-1] == "cancelled" and set(statuses) <= {"prompt_sent", "cancelled"}
        assert cancelled["status"] == "cancelled" and cancelled["phone"] == STK_CANCEL_PHONE
        assert cancelled["failure"]["message"] == "the payer cancelled the prompt"
        assert cancelled["settlement"] is None
        assert policy["uuid"] == demo.stk_cancel_policy["_id"] and policy["status"] == 1

        # Both results came by the callback, which the gateway took at its own address.
        for debit in (paid, cancelled):
            answer = await sim_control(
                http,
                sandbox.daraja.base_url,
                "GET",
                f"deliveries?kind=stk_callback&checkout_request_id={debit['provider_reference']}",
            )
            [delivery] = answer["items"]
            assert delivery["url"] == stk.callback_url
            assert delivery["http_status"] == 200
            assert delivery["answer"] == {"ResultCode": 0, "ResultDesc": "Accepted"}
    finally:
        await sandbox.stop()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "stk_result checkout=" in logged
    for secret in (*SECRETS, SANDBOX_PASSKEY):
        assert secret not in logged, f"{secret} logged"
    assert "eyJ" not in logged, "a token was logged"
