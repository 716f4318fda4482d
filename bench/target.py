"""A server for the benchmark to load, in its own process.

    python -m bench.target gateway --policies N   # the gateway, in-memory store, seeded
    python -m bench.target gateway --unthrottled-logins   # login throttle raised out of the way
    python -m bench.target gateway --policies N --bulk-policies   # seeded in bulk (faster)
    python -m bench.target gateway --stored-payments N [--plain-mongomock]   # store growth
    python -m bench.target bare                   # a bare Tornado handler: parse JSON, answer

Prints one JSON line (its URL and what the load generator needs), then serves
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
from dataclasses import replace
from datetime import date

import aiohttp
from pyinstrument import Profiler
from pyinstrument.frame import Frame
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from bench.seeding import seeded_store
from bench.store_growth import open_bench_store, store_payments
from server.insurance.schemas import InsureeCreateSchema, PolicyCreateSchema, ProductCreateSchema
from server.kernel.collector import settle_for_serving
from server.psps.schemas import PspCreateSchema
from server.sandbox.demo import PRODUCTS
from server.startup.config import load_settings
from server.startup.runtime import start_gateway


class BareHandler(RequestHandler):
    """The framework's ceiling: parse the same JSON, answer a constant."""

    def post(self) -> None:
        json.loads(self.request.body)
        self.set_header("Content-Type", "application/json")
        self.finish(b'{"ResultCode":0,"ResultDesc":"Success"}')


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_bare() -> None:
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(Application([(r"/.*", BareHandler)]))
    server.add_sockets(sockets)
    settle_for_serving()  # as the gateway's commands do: the same collector settings
    print(json.dumps({"url": f"http://127.0.0.1:{sockets[0].getsockname()[1]}"}), flush=True)
    await wait_for_signal()


STORE_MODULES = ("/mongomock", "/pymongo/", "/bson/", "/motor")
IDLE_MODULE = "/selectors.py"  # the event loop waiting for the network


def time_split(frame: Frame) -> dict[str, float]:
    """Seconds the sampled stacks spent inside the store's code (driver or in-memory
    engine, with everything it calls), waiting in the event loop's poll, and in all."""
    split = {"store_seconds": 0.0, "idle_seconds": 0.0, "profiled_seconds": frame.time}

    def walk(node: Frame) -> None:
        path = node.file_path or ""
        if any(module in path for module in STORE_MODULES):
            split["store_seconds"] += node.time
        elif path.endswith(IDLE_MODULE):
            split["idle_seconds"] += node.time
        else:
            for child in node.children:
                walk(child)

    walk(frame)
    return split


# With --unthrottled-logins: failed logins allowed per user and per address, so that
# every wrong-password login of the load is a real argon2 check, never a quick 429.
UNTHROTTLED = 1_000_000
LOGIN_USER = ("bench-login", "bench-login-password")
# The payment provider's API user (role psp), whose token the payment load uses.
PSP_USER = ("bench-psp", "bench-password")


async def serve_gateway(
    policies: int,
    mongodb_uri: str | None,
    profile: bool,
    unthrottled_logins: bool = False,
    bulk_policies: bool = False,
    stored_payments: int = 0,
    plain_mongomock: bool = False,
) -> None:
    base = load_settings(sandbox=True)
    settings = replace(
        base,
        server=replace(base.server, port=0),
        psp_api=replace(base.psp_api, rate_limit_per_minute=0),
    )
    if unthrottled_logins:
        settings = replace(
            settings,
            auth=replace(
                settings.auth,
                login_max_failures_per_user=UNTHROTTLED,
                login_max_failures_per_address=UNTHROTTLED,
            ),
        )
    database = f"bench_{secrets.token_hex(4)}"  # a fresh one each run, dropped after
    if mongodb_uri:
        settings = replace(
            settings, store=replace(settings.store, uri=mongodb_uri, database=database)
        )
    # With --bulk-policies the product and policies are stored before the gateway starts.
    store, tokens = await seeded_store(settings, policies) if bulk_policies else (None, [])
    # bench/store_growth.py: C2B payments stored before the gateway starts, on that store.
    if stored_payments or plain_mongomock:
        store = store or open_bench_store(settings, plain_mongomock)
        await store_payments(store, settings, stored_payments)
    gateway = await start_gateway(settings, store=store)
    services = gateway.services
    await services.auth.create_user(*PSP_USER, "psp")
    await services.auth.create_user(*LOGIN_USER, "operator")
    if not bulk_policies:
        await services.products.create(ProductCreateSchema().load(PRODUCTS[0]))
    await services.psps.create(
        PspCreateSchema().load(
            {
                "name": "Bench",
                "kind": "external",
                "account": "B",
                "currency": "GMD",
                "is_external_api": True,
                "username": PSP_USER[0],
            }
        )
    )
    for number in range(0 if bulk_policies else policies):
        chf_id = f"9{number:08d}"
        await services.insurees.create(
            InsureeCreateSchema().load(
                {"chf_id": chf_id, "first_name": "Bench", "last_name": str(number)}
            )
        )
        policy = await services.policies.create(
            PolicyCreateSchema().load(
                {
                    "chf_id": chf_id,
                    "product_code": "BASIC-GMD",
                    "start_date": date.today().isoformat(),
                }
            )
        )
        tokens.append([chf_id, policy["payment_token"], policy["product_name"]])
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/api/v1/auth/token",
            json={"username": PSP_USER[0], "password": PSP_USER[1]},
        ) as answer,
    ):
        access = (await answer.json())["access_token"]
    settle_for_serving()  # as `python run.py serve` and `sandbox` do
    print(
        json.dumps(
            {
                "url": gateway.url,
                "psp_token": access,
                "policies": tokens,
                "callback_secret": settings.c2b.callback_secret,
                "login_user": LOGIN_USER[0],
                "login_failures_allowed": settings.auth.login_max_failures_per_user,
            }
        ),
        flush=True,
    )
    # A sampling profiler: its cost is small and does not grow with the number of
    # Python calls, so the split between the store's code and ours stays fair.
    profiler = Profiler(interval=0.0005, async_mode="disabled") if profile else None
    if profiler is not None:
        profiler.start()
    await wait_for_signal()
    if profiler is not None:
        profiler.stop()
        print(json.dumps(time_split(profiler.last_session.root_frame())), flush=True)
    if mongodb_uri:
        await services.store.client.drop_database(database)
    await gateway.stop()
    if store is not None:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["gateway", "bare"])
    parser.add_argument("--policies", type=int, default=0)
    parser.add_argument("--mongodb-uri")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the gateway; print the store's CPU share when stopped",
    )
    parser.add_argument(
        "--unthrottled-logins",
        action="store_true",
        help=f"allow {UNTHROTTLED:,} failed logins per user and per address",
    )
    parser.add_argument(
        "--bulk-policies",
        action="store_true",
        help="store the --policies in bulk before the gateway starts (bench/seeding.py)",
    )
    parser.add_argument(
        "--stored-payments",
        type=int,
        default=0,
        help="C2B payments stored before the gateway starts (bench/store_growth.py)",
    )
    parser.add_argument(
        "--plain-mongomock",
        action="store_true",
        help="in-memory store on plain mongomock, without server.kernel.memory_store",
    )
    args = parser.parse_args()
    if args.kind == "bare":
        asyncio.run(serve_bare())
    else:
        asyncio.run(
            serve_gateway(
                args.policies,
                args.mongodb_uri,
                args.profile,
                args.unthrottled_logins,
                args.bulk_policies,
                args.stored_payments,
                args.plain_mongomock,
            )
        )


if __name__ == "__main__":
    main()
