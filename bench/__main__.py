"""Load benchmark: `python -m bench [--requests N] [--mongodb-uri URI] [--scenario S]`.

Starts each server in its own process (bench/target.py) and loads it from this
process with aiohttp over keep-alive connections: the bare Tornado handler (the
framework's ceiling on this machine), then the gateway's C2B confirmation,
validation and provider payment endpoints at concurrency 1, 10 and 50. Prints
requests per second and p50/p95/p99 latency, then the gateway's peak RSS after
10,000 stored payments, then C2B validation at concurrency 50 while 50
wrong-password logins run without pause (`--scenario validation-under-logins`
runs only that one). On the in-memory store the store's own cost dominates;
these are not production figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import string
import sys
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

CONCURRENCY = (1, 10, 50)
STORED_FOR_RSS = 10_000
BURST = 500
LOGIN_CONCURRENCY = 50
VALIDATION_CONCURRENCY = 50
WARM_UP = 200  # requests before the validation-under-logins rows, not reported
SCENARIOS = ("all", "validation-under-logins")


class Target:
    """A server process (bench/target.py) and what it printed when it was ready."""

    def __init__(self, process: asyncio.subprocess.Process, info: dict[str, Any]) -> None:
        self.process = process
        self.pid = process.pid
        self.info = info

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def stop(self) -> dict[str, Any] | None:
        """SIGTERM; returns the profile summary the target prints, if any."""
        self.process.terminate()
        line = await self.process.stdout.readline()
        await self.process.wait()
        return json.loads(line) if line.strip() else None


@asynccontextmanager
async def target(*args: str):
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
        server.info = json.loads(await asyncio.wait_for(process.stdout.readline(), 600))
        yield server
    finally:
        if process.returncode is None:
            await server.stop()


def trans_id() -> str:
    return secrets.choice(string.ascii_uppercase) + "".join(
        secrets.choice(string.ascii_uppercase + string.digits) for _ in range(11)
    )


def callback(amount: str = "10.00") -> bytes:
    return json.dumps(
        {
            "TransactionType": "Pay Bill",
            "TransID": trans_id(),
            "TransTime": "20261123121325",
            "TransAmount": amount,
            "BusinessShortCode": "600984",
            "BillRefNumber": "BENCH01",
            "InvoiceNumber": "",
            "OrgAccountBalance": "",
            "ThirdPartyTransID": "",
            "MSISDN": "2547 ***** 126",
            "FirstName": "JOHN",
            "MiddleName": "",
            "LastName": "",
        }
    ).encode()


async def load(
    url: str,
    make_body: Callable[[], bytes],
    requests: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
    expect: int = 200,
) -> dict[str, Any]:
    latencies: list[float] = []
    bodies = [make_body() for _ in range(requests)]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

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
    }


def row(name: str, concurrency: int, figures: dict[str, Any]) -> str:
    return (
        f"| {name} | {concurrency} | {figures['rps']:.0f} | {figures['p50']:.1f} | "
        f"{figures['p95']:.1f} | {figures['p99']:.1f} |"
    )


def peak_rss_mib(pid: int, field: str = "VmHWM") -> float:
    """A memory figure of /proc/<pid>/status in MiB: the peak resident size (VmHWM), or
    e.g. VmRSS, resident now."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def table_head() -> None:
    print("| endpoint | concurrency | req/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|")


async def main(requests: int, mongodb_uri: str | None, scenario: str) -> None:
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; store: {'MongoDB' if mongodb_uri else 'in-memory'}; "
        f"{requests} requests per row\n"
    )
    extra = ["--mongodb-uri", mongodb_uri] if mongodb_uri else []
    if scenario == "validation-under-logins":
        await validation_under_logins(requests, extra)
        return
    table_head()
    async with target("bare") as bare:
        for level in CONCURRENCY:
            print(
                row(
                    "bare Tornado handler",
                    level,
                    await load(bare.info["url"] + "/", callback, requests, level),
                ),
                flush=True,
            )
        before = bare.cpu_seconds()
        await load(bare.info["url"] + "/", callback, BURST, 10)
        bare_cpu = (bare.cpu_seconds() - before) / BURST
    policies = requests * len(CONCURRENCY)
    async with target("gateway", "--policies", str(policies), *extra) as gateway:
        info, pid = gateway.info, gateway.pid
        base, secret = info["url"], info["callback_secret"]
        for kind in ("validation", "confirmation"):
            for level in CONCURRENCY:
                url = f"{base}/api/v1/c2b/{kind}/{secret}"
                print(
                    row(f"C2B {kind}", level, await load(url, callback, requests, level)),
                    flush=True,
                )
        tokens = list(info["policies"])
        headers = {
            "Authorization": f"Bearer {info['psp_token']}",
            "Content-Type": "application/json",
        }

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

        for level in CONCURRENCY:
            print(
                row(
                    "provider payment",
                    level,
                    await load(
                        f"{base}/api/v1/payments", payment, requests, level, headers, expect=201
                    ),
                ),
                flush=True,
            )
        stored = requests * len(CONCURRENCY)
        if stored < STORED_FOR_RSS:
            await load(
                f"{base}/api/v1/c2b/confirmation/{secret}", callback, STORED_FOR_RSS - stored, 10
            )
        print(
            f"\nGateway peak RSS after {max(stored, STORED_FOR_RSS)} stored C2B payments "
            f"(plus {policies} policies and provider payments): {peak_rss_mib(pid):.0f} MiB"
        )
    print()
    await validation_under_logins(requests, extra)
    await decomposition(bare_cpu, extra)


