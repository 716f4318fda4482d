"""Helpers shared by the test modules."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from server.mpesa.repository import C2BPaymentRepository
from server.startup.config import Settings, load_settings

TEST_ENV = {
    "GATEWAY_AUTH_JWT_SECRET": "test-only-jwt-secret-of-at-least-32-chars",
    "GATEWAY_C2B_CALLBACK_SECRET": "test-callback",
    "GATEWAY_DARAJA_CONSUMER_KEY": "sandbox-key",
    "GATEWAY_DARAJA_CONSUMER_SECRET": "sandbox-secret",
    "GATEWAY_SERVER_PORT": "0",
    "GATEWAY_SECURITY_PIN_KEY": "dGVzdC1vbmx5LXBpbi1rZXktMzItYnl0ZXMtbG9uZyE=",
    "GATEWAY_QMONEY_CHANNEL_ID": "sandbox-channel",
    "GATEWAY_QMONEY_CHANNEL_SECRET": "sandbox-channel-secret",
    "GATEWAY_QMONEY_USERNAME": "14001502",
    "GATEWAY_QMONEY_PASSWORD": "sandbox-qmoney",
}


def make_settings(**sections: dict[str, Any]) -> Settings:
    """Production-mode settings with test secrets; `c2b={"currency": "KES"}` overrides."""
    settings = load_settings(env=TEST_ENV)
    for name, values in sections.items():
        settings = replace(settings, **{name: replace(getattr(settings, name), **values)})
    return settings


def callback_body(**overrides: str) -> dict[str, str]:
    body = {"TransactionType": "Pay Bill", "TransID": "RKL51ZDR4F",
            "TransTime": "20231121121325", "TransAmount": "5.00",
            "BusinessShortCode": "600984", "BillRefNumber": "070707070", "InvoiceNumber": "",
            "OrgAccountBalance": "25.00", "ThirdPartyTransID": "",
            "MSISDN": "2547 ***** 126", "FirstName": "NICHOLAS", "MiddleName": "",
            "LastName": ""}
    body.update(overrides)
    return body


class FailingPayments(C2BPaymentRepository):
    failing = True

    async def insert_once(self, payment):
        if self.failing:
            raise ServerSelectionTimeoutError("store unreachable")
        return await super().insert_once(payment)


class LoopThread:
    """An event loop in a daemon thread, so synchronous code (hypothesis, requests) can
    drive servers started on it over real sockets."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


SUMMARY_LINES = pytest.StashKey[list[str]]()


def report_in_summary(config: pytest.Config, line: str) -> None:
    """A line for the end of the test run's output (see conftest.pytest_terminal_summary)."""
    config.stash.setdefault(SUMMARY_LINES, []).append(line)


# Running `python run.py ...` as a user does, and ports for it.

ROOT = Path(__file__).resolve().parent.parent


async def run_py(*args: str, env: dict[str, str], stdin: str = "") -> tuple[int, str, str]:
    """Exit status, standard output and standard error of one command."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "run.py", *args, cwd=ROOT, env={**os.environ, **env},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    return process.returncode, out.decode(), err.decode()


def free_port_triple() -> int:
    """A port N with N, N+1 and N+2 free at the time of asking."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port >= 65000:
            continue
        with socket.socket() as first, socket.socket() as second, socket.socket() as third:
            try:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
                third.bind(("127.0.0.1", port + 2))
            except OSError:
                continue
        return port
    raise RuntimeError("no three free ports in a row")


def occupied_port(port: int = 0) -> socket.socket:
    """A listening socket on 127.0.0.1:port (0 = any); close it when done."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    return holder


async def paste(commands: str) -> tuple[int, str, str]:
    """Run printed commands as pasted into an interactive shell (no `set -e`; `python` is
    this interpreter): exit status, standard output, standard error."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", commands, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()
