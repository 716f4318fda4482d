"""What every load scenario uses: a server process to load, the load generator and the
figures of a process (CPU, memory) read from /proc.

The scenarios (bench/__main__.py, bench/soak.py, bench/scale_out.py) import these from
here; `bench.__main__` keeps the names too, for the modules that import them from it."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import string
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process `pid` has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all of the machine's cores have spent busy so far (/proc/stat), whoever
    used them: on a shared machine, what the other processes took too."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int, field: str = "VmHWM") -> float:
    """A memory figure of /proc/<pid>/status in MiB: the peak resident size (VmHWM), or
    e.g. VmRSS, resident now."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def output_of(process: asyncio.subprocess.Process) -> asyncio.StreamReader:
    """The standard output of a process started with stdout=PIPE."""
    if process.stdout is None:
        raise RuntimeError(f"process {process.pid} was started without a pipe on stdout")
    return process.stdout


class Target:
    """A server process (bench/target.py) and what it printed when it was ready."""

    def __init__(self, process: asyncio.subprocess.Process, info: dict[str, Any]) -> None:
        self.process = process
        self.pid = process.pid
        self.info = info

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        return cpu_seconds(self.pid)

    async def stop(self) -> dict[str, Any] | None:
        """SIGTERM; returns the profile summary the target prints, if any."""
        self.process.terminate()
        line = await output_of(self.process).readline()
        await self.process.wait()
        return json.loads(line) if line.strip() else None


@asynccontextmanager
async def target(*args: str) -> AsyncIterator[Target]:
    """`python -m bench.target ARGS` in its own process, once it has said it is ready."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.target",
        *args,
        stdout=asyncio.subprocess.PIPE,
        limit=64 * 1024 * 1024,
    )
    server = Target(process, {})
    try:
        server.info = json.loads(await asyncio.wait_for(output_of(process).readline(), 600))
        yield server
    finally:
        if process.returncode is None:
            await server.stop()


def trans_id() -> str:
    return secrets.choice(string.ascii_uppercase) + "".join(
        secrets.choice(string.ascii_uppercase + string.digits) for _ in range(11)
    )


def callback(amount: str = "10.00", account: str = "BENCH01", trans: str | None = None) -> bytes:
    """A Daraja C2B callback body; with a TransID of its own unless `trans` is given (so
    every confirmation is new)."""
    return json.dumps(
        {
            "TransactionType": "Pay Bill",
            "TransID": trans or trans_id(),
            "TransTime": "20261123121325",
            "TransAmount": amount,
            "BusinessShortCode": "600984",
            "BillRefNumber": account,
            "InvoiceNumber": "",
            "OrgAccountBalance": "",
            "ThirdPartyTransID": "",
            "MSISDN": "2547 ***** 126",
            "FirstName": "JOHN",
            "MiddleName": "",
            "LastName": "",
        }
    ).encode()


def connection_counter() -> tuple[aiohttp.TraceConfig, list[int]]:
    """A trace config that counts the connections a session opens (in the list's one
    item): as many as the concurrency means every request after those rode keep-alive."""
    opened = [0]

    async def on_connection(*_: object) -> None:
        opened[0] += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_connection)
    return trace, opened


async def load(
    url: str,
    make_body: Callable[[], bytes],
    requests: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
    expect: int = 200,
) -> dict[str, Any]:
    """POST `requests` bodies to `url`, `concurrency` at a time over keep-alive
    connections: req/s, p50/p95/p99 latency in ms and the connections opened."""
    latencies: list[float] = []
    bodies = [make_body() for _ in range(requests)]
    connector = aiohttp.TCPConnector(limit=concurrency)
    trace, opened = connection_counter()
    async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as http:

        async def worker() -> None:
            while bodies:
                body = bodies.pop()
                started = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    if answer.status != expect:
                        raise RuntimeError(f"{url}: HTTP {answer.status}")
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "rps": requests / elapsed,
        "p50": cuts[49] * 1000,
        "p95": cuts[94] * 1000,
        "p99": cuts[98] * 1000,
        "connections": opened[0],
    }


def row(name: str, concurrency: int, figures: dict[str, Any]) -> str:
    return (
        f"| {name} | {concurrency} | {figures['rps']:.0f} | {figures['p50']:.1f} | "
        f"{figures['p95']:.1f} | {figures['p99']:.1f} |"
    )


def table_head() -> None:
    print("| endpoint | concurrency | req/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|")


def payment_maker(tokens: list[list[str]]) -> Callable[[], bytes]:
    """Provider payment bodies, each paying one of the policies [chf_id, token, product
    name] the target seeded (taken from the end of the list, once each)."""

    def payment() -> bytes:
        chf_id, token, name = tokens.pop()
        return json.dumps(
            {
                "chf_id": chf_id,
                "amount": "500.00",
                "psp_transaction_id": trans_id(),
                "policy": {"token": token, "product_code": "BASIC-GMD", "product_name": name},
            }
        ).encode()

    return payment


async def log_in(base_url: str, username: str, password: str) -> dict[str, str]:
    """The headers of a request as that user (a fresh access token)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base_url}/api/v1/auth/token", json={"username": username, "password": password}
        ) as answer,
    ):
        if answer.status != 200:
            raise RuntimeError(f"login as {username}: HTTP {answer.status}")
        access = (await answer.json())["access_token"]
    return {"Authorization": f"Bearer {access}", "Content-Type": "application/json"}
