"""Several days of past payments for the sandbox, so the dashboard tells a story.

Everything goes through the real services (with a clock set in the past) and the
real simulators: Afrimoney payments, Qmoney OTP debits (some with wrong OTPs, one
whose answer is lost and stays `unknown`), M-Pesa confirmations that settle or
stay unmatched, and one unreadable confirmation kept for review. The provider calls
they make are logged at the moment they stand for, spread over the days."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import aiohttp

from server.insurance.documents import Policy
from server.insurance.schemas import InsureeCreateSchema, PolicyCreateSchema
from server.integrations.notifications import LogNotifier
from server.kernel.clock import Clock
from server.kernel.store import Store
from server.mpesa.schemas import NAIROBI
from server.startup.config import Settings
from server.startup.services import ProviderClients, Services, build_services

DAYS = 6
WALLET = "5811724c"


class PastClock(Clock):
    """The real clock, moved back by a fixed offset."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return super().now() - self.offset


class History:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        providers: ProviderClients,
        http: aiohttp.ClientSession,
        qmoney_url: str,
        demo: Any,
    ) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers
        self.http = http
        self.qmoney_url = qmoney_url
        self.demo = demo
        self.serial = 0

    def at(self, ago: timedelta) -> Services:
        """The services as they were `ago` back: their clock and the provider call log's
        both read that moment, so the provider figures of a window show that day's calls."""
        clock = PastClock(ago)
        providers = ProviderClients(self.providers.session, self.providers.calls.stamped_by(clock))
        return build_services(self.settings, self.store, providers, LogNotifier(), clock)

    async def policy(self, services: Services, product: str, wallet: str = "") -> Policy:
        self.serial += 1
        chf_id = f"55{self.serial:05d}"
        await services.insurees.create(
            InsureeCreateSchema().load(
                {
                    "chf_id": chf_id,
                    "first_name": "Demo",
                    "last_name": f"Member {self.serial}",
                    "wallet": wallet,
                }
            )
        )
        return await services.policies.create(
            PolicyCreateSchema().load(
                {
                    "chf_id": chf_id,
                    "product_code": product,
                    "start_date": (date.today() - timedelta(days=30)).isoformat(),
                }
            )
        )

    async def provider_payment(self, ago: timedelta) -> None:
        services = self.at(ago)
        policy = await self.policy(services, "BASIC-GMD")
        await services.psp_api.pay(
            self.demo.provider_psp,
            {
                "chf_id": policy["chf_id"],
                "amount": "500.00",
                "psp_transaction_id": f"AFR-HIST-{self.serial:05d}",
                "policy": {
                    "token": policy["payment_token"],
                    "product_code": "BASIC-GMD",
                    "product_name": policy["product_name"],
                },
                "json_ext": None,
            },
            "afrimoney",
        )

    async def debit(self, ago: timedelta, wrong_otps: int = 0) -> None:
        services = self.at(ago)
        policy = await self.policy(services, "BASIC-GMD", WALLET)
        debit = await services.debits.initiate(
            policy["_id"], self.demo.qmoney_psp["_id"], "500.00", "operator"
        )
        async with self.http.get(f"{self.qmoney_url}/_sim/otp/{WALLET}") as answer:
            otp = (await answer.json())["otp"]
        wrong = "000000" if otp != "000000" else "111111"
        for _ in range(wrong_otps):
            await services.debits.process(debit["_id"], wrong, "operator")
        if wrong_otps < self.settings.qmoney.max_otp_attempts:
            await services.debits.process(debit["_id"], otp, "operator")

    async def lost_answer_debit(self, ago: timedelta) -> None:
        async with self.http.post(
            f"{self.qmoney_url}/_sim/faults", json={"target": "verifyCode", "kind": "drop_after"}
        ):
            pass
        await self.debit(ago)

    async def confirmation(self, ago: timedelta, amount: str, settle: bool) -> None:
        services = self.at(ago)
        policy = await self.policy(services, "BASIC-KES")
        local = services.c2b.clock.now().astimezone(NAIROBI)
        body = {
            "TransactionType": "Pay Bill",
            "TransID": secrets.choice(string.ascii_uppercase)
            + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(9)),
            "TransTime": local.strftime("%Y%m%d%H%M%S"),
            "TransAmount": amount if settle else "1000.00",
            "BusinessShortCode": self.settings.daraja.shortcode,
            "BillRefNumber": policy["chf_id"],
            "InvoiceNumber": "",
            "OrgAccountBalance": "",
            "ThirdPartyTransID": "",
            "MSISDN": "2547 ***** 149",
            "FirstName": "JOHN",
            "MiddleName": "",
            "LastName": "DOE",
        }
        await services.c2b.confirm(json.dumps(body).encode(), "127.0.0.1", {})


async def seed_history(history: History, progress: Callable[[str], None]) -> None:
    for day in range(DAYS, 0, -1):
        base = timedelta(days=day)
        await history.provider_payment(base - timedelta(hours=2))
        await history.debit(base - timedelta(hours=4), wrong_otps=(0, 1, 3)[day % 3])
        await history.confirmation(base - timedelta(hours=6), "1500.00", settle=True)
        # Two stay unmatched: with the start-up payments, the dashboard lists every one.
        await history.confirmation(base - timedelta(hours=8), "1500.00", settle=day % 3 != 0)
        progress(f"demo history: day {DAYS - day + 1}/{DAYS}")
    await history.lost_answer_debit(timedelta(hours=2))
    await history.at(timedelta(hours=3)).c2b.confirm(
        b'{"TransID": "BROKEN0001", "TransAmount": "1,500"}', "127.0.0.1", {}
    )
    progress("demo history: done")
