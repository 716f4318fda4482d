"""Demo data for the sandbox: users, products, insurees with idle policies, PSPs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from server.insurance.documents import Policy
from server.insurance.schemas import (
    InsureeCreateSchema,
    PolicyCreateSchema,
    ProductCreateSchema,
)
from server.psps.schemas import PspCreateSchema
from server.startup.services import Services

USERS = (
    ("admin", "sandbox-admin", "admin"),
    ("operator", "sandbox-operator", "operator"),
    ("afrimoney", "sandbox-afrimoney", "psp"),
)
PRODUCTS = (
    {"code": "BASIC-GMD", "name": "Basic cover", "price": "500.00", "currency": "GMD"},
    {"code": "BASIC-KES", "name": "Basic cover (Kenya)", "price": "1500.00", "currency": "KES"},
)
QMONEY_INSUREE = {
    "chf_id": "070707070",
    "first_name": "Awa",
    "last_name": "Jallow",
    "phone": "2207000001",
    "wallet": "5811724c",
}
QMONEY_PSP = {
    "name": "Qmoney",
    "kind": "qmoney",
    "account": "14001502",
    "currency": "GMD",
    "pin": "1234",
}
PROVIDER_PSP = {
    "name": "Afrimoney",
    "kind": "external",
    "account": "AFRIMONEY-001",
    "currency": "GMD",
    "is_external_api": True,
    "username": "afrimoney",
}
PROVIDER_INSUREE = {
    "chf_id": "060606060",
    "first_name": "Fatou",
    "last_name": "Ceesay",
    "phone": "2207000002",
}
# Kenyan insurees paying by M-Pesa paybill, each with an idle policy (1500.00 KES) and a
# phone on file: M-Pesa masks the payer's number, so SMS receipts go there.
MPESA_INSUREES = (
    {
        "chf_id": "040404040",
        "first_name": "Achieng",
        "last_name": "Odhiambo",
        "phone": "0712000040",
    },
    {"chf_id": "080808080", "first_name": "Wanjiru", "last_name": "Kamau", "phone": "0712000080"},
    {"chf_id": "090909090", "first_name": "Otieno", "last_name": "Ochieng", "phone": "0712000090"},
    # Paid in the reconciliation walkthrough by a payer whose confirmation never arrives.
    {"chf_id": "020202020", "first_name": "Chebet", "last_name": "Kiprono", "phone": "0712000020"},
)
RECOVERY_ACCOUNT = "020202020"
# Kenyan insurees paying by M-Pesa Express (the gateway prompts their phone), each with an
# idle policy (1500.00 KES). The first has a Kenyan phone, whose simulated payer accepts
# the prompt; the second the simulator's magic number whose payer cancels it.
STK_INSUREE = {
    "chf_id": "050505050",
    "first_name": "Njeri",
    "last_name": "Mwangi",
    "phone": "254708374149",
}
STK_CANCEL_PHONE = "254700000201"
STK_CANCEL_INSUREE = {
    "chf_id": "030303030",
    "first_name": "Kamau",
    "last_name": "Njoroge",
    "phone": STK_CANCEL_PHONE,
}


@dataclass(frozen=True)
class DemoData:
    qmoney_psp: dict[str, Any]
    qmoney_policy: Policy
    provider_psp: dict[str, Any]
    provider_policy: Policy
    stk_policy: Policy
    stk_cancel_policy: Policy


# Each demo insuree with the product of its idle policy.
DEMO_INSUREES = (
    (QMONEY_INSUREE, "BASIC-GMD"),
    (PROVIDER_INSUREE, "BASIC-GMD"),
    *((insuree, "BASIC-KES") for insuree in MPESA_INSUREES),
    (STK_INSUREE, "BASIC-KES"),
    (STK_CANCEL_INSUREE, "BASIC-KES"),
)

# Seeds openIMIS (the simulator's seed: products, insurees, policies) and answers it.
OpenimisSeed = Callable[[dict[str, Any]], Mapping[str, Any]]


async def seed(services: Services, today: date, openimis: OpenimisSeed | None = None) -> DemoData:
    """Created through the same schemas and services as the admin API; with `openimis`,
    the insurees and policies are made in openIMIS (whose amounts are all in
    openimis.currency, so the demo PSPs take that currency) and read from it."""
    for username, password, role in USERS:
        await services.auth.create_user(username, password, role)
    if openimis is None:
        policies = await _own_policies(services, today)
        psps = (QMONEY_PSP, PROVIDER_PSP)
    else:
        policies = await _openimis_policies(services, today, openimis)
        currency = policies[0]["currency"]
        psps = ({**QMONEY_PSP, "currency": currency}, {**PROVIDER_PSP, "currency": currency})
    by_number = {policy["chf_id"]: policy for policy in policies}
    return DemoData(
        qmoney_psp=await services.psps.create(PspCreateSchema().load(psps[0])),
        qmoney_policy=by_number[QMONEY_INSUREE["chf_id"]],
        provider_psp=await services.psps.create(PspCreateSchema().load(psps[1])),
        provider_policy=by_number[PROVIDER_INSUREE["chf_id"]],
        stk_policy=by_number[STK_INSUREE["chf_id"]],
        stk_cancel_policy=by_number[STK_CANCEL_INSUREE["chf_id"]],
    )


async def _own_policies(services: Services, today: date) -> list[Policy]:
    for product in PRODUCTS:
        await services.products.create(ProductCreateSchema().load(product))
    made = []
    for insuree, code in DEMO_INSUREES:
        await services.insurees.create(InsureeCreateSchema().load(insuree))
        made.append(
            await services.policies.create(
                PolicyCreateSchema().load(
                    {
                        "chf_id": insuree["chf_id"],
                        "product_code": code,
                        "start_date": today.isoformat(),
                    }
                )
            )
        )
    return made


async def _openimis_policies(
    services: Services, today: date, openimis: OpenimisSeed
) -> list[Policy]:
    prices = {product["code"]: product["price"] for product in PRODUCTS}
    openimis(
        {
            "products": [
                {"code": product["code"], "name": product["name"], "lump_sum": product["price"]}
                for product in PRODUCTS
            ],
            "insurees": [
                {
                    "chf_id": insuree["chf_id"],
                    "last_name": insuree["last_name"],
                    "other_names": insuree["first_name"],
                    "phone": insuree["phone"],
                }
                for insuree, _ in DEMO_INSUREES
            ],
            "policies": [
                {
                    "chf_id": insuree["chf_id"],
                    "product_code": product,
                    "value": prices[product],
                    "start_date": today.isoformat(),
                }
                for insuree, product in DEMO_INSUREES
            ],
        }
    )
    # openIMIS has no field for a Qmoney wallet: the gateway keeps it on its copy.
    await services.insurees.get(QMONEY_INSUREE["chf_id"])
    await services.insurees.update(QMONEY_INSUREE["chf_id"], {"wallet": QMONEY_INSUREE["wallet"]})
    read = []
    for insuree, _ in DEMO_INSUREES:
        [policy] = await services.policies.idle_of(insuree["chf_id"])
        read.append(policy)
    return read
