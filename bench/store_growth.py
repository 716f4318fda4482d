"""Flat cost as the store grows: `python -m bench.store_growth [options]`.

A burst of distinct Daraja C2B confirmations through the gateway over HTTP (its own
process, bench/target.py, in-memory store), first on an empty store, then on one that
already holds --stored C2B payments (with their inbox entries and SMS receipts); prints
req/s and p50/p99 latency of both and their ratio. `--plain-mongomock` runs the same
on plain mongomock (no hash indexes), for the before/after. The figures are the
in-memory store's, not production ones.

The target stores the payments before the gateway starts (`--stored-payments`): the
first one is a real confirmation through the gateway's own C2B service, the others
copies of its documents under new TransIDs, stored with insert_many while the
collections have no unique index yet, so filling takes seconds even on plain mongomock.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import time
import uuid
from typing import Any

from bson import ObjectId

from bench.harness import callback, load, target, trans_id
from server.inbox.repository import INBOX
from server.integrations.notifications import make_notifier
from server.kernel.clock import Clock
from server.kernel.store import Store, open_store
from server.mpesa.repository import PAYMENTS
from server.notifications.repository import SMS_OUTBOX
from server.startup.config import Settings
from server.startup.services import build_services

WARM_UP = 100  # confirmations before each measured burst, not reported
BATCH = 5_000  # documents per insert_many
# The collections a confirmed C2B payment leaves a document in.
LEFT_BY_A_PAYMENT = (PAYMENTS, INBOX, SMS_OUTBOX)


def open_bench_store(settings: Settings, plain_mongomock: bool) -> Store:
    """The settings' store; with `plain_mongomock`, the in-memory store as it was before
    server.kernel.memory_store: mongomock-motor over plain mongomock."""
    if not plain_mongomock:
        return open_store(settings.store.uri, settings.store.database)
    from mongomock_motor import AsyncMongoMockClient

    return Store(AsyncMongoMockClient(tz_aware=True), settings.store.database, in_memory=True)


def renamed(value: Any, names: dict[str, str]) -> Any:
    """`value` with each key of `names` replaced by its value in every string in it."""
    if isinstance(value, str):
        for old, new in names.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {key: renamed(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [renamed(item, names) for item in value]
    return value


async def store_payments(store: Store, settings: Settings, count: int) -> None:
    """`count` C2B payments with what each leaves behind: its inbox entry and its SMS
    receipt. The first is a real confirmation through the C2B service, its receipt then
    handled by the send-notifications job (an old payment's is long done); the others
    are copies of those documents under distinct TransIDs (fingerprint and inbox id
    follow). Call before start_gateway(store=...): without the gateway's indexes yet."""
    if count <= 0:
        return
    services = build_services(
        settings, store, None, make_notifier(settings.notifications.kind), Clock()
    )
    try:
        await services.c2b.confirm(callback(), "127.0.0.1", {"Content-Type": "application/json"})
        await services.sms.send_due()
    finally:
        services.auth.close()
    made = {name: await store.collection(name).find_one({}) for name in LEFT_BY_A_PAYMENT}
    payment = made[PAYMENTS]
    for first in range(1, count, BATCH):
        copies: dict[str, list[dict[str, Any]]] = {name: [] for name in made}
        for _ in range(first, min(first + BATCH, count)):
            new_id = trans_id()
            names = {
                payment["trans_id"]: new_id,
                payment["fingerprint"]: hashlib.sha256(new_id.encode()).hexdigest(),
                payment["inbox_id"]: str(uuid.uuid4()),
            }
            for name, document in made.items():
                copy = renamed(document, names)
                if isinstance(copy["_id"], ObjectId):
                    copy["_id"] = ObjectId()
                copies[name].append(copy)
        for name, documents in copies.items():
            await store.collection(name).insert_many(documents)


async def burst(stored: int, requests: int, concurrency: int, plain: bool) -> dict[str, Any]:
    """A gateway holding `stored` payments; the figures of `requests` confirmations."""
    options = ["--stored-payments", str(stored)] + (["--plain-mongomock"] if plain else [])
    started = time.perf_counter()
    async with target("gateway", *options) as gateway:
        ready = time.perf_counter() - started
        info = gateway.info
        url = f"{info['url']}/api/v1/c2b/confirmation/{info['callback_secret']}"
        await load(url, callback, WARM_UP, concurrency)
        load_before = os.getloadavg()[0]
        figures = await load(url, callback, requests, concurrency)
    return {**figures, "ready_s": ready, "load": load_before}


def line(name: str, figures: dict[str, Any]) -> str:
    return (
        f"| {name} | {figures['rps']:.1f} | {figures['p50']:.1f} | {figures['p99']:.1f} | "
        f"{figures['ready_s']:.0f} | {figures['load']:.1f} |"
    )


async def main(stored: int, requests: int, concurrency: int, plain: bool) -> None:
    engine = "plain mongomock" if plain else "mongomock with hash indexes"
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; in-memory store: {engine}; {requests} distinct C2B "
        f"confirmations at concurrency {concurrency}, after {WARM_UP} not counted\n"
    )
    print("| store holds | req/s | p50 ms | p99 ms | ready in s | load avg |")
    print("|---|---|---|---|---|---|")
    empty = await burst(0, requests, concurrency, plain)
    print(line("no payments", empty), flush=True)
    full = await burst(stored, requests, concurrency, plain)
    print(line(f"{stored:,} payments", full), flush=True)
    print(
        f"\n{stored:,} stored / empty: req/s x{full['rps'] / empty['rps']:.2f}, "
        f"p50 x{full['p50'] / empty['p50']:.2f}, p99 x{full['p99'] / empty['p99']:.2f} "
        "(flat cost: all near 1)"
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--burst", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--plain-mongomock", action="store_true", help="the store without hash indexes"
    )
    args = parser.parse_args()
    asyncio.run(main(args.stored, args.burst, args.concurrency, args.plain_mongomock))


if __name__ == "__main__":
    cli()
