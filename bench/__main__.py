"""Load benchmark: `python -m bench [SCENARIO] [options]`.

Starts each server in its own process (bench/target.py) and loads it from this
process with aiohttp over keep-alive connections. The scenarios:

- all (the default): the bare Tornado handler (the framework's ceiling on this
  machine), then the gateway's C2B validation, confirmation and provider payment
  endpoints at concurrency 1, 10 and 50 (req/s, p50/p95/p99 latency); the gateway's
  peak RSS after 10,000 stored payments; C2B validation while 50 wrong-password logins
  run; where a confirmation's and a validation's CPU goes; against MongoDB
  (--mongodb-uri, --wire-uri, or a wire-protocol server started with --wire-python)
  the CPU per confirmation, the driver's part of it, and the scale-out of
  `run.py serve --processes N`; then the goals, met or not.
- validation-under-logins, soak (bench/soak.py), scale-out (bench/scale_out.py): one.
- report: `all` (with --soak also the soak), and its output replaces the block between
  the bench markers of README.md.

On the in-memory store the store's own cost dominates; those are not production
figures, and the output says which ones they are.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pymongo

from bench.harness import (
    callback,
    load,
    payment_maker,
    peak_rss_mib,
    row,
    table_head,
    target,
)
from bench.readme import check, recorded, rewrite
from bench.scale_out import scale_out
from bench.soak import DASHBOARD_GOAL_MS, SoakResult, soak
from bench.wire import ROOT, Lane, default_wire_python, mongodb_lane

CONCURRENCY = (1, 10, 50)
GOAL_CONCURRENCY = 50  # the rows the goals are read from
STORED_FOR_RSS = 10_000
BURST = 500
# The in-memory bursts whose CPU is read: the kernel counts a process's CPU in ticks
# of 10 ms, so a burst must take seconds of it for a ratio to hold to a few percent.
CPU_BURST = 5000
LOGIN_CONCURRENCY = 50
VALIDATION_CONCURRENCY = 50
WARM_UP = 200  # requests before the validation-under-logins rows, not reported
SCENARIOS = ("all", "validation-under-logins", "soak", "scale-out", "report")
DEFAULT_REQUESTS = 500
DEFAULT_CONFIRMATIONS = 100_000
DEFAULT_PAYMENTS = 10_000
DEFAULT_BLOCK = 10_000
# The goals (reported, never asserted): shares of the bare handler's req/s at
# concurrency 50, the p99 there, and the CPU per confirmation on MongoDB.
CONFIRMATION_SHARE_GOAL = 20
VALIDATION_SHARE_GOAL = 60
P99_GOAL_MS = 100
MONGODB_CPU_RATIO_GOAL = 5


@dataclass(frozen=True)
class Options:
    scenario: str
    requests: int
    mongodb_uri: str | None
    wire_uri: str | None
    wire_python: str | None  # None: no Python there to start a wire server with
    confirmations: int
    payments: int
    block: int
    processes: list[int]
    soak: bool
    readme: Path

    @property
    def extra(self) -> list[str]:
        """The target's store options."""
        return ["--mongodb-uri", self.mongodb_uri] if self.mongodb_uri else []

    @property
    def store(self) -> str:
        return "MongoDB" if self.mongodb_uri else "in-memory"


@dataclass
class Figures:
    """What the goals are read from, as the run measures it."""

    store: str
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # at GOAL_CONCURRENCY
    bare_cpu: float | None = None
    mongodb_cpu: float | None = None
    driver_floor: float | None = None  # of mongodb_cpu, in the driver's code
    soak: SoakResult | None = None


def machine_line() -> str:
    return (
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC."
    )


async def bare_rows(requests: int, figures: Figures) -> None:
    """The bare handler's rows, and its CPU per request over a burst."""
    async with target("bare") as bare:
        for level in CONCURRENCY:
            measured = await load(bare.info["url"] + "/", callback, requests, level)
            if level == GOAL_CONCURRENCY:
                figures.rows["bare"] = measured
            print(row("bare Tornado handler", level, measured), flush=True)
        before = bare.cpu_seconds()
        await load(bare.info["url"] + "/", callback, CPU_BURST, 10)
        figures.bare_cpu = (bare.cpu_seconds() - before) / CPU_BURST


