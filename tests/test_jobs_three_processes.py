"""Three gateway processes on one database share the jobs: each job runs again and again,
but never twice within one interval, whichever process runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from itertools import pairwise
from pathlib import Path

import pytest

from server.kernel.store import open_store
from server.startup.jobs import JOB_NAMES

from support import TEST_ENV, report_in_summary, serve

ROOT = Path(__file__).resolve().parent.parent
MONGODB_URI = os.environ.get("TEST_MONGODB_URI")
INTERVAL_SECONDS = 1.0
# Stored times are cut to the millisecond.
TOLERANCE_SECONDS = 0.01
RUN_SECONDS = 6.0


async def start(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    """A `python run.py serve` process and its pid, once it listens."""
    process, [line] = await serve(env)
    return process, line.rsplit("pid ", 1)[1].rstrip(")\n")


@pytest.mark.asyncio
@pytest.mark.skipif(not MONGODB_URI, reason="needs a MongoDB server: set TEST_MONGODB_URI")
async def test_three_gateways_run_each_job_at_most_once_per_interval(pytestconfig) -> None:
    database = f"jobs_{uuid.uuid4().hex[:12]}"
    every = str(INTERVAL_SECONDS)
    env = {
        **os.environ,
        **TEST_ENV,
        "GATEWAY_STORE_URI": MONGODB_URI,
        "GATEWAY_STORE_DATABASE": database,
        **{
            f"GATEWAY_JOBS_{name.upper().replace('-', '_')}_INTERVAL_SECONDS": every
            for name in JOB_NAMES
        },
        # The one job whose interval lives in its own section.
        "GATEWAY_NOTIFICATIONS_SEND_INTERVAL_SECONDS": every,
    }
    started: list[tuple[asyncio.subprocess.Process, str]] = []
    try:
        for _ in range(3):
            started.append(await start(env))
        await asyncio.sleep(RUN_SECONDS)
    finally:
        for process, _ in started:
            process.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(process.wait(), 30) for process, _ in started]
    assert codes == [0, 0, 0]
    store = open_store(MONGODB_URI, database)
    try:
        runs = await store.collection("job_runs").find({}).sort("started_at", 1).to_list(None)
    finally:
        await store.client.drop_database(database)
        await store.close()

    pids = {pid for _, pid in started}
    assert {run["holder"].split(":")[-2] for run in runs} <= pids
    assert {run["outcome"] for run in runs} == {"ok"}
    for name in JOB_NAMES:
        starts = [run["started_at"] for run in runs if run["name"] == name]
        assert len(starts) >= 3, f"{name} ran {len(starts)} times"
        gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(starts)]
        assert min(gaps) >= INTERVAL_SECONDS - TOLERANCE_SECONDS, f"{name}: {gaps}"
    holders = {run["holder"] for run in runs}
    report_in_summary(
        pytestconfig,
        f"jobs on three gateways: {len(runs)} runs by {len(holders)} of the 3 processes",
    )
