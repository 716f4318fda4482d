"""The janitor end to end: the real gateway and the Daraja simulator over real sockets,
with a clock the test moves forward. An M-Pesa Express prompt whose callback never
comes is `unknown` after its status checks; once the payer has paid, one janitor run
asks Daraja's status query and settles it, without an operator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio

from server.debits.janitor import JANITOR as JANITOR_ACTOR
from server.startup.jobs import JANITOR
from server.startup.listen import listen
from simulators.daraja import SANDBOX_PASSKEY, DarajaSimSettings, DarajaSimulator

from support import (
    BASIC_KES,
    PREMIUMS,
    headers_for_role,
    idle_policy,
    make_settings,
    request_json,
    sim_control,
    wait_until,
)
from systems import ManualClock

RESOLUTIONS = "gateway_debit_unknown_resolution_seconds_count"


class System:
    def __init__(self, http, gateway, sim, headers, clock, store) -> None:
        self.http, self.gateway, self.sim = http, gateway, sim
        self.headers, self.clock, self.store = headers, clock, store
        self.services = gateway.services

    async def api(self, method: str, path: str, body=None) -> tuple[int, Any]:
        return await request_json(
            self.http, method, f"{self.gateway.url}{path}", body, headers=self.headers
        )

    async def control(self, method: str, path: str, body=None) -> Any:
        return await sim_control(self.http, self.sim.base_url, method, path, body)

    async def transaction(self, uuid: str) -> dict:
        status, body = await self.api("GET", f"/api/v1/transactions/{uuid}")
        assert status == 200, body
        return body

    def resolutions(self) -> float:
        value = self.services.debits.metrics.registry.get_sample_value(
            RESOLUTIONS, {"channel": "mpesa_stk"}
        )
        return value or 0.0


@pytest_asyncio.fixture
async def system(http, start_gateway_with, store) -> AsyncIterator[System]:
    sim = DarajaSimulator(
        DarajaSimSettings(local_mode=True, validation_timeout=1.0, stk_auto_seconds=None)
    )
    await sim.start()
    try:
        sockets = listen("127.0.0.1", 0)
        settings = make_settings(
            server={"public_url": f"http://127.0.0.1:{sockets[0].getsockname()[1]}"},
            daraja={
                "base_url": sim.base_url,
                "passkey": SANDBOX_PASSKEY,
                "timeout_seconds": 2.0,
                "stk_status_checks_seconds": ("1", "2", "3"),
            },
            jobs={"enabled": False},
        )
        clock = ManualClock()
        gateway = await start_gateway_with(settings, sockets=sockets, clock=clock)
        headers = await headers_for_role(http, gateway, "olga", "operator")
        yield System(http, gateway, sim, headers, clock, store)
    finally:
        await sim.stop()


@pytest.mark.asyncio
async def test_an_unknown_prompt_paid_later_is_settled_by_one_janitor_run(system: System) -> None:
    await system.control("POST", "faults", {"target": "stk_callback", "kind": "drop"})
    policy = await idle_policy(system.services, "070707070", BASIC_KES, phone="0708374149")
    status, started = await system.api(
        "POST", "/api/v1/stk-pushes", {"policy_uuid": policy["_id"], "amount": "1500.00"}
    )
    assert status == 201 and started["status"] == "prompt_sent", started

    # No callback, and every status check answers "being processed": `unknown`.
    system.clock.offset = timedelta(seconds=10)

    async def checked_out() -> dict | None:
        await system.services.debits.check_pending()
        current = await system.transaction(started["uuid"])
        return current if current["status"] == "unknown" else None

    unknown = await wait_until(checked_out, "the status checks to end", every=0.2)
    assert "no answer after 3 status checks" in unknown["history"][-1]["reason"]
    before = system.resolutions()

    # The payer pays now; the result callback is lost, Daraja's query knows.
    await system.control("POST", f"stk/{started['provider_reference']}", {"action": "accept"})
    report = await system.gateway.jobs.run_now(JANITOR)
    assert report.outcome == "ok" and report.summary["checked"] == 0  # not due yet
    assert (await system.transaction(started["uuid"]))["status"] == "unknown"

    system.clock.offset += timedelta(minutes=1, seconds=1)
    report = await system.gateway.jobs.run_now(JANITOR)
    assert report.outcome == "ok", report
    assert (report.summary["checked"], report.summary["resolved"]) == (1, 1)

    done = await system.transaction(started["uuid"])
    assert done["status"] == "succeeded" and done["settlement"]["status"] == "settled"
    last = done["history"][-1]
    assert (last["from"], last["to"], last["actor"]) == ("unknown", "succeeded", JANITOR_ACTOR)
    # no operator: the status checks made it unknown, the janitor decided it
    assert [(step["to"], step["actor"]) for step in done["history"]] == [
        ("initiated", "olga"),
        ("prompt_sent", "olga"),
        ("unknown", "system"),
        ("succeeded", JANITOR_ACTOR),
    ]
    [premium] = await system.store.collection(PREMIUMS).find({}).to_list(None)
    assert premium["transaction_uuid"] == started["uuid"]
    assert (await system.services.policies.get(policy["_id"]))["status"] == 2
    queries = [
        item
        for item in (await system.control("GET", "requests"))["items"]
        if item["path"].endswith("/stkpushquery/v1/query")
    ]
    assert len(queries) == 4  # three status checks, one janitor attempt
    assert system.resolutions() == before + 1


@pytest.mark.asyncio
async def test_an_unknown_prompt_never_paid_is_left_to_the_operators(system: System) -> None:
    await system.control("POST", "faults", {"target": "stk_callback", "kind": "drop"})
    policy = await idle_policy(system.services, "070707070", BASIC_KES, phone="0708374149")
    _, started = await system.api(
        "POST", "/api/v1/stk-pushes", {"policy_uuid": policy["_id"], "amount": "1500.00"}
    )
    system.clock.offset = timedelta(seconds=10)

    async def checked_out() -> dict | None:
        await system.services.debits.check_pending()
        current = await system.transaction(started["uuid"])
        return current if current["status"] == "unknown" else None

    await wait_until(checked_out, "the status checks to end", every=0.2)
    for minutes in (1, 5, 15, 60):
        system.clock.offset = timedelta(seconds=10, minutes=minutes, milliseconds=500)
        report = await system.gateway.jobs.run_now(JANITOR)
        assert report.summary["checked"] == 1, report
    assert report.summary["given_up"] == 1
    current = await system.transaction(started["uuid"])
    assert current["status"] == "unknown"
    janitor = [step for step in current["history"] if step["actor"] == JANITOR_ACTOR]
    assert len(janitor) == 4 and all(step["to"] == "unknown" for step in janitor)
    status, summary = await system.api("GET", "/api/v1/dashboard")
    assert status == 200
    [item] = summary["attention"]["stuck_debits"]["oldest"]
    assert item["uuid"] == started["uuid"]
    assert item["note"].startswith("automatic status checks exhausted")
