"""The openIMIS insurance backend end to end: the real gateway with
`insurance.backend: openimis`, over real sockets to an openIMIS (the simulator, and the
real openIMIS lane when it is built), with the Qmoney simulator for OTP debits.

Each payment settles here against the insurees and policies read from openIMIS, and the
write-premiums job (run by each test) makes it exactly one premium there, with the
policy's status as openIMIS reports it. The faults (a lost answer, openIMIS down, a
refusal, an expired token, CSRF off, "ready" instead of active) are the simulator's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from server.insurance.repository import POLICIES
from server.startup.listen import listen
from simulators.daraja import SANDBOX_PASSKEY, DarajaSimSettings, DarajaSimulator
from simulators.openimis_schema import OPERATIONS

from openimis_backends import OpenimisBackend, RawOpenimis, simulator_backend
from support import (
    PREMIUMS,
    TRANSACTIONS,
    callback_body,
    deliver_callback,
    headers_for_role,
    make_settings,
    psp_user,
    request_json,
    sim_control,
    wait_until,
)
from systems import WALLET, ManualClock

VALUE = "1500.00"


class Beside:
    """The gateway running beside an openIMIS, with an operator, and openIMIS's own
    GraphQL (logged in as the gateway's user) to see what it holds."""

    def __init__(self, http, gateway, backend: OpenimisBackend, raw: RawOpenimis, clock, store):
        self.http, self.gateway, self.backend, self.raw = http, gateway, backend, raw
        self.clock, self.store = clock, store
        self.services = gateway.services
        self.headers: dict[str, str] = {}

    async def policy(self, value: str = VALUE) -> dict[str, str]:
        """A new idle policy in openIMIS, of a new insuree and product."""
        chf_id, _, policy_uuid = await self.raw.idle_policy(value)
        return {"chf_id": chf_id, "uuid": policy_uuid}

    async def write_premiums(self) -> dict[str, int]:
        report = await self.gateway.jobs.run_now("write-premiums")
        assert report.outcome == "ok", report
        return dict(report.summary)

    async def premiums_there(self, policy_uuid: str) -> list[dict[str, Any]]:
        return await self.raw.premiums(policy_uuid)

    async def premium_here(self) -> dict[str, Any]:
        [premium] = await self.store.collection(PREMIUMS).find({}).to_list(None)
        return premium

    async def paybill(self, trans_id: str, account: str, amount: str = VALUE) -> dict:
        body = callback_body(
            TransID=trans_id, TransAmount=amount, BillRefNumber=account, MSISDN="254708374149"
        )
        status, answer = await deliver_callback(self.http, self.gateway, "confirmation", body)
        assert (status, answer["ResultCode"]) == (200, 0)
        return await self.services.c2b.get_payment(trans_id)

    async def api(self, method: str, path: str, body: Any = None, headers=None):
        return await request_json(
            self.http, method, f"{self.gateway.url}{path}", body, headers=headers or self.headers
        )

    async def sim(self, method: str, path: str, body: Any = None) -> Any:
        return await sim_control(self.http, self.backend.url, method, path, body)

    async def fault(self, operation: str, fault: str, **more: Any) -> None:
        await self.sim("POST", "faults", {"operation": operation, "fault": fault, **more})

    def advance(self, seconds: float) -> None:
        self.clock.offset += timedelta(seconds=seconds)


def beside_settings(
    backend: OpenimisBackend, openimis: dict[str, Any] | None = None, **sections: Any
) -> Any:
    return make_settings(
        insurance={"backend": "openimis"},
        openimis={
            "url": backend.url,
            "username": backend.username,
            "password": backend.password,
            "currency": "KES",
            "timeout_seconds": 5.0,
            "mutation_deadline_seconds": 10.0,
            "retry_first_seconds": 30,
            "retry_max_seconds": 600,
            **(openimis or {}),
        },
        jobs={"enabled": False},
        c2b={"currency": "KES"},
        **sections,
    )


async def beside_of(http, start_gateway_with, backend, store, sockets=None, **sections) -> Beside:
    clock = ManualClock()
    settings = beside_settings(backend, **sections)
    gateway = await start_gateway_with(settings, clock=clock, sockets=sockets)
    raw = RawOpenimis(http, backend)
    await raw.login()
    beside = Beside(http, gateway, backend, raw, clock, store)
    beside.headers = await headers_for_role(http, gateway, "olga", "operator")
    return beside


@pytest_asyncio.fixture
async def jar() -> AsyncIterator[aiohttp.ClientSession]:
    """A session that keeps openIMIS's session cookie (unsafe: the backend is an IP)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield http


@pytest_asyncio.fixture
async def beside(jar, start_gateway_with, openimis_backend, store) -> Beside:
    return await beside_of(jar, start_gateway_with, openimis_backend, store)


@pytest_asyncio.fixture
async def sim_beside(jar, start_gateway_with, store) -> AsyncIterator[Beside]:
    """Beside the simulator only: the tests that arm its faults or change its options."""
    async with simulator_backend() as backend:
        yield await beside_of(jar, start_gateway_with, backend, store)


# --- every openIMIS: the simulator, and the real one when its lane is built ---


@pytest.mark.asyncio
async def test_a_paybill_payment_ends_as_one_premium_in_openimis(beside) -> None:
    policy = await beside.policy()
    payment = await beside.paybill("OIM1PAYBILL", policy["chf_id"])
    assert payment["status"] == "settled"
    premium = await beside.premium_here()
    assert premium["policy_uuid"] == policy["uuid"]
    assert premium["insurance_write"]["state"] == "pending"
    assert await beside.premiums_there(policy["uuid"]) == []

    assert await beside.write_premiums() == {"written": 1}

    [there] = await beside.premiums_there(policy["uuid"])
    assert there["receipt"] == premium["receipt"] and there["payType"] == "M"
    assert str(there["amount"]).startswith("1500")
    written = (await beside.premium_here())["insurance_write"]
    assert written["state"] == "written" and written["policy_status"] == 2
    [transaction] = await beside.store.collection(TRANSACTIONS).find({}).to_list(None)
    assert transaction["settlement"]["policy_status"] == 2
    assert (await beside.raw.policy(policy["uuid"]))["status"] == 2
    # Nothing is left to write, and a second run writes nothing twice.
    assert await beside.write_premiums() == {"handled": 0}
    assert len(await beside.premiums_there(policy["uuid"])) == 1


@pytest.mark.asyncio
async def test_a_provider_payment_ends_as_one_premium_in_openimis(beside) -> None:
    policy = await beside.policy()
    headers, _ = await psp_user(beside.http, beside.gateway, "afrimoney", currency="KES")
    status, verified = await beside.api(
        "GET", f"/api/v1/insurees/{policy['chf_id']}/policies", headers=headers
    )
    assert status == 200, verified
    [offered] = verified["policies"]
    assert offered["amount"] == VALUE
    status, paid = await beside.api(
        "POST",
        "/api/v1/payments",
        {
            "chf_id": policy["chf_id"],
            "amount": VALUE,
            "psp_transaction_id": "AFR-OIM-1",
            "policy": {
                "product_code": offered["product_code"],
                "product_name": offered["product_name"],
                "token": offered["token"],
            },
        },
        headers=headers,
    )
    assert status in (200, 201), paid
    assert await beside.write_premiums() == {"written": 1}
    [there] = await beside.premiums_there(policy["uuid"])
    assert there["receipt"] == (await beside.premium_here())["receipt"]
    assert (await beside.raw.policy(policy["uuid"]))["status"] == 2


@pytest.mark.asyncio
async def test_an_otp_debit_ends_as_one_premium_in_openimis(
    jar, start_gateway_with, openimis_backend, qmoney_sim, store
) -> None:
    beside = await beside_of(
        jar,
        start_gateway_with,
        openimis_backend,
        store,
        qmoney={"base_url": qmoney_sim.base_url, "timeout_seconds": 2.0},
    )
    gateway, http = beside.gateway, jar
    policy = await beside.policy(value="500.00")
    # The payer's Qmoney wallet is the gateway's to keep: openIMIS has no field for it.
    admin = await headers_for_role(http, gateway, "ada", "admin")
    status, changed = await beside.api(
        "PATCH", f"/api/v1/insurees/{policy['chf_id']}", {"wallet": WALLET}, headers=admin
    )
    assert status == 200 and changed["wallet"] == WALLET, changed
    psp = await gateway.services.psps.create(
        {
            "name": "Qmoney",
            "kind": "qmoney",
            "account": "14001502",
            "currency": "KES",
            "pin": "1234",
            "is_external_api": False,
            "username": None,
            "active": True,
        }
    )
    status, started = await beside.api(
        "POST",
        "/api/v1/transactions",
        {"policy_uuid": policy["uuid"], "psp_uuid": psp["_id"], "amount": "500.00"},
    )
    assert status == 201, started
    otp = (await request_json(http, "GET", f"{qmoney_sim.base_url}/_sim/otp/{WALLET}"))[1]["otp"]
    status, done = await beside.api(
        "POST", f"/api/v1/transactions/{started['uuid']}/process", {"otp": otp}
    )
    assert status == 200 and done["status"] == "succeeded", done
    assert await beside.write_premiums() == {"written": 1}
    [there] = await beside.premiums_there(policy["uuid"])
    assert there["receipt"] == done["settlement"]["receipt"]
    assert (await beside.raw.policy(policy["uuid"]))["status"] == 2


@pytest.mark.asyncio
async def test_an_mpesa_express_debit_ends_as_one_premium_in_openimis(
    jar, start_gateway_with, openimis_backend, store
) -> None:
    daraja = DarajaSimulator(DarajaSimSettings(local_mode=True, stk_auto_seconds=None))
    await daraja.start()
    try:
        sockets = listen("127.0.0.1", 0)
        beside = await beside_of(
            jar,
            start_gateway_with,
            openimis_backend,
            store,
            sockets=sockets,
            server={"public_url": f"http://127.0.0.1:{sockets[0].getsockname()[1]}"},
            daraja={"base_url": daraja.base_url, "passkey": SANDBOX_PASSKEY},
        )
        policy = await beside.policy()
        status, started = await beside.api(
            "POST",
            "/api/v1/stk-pushes",
            {"policy_uuid": policy["uuid"], "amount": VALUE, "phone": "254708374149"},
        )
        assert status == 201, started
        await sim_control(
            jar,
            daraja.base_url,
            "POST",
            f"stk/{started['provider_reference']}",
            {"action": "accept"},
        )

        async def succeeded() -> dict | None:
            _, current = await beside.api("GET", f"/api/v1/transactions/{started['uuid']}")
            return current if current["status"] == "succeeded" else None

        done = await wait_until(succeeded, "the prompt's debit to succeed")
        assert await beside.write_premiums() == {"written": 1}
        [there] = await beside.premiums_there(policy["uuid"])
        assert there["receipt"] == done["settlement"]["receipt"]
        assert (await beside.raw.policy(policy["uuid"]))["status"] == 2
    finally:
        await daraja.stop()


@pytest.mark.asyncio
async def test_the_period_s_premiums_are_checked_against_openimis_by_receipt(beside) -> None:
    written, waiting = await beside.policy(), await beside.policy()
    await beside.paybill("OIM1CHECKED", written["chf_id"])
    assert await beside.write_premiums() == {"written": 1}
    await beside.paybill("OIM1WAITING", waiting["chf_id"])
    # A mobile premium openIMIS has on a policy the gateway paid, that the gateway did not make.
    assert (await beside.raw.pay(written["uuid"], "ELSEWHERE-1"))["status"] == 2
    status, check = await beside.api("GET", "/api/v1/reconciliation/openimis")
    assert status == 200, check
    assert check["counts"] == {
        "matched": 1,
        "different": 0,
        "missing_there": 1,
        "only_there": 1,
        "duplicated_there": 0,
    }
    kinds = {item["kind"]: item for item in check["items"]}
    assert kinds["missing_there"]["policy_uuid"] == waiting["uuid"]
    assert kinds["missing_there"]["here"]["state"] == "pending"
    assert kinds["only_there"]["receipt"] == "ELSEWHERE-1"
    assert kinds["only_there"]["policy_uuid"] == written["uuid"]


@pytest.mark.asyncio
async def test_policies_come_from_openimis_and_are_not_made_here(beside) -> None:
    policy = await beside.policy()
    status, found = await beside.api("GET", f"/api/v1/insurees/{policy['chf_id']}")
    assert status == 200 and found["last_name"] == "Doe" and found["first_name"] == "Jane"
    admin = await headers_for_role(beside.http, beside.gateway, "ada", "admin")
    status, refused = await beside.api(
        "POST",
        "/api/v1/insurees",
        {"chf_id": "123456789", "first_name": "A", "last_name": "B", "phone": "", "wallet": ""},
        headers=admin,
    )
    assert status == 409 and refused["error"]["code"] == "kept_in_backend"
    status, refused = await beside.api(
        "PATCH", f"/api/v1/policies/{policy['uuid']}", {"status": 4}, headers=admin
    )
    assert status == 409 and refused["error"]["code"] == "kept_in_backend"


@pytest.mark.asyncio
async def test_an_amount_that_is_not_the_policys_is_not_applied(beside) -> None:
    policy = await beside.policy()
    payment = await beside.paybill("OIM1SHORT", policy["chf_id"], amount="700.00")
    assert payment["status"] == "unmatched"
    assert payment["unmatched_reason"] == "amount_mismatch"
    assert await beside.write_premiums() == {"handled": 0}
    assert await beside.premiums_there(policy["uuid"]) == []


# --- the simulator's faults and options ---


@pytest.mark.asyncio
async def test_an_answer_lost_after_the_premium_was_made_never_makes_a_second(
    sim_beside,
) -> None:
    policy = await sim_beside.policy()
    await sim_beside.paybill("OIM1DROP", policy["chf_id"])
    await sim_beside.fault("createPremium", "drop_after")
    assert await sim_beside.write_premiums() == {"waiting": 1}
    waiting = (await sim_beside.premium_here())["insurance_write"]
    assert waiting["state"] == "pending" and waiting["attempts"] == 1
    assert len(await sim_beside.premiums_there(policy["uuid"])) == 1  # made, answer lost

    sim_beside.advance(31)
    assert await sim_beside.write_premiums() == {"written": 1}
    assert len(await sim_beside.premiums_there(policy["uuid"])) == 1
    assert (await sim_beside.premium_here())["insurance_write"]["policy_status"] == 2


@pytest.mark.asyncio
async def test_openimis_down_the_payment_is_kept_and_the_premium_waits(sim_beside) -> None:
    policy = await sim_beside.policy()
    # The insuree was read before openIMIS went down (its policies are in the mirror).
    status, _ = await sim_beside.api("GET", f"/api/v1/insurees/{policy['chf_id']}")
    assert status == 200
    for operation in OPERATIONS:
        await sim_beside.fault(operation, "http500", times=1000)
    payment = await sim_beside.paybill("OIM1DOWN", policy["chf_id"])
    assert payment["status"] == "settled"
    assert await sim_beside.write_premiums() == {"waiting": 1}
    status, dashboard = await sim_beside.api("GET", "/api/v1/dashboard")
    assert status == 200
    assert dashboard["insurance_backend"] == "openimis"
    waiting = dashboard["attention"]["premiums_waiting"]
    assert waiting["count"] == 1 and waiting["oldest"][0]["insurance_write"]["last_error"]
    # Not before the backoff ...
    assert await sim_beside.write_premiums() == {"handled": 0}
    # ... and once openIMIS is back, written once.
    await sim_beside.sim("DELETE", "faults")
    sim_beside.advance(61)
    assert await sim_beside.write_premiums() == {"written": 1}
    assert len(await sim_beside.premiums_there(policy["uuid"])) == 1
    status, dashboard = await sim_beside.api("GET", "/api/v1/dashboard")
    assert dashboard["attention"]["premiums_waiting"]["count"] == 0


@pytest.mark.asyncio
async def test_a_refusal_is_kept_for_an_operator_with_openimis_message(sim_beside) -> None:
    policy = await sim_beside.policy()
    await sim_beside.paybill("OIM1REFUSED", policy["chf_id"])
    await sim_beside.fault(
        "createPremium", "mutation_error", message="contribution.mutation.failed_to_create_premium"
    )
    assert await sim_beside.write_premiums() == {"refused": 1}
    refused = (await sim_beside.premium_here())["insurance_write"]
    assert refused["state"] == "refused"
    assert "failed_to_create_premium" in refused["refusal"]
    status, dashboard = await sim_beside.api("GET", "/api/v1/dashboard")
    [item] = dashboard["attention"]["premiums_refused"]["oldest"]
    assert "failed_to_create_premium" in item["insurance_write"]["refusal"]
    assert await sim_beside.write_premiums() == {"handled": 0}  # never retried by itself
    assert await sim_beside.premiums_there(policy["uuid"]) == []
    status, review = await sim_beside.api("GET", "/api/v1/review-items?kind=premium")
    assert status == 200 and review["total"] == 1
    assert "failed_to_create_premium" in review["items"][0]["reasons"][0]
    # Once put right in openIMIS, an operator sends it again: written once.
    premium_uuid = (await sim_beside.premium_here())["_id"]
    path, reason = f"/api/v1/premiums/{premium_uuid}/write", {"reason": "fixed in openIMIS"}
    status, retried = await sim_beside.api("POST", path, reason)
    assert status == 200 and retried["insurance_write"]["state"] == "pending", retried
    kept = (await sim_beside.premium_here())["insurance_write"]["retried"]
    assert (kept["by"], kept["reason"]) == ("olga", "fixed in openIMIS")
    status, again = await sim_beside.api("POST", path, reason)
    assert status == 409 and again["error"]["code"] == "premium_not_refused"
    assert await sim_beside.write_premiums() == {"written": 1}
    assert len(await sim_beside.premiums_there(policy["uuid"])) == 1


@pytest.mark.asyncio
async def test_a_policy_paid_meanwhile_in_openimis_is_refused_not_paid_twice(sim_beside) -> None:
    policy = await sim_beside.policy()
    status, _ = await sim_beside.api("GET", f"/api/v1/insurees/{policy['chf_id']}")
    assert status == 200  # read while idle: the mirror says idle for a while
    assert (await sim_beside.raw.pay(policy["uuid"], "CASH-1"))["status"] == 2
    payment = await sim_beside.paybill("OIM1TWICE", policy["chf_id"])
    assert payment["status"] == "settled"  # from the mirror as read
    assert await sim_beside.write_premiums() == {"refused": 1}
    refused = (await sim_beside.premium_here())["insurance_write"]
    assert "no longer awaiting payment" in refused["refusal"]
    assert [p["receipt"] for p in await sim_beside.premiums_there(policy["uuid"])] == ["CASH-1"]


@pytest.mark.asyncio
async def test_a_policy_part_paid_meanwhile_in_openimis_is_refused_not_overpaid(
    beside,
) -> None:
    policy = await beside.policy()
    status, _ = await beside.api("GET", f"/api/v1/insurees/{policy['chf_id']}")
    assert status == 200  # read while 1500.00 was due
    assert (await beside.raw.pay(policy["uuid"], "DESK-HALF", amount="750.00"))["status"] == 2
    await beside.paybill("OIM1HALF", policy["chf_id"])
    assert await beside.write_premiums() == {"refused": 1}
    refused = (await beside.premium_here())["insurance_write"]
    assert refused["refusal"] == (
        "openIMIS expects 750.00 KES for the policy now, the payment was 1500.00"
    )
    assert [p["receipt"] for p in await beside.premiums_there(policy["uuid"])] == ["DESK-HALF"]
    assert (await beside.raw.policy(policy["uuid"]))["status"] == 1


@pytest.mark.asyncio
async def test_ready_instead_of_active_is_what_the_gateway_shows(sim_beside) -> None:
    await sim_beside.sim("POST", "config", {"activation": "ready"})
    policy = await sim_beside.policy()
    await sim_beside.paybill("OIM1READY", policy["chf_id"])
    assert await sim_beside.write_premiums() == {"written": 1}
    assert (await sim_beside.premium_here())["insurance_write"]["policy_status"] == 16
    [transaction] = await sim_beside.store.collection(TRANSACTIONS).find({}).to_list(None)
    assert transaction["settlement"]["policy_status"] == 16
    mirrored = await sim_beside.store.collection(POLICIES).find_one({"_id": policy["uuid"]})
    assert mirrored["status"] == 16 and "awaiting_backend" not in mirrored


@pytest.mark.asyncio
async def test_without_the_csrf_check_the_same_flow_works(sim_beside) -> None:
    await sim_beside.sim("POST", "config", {"csrf": False})
    policy = await sim_beside.policy()
    await sim_beside.paybill("OIM1NOCSRF", policy["chf_id"])
    assert await sim_beside.write_premiums() == {"written": 1}
    assert len(await sim_beside.premiums_there(policy["uuid"])) == 1


@pytest.mark.asyncio
async def test_a_token_expired_mid_run_is_renewed_and_the_call_made_again(
    sim_beside,
) -> None:
    await sim_beside.sim("POST", "config", {"token_seconds": 2})
    # The gateway's clock runs behind: it believes its token is fresh when openIMIS
    # already holds it expired, and only openIMIS's refusal tells it.
    sim_beside.advance(-300)
    policy = await sim_beside.policy()
    status, _ = await sim_beside.api("GET", f"/api/v1/insurees/{policy['chf_id']}")
    assert status == 200
    await asyncio.sleep(2.5)
    await sim_beside.paybill("OIM1EXPIRED", policy["chf_id"])
    assert await sim_beside.write_premiums() == {"written": 1}
    requests = (await sim_beside.sim("GET", "requests"))["items"]
    logins = [item for item in requests if "tokenAuth" in json.dumps(item["fields"])]
    assert len(logins) == 3  # the test's own, the gateway's first, and its renewal


@pytest.mark.asyncio
async def test_an_attempt_still_queued_is_waited_for_not_sent_again(
    jar, start_gateway_with, store
) -> None:
    async with simulator_backend() as backend:
        beside = await beside_of(
            jar, start_gateway_with, backend, store, openimis={"mutation_deadline_seconds": 0.2}
        )
        await beside.sim("POST", "config", {"async_mutations_seconds": 1.0})
        policy = await beside.policy()
        await beside.paybill("OIM1QUEUED", policy["chf_id"])
        assert await beside.write_premiums() == {"following": 1}
        beside.advance(31)
        assert await beside.write_premiums() == {"following": 1}  # still queued: not resent
        assert (await beside.premium_here())["insurance_write"]["attempts"] == 1
        await asyncio.sleep(1.1)
        beside.advance(31)
        assert await beside.write_premiums() == {"written": 1}
        assert len(await beside.premiums_there(policy["uuid"])) == 1


@pytest.mark.asyncio
async def test_a_mutation_worked_later_is_followed_until_it_ends(sim_beside) -> None:
    await sim_beside.sim("POST", "config", {"async_mutations_seconds": 0.5})
    policy = await sim_beside.policy()
    await sim_beside.paybill("OIM1ASYNC", policy["chf_id"])
    assert await sim_beside.write_premiums() == {"written": 1}
    assert len(await sim_beside.premiums_there(policy["uuid"])) == 1