async def gateway_rows(options: Options, figures: Figures) -> None:
    """The gateway's rows on one store, in order, then its peak RSS once it holds
    STORED_FOR_RSS payments."""
    requests = options.requests
    policies = requests * len(CONCURRENCY)
    async with target("gateway", "--policies", str(policies), *options.extra) as gateway:
        info = gateway.info
        base, secret = info["url"], info["callback_secret"]
        for kind in ("validation", "confirmation"):
            for level in CONCURRENCY:
                url = f"{base}/api/v1/c2b/{kind}/{secret}"
                measured = await load(url, callback, requests, level)
                if level == GOAL_CONCURRENCY:
                    figures.rows[kind] = measured
                print(row(f"C2B {kind}", level, measured), flush=True)
        headers = {
            "Authorization": f"Bearer {info['psp_token']}",
            "Content-Type": "application/json",
        }
        payment = payment_maker(list(info["policies"]))
        for level in CONCURRENCY:
            url = f"{base}/api/v1/payments"
            measured = await load(url, payment, requests, level, headers, expect=201)
            print(row("provider payment", level, measured), flush=True)
        stored = requests * len(CONCURRENCY)
        if stored < STORED_FOR_RSS:
            await load(
                f"{base}/api/v1/c2b/confirmation/{secret}", callback, STORED_FOR_RSS - stored, 10
            )
        print(
            f"\nGateway peak RSS after {max(stored, STORED_FOR_RSS):,} stored C2B payments "
            f"(plus {policies:,} policies and provider payments): "
            f"{peak_rss_mib(gateway.pid):.0f} MiB"
        )


def store_note(options: Options) -> None:
    if options.mongodb_uri:
        print("\nAll rows above ran against MongoDB (--mongodb-uri), a fresh database.")
        return
    print(
        "\n**Bounded by the in-memory store (sandbox figures, not production):** the C2B "
        "confirmation and provider payment rows, the peak RSS, the first CPU split below "
        "and the soak; the rows run in order on one store, which fills as they go. The "
        "validation rows less so (a validation is one insert); the bare handler's rows and "
        "the MongoDB figures not at all."
    )


async def table(options: Options, figures: Figures) -> None:
    print(f"Store: {options.store}; {options.requests} requests per row.\n")
    table_head()
    await bare_rows(options.requests, figures)
    await gateway_rows(options, figures)
    store_note(options)
    print(flush=True)


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
        "user and per address, so every login is a real argon2 check, not a 429):\n"
    )
    table_head()
    print(row("C2B validation, no login running", VALIDATION_CONCURRENCY, quiet))
    print(
        row(f"C2B validation, {LOGIN_CONCURRENCY} logins running", VALIDATION_CONCURRENCY, figures)
    )
    print(f"\nWrong-password logins answered (401) during the validation run: {during}", flush=True)


async def burst(
    kind: str, extra: list[str], requests: int = BURST
) -> tuple[float, dict[str, Any] | None]:
    """(CPU seconds per C2B callback of `kind`, the profile split if profiled) over a
    burst of `requests` against a gateway on a fresh store."""
    async with target("gateway", *extra) as gateway:
        url = f"{gateway.info['url']}/api/v1/c2b/{kind}/{gateway.info['callback_secret']}"
        before = gateway.cpu_seconds()
        await load(url, callback, requests, 10)
        cpu = (gateway.cpu_seconds() - before) / requests
        return cpu, await gateway.stop()


def in_store(total: float, profile: dict[str, Any] | None) -> float:
    """Of `total` CPU, the share a profiled burst spent in the store's code."""
    if profile is None:
        raise RuntimeError("the profiled gateway printed no profile")
    return (
        total * profile["store_seconds"] / (profile["profiled_seconds"] - profile["idle_seconds"])
    )


