"""The job runner and its leases, on the lane's store with a clock the test moves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from server.jobs.history import RUNS, RunHistory
from server.jobs.leases import LEASES, LeaseRepository
from server.jobs.runner import FAILED, OK, SKIPPED, Job, JobRunner
from server.kernel.clock import Clock
from server.kernel.metrics import Metrics
from server.kernel.store import EXPIRY
from server.startup.config import ConfigError, load_settings
from server.startup.services import indexes

from support import TEST_ENV, make_settings

INTERVAL = timedelta(seconds=30)
LEASE = timedelta(minutes=5)


class StoppedClock(Clock):
    """Time stands still until the test moves it."""

    def __init__(self) -> None:
        self.at = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> None:
        self.at += delta


class Counted:
    """A job's work that counts its calls; it fails while `failures` is above zero."""

    def __init__(self, failures: int = 0) -> None:
        self.calls = 0
        self.failures = failures
        self.third_call = asyncio.Event()

    async def __call__(self) -> dict[str, int]:
        self.calls += 1
        if self.calls == 3:
            self.third_call.set()
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the provider is down")
        return {"tidied": 2, "left": 0}


def runner(
    store,
    clock: Clock,
    work,
    holder: str,
    *,
    interval: timedelta = INTERVAL,
    metrics: Metrics | None = None,
    lease: timedelta = LEASE,
) -> JobRunner:
    return JobRunner(
        [Job("tidy", interval, work)],
        LeaseRepository(store),
        RunHistory(store),
        clock,
        metrics or Metrics(),
        lease_for=lease,
        holder=holder,
    )


async def runs(store) -> list[dict]:
    return await store.collection(RUNS).find({}).sort("started_at", 1).to_list(None)


@pytest.mark.asyncio
async def test_two_runners_on_one_store_run_a_job_once_per_interval(store) -> None:
    clock, work = StoppedClock(), Counted()
    first, second = runner(store, clock, work, "a"), runner(store, clock, work, "b")
    assert await first.run_due() == [] and await second.run_due() == []  # first due later
    clock.advance(INTERVAL)
    reports = await asyncio.gather(first.run_due(), second.run_due())
    assert sorted(len(done) for done in reports) == [0, 1]
    clock.advance(INTERVAL / 2)
    assert await first.run_due() == [] and await second.run_due() == []
    clock.advance(INTERVAL / 2)
    [report] = await second.run_due()
    assert (report.outcome, report.summary, report.holder) == (OK, {"tidied": 2, "left": 0}, "b")
    assert await first.run_due() == []
    assert work.calls == 2
    history = await runs(store)
    assert [run["outcome"] for run in history] == [OK, OK]
    assert history[1]["started_at"] - history[0]["started_at"] == INTERVAL
    lease = await store.collection(LEASES).find_one({"_id": "tidy"})
    assert lease["holder"] is None and lease["last_run"]["holder"] == "b"
    assert lease["next_due_at"] == clock.now() + INTERVAL


@pytest.mark.asyncio
async def test_a_lease_left_by_a_dead_holder_is_taken_over_once_it_expires(store) -> None:
    clock, work = StoppedClock(), Counted()
    survivor = runner(store, clock, work, "survivor")
    await survivor.run_due()
    clock.advance(INTERVAL)
    dead = await LeaseRepository(store).acquire(
        "tidy", "dead", clock.now(), lease_for=LEASE, interval=INTERVAL, due_only=True
    )
    assert dead is not None  # then its process died, the lease never freed
    clock.advance(INTERVAL)  # due again, but the dead holder's lease runs on
    assert await survivor.run_due() == []
    clock.advance(LEASE - INTERVAL)  # the lease has expired
    [report] = await survivor.run_due()
    assert report.outcome == OK and work.calls == 1
    lease = await store.collection(LEASES).find_one({"_id": "tidy"})
    assert lease["holder"] is None and lease["last_run"]["holder"] == "survivor"


