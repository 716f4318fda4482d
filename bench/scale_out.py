"""Scale-out: `python run.py serve --processes N` against MongoDB, for N = 1, 2, ...

    python -m bench scale-out [--processes 1,2] [--requests N] [--mongodb-uri URI]

Starts the production command (not the sandbox) with the secrets it needs in the
environment, a free port and a fresh database of the MongoDB lane (bench/wire.py;
dropped after), then posts distinct C2B confirmations at concurrency 50 over keep-alive
connections. Request logging is off (GATEWAY_LOGGING_LEVEL=WARNING), as in the other
rows. Prints req/s and latency per N, and the CPU each process used meanwhile, in
cores, which says what bounds the figure: the machine's cores, or a database server
that is itself one process.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet

from bench.harness import callback, cpu_seconds, load, machine_busy_seconds, output_of
from bench.wire import ROOT, Lane, drop_database
from server.mpesa.callback_urls import forbidden_word_in

CONCURRENCY = 50
WARM_UP = 200  # confirmations before each measured run, not reported
ANNOUNCEMENT = re.compile(r"gateway listening on (\S+) \(pid (\d+)\)")
START_SECONDS = 120
STOP_SECONDS = 30  # above the gateway's grace for requests and background work (15 s)
# A single-threaded process busy this share of its one core is taken as saturated (on
# a shared machine the others' processes take some of the rest); the machine is taken
# as saturated at this share of all its cores.
PROCESS_SATURATED = 0.8
MACHINE_SATURATED = 0.9


@dataclass(frozen=True)
class Serving:
    url: str
    worker_pids: list[int]
    callback_secret: str


@dataclass(frozen=True)
class ScaleOutRow:
    processes: int
    figures: dict[str, Any]
    gateway_cores: float
    database_cores: float | None
    generator_cores: float
    machine_cores: float  # busy cores of the whole machine, whoever used them


def callback_secret() -> str:
    """A random callback secret Daraja would accept."""
    while True:
        secret = secrets.token_hex(16)
        if forbidden_word_in(secret) is None:
            return secret


def serve_environment(uri: str, database: str, secret: str) -> dict[str, str]:
    """What `run.py serve` needs beyond config.yaml: the store and the three secrets."""
    return {
        **os.environ,
        "GATEWAY_STORE_URI": uri,
        "GATEWAY_STORE_DATABASE": database,
        "GATEWAY_SERVER_PORT": "0",
        "GATEWAY_AUTH_JWT_SECRET": secrets.token_urlsafe(48),
        "GATEWAY_C2B_CALLBACK_SECRET": secret,
        "GATEWAY_SECURITY_PIN_KEY": Fernet.generate_key().decode(),
        "GATEWAY_LOGGING_LEVEL": "WARNING",
    }


async def announced_workers(
    stdout: asyncio.StreamReader, processes: int, printed: list[str]
) -> tuple[str, list[int]]:
    """The URL and worker pids from the `gateway listening on URL (pid N)` lines; what
    the command printed goes to `printed` as it comes, for the error when it fails."""
    url = ""
    pids: list[int] = []
    while len(pids) < processes:
        line = (await stdout.readline()).decode()
        if not line:
            raise RuntimeError(f"run.py serve stopped before all its workers listened: {printed}")
        printed.append(line.rstrip())
        # Two workers writing at once may share a line.
        for match in ANNOUNCEMENT.finditer(line):
            url = match.group(1)
            pids.append(int(match.group(2)))
    return url, pids


@asynccontextmanager
async def serving(lane: Lane, processes: int) -> AsyncIterator[Serving]:
    """`python run.py serve --processes N` on a fresh database, stopped and dropped after."""
    database = f"bench_scale_{secrets.token_hex(4)}"
    secret = callback_secret()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "run.py",
        "serve",
        "--processes",
        str(processes),
        cwd=ROOT,
        env=serve_environment(lane.uri, database, secret),
        stdout=asyncio.subprocess.PIPE,
    )
    printed: list[str] = []
    try:
        try:
            url, pids = await asyncio.wait_for(
                announced_workers(output_of(process), processes, printed), START_SECONDS
            )
        except TimeoutError:
            raise RuntimeError(
                f"run.py serve --processes {processes} did not announce its workers within "
                f"{START_SECONDS} s; it printed {printed}"
            ) from None
        yield Serving(url, pids, secret)
    finally:
        await stop(process)
        await drop_database(lane.uri, database)


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (the command passes it on to its workers); SIGKILL if it is still there
    after its shutdown grace."""
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()


