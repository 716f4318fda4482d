"""How many Qmoney logins the gateway makes for N complete OTP debits.

Starts the Qmoney simulator and the gateway (in-memory store) on free ports,
runs N debits one after another (start, read the OTP, process) for each token
expiry the simulator is told to state, and prints logins per N debits and the
mean time of one complete debit.

    python -m bench.qmoney_logins [--debits 100]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import replace
from datetime import date

import aiohttp

from server.insurance.schemas import InsureeCreateSchema, PolicyCreateSchema, ProductCreateSchema
from server.psps.schemas import PspCreateSchema
from server.sandbox.demo import PRODUCTS
from server.startup.config import load_settings
from server.startup.runtime import start_gateway
from simulators.qmoney import QmoneySimSettings, QmoneySimulator

EXPIRIES = ("3600", "-1")


async def run_debits(debits: int, token_expiry: str) -> tuple[int, float]:
    simulator = QmoneySimulator(
        QmoneySimSettings(token_expiry=token_expiry, wallets={"5811724c": "1000000.00"})
    )
    base = load_settings(sandbox=True)
    settings = replace(
        base,
        server=replace(base.server, port=0),
        qmoney=replace(base.qmoney, base_url=await simulator.start()),
    )
    gateway = await start_gateway(settings)
    services = gateway.services
    try:
        await services.auth.create_user("operator", "bench-operator", "operator")
        await services.products.create(ProductCreateSchema().load(PRODUCTS[0]))
        psp = await services.psps.create(
            PspCreateSchema().load(
                {
                    "name": "Qmoney",
                    "kind": "qmoney",
                    "account": "14001502",
                    "currency": "GMD",
                    "pin": "1234",
                }
            )
        )
        policies = []
        for number in range(debits):
            chf_id = f"{number:09d}"
            await services.insurees.create(
                InsureeCreateSchema().load(
                    {
                        "chf_id": chf_id,
                        "first_name": "Bench",
                        "last_name": str(number),
                        "wallet": "5811724c",
                    }
                )
            )
            policies.append(
                await services.policies.create(
                    PolicyCreateSchema().load(
                        {
                            "chf_id": chf_id,
                            "product_code": "BASIC-GMD",
                            "start_date": date.today().isoformat(),
                        }
                    )
                )
            )
        async with aiohttp.ClientSession(raise_for_status=True) as http:
            async with http.post(
                f"{gateway.url}/api/v1/auth/token",
                json={"username": "operator", "password": "bench-operator"},
            ) as answer:
                token = (await answer.json())["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            started = time.perf_counter()
            for policy in policies:
                async with http.post(
                    f"{gateway.url}/api/v1/transactions",
                    headers=headers,
                    json={"policy_uuid": policy["_id"], "psp_uuid": psp["_id"], "amount": "500.00"},
                ) as answer:
                    transaction = await answer.json()
                async with http.get(f"{simulator.base_url}/_sim/otp/5811724c") as answer:
                    otp = (await answer.json())["otp"]
                async with http.post(
                    f"{gateway.url}/api/v1/transactions/{transaction['uuid']}/process",
                    headers=headers,
                    json={"otp": otp},
                ) as answer:
                    assert (await answer.json())["status"] == "succeeded"
            elapsed = time.perf_counter() - started
            async with http.get(f"{simulator.base_url}/_sim/requests") as answer:
                requests = (await answer.json())["items"]
        logins = sum(1 for item in requests if item["path"] == "/login")
        return logins, elapsed / debits
    finally:
        await gateway.stop()
        await simulator.stop()


async def main(debits: int) -> None:
    print(f"{'accessTokenExpiry':>18} {'debits':>7} {'logins':>7} {'ms per debit':>13}")
    for expiry in EXPIRIES:
        logins, per_debit = await run_debits(debits, expiry)
        print(f"{expiry:>18} {debits:>7} {logins:>7} {per_debit * 1000:>13.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--debits", type=int, default=100)
    asyncio.run(main(parser.parse_args().debits))
