"""MongoDB round trips per C2B confirmation: `python -m bench.round_trips [options]`.

Starts the gateway in this process on a fresh database of a MongoDB server: the one
--mongodb-uri names, else a wire-protocol server (scripts/mongo_wire_server.py, run
with --wire-python) started for the run and stopped after it. Seeds a product and two
insurees with one idle policy each through the admin API, then posts Daraja C2B
confirmations over HTTP: one that settles a policy (the account number is an insuree
number, the amount the policy's value) and one that matches nobody (an account number
no insuree has), each once to warm up (not counted) and once counted.

The commands the driver sends are counted with PyMongo's command monitoring, from the
moment the confirmation is posted until its payment has reached its final state
(`settled`, `unmatched`; polled through the C2B service, those reads not counted) and
the store has then been quiet for --quiet-seconds, so background writes are included.
Handshake and heartbeat commands (hello, ping, endSessions, ...) and the gateway's
periodic upkeep are left out. Prints the totals and the commands by name and
collection; --sequence also prints each command in the order it was sent.

    python -m bench.round_trips
    python -m bench.round_trips --mongodb-uri "mongodb://127.0.0.1:27017/?directConnection=true"
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import string
import sys
import time
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
from pymongo import AsyncMongoClient, monitoring

from bench.harness import callback
from bench.wire import DEFAULT_WIRE_PYTHON, wire_server
from server.startup.config import load_settings
from server.startup.runtime import Gateway, start_gateway

# Connection handshake, heartbeat and session upkeep: not the gateway's own work.
HANDSHAKE = frozenset(
    {
        "hello",
        "ismaster",
        "ping",
        "endsessions",
        "buildinfo",
        "saslstart",
        "saslcontinue",
        "getnonce",
        "authenticate",
    }
)
# The gateway's background task that expires stale debits every 30 s.
UPKEEP_TASK = "gateway-maintenance"

PRICE = "1500.00"
PRODUCT = "BENCH-RT"
# Insuree numbers with one idle policy each (warm-up, counted), and two nobody has.
INSUREES = ("900000001", "900000002")
UNKNOWN = ("800000001", "800000002")
ADMIN = ("bench-admin", "bench-admin-password")
FINAL_STATE_SECONDS = 10.0

# Set inside the task that polls a payment's state: its reads are not counted.
NOT_COUNTED: ContextVar[bool] = ContextVar("not_counted", default=False)


@dataclass(frozen=True)
class Command:
    name: str
    collection: str
    detail: str  # what it touched: filter fields, documents, pipeline stages


def filter_fields(query: Any) -> str:
    return "{" + ",".join(query) + "}" if isinstance(query, dict) else "?"


def describe(command: dict[str, Any], name: str) -> tuple[str, str]:
    """The collection a command works on and a short note of what it did."""
    target = command.get(name)
    collection = target if isinstance(target, str) else ""
    if name == "getMore":
        collection = command.get("collection", "")
    if name in ("find", "count", "countDocuments", "distinct"):
        detail = filter_fields(command.get("filter", command.get("query", {})))
    elif name == "findAndModify":
        detail = filter_fields(command.get("query", {}))
        detail += " upsert" if command.get("upsert") else ""
    elif name in ("update", "delete"):
        detail = " ".join(filter_fields(item.get("q", {})) for item in command.get(f"{name}s", []))
    elif name == "insert":
        detail = f"{len(command.get('documents', []))} document(s)"
    elif name == "aggregate":
        detail = " ".join(next(iter(stage), "?") for stage in command.get("pipeline", []))
    else:
        detail = ""
    return collection, detail


@dataclass
class CommandCounter(monitoring.CommandListener):
    """Every command the driver starts, in order, less those not counted."""

    commands: list[Command] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    left_out: Counter[str] = field(default_factory=Counter)
    last_at: float = field(default_factory=time.monotonic)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        task = asyncio.current_task()
        if name.lower() in HANDSHAKE:
            self.left_out[f"handshake {name}"] += 1
        elif NOT_COUNTED.get():
            self.left_out[f"state polling {name}"] += 1
        elif task is not None and task.get_name() == UPKEEP_TASK:
            self.left_out[f"upkeep {name}"] += 1
        else:
            self.commands.append(Command(name, *describe(event.command, name)))
            self.last_at = time.monotonic()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.failures.append(f"{event.command_name}: {event.failure}")

    async def quiet(self, seconds: float, limit: float = 30.0) -> None:
        """Return once `seconds` have passed, from now and from the last counted command."""
        since = time.monotonic()
        async with asyncio.timeout(limit):
            while True:
                idle = time.monotonic() - max(self.last_at, since)
                if idle >= seconds:
                    return
                await asyncio.sleep(seconds - idle)


def trans_id() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "RT" + "".join(secrets.choice(alphabet) for _ in range(8))


class Client:
    """The gateway's HTTP API, as an admin."""

    def __init__(self, http: aiohttp.ClientSession, gateway: Gateway) -> None:
        self.http = http
        self.url = gateway.url
        self.headers: dict[str, str] = {}

    async def log_in(self, username: str, password: str) -> None:
        answer = await self.post(
            "/api/v1/auth/token", {"username": username, "password": password}, 200
        )
        self.headers = {"Authorization": f"Bearer {answer['access_token']}"}

    async def post(self, path: str, body: dict[str, Any], expect: int = 201) -> dict[str, Any]:
        async with self.http.post(self.url + path, json=body, headers=self.headers) as answer:
            reply = await answer.json()
            if answer.status != expect:
                raise RuntimeError(f"POST {path}: {answer.status} {reply}")
            return reply