async def decomposition(bare_cpu: float, extra: list[str]) -> None:
    """CPU per confirmation and per validation: the store's code versus the gateway's
    own, against the bare handler's CPU per request. The CPU is measured without a
    profiler (a profiler's own cost would count as the gateway's); a second, profiled
    burst gives the split."""
    print(
        f"\nCPU per C2B callback over a burst of {CPU_BURST} (concurrency 10, fresh store; "
        "split in the shares a sampling profiler saw in a second, profiled burst of the "
        "same size), in ms "
        f"per request; the bare Tornado handler's: {bare_cpu * 1000:.2f}:\n"
    )
    print(
        "| callback | gateway process in all | in the store's code "
        "| the gateway's own code (and Tornado) | own / bare |"
    )
    print("|---|---|---|---|---|")
    for kind in ("confirmation", "validation"):
        total, _ = await burst(kind, extra, CPU_BURST)
        _, profile = await burst(kind, ["--profile", *extra], CPU_BURST)
        store = in_store(total, profile)
        own = total - store
        print(
            f"| {kind} | {total * 1000:.2f} | {store * 1000:.2f} | {own * 1000:.2f} | "
            f"{own / bare_cpu:.1f}x |"
        )
    print(
        f"\nValidations at {VALIDATION_SHARE_GOAL}% of the bare handler's throughput allow "
        f"{100 / VALIDATION_SHARE_GOAL:.2f}x its CPU per request in all, the store included."
    )


async def mongodb_cpu(lane: Lane, figures: Figures) -> None:
    """The gateway process's CPU per confirmation with the real driver, against a
    MongoDB server in another process (its CPU is not counted), and how much of it is
    the driver's own code: a floor under it."""
    total, _ = await burst("confirmation", ["--mongodb-uri", lane.uri])
    figures.mongodb_cpu = total
    bare = figures.bare_cpu
    ratio = f": {total / bare:.1f}x the bare handler's per request" if bare else ""
    print(
        f"\nCPU per C2B confirmation against {lane.label} (the gateway process, the "
        f"driver's work included; a burst of {BURST} at concurrency 10 on a fresh "
        f"database): {total * 1000:.2f} ms{ratio} (goal at most "
        f"{MONGODB_CPU_RATIO_GOAL}x).",
        flush=True,
    )
    _, profile = await burst("confirmation", ["--profile", "--mongodb-uri", lane.uri])
    floor = figures.driver_floor = in_store(total, profile)
    floor_ratio = f", {floor / bare:.1f}x the bare handler's per request" if bare else ""
    print(
        f"Of it, in the driver's code (PyMongo {pymongo.version} and BSON, the share a "
        f"sampling profiler saw in a second, profiled burst): {floor * 1000:.2f} ms"
        f"{floor_ratio}: with the store calls a confirmation makes today, that much is left "
        "however little the gateway's own code takes.\n",
        flush=True,
    )


async def mongodb_figures(options: Options, figures: Figures) -> None:
    """The MongoDB lane's figures: CPU per confirmation and scale-out."""
    async with mongodb_lane(options.mongodb_uri, options.wire_uri, options.wire_python) as lane:
        if lane is None:
            print(
                "\nNo MongoDB figures: no --mongodb-uri or --wire-uri, and no Python at "
                f"{default_wire_python()} to start a wire server with (--wire-python).\n"
            )
            return
        await mongodb_cpu(lane, figures)
        try:
            await scale_out(lane, options.processes, options.requests)
        except RuntimeError as err:  # said in the report, which the other figures still make
            print(f"Scale-out failed: {err}\n", flush=True)


def share(figures: Figures, kind: str) -> float:
    return 100 * figures.rows[kind]["rps"] / figures.rows["bare"]["rps"]


def goal_row(goal: str, measured: str, target_text: str, met: bool | None, store: str) -> str:
    verdict = {True: "yes", False: "no", None: "not measured"}[met]
    return f"| {goal} | {measured} | {target_text} | {verdict} | {store} |"


