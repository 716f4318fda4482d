"""Demo data for the sandbox: users, products, insurees with idle policies, PSPs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from server.insurance.schemas import (
    InsureeCreateSchema,
    PolicyCreateSchema,
    ProductCreateSchema,
)
from server.psps.schemas import PspCreateSchema
from server.services import Services

USERS = (("admin", "sandbox-admin", "admin"), ("operator", "sandbox-operator", "operator"))
PRODUCTS = ({"code": "BASIC-GMD", "name": "Basic cover", "price": "500.00", "currency": "GMD"},
            {"code": "BASIC-KES", "name": "Basic cover (Kenya)", "price": "1500.00",
             "currency": "KES"})
QMONEY_INSUREE = {"chf_id": "070707070", "first_name": "Awa", "last_name": "Jallow",
                  "phone": "2207000001", "wallet": "5811724c"}
QMONEY_PSP = {"name": "Qmoney", "kind": "qmoney", "account": "14001502", "currency": "GMD",
              "pin": "1234"}


@dataclass(frozen=True)
class DemoData:
    qmoney_psp: dict[str, Any]
    qmoney_policy: dict[str, Any]


async def seed(services: Services, today: date) -> DemoData:
    """Created through the same schemas and services as the admin API."""
    for username, password, role in USERS:
        await services.auth.create_user(username, password, role)
    for product in PRODUCTS:
        await services.products.create(ProductCreateSchema().load(product))
    await services.insurees.create(InsureeCreateSchema().load(QMONEY_INSUREE))
    policy = await services.policies.create(PolicyCreateSchema().load({
        "chf_id": QMONEY_INSUREE["chf_id"], "product_code": "BASIC-GMD",
        "start_date": today.isoformat()}))
    psp = await services.psps.create(PspCreateSchema().load(QMONEY_PSP))
    return DemoData(qmoney_psp=psp, qmoney_policy=policy)