async def seed(client: Client, currency: str) -> None:
    await client.post(
        "/api/v1/products",
        {"code": PRODUCT, "name": "Bench cover", "price": PRICE, "currency": currency},
    )
    for chf_id in INSUREES:
        await client.post(
            "/api/v1/insurees", {"chf_id": chf_id, "first_name": "Bench", "last_name": "Payer"}
        )
        await client.post(
            "/api/v1/policies",
            {"chf_id": chf_id, "product_code": PRODUCT, "start_date": date.today().isoformat()},
        )


async def final_state(gateway: Gateway, trans: str, status: str) -> dict[str, Any]:
    """Poll the payment until it has `status` (run in a task of its own: not counted)."""
    NOT_COUNTED.set(True)
    async with asyncio.timeout(FINAL_STATE_SECONDS):
        while True:
            payment = await gateway.services.c2b.get_payment(trans)
            if payment is not None and payment["status"] == status:
                return payment
            await asyncio.sleep(0.01)


async def confirm(
    gateway: Gateway,
    http: aiohttp.ClientSession,
    counter: CommandCounter,
    account: str,
    status: str,
    quiet_seconds: float,
) -> tuple[list[Command], dict[str, Any]]:
    """Post one confirmation; the commands counted for it and its payment."""
    trans = trans_id()
    url = f"{gateway.url}/api/v1/c2b/confirmation/{gateway.settings.c2b.callback_secret}"
    mark = len(counter.commands)
    async with http.post(
        url, data=callback(PRICE, account, trans), headers={"Content-Type": "application/json"}
    ) as answer:
        reply = await answer.json()
    if answer.status != 200 or reply.get("ResultCode") != 0:
        raise RuntimeError(f"confirmation {trans}: {answer.status} {reply}")
    payment = await asyncio.create_task(final_state(gateway, trans, status))
    await counter.quiet(quiet_seconds)
    return counter.commands[mark:], payment


def breakdown(commands: list[Command]) -> str:
    counts = Counter(command.name for command in commands)
    return ", ".join(f"{name}: {count}" for name, count in counts.most_common())


