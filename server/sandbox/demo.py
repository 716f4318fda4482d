"""Demo data for the sandbox: users, products, insurees with idle policies, PSPs."""

from __future__ import annotations

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


async def seed(services: Services, today: date) -> DemoData:
    """Created through the same schemas and services as the admin API."""
    for username, password, role in USERS:
        await services.auth.create_user(username, password, role)
    for product in PRODUCTS:
        await services.products.create(ProductCreateSchema().load(product))

    async def insuree_with_policy(insuree: dict[str, str], product: str) -> Policy:
        await services.insurees.create(InsureeCreateSchema().load(insuree))
        return await services.policies.create(
            PolicyCreateSchema().load(
                {
                    "chf_id": insuree["chf_id"],
                    "product_code": product,
                    "start_date": today.isoformat(),
                }
            )
        )

    qmoney_policy = await insuree_with_policy(QMONEY_INSUREE, "BASIC-GMD")
    provider_policy = await insuree_with_policy(PROVIDER_INSUREE, "BASIC-GMD")
    for insuree in MPESA_INSUREES:
        await insuree_with_policy(insuree, "BASIC-KES")
    stk_policy = await insuree_with_policy(STK_INSUREE, "BASIC-KES")
    stk_cancel_policy = await insuree_with_policy(STK_CANCEL_INSUREE, "BASIC-KES")
    return DemoData(
        qmoney_psp=await services.psps.create(PspCreateSchema().load(QMONEY_PSP)),
        qmoney_policy=qmoney_policy,
        provider_psp=await services.psps.create(PspCreateSchema().load(PROVIDER_PSP)),
        provider_policy=provider_policy,
        stk_policy=stk_policy,
        stk_cancel_policy=stk_cancel_policy,
    )
