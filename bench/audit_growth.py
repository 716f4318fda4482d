"""Store growth from requests without a token: `python -m bench.audit_growth [options]`.

Starts the gateway (sandbox settings, in-memory store unless --mongodb-uri), sends
--requests POSTs of --body-kib KiB of JSON to the payment-provider API without a
token, waits until each is audited and prints what the audit collection holds:
its documents' BSON size in all and per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from collections import Counter
from dataclasses import replace

import aiohttp
import bson

from server.psp_api.repository import AUDIT
from server.startup.config import load_settings
from server.startup.runtime import start_gateway

CONCURRENCY = 50
AUDIT_WAIT_POLLS = 1200


def body_of(kib: int) -> bytes:
    """A JSON payment request padded to `kib` KiB."""
    request = {
        "chf_id": "070707070",
        "amount": "500.00",
        "psp_transaction_id": "AFR-1",
        "policy": {"token": "t", "product_code": "P", "product_name": "N"},
        "json_ext": {"padding": ""},
    }
    size = len(json.dumps(request))
    request["json_ext"]["padding"] = "x" * max(0, kib * 1024 - size)
    return json.dumps(request).encode()


async def send_all(url: str, body: bytes, count: int) -> tuple[float, Counter[int]]:
    """POST `body` `count` times, CONCURRENCY at once: the seconds taken, the statuses."""
    queue = iter(range(count))
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:

        async def worker() -> None:
            for _ in queue:
                async with http.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as answer:
                    await answer.read()
                    statuses[answer.status] += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - started, statuses


async def run(requests: int, kib: int, mongodb_uri: str | None) -> None:
    base = load_settings(sandbox=True)
    settings = replace(base, server=replace(base.server, port=0))
    database = f"bench_{secrets.token_hex(4)}"
    if mongodb_uri:
        settings = replace(
            settings, store=replace(settings.store, uri=mongodb_uri, database=database)
        )
    gateway = await start_gateway(settings)
    audit = gateway.services.store.collection(AUDIT)
    try:
        body = body_of(kib)
        seconds, statuses = await send_all(f"{gateway.url}/api/v1/payments", body, requests)
        for _ in range(AUDIT_WAIT_POLLS):  # the audit writes run after each answer
            if await audit.count_documents({}) >= requests:
                break
            await asyncio.sleep(0.05)
        stored = sum(
            [len(bson.encode(document)) async for document in audit.find({}).batch_size(100)]
        )
    finally:
        if mongodb_uri:
            await gateway.services.store.client.drop_database(database)
        await gateway.stop()
    print(
        f"{requests} token-less POSTs of {len(body)} bytes in {seconds:.1f} s: "
        f"{AUDIT} holds {stored / 2**20:.2f} MiB ({stored / requests:,.0f} bytes a request)"
        f"; statuses {dict(statuses)}, store={'mongodb' if mongodb_uri else 'memory'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--body-kib", type=int, default=60)
    parser.add_argument("--mongodb-uri")
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.body_kib, args.mongodb_uri))


if __name__ == "__main__":
    main()