@pytest.mark.asyncio
async def test_a_failing_job_is_logged_and_counted_and_the_loop_goes_on(store, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.jobs")
    metrics, work = Metrics(), Counted(failures=1)
    looping = runner(
        store, Clock(), work, "looping", interval=timedelta(seconds=0.2), metrics=metrics
    )
    looping.start()
    try:
        await asyncio.wait_for(work.third_call.wait(), 10)
    finally:
        await looping.stop(5)
    lines = [record.getMessage() for record in caplog.records if record.name == "gateway.jobs"]
    assert lines[0].startswith("job_run name=tidy outcome=failed duration_ms=")
    assert 'error="RuntimeError: the provider is down"' in lines[0]
    assert lines[1].startswith("job_run name=tidy outcome=ok ")
    assert "holder=looping tidied=2 left=0" in lines[1]

    def count(outcome: str) -> float | None:
        return metrics.registry.get_sample_value(
            "gateway_job_runs_total", {"job": "tidy", "outcome": outcome}
        )

    assert count(FAILED) == 1 and count(OK) >= 2
    history = await runs(store)
    assert history[0]["outcome"] == FAILED
    assert history[0]["error"] == "RuntimeError: the provider is down"
    assert history[0]["summary"] == {} and history[1]["summary"] == {"tidied": 2, "left": 0}
    assert {run["outcome"] for run in history[1:]} == {OK}
    starts = [run["started_at"] for run in history]
    assert min(later - earlier for earlier, later in pairwise(starts)) >= timedelta(seconds=0.19)


@pytest.mark.asyncio
async def test_run_now_runs_a_job_not_yet_due_but_never_beside_a_running_one(store) -> None:
    clock = StoppedClock()
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> int:
        started.set()
        await release.wait()
        return 1

    running = runner(store, clock, slow, "running")
    elsewhere = runner(store, clock, Counted(), "elsewhere")
    first = asyncio.ensure_future(running.run_now("tidy"))
    await started.wait()
    skipped = await elsewhere.run_now("tidy")
    assert (skipped.outcome, skipped.held_by) == (SKIPPED, "running")
    release.set()
    assert (await first).outcome == OK
    assert (await elsewhere.run_now("tidy")).outcome == OK
    assert await elsewhere.run_due() == []  # a forced run counts as the interval's
    assert [run["holder"] for run in await runs(store)] == ["running", "elsewhere"]


@pytest.mark.asyncio
async def test_stopping_waits_for_a_run_in_progress(store) -> None:
    started = asyncio.Event()

    async def slow() -> int:
        started.set()
        await asyncio.sleep(0.3)
        return 7

    looping = runner(store, Clock(), slow, "looping", interval=timedelta(seconds=0.1))
    looping.start()
    await started.wait()
    await looping.stop(5)
    [run] = await runs(store)  # a work giving one count is summarised as "handled"
    assert (run["outcome"], run["summary"]) == (OK, {"handled": 7})


@pytest.mark.asyncio
async def test_a_run_cut_at_the_stop_deadline_is_recorded_and_frees_its_lease(store) -> None:
    started = asyncio.Event()

    async def endless() -> int:
        started.set()
        await asyncio.Event().wait()
        return 0

    looping = runner(store, Clock(), endless, "looping", interval=timedelta(seconds=0.1))
    looping.start()
    await started.wait()
    await looping.stop(0.1)
    [run] = await runs(store)
    assert run["outcome"] == FAILED and run["error"].startswith("cancelled")
    assert (await store.collection(LEASES).find_one({"_id": "tidy"}))["holder"] is None


class CancellationSwallowingLeases(LeaseRepository):
    """Reads the lease the way the database driver sometimes does when the reading task
    is cancelled: the cancellation is swallowed and the read goes on."""

    reading = asyncio.Event()

    async def state(self, name):
        self.reading.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)
        return await super().state(name)


@pytest.mark.asyncio
async def test_stopping_ends_a_loop_whose_cancellation_the_driver_swallowed(store) -> None:
    leases = CancellationSwallowingLeases(store)
    looping = JobRunner(
        [Job("tidy", INTERVAL, Counted())],
        leases,
        RunHistory(store),
        Clock(),
        Metrics(),
        lease_for=LEASE,
        holder="looping",
    )
    looping.start()
    await leases.reading.wait()
    await asyncio.wait_for(looping.stop(1), 5)


@pytest.mark.asyncio
async def test_metrics_show_each_jobs_last_success_from_the_store(store) -> None:
    clock = StoppedClock()
    await runner(store, clock, Counted(), "a").run_now("tidy")
    metrics = Metrics()  # another process's: it ran nothing itself
    text = (await metrics.render(store)).decode()
    assert 'gateway_job_last_success_timestamp_seconds{job="tidy"}' in text
    assert (
        metrics.registry.get_sample_value(
            "gateway_job_last_success_timestamp_seconds", {"job": "tidy"}
        )
        == clock.now().timestamp()
    )


def test_job_runs_expire_after_the_retention_period() -> None:
    settings = make_settings(retention={"job_runs_days": 3})
    assert (RUNS, [("started_at", 1)], {EXPIRY: 3 * 86400}) in indexes(settings)


def test_job_intervals_come_from_the_environment_and_must_be_positive() -> None:
    settings = load_settings(
        env={
            **TEST_ENV,
            "GATEWAY_JOBS_REPLAY_INBOX_INTERVAL_SECONDS": "5",
            "GATEWAY_JOBS_ENABLED": "false",
        }
    )
    assert settings.jobs.replay_inbox_interval_seconds == 5.0
    assert settings.jobs.enabled is False
    with pytest.raises(ConfigError) as refused:
        load_settings(env={**TEST_ENV, "GATEWAY_JOBS_LEASE_SECONDS": "0"})
    assert str(refused.value) == (
        "jobs.lease_seconds: must be positive (from GATEWAY_JOBS_LEASE_SECONDS)"
    )
