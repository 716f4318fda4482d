"""Runs named jobs, each at most once per interval across every process on one store.

Every process keeps one loop per job: it sleeps until the job's lease says the job
may be due or free (plus a little jitter, so processes do not all ask at the same
instant), then tries to take the lease (server.jobs.leases); the process that gets
it runs the job, records the run and frees the lease. A run in progress when the
runner stops goes on until it ends or the stop's deadline passes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from server.jobs.history import RunHistory, Summary, as_summary
from server.jobs.leases import Lease, LeaseRepository
from server.kernel.background import BackgroundTasks, cancel_and_wait
from server.kernel.clock import Clock
from server.kernel.metrics import Metrics

log = logging.getLogger("gateway.jobs")

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
ERROR_CHARS = 500
# The random delay added to a wake-up is at most a tenth of the interval and this.
MAX_JITTER_SECONDS = 1.0


@dataclass(frozen=True)
class Job:
    """A named piece of upkeep. `work` returns the summary of what it did, counts by
    name ({"fetched": 40, "recovered": 2, "differing": 0}); a work that returns one
    count is summarised as {"handled": n}."""

    name: str
    interval: timedelta
    work: Callable[[], Awaitable[Mapping[str, int] | int]]


@dataclass(frozen=True)
class RunReport:
    name: str
    outcome: str
    holder: str
    duration_ms: float = 0.0
    summary: Summary = field(default_factory=dict)  # empty unless the work ended
    error: str | None = None
    held_by: str | None = None  # skipped: the process holding the lease


def process_holder() -> str:
    """This runner's name in leases and logs: host, process id and a random part (one
    process may hold several runners, as tests do)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobRunner:
    def __init__(
        self,
        jobs: Iterable[Job],
        leases: LeaseRepository,
        history: RunHistory,
        clock: Clock,
        metrics: Metrics,
        *,
        lease_for: timedelta,
        holder: str | None = None,
    ) -> None:
        self.jobs = {job.name: job for job in jobs}
        self.leases = leases
        self.history = history
        self.clock = clock
        self.metrics = metrics
        self.lease_for = lease_for
        self.holder = holder or process_holder()
        self._created: set[str] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False
        self._runs = BackgroundTasks()

    # --- the schedule ---------------------------------------------------

    def start(self) -> None:
        """One loop per job on the running event loop."""
        self._stopping = False
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._keep_running(job), name=f"job-loop-{job.name}")
            for job in self.jobs.values()
        ]

    async def stop(self, deadline_seconds: float) -> None:
        """Stop scheduling, then wait for the runs in progress up to the deadline; a run
        still going then is cancelled, recorded as failed and its lease freed."""
        self._stopping = True
        loops, self._loops = self._loops, []
        still = await cancel_and_wait(loops)
        if still:
            log.warning("job_loops_still_running count=%s", still)
        await self._runs.drain(deadline_seconds)

    async def _keep_running(self, job: Job) -> None:
        # The flag as well as the cancellation: the driver may swallow a cancellation.
        while not self._stopping:
            await asyncio.sleep(await self._pause(job))
            if self._stopping:
                return
            # The run is not this loop's: cancelling the loop leaves it to `stop`'s deadline.
            await asyncio.shield(self._runs.spawn(self._scheduled(job), f"job-{job.name}"))

    async def _pause(self, job: Job) -> float:
        """Seconds until the job may be due or free: at least a twentieth of its interval
        and at most one interval, plus jitter."""
        interval = job.interval.total_seconds()
        seconds = interval
        try:
            await self._create(job)
            state = await self.leases.state(job.name)
            if state is None:  # removed from the store: made again next time
                self._created.discard(job.name)
            else:
                seconds = (state.free_or_due_at() - self.clock.now()).total_seconds()
        except Exception as err:
            log.warning("job_lease_unreadable name=%s error=%s", job.name, err.__class__.__name__)
        seconds = min(max(seconds, interval / 20), interval)
        return seconds + random.uniform(0, min(interval / 10, MAX_JITTER_SECONDS))

    async def _scheduled(self, job: Job) -> None:
        try:
            await self._attempt(job, due_only=True)
        except Exception as err:  # the store failed; the next attempt may do better
            log.warning(
                "job_lease_failed name=%s holder=%s error=%s",
                job.name,
                self.holder,
                err.__class__.__name__,
            )

    # --- runs -----------------------------------------------------------

    async def run_due(self) -> list[RunReport]:
        """One pass over the jobs, here and now: each job that is due and free runs."""
        reports = []
        for job in self.jobs.values():
            report = await self._attempt(job, due_only=True)
            if report is not None:
                reports.append(report)
        return reports

    async def run_now(self, name: str) -> RunReport:
        """Run one job now, due or not, unless another process holds its lease: then a
        skipped report names the holder. The job's next due time moves on as after any
        run."""
        report = await self._attempt(self.jobs[name], due_only=False)
        if report is not None:
            return report
        state = await self.leases.state(name)
        report = RunReport(name, SKIPPED, self.holder, held_by=state.holder if state else None)
        self._account(report, None)
        return report

    async def _attempt(self, job: Job, *, due_only: bool) -> RunReport | None:
        await self._create(job)
        lease = await self.leases.acquire(
            job.name,
            self.holder,
            self.clock.now(),
            lease_for=self.lease_for,
            interval=job.interval,
            due_only=due_only,
        )
        if lease is None:
            return None
        return await self._run(job, lease)

    async def _create(self, job: Job) -> None:
        """The job's lease document, first due one interval after the first process that
        knew the job started (start-up does its own urgent work)."""
        if job.name not in self._created:
            await self.leases.create(job.name, self.clock.now() + job.interval)
            self._created.add(job.name)

    async def _run(self, job: Job, lease: Lease) -> RunReport:
        started = time.perf_counter()
        summary: Summary = {}
        error: BaseException | None = None
        try:
            summary = as_summary(await job.work())
        except asyncio.CancelledError as err:
            error = err
            raise
        except Exception as err:
            error = err
        finally:
            report = RunReport(
                job.name,
                OK if error is None else FAILED,
                self.holder,
                round((time.perf_counter() - started) * 1000, 1),
                summary,
                _describe(error),
            )
            self._account(report, error)
            await self._record(lease, report)
        return report

    async def _record(self, lease: Lease, report: RunReport) -> None:
        """Keep the run in the history and free the lease. A store failure here is only
        logged: the lease then frees itself when it expires."""
        last_run = {
            "holder": self.holder,
            "started_at": lease.started_at,
            "finished_at": self.clock.now(),
            "outcome": report.outcome,
            "summary": report.summary,
            "error": report.error,
        }
        try:
            await self.history.record({"name": lease.name, **last_run})
            if not await self.leases.release(lease, last_run, succeeded=report.outcome == OK):
                log.warning("job_lease_lost name=%s holder=%s", lease.name, self.holder)
        except Exception as err:
            log.warning(
                "job_run_not_recorded name=%s holder=%s error=%s",
                lease.name,
                self.holder,
                err.__class__.__name__,
            )

    def _account(self, report: RunReport, error: BaseException | None) -> None:
        """The run's metric and its one log line, the summary's counts as key=value."""
        self.metrics.job_runs.labels(report.name, report.outcome).inc()
        extra = "".join(f" {name}={count}" for name, count in report.summary.items())
        if report.error is not None:
            extra += f" error={json.dumps(report.error)}"
        if report.held_by is not None:
            extra += f" held_by={report.held_by}"
        # The error's type and message are in the line; its traceback only at DEBUG.
        traceback = isinstance(error, Exception) and log.isEnabledFor(logging.DEBUG)
        log.log(
            logging.ERROR if report.outcome == FAILED else logging.INFO,
            "job_run name=%s outcome=%s duration_ms=%.1f holder=%s%s",
            report.name,
            report.outcome,
            report.duration_ms,
            report.holder,
            extra,
            exc_info=error if traceback else None,
        )


def _describe(error: BaseException | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, asyncio.CancelledError):
        return "cancelled: the runner stopped before the run ended"
    return f"{error.__class__.__name__}: {error}"[:ERROR_CHARS]