async def validation_under_logins(requests: int, extra: list[str]) -> None:
    """C2B validation latency while wrong-password logins run without pause, on a
    gateway whose login throttle is raised out of the way, so that every login is a real
    argon2 check (a throttled one would be a quick 429 and prove nothing). Measured from
    the first login's answer on, so the checks are under way."""
    async with target("gateway", "--unthrottled-logins", *extra) as gateway:
        info = gateway.info
        validation = f"{info['url']}/api/v1/c2b/validation/{info['callback_secret']}"
        wrong = json.dumps(
            {"username": info["login_user"], "password": "not-the-password"}
        ).encode()
        answered = 0
        first_answer = asyncio.Event()
        done = asyncio.Event()

        async def log_in_wrongly(http: aiohttp.ClientSession) -> None:
            nonlocal answered
            while not done.is_set():
                async with http.post(
                    f"{info['url']}/api/v1/auth/token",
                    data=wrong,
                    headers={"Content-Type": "application/json"},
                ) as answer:
                    await answer.read()
                    if answer.status != 401:
                        raise RuntimeError(f"login: HTTP {answer.status}, expected 401")
                answered += 1
                first_answer.set()

        # A warm-up burst (not reported), then the same load with no login running, for
        # comparison (it leaves as many inbox entries for the measured row to find).
        await load(validation, callback, WARM_UP, VALIDATION_CONCURRENCY)
        quiet = await load(validation, callback, requests, VALIDATION_CONCURRENCY)
        connector = aiohttp.TCPConnector(limit=LOGIN_CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as http:
            logins = [asyncio.create_task(log_in_wrongly(http)) for _ in range(LOGIN_CONCURRENCY)]
            await first_answer.wait()
            before = answered
            figures = await load(validation, callback, requests, VALIDATION_CONCURRENCY)
            during = answered - before
            done.set()
            await asyncio.gather(*logins)
    print(
        f"C2B validation while {LOGIN_CONCURRENCY} concurrent wrong-password logins run "
        f"(the bench gateway allows {info['login_failures_allowed']:,} failed logins per "
        "user and per address, so every login is a real argon2 check, not a 429):"
    )
    table_head()
    print(row("C2B validation, no login running", VALIDATION_CONCURRENCY, quiet))
    print(
        row(f"C2B validation, {LOGIN_CONCURRENCY} logins running", VALIDATION_CONCURRENCY, figures)
    )
    print(f"\nWrong-password logins answered (401) during the validation run: {during}", flush=True)


async def confirmation_burst(extra: list[str]) -> tuple[float, dict[str, Any] | None]:
    """(CPU seconds per confirmation, the profile split if profiled) over a fixed burst
    against a gateway on a fresh store."""
    async with target("gateway", *extra) as gateway:
        url = f"{gateway.info['url']}/api/v1/c2b/confirmation/{gateway.info['callback_secret']}"
        before = gateway.cpu_seconds()
        await load(url, callback, BURST, 10)
        cpu = (gateway.cpu_seconds() - before) / BURST
        return cpu, await gateway.stop()


async def decomposition(bare_cpu: float, extra: list[str]) -> None:
    """CPU per confirmation: the store's code versus the gateway's own, against the bare
    handler's CPU per request. The CPU is measured without a profiler (a profiler's own
    cost would count as the gateway's); a second, profiled burst gives the split."""
    total, _ = await confirmation_burst(extra)
    _, profile = await confirmation_burst(["--profile", *extra])
    assert profile is not None
    busy = profile["profiled_seconds"] - profile["idle_seconds"]
    store = total * profile["store_seconds"] / busy
    own = total - store
    print(
        f"\nCPU per C2B confirmation over a burst of {BURST} (concurrency 10, fresh store; "
        "split in the shares a sampling profiler saw in a second, profiled burst):"
    )
    print("| part | CPU ms per request |")
    print("|---|---|")
    print(f"| gateway process in all | {total * 1000:.2f} |")
    print(f"| in the store's code | {store * 1000:.2f} |")
    print(f"| the gateway's own code (and Tornado) | {own * 1000:.2f} |")
    print(f"| bare Tornado handler, for comparison | {bare_cpu * 1000:.2f} |")
    print(
        f"\nGateway's own CPU per confirmation / bare handler's per request: {own / bare_cpu:.1f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="requests per table row")
    parser.add_argument("--mongodb-uri", help="run the gateway against this MongoDB")
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="all",
        help="validation-under-logins: only that table",
    )
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.mongodb_uri, args.scenario))