def report(rows: list[tuple[str, list[Command], dict[str, Any]]], sequence: bool) -> None:
    print("| kind | round trips | by command |")
    print("|---|---:|---|")
    for kind, commands, _ in rows:
        print(f"| {kind} | {len(commands)} | {breakdown(commands)} |")
    print("\n| kind | command | collection | count |")
    print("|---|---|---|---:|")
    for kind, commands, _ in rows:
        counts = Counter((command.name, command.collection) for command in commands)
        for (name, collection), count in sorted(counts.items()):
            print(f"| {kind} | {name} | {collection} | {count} |")
    print()
    for kind, _, payment in rows:
        reason = payment.get("unmatched_reason") or ""
        print(f"{kind}: payment {payment['trans_id']} is {payment['status']} {reason}".rstrip())
    if sequence:
        for kind, commands, _ in rows:
            print(f"\n{kind}, in order:")
            for number, command in enumerate(commands, 1):
                print(f"  {number:2}. {command.name} {command.collection} {command.detail}")


async def measure(mongodb_uri: str, quiet_seconds: float, sequence: bool) -> None:
    counter = CommandCounter()
    monitoring.register(counter)  # every client created from now on reports to it
    base = load_settings(sandbox=True)
    database = f"bench_rt_{secrets.token_hex(4)}"  # a fresh one each run, dropped after
    settings = replace(
        base,
        server=replace(base.server, port=0),
        store=replace(base.store, uri=mongodb_uri, database=database),
    )
    gateway = await start_gateway(settings)
    try:
        await gateway.services.auth.create_user(*ADMIN, "admin")
        async with aiohttp.ClientSession() as http:
            client = Client(http, gateway)
            await client.log_in(*ADMIN)
            await seed(client, settings.c2b.currency)
            for account, status in ((INSUREES[0], "settled"), (UNKNOWN[0], "unmatched")):
                await confirm(gateway, http, counter, account, status, quiet_seconds)
            rows = []
            for kind, account, status in (
                ("settling", INSUREES[1], "settled"),
                ("unmatched", UNKNOWN[1], "unmatched"),
            ):
                commands, payment = await confirm(
                    gateway, http, counter, account, status, quiet_seconds
                )
                rows.append((kind, commands, payment))
    finally:
        await gateway.stop()
        dropper: AsyncMongoClient = AsyncMongoClient(mongodb_uri)
        await dropper.drop_database(database)
        await dropper.close()
    report(rows, sequence)
    left_out = ", ".join(f"{name}: {count}" for name, count in sorted(counter.left_out.items()))
    print(f"\nNot counted over the whole run: {left_out or 'nothing'}")
    if counter.failures:
        print("Commands that failed: " + "; ".join(counter.failures))
    print(
        f"Store: {mongodb_uri} database {database} (dropped); a confirmation's count ends "
        f"{quiet_seconds} s after the last command once its payment is final."
    )


async def run(
    mongodb_uri: str | None, wire_python: str, quiet_seconds: float, sequence: bool
) -> None:
    if mongodb_uri:
        await measure(mongodb_uri, quiet_seconds, sequence)
        return
    async with wire_server(wire_python) as uri:
        await measure(uri, quiet_seconds, sequence)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mongodb-uri", help="a running server; else one is started")
    parser.add_argument(
        "--wire-python",
        default=os.environ.get("WIRE_PYTHON", DEFAULT_WIRE_PYTHON),
        help="the Python that runs scripts/mongo_wire_server.py "
        "(default: $WIRE_PYTHON or %(default)s)",
    )
    parser.add_argument(
        "--quiet-seconds",
        type=float,
        default=0.5,
        help="how long the store must stay quiet after a payment is final",
    )
    parser.add_argument(
        "--sequence", action="store_true", help="also print each counted command in order"
    )
    args = parser.parse_args()
    if not args.mongodb_uri and not Path(args.wire_python).exists():
        sys.exit(f"no --mongodb-uri, and no Python at {args.wire_python} for the wire server")
    asyncio.run(run(args.mongodb_uri, args.wire_python, args.quiet_seconds, args.sequence))


if __name__ == "__main__":
    main()
