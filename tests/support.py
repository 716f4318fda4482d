"""Helpers shared by the test modules."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from server.config import Settings, load_settings
from server.mpesa.repository import C2BPaymentRepository

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