def throughput_goals(figures: Figures) -> list[str]:
    bare = figures.rows["bare"]["rps"]
    rows = []
    for kind, goal in (
        ("confirmation", CONFIRMATION_SHARE_GOAL),
        ("validation", VALIDATION_SHARE_GOAL),
    ):
        measured = figures.rows[kind]
        rows.append(
            goal_row(
                f"C2B {kind}s at concurrency {GOAL_CONCURRENCY}, share of the bare handler's req/s",
                f"{share(figures, kind):.0f}% ({measured['rps']:.0f} of {bare:.0f})",
                f">= {goal}%",
                share(figures, kind) >= goal,
                figures.store,
            )
        )
        rows.append(
            goal_row(
                f"C2B {kind} p99 at concurrency {GOAL_CONCURRENCY}",
                f"{measured['p99']:.1f} ms",
                f"< {P99_GOAL_MS} ms",
                measured["p99"] < P99_GOAL_MS,
                figures.store,
            )
        )
    return rows


def cpu_goal(figures: Figures) -> str:
    goal = "CPU per confirmation with the driver / bare handler's per request"
    if figures.mongodb_cpu is None or not figures.bare_cpu:
        return goal_row(goal, "-", f"<= {MONGODB_CPU_RATIO_GOAL}x", None, "MongoDB")
    ratio = figures.mongodb_cpu / figures.bare_cpu
    measured = f"{ratio:.1f}x ({figures.mongodb_cpu * 1000:.2f} / {figures.bare_cpu * 1000:.2f} ms)"
    if figures.driver_floor is not None:
        measured += f"; the driver alone {figures.driver_floor / figures.bare_cpu:.1f}x"
    return goal_row(
        goal, measured, f"<= {MONGODB_CPU_RATIO_GOAL}x", ratio <= MONGODB_CPU_RATIO_GOAL, "MongoDB"
    )


def dashboard_goal(figures: Figures) -> str:
    goal = "dashboard's JSON API after the soak, median"
    if figures.soak is None:
        return goal_row(goal, "soak not run", f"< {DASHBOARD_GOAL_MS} ms", None, "in-memory")
    result = figures.soak
    return goal_row(
        f"{goal} ({result.confirmations:,} confirmations, {result.payments:,} payments)",
        f"{result.dashboard_ms:.0f} ms",
        f"< {DASHBOARD_GOAL_MS} ms",
        result.dashboard_ms < DASHBOARD_GOAL_MS,
        figures.store,
    )


def print_goals(figures: Figures) -> None:
    print("Goals (reported, not asserted):\n")
    print("| measure | this run | goal | met | store |")
    print("|---|---|---|---|---|")
    for line in [*throughput_goals(figures), cpu_goal(figures), dashboard_goal(figures)]:
        print(line)
    confirmations = figures.rows["confirmation"]
    print(
        f"\nThe rows at concurrency {GOAL_CONCURRENCY} opened {confirmations['connections']} "
        "connections each (keep-alive); every confirmation had a TransID of its own.",
        flush=True,
    )


async def run_all(options: Options) -> None:
    figures = Figures(options.store)
    await table(options, figures)
    await validation_under_logins(options.requests, options.extra)
    assert figures.bare_cpu is not None  # measured by the table
    await decomposition(figures.bare_cpu, options.extra)
    await mongodb_figures(options, figures)
    if options.soak:
        figures.soak = await soak(
            options.confirmations, options.payments, options.block, options.extra
        )
        print()
    print_goals(figures)


async def run_scale_out(options: Options) -> None:
    async with mongodb_lane(options.mongodb_uri, options.wire_uri, options.wire_python) as lane:
        if lane is None:
            sys.exit("scale-out needs MongoDB: --mongodb-uri, --wire-uri or --wire-python")
        await scale_out(lane, options.processes, options.requests)


def report_command(options: Options) -> str:
    """The command line that regenerates the block as this run did."""
    words = ["python -m bench report"]
    if options.requests != DEFAULT_REQUESTS:
        words.append(f"--requests {options.requests}")
    if options.soak:
        words.append("--soak")
        for flag, value, default in (
            ("--confirmations", options.confirmations, DEFAULT_CONFIRMATIONS),
            ("--payments", options.payments, DEFAULT_PAYMENTS),
            ("--block", options.block, DEFAULT_BLOCK),
        ):
            if value != default:
                words.append(f"{flag} {value}")
    return " ".join(words)