async def measure(lane: Lane, processes: int, requests: int) -> ScaleOutRow:
    async with serving(lane, processes) as server:
        url = f"{server.url}/api/v1/c2b/confirmation/{server.callback_secret}"
        await load(url, callback, WARM_UP, CONCURRENCY)
        pids = server.worker_pids + ([lane.pid] if lane.pid else [])
        before = {pid: cpu_seconds(pid) for pid in pids}
        generator_before, machine_before = time.process_time(), machine_busy_seconds()
        started = time.perf_counter()
        figures = await load(url, callback, requests, CONCURRENCY)
        elapsed = time.perf_counter() - started
        used = {pid: (cpu_seconds(pid) - before[pid]) / elapsed for pid in pids}
        generator = (time.process_time() - generator_before) / elapsed
        machine = (machine_busy_seconds() - machine_before) / elapsed
    return ScaleOutRow(
        processes,
        figures,
        sum(used[pid] for pid in server.worker_pids),
        used[lane.pid] if lane.pid else None,
        generator,
        machine,
    )


def cores(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def bound(row: ScaleOutRow) -> str:
    """What the measured CPU says bounds the figure of one row."""
    ours = row.gateway_cores + (row.database_cores or 0) + row.generator_cores
    machine = os.cpu_count() or 1
    busy = (
        f"the machine was busy {row.machine_cores:.2f} of {machine} cores, "
        f"{ours:.2f} of them this run's"
    )
    if row.database_cores is not None and row.database_cores >= PROCESS_SATURATED:
        return (
            f"the database server, a single Python process busy {row.database_cores:.2f} of "
            f"its one core, while the gateway used {row.gateway_cores:.2f} ({busy})"
        )
    if row.machine_cores >= MACHINE_SATURATED * machine:
        return f"the machine's CPU ({busy})"
    return f"neither CPU nor a saturated database server ({busy}): the round trips' latency"


async def scale_out(lane: Lane, processes: list[int], requests: int) -> list[ScaleOutRow]:
    """Measure and print the scale-out rows against `lane`."""
    rows = [await measure(lane, count, requests) for count in processes]
    print(
        f"Scale-out: `python run.py serve --processes N` against {lane.label}, "
        f"{requests} distinct C2B confirmations at concurrency {CONCURRENCY} per row "
        f"(after {WARM_UP} to warm up). CPU in cores used during the row, of this "
        f"machine's {os.cpu_count()}:\n"
    )
    print(
        "| processes | req/s | p50 ms | p95 ms | p99 ms | gateway CPU | database server CPU "
        "| load generator CPU | machine busy |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        figures = row.figures
        print(
            f"| {row.processes} | {figures['rps']:.0f} | {figures['p50']:.1f} | "
            f"{figures['p95']:.1f} | {figures['p99']:.1f} | {cores(row.gateway_cores)} | "
            f"{cores(row.database_cores)} | {cores(row.generator_cores)} | "
            f"{cores(row.machine_cores)} |"
        )
    print()
    for row in rows:
        print(f"- With {row.processes} process(es) the figure is bounded by {bound(row)}.")
    if lane.pid is None:
        print("- The database server's CPU is not known: it was not started by this run.")
    else:
        print(
            "- The wire server is one Python process (mongoeco's engine): it can use one "
            "core at most, whatever N, and it shares this machine's cores with the gateways "
            "and the load generator. What more gateway processes buy shows only against a "
            "database server, and a load generator, with cores of their own."
        )
    print(flush=True)
    return rows
