"""Many policies for the bench gateway, quickly (bench/target.py --bulk-policies).

Through the services, each insuree and policy is one insert, and the in-memory store
checks every unique index by scanning the whole collection: seeding grows with the
square of the count (2,000 policies took 14 s on the project's machine, 10,000 take
minutes). Here the store is seeded before the gateway creates its indexes, with one
insert_many per collection; creating a unique index afterwards checks the documents
once, through a set. The first insuree and policy are made by the services and the
others are copies of them, so every document has the shape the services give it.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import date
from typing import Any

from server.insurance.repository import INSUREES, POLICIES
from server.insurance.schemas import InsureeCreateSchema, PolicyCreateSchema, ProductCreateSchema
from server.integrations.notifications import make_notifier
from server.kernel.clock import Clock
from server.kernel.store import Store, open_store
from server.sandbox.demo import PRODUCTS
from server.startup.config import Settings
from server.startup.services import build_services

# What the payment load needs of each policy: [chf_id, payment token, product name].
PolicyToken = list[str]


def chf_id_of(number: int) -> str:
    return f"9{number:08d}"


def copies(insuree: dict[str, Any], policy: dict[str, Any], count: int) -> tuple[list, list]:
    """Insurees 1..count-1 with one policy each, made from the first ones."""
    insurees, policies = [], []
    for number in range(1, count):
        chf_id = chf_id_of(number)
        insurees.append(
            {**insuree, "_id": str(uuid.uuid4()), "chf_id": chf_id, "last_name": str(number)}
        )
        policies.append(
            {
                **policy,
                "_id": str(uuid.uuid4()),
                "chf_id": chf_id,
                "payment_token": secrets.token_urlsafe(18),
            }
        )
    return insurees, policies


async def seeded_store(settings: Settings, count: int) -> tuple[Store, list[PolicyToken]]:
    """A store holding the bench product and `count` insurees with one idle policy
    each, without the gateway's indexes yet (start_gateway(store=...) creates them and
    leaves the store to the caller to close)."""
    store = open_store(settings.store.uri, settings.store.database)
    services = build_services(
        settings, store, None, make_notifier(settings.notifications.kind), Clock()
    )
    try:
        await services.products.create(ProductCreateSchema().load(PRODUCTS[0]))
        if count == 0:
            return store, []
        first = chf_id_of(0)
        insuree = await services.insurees.create(
            InsureeCreateSchema().load({"chf_id": first, "first_name": "Bench", "last_name": "0"})
        )
        policy = await services.policies.create(
            PolicyCreateSchema().load(
                {
                    "chf_id": first,
                    "product_code": PRODUCTS[0]["code"],
                    "start_date": date.today().isoformat(),
                }
            )
        )
    finally:
        services.auth.close()
    insurees, policies = copies(dict(insuree), dict(policy), count)
    if insurees:
        await store.collection(INSUREES).insert_many(insurees)
        await store.collection(POLICIES).insert_many(policies)
    return store, [
        [document["chf_id"], document["payment_token"], document["product_name"]]
        for document in [policy, *policies]
    ]