async def scenario(options: Options) -> None:
    if options.scenario == "validation-under-logins":
        print(f"Store: {options.store}; {options.requests} requests per row.\n")
        await validation_under_logins(options.requests, options.extra)
    elif options.scenario == "soak":
        await soak(options.confirmations, options.payments, options.block, options.extra)
    elif options.scenario == "scale-out":
        await run_scale_out(options)
    else:
        await run_all(options)


async def timed(options: Options) -> None:
    """The scenario between the machine it ran on and how long it took."""
    started = time.perf_counter()
    print(machine_line() + "\n")
    await scenario(options)
    print(f"\nThe run took {(time.perf_counter() - started) / 60:.1f} minutes.", flush=True)


async def report(options: Options) -> None:
    """Run `all` (and the soak with --soak); its output replaces the README's block."""
    try:
        check(options.readme)
    except (OSError, ValueError) as err:
        sys.exit(f"{options.readme}: {err}")
    with recorded() as output:
        print(f"Generated by `{report_command(options)}`.\n")
        await timed(replace(options, scenario="all"))
    rewrite(options.readme, output.copy.getvalue())
    print(f"\nRewrote the bench block of {options.readme}.")


async def main(options: Options) -> None:
    if options.scenario == "report":
        await report(options)
    else:
        await timed(options)


def processes(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",")]
    if any(count < 1 for count in counts):
        raise argparse.ArgumentTypeError("process counts are at least 1")
    return counts


def parser() -> argparse.ArgumentParser:
    assert __doc__ is not None
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario", nargs="?", choices=SCENARIOS, help="default: all")
    parser.add_argument("--scenario", dest="scenario_option", choices=SCENARIOS, help="the same")
    parser.add_argument(
        "--requests",
        type=int,
        default=DEFAULT_REQUESTS,
        help="requests per table row (%(default)s)",
    )
    parser.add_argument("--mongodb-uri", help="run the gateway rows against this MongoDB")
    parser.add_argument("--wire-uri", help="a running wire-protocol server for the MongoDB figures")
    parser.add_argument(
        "--wire-python",
        default=default_wire_python(),
        help="the Python that runs scripts/mongo_wire_server.py (default: $WIRE_PYTHON or "
        "%(default)s)",
    )
    soak_options = parser.add_argument_group("soak (and report --soak)")
    soak_options.add_argument(
        "--confirmations", type=int, default=DEFAULT_CONFIRMATIONS, help="%(default)s"
    )
    soak_options.add_argument("--payments", type=int, default=DEFAULT_PAYMENTS, help="%(default)s")
    soak_options.add_argument(
        "--block", type=int, default=DEFAULT_BLOCK, help="confirmations a row (%(default)s)"
    )
    parser.add_argument(
        "--processes", type=processes, default=[1, 2], help="scale-out: e.g. 1,2 (default)"
    )
    parser.add_argument("--soak", action="store_true", help="report: also run the soak")
    parser.add_argument(
        "--readme", type=Path, default=ROOT / "README.md", help="report: the file to rewrite"
    )
    return parser


def options_of(args: argparse.Namespace) -> Options:
    if args.scenario and args.scenario_option and args.scenario != args.scenario_option:
        sys.exit(f"two scenarios: {args.scenario} and --scenario {args.scenario_option}")
    return Options(
        scenario=args.scenario or args.scenario_option or "all",
        requests=args.requests,
        mongodb_uri=args.mongodb_uri,
        wire_uri=args.wire_uri,
        wire_python=args.wire_python if Path(args.wire_python).exists() else None,
        confirmations=args.confirmations,
        payments=args.payments,
        block=args.block,
        processes=args.processes,
        soak=args.soak,
        readme=args.readme,
    )


if __name__ == "__main__":
    asyncio.run(main(options_of(parser().parse_args())))
