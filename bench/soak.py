"""Soak: many C2B confirmations and provider payments through one sandbox gateway.

    python -m bench soak [--confirmations 100000] [--payments 10000] [--block 10000]

One gateway (bench/target.py, in-memory store unless --mongodb-uri) takes the
confirmations in blocks of --block, each followed by its share of the provider
payments, all at concurrency 50 over keep-alive connections. Prints one row per block
(its throughput should stay flat as the store fills), the gateway's resident memory at
the end, and how long the dashboard then takes to answer an operator: the median of a
few calls of its JSON API (GET /api/v1/dashboard, the last 24 hours, as the page
asks), and of the page's whole refresh (that and the three calls it makes beside it).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bench.harness import callback, load, log_in, payment_maker, peak_rss_mib, target
from bench.target import LOGIN_USER, PSP_USER

SOAK_CONCURRENCY = 50
DASHBOARD_CALLS = 5
DASHBOARD_GOAL_MS = 500
# What the dashboard page asks for beside GET /api/v1/dashboard (server/ops/static/
# dashboard.js): the recent payments, the reconciliation view and the SMS summary.
RECENT_PAYMENTS = 10
SMS_DAYS = 7


@dataclass(frozen=True)
class SoakResult:
    confirmations: int
    payments: int
    rss_mib: float
    peak_rss_mib: float
    dashboard_ms: float
    page_ms: float


def shares(total: int, parts: int) -> list[int]:
    """`total` split into `parts` whole shares as even as can be."""
    return [total * (part + 1) // parts - total * part // parts for part in range(parts)]


async def timed(call: Callable[[], Awaitable[None]]) -> float:
    """Milliseconds `call` took."""
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def get(http: aiohttp.ClientSession, url: str, params: dict[str, Any]) -> None:
    async with http.get(url, params=params) as answer:
        await answer.read()
        if answer.status != 200:
            raise RuntimeError(f"GET {url}: HTTP {answer.status}")


async def dashboard_times(base: str, headers: dict[str, str]) -> tuple[float, float]:
    """Median ms of GET /api/v1/dashboard, and of the page's whole refresh (its four
    calls at once), over DASHBOARD_CALLS calls each, as an operator."""
    since = (datetime.now(UTC) - timedelta(hours=24)).isoformat()
    api = f"{base}/api/v1"
    async with aiohttp.ClientSession(headers=headers) as http:

        async def dashboard() -> None:
            await get(http, f"{api}/dashboard", {"from": since})

        async def page() -> None:
            await asyncio.gather(
                dashboard(),
                get(http, f"{api}/c2b/payments", {"from": since, "limit": RECENT_PAYMENTS}),
                get(http, f"{api}/reconciliation", {}),
                get(http, f"{api}/sms/summary", {"days": SMS_DAYS}),
            )

        alone = [await timed(dashboard) for _ in range(DASHBOARD_CALLS)]
        whole = [await timed(page) for _ in range(DASHBOARD_CALLS)]
    return statistics.median(alone), statistics.median(whole)


def block_row(
    number: int,
    stored: int,
    confirmations: dict[str, Any],
    payments: dict[str, Any] | None,
    rss: float,
) -> str:
    paid = f"{payments['rps']:.0f} | {payments['p99']:.1f}" if payments else "- | -"
    return (
        f"| {number} | {stored:,} | {confirmations['rps']:.0f} | {confirmations['p99']:.1f} | "
        f"{paid} | {rss:.0f} |"
    )


async def soak(confirmations: int, payments: int, block: int, extra: list[str]) -> SoakResult:
    """Run the soak on a gateway of its own and print its rows (see the module's doc)."""
    started = time.perf_counter()
    async with target("gateway", "--policies", str(payments), "--bulk-policies", *extra) as gateway:
        ready = time.perf_counter() - started
        base, info = gateway.info["url"], gateway.info
        confirmation = f"{base}/api/v1/c2b/confirmation/{info['callback_secret']}"
        pay = payment_maker(list(info["policies"]))
        blocks = math.ceil(confirmations / block)
        print(
            f"Soak: {confirmations:,} C2B confirmations in blocks of {block:,}, each followed "
            f"by its share of {payments:,} provider payments, at concurrency "
            f"{SOAK_CONCURRENCY}, through one gateway (its {payments:,} policies seeded in "
            f"bulk; ready in {ready:.1f} s):\n"
        )
        print(
            "| block | C2B confirmations stored | confirmations req/s | p99 ms | "
            "provider payments req/s | p99 ms | gateway RSS MiB |"
        )
        print("|---|---|---|---|---|---|---|")
        stored = paid_in_all = 0
        for number, (size, paid) in enumerate(
            zip(shares(confirmations, blocks), shares(payments, blocks), strict=True), 1
        ):
            figures = await load(confirmation, callback, size, SOAK_CONCURRENCY)
            stored += size
            paying = None
            if paid >= 2:  # a latency percentile needs two answers
                headers = await log_in(base, *PSP_USER)  # a fresh token: the soak is long
                paying = await load(
                    f"{base}/api/v1/payments", pay, paid, SOAK_CONCURRENCY, headers, expect=201
                )
                paid_in_all += paid
            rss = peak_rss_mib(gateway.pid, "VmRSS")
            print(block_row(number, stored, figures, paying, rss), flush=True)
        operator = await log_in(base, *LOGIN_USER)
        dashboard_ms, page_ms = await dashboard_times(base, operator)
        result = SoakResult(
            confirmations,
            paid_in_all,
            peak_rss_mib(gateway.pid, "VmRSS"),
            peak_rss_mib(gateway.pid),
            dashboard_ms,
            page_ms,
        )
    print_end(result)
    return result


def print_end(result: SoakResult) -> None:
    print(
        f"\nAt the end: gateway RSS {result.rss_mib:.0f} MiB (peak {result.peak_rss_mib:.0f} "
        "MiB, which may be the start-up's: each password hash takes argon2's 64 MiB while "
        "it runs). The dashboard's JSON API (GET /api/v1/dashboard, the last 24 hours, as an "
        f"operator) answered in {result.dashboard_ms:.0f} ms (median of {DASHBOARD_CALLS}; "
        f"goal under {DASHBOARD_GOAL_MS} ms); the page's whole refresh (that, the recent "
        f"payments, the reconciliation view and the SMS summary at once) in "
        f"{result.page_ms:.0f} ms.",
        flush=True,
    )
