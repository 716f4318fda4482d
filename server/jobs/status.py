"""Where each job of a runner stands: its schedule, who runs it now and its last run.

Read from the store, so it is the same from every process: the lease documents
(server.jobs.leases) and, for a job whose lease keeps no last run (a run that lost its
lease before it could free it), the run history (server.jobs.history)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from server.jobs.history import Summary, recorded_summary
from server.jobs.runner import JobRunner


@dataclass(frozen=True)
class LastRun:
    holder: str | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    summary: Summary
    error: str | None


@dataclass(frozen=True)
class JobStatus:
    name: str
    interval: timedelta
    # None until a process that knows the job has scheduled it.
    next_due_at: datetime | None
    # The process running the job now and until when its lease runs; None when free
    # (also when the holder's lease expired: it died mid-run, and anyone may take over).
    holder: str | None
    lease_expires_at: datetime | None
    last_run: LastRun | None


async def job_statuses(runner: JobRunner) -> list[JobStatus]:
    """Every job of `runner`, by name."""
    names = sorted(runner.jobs)
    states = await runner.leases.states(names)
    now = runner.clock.now()
    statuses = []
    for name in names:
        state = states.get(name)
        holder = lease_expires_at = None
        if state is not None and state.held(now):
            holder, lease_expires_at = state.holder, state.lease_expires_at
        recorded = state.last_run if state is not None else None
        if recorded is None:
            recorded = await runner.history.latest(name)
        statuses.append(
            JobStatus(
                name,
                runner.jobs[name].interval,
                state.next_due_at if state is not None else None,
                holder,
                lease_expires_at,
                None if recorded is None else last_run_of(recorded),
            )
        )
    return statuses


def last_run_of(run: Mapping[str, Any]) -> LastRun:
    """A recorded run: a lease's `last_run` or a `job_runs` document, old ones included."""
    return LastRun(
        run.get("holder"),
        run["started_at"],
        run.get("finished_at"),
        run["outcome"],
        recorded_summary(run),
        run.get("error"),
    )
