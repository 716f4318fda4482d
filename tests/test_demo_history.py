"""The sandbox's history spreads its provider calls over the days it tells of: each is
logged at the moment it stands for, so the dashboard's provider health differs between
the last 30 minutes, 24 hours and 7 days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from server.integrations.transport import CallLog
from server.kernel.background import BackgroundTasks
from server.kernel.clock import Clock
from server.sandbox.demo_history import History, PastClock

from support import PROVIDER_CALLS, wait_until

DAYS_AGO = (5, 2)


async def providers(debits, hours: float) -> dict[str, dict]:
    since = (datetime.now(UTC) - timedelta(hours=hours)).isoformat()
    status, board = await debits.api("GET", f"/api/v1/dashboard?from={since.replace('+', '%2B')}")
    assert status == 200, board
    return {row["endpoint"]: row for row in board["providers"] if row["provider"] == "qmoney"}


@pytest.mark.asyncio
async def test_the_historys_provider_calls_are_logged_at_the_moments_they_stand_for(
    debits,
) -> None:
    gateway = debits.gateway
    history = History(
        gateway.settings,
        debits.store,
        gateway.providers,
        debits.http,
        debits.sim.base_url,
        SimpleNamespace(qmoney_psp=debits.psp),
    )
    for days in DAYS_AGO:
        # A payer who types a wrong OTP first: Qmoney refuses it, then takes the right one.
        await history.debit(timedelta(days=days), wrong_otps=1)
    calls = debits.store.collection(PROVIDER_CALLS)

    async def logged() -> list[dict]:
        found = await calls.find({"provider": "qmoney"}).to_list(None)
        verified = [item for item in found if item["endpoint"] == "verifyCode"]
        return found if len(verified) == 2 * len(DAYS_AGO) else []

    found = await wait_until(logged, "the history's Qmoney calls to be logged")
    now = datetime.now(UTC)
    for item in found:
        at = _aware(item["at"])
        # Each call is stamped on the day its debit stands for, none at the run's time.
        assert any(
            abs(now - timedelta(days=days) - at) < timedelta(minutes=5) for days in DAYS_AGO
        ), item
    assert {item["endpoint"] for item in found} >= {"login", "getMoney", "verifyCode"}

    assert await providers(debits, 0.5) == {}
    recent = await providers(debits, 3 * 24)
    assert recent["verifyCode"]["count"] == 2
    assert (recent["verifyCode"]["refusals"], recent["verifyCode"]["failures"]) == (1, 0)
    week = await providers(debits, 7 * 24)
    assert week["verifyCode"]["count"] == 4
    assert week["verifyCode"]["refusal_rate"] == 0.5
    assert week["verifyCode"]["failure_rate"] == 0.0
    assert week["getMoney"]["count"] == 2


@pytest.mark.asyncio
async def test_a_log_stamped_by_another_clock_shares_the_store_and_background_work(
    store,
) -> None:
    background = BackgroundTasks()
    log = CallLog(store.collection(PROVIDER_CALLS), Clock(), None, background)
    past = log.stamped_by(PastClock(timedelta(days=3)))
    async with past.call("qmoney", "login"):
        pass
    async with log.call("qmoney", "login"):
        pass
    assert len(background) == 2  # both writes are the one background work's
    assert await background.drain(5) == 0
    stamps = sorted(
        item["at"] for item in await store.collection(PROVIDER_CALLS).find({}).to_list(None)
    )
    now = datetime.now(UTC)
    assert len(stamps) == 2
    assert abs(now - timedelta(days=3) - _aware(stamps[0])) < timedelta(minutes=1)
    assert abs(now - _aware(stamps[1])) < timedelta(minutes=1)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
