"""Rules for insurees, products and policies (admin-managed)."""

from __future__ import annotations

import builtins
import secrets
import uuid
from typing import Any, TypeVar

from server.insurance.backend import BuiltInBackend, InsuranceBackend
from server.insurance.documents import Insuree, Policy, Product
from server.insurance.repository import (
    InsureeRepository,
    PolicyRepository,
    ProductRepository,
)
from server.insurance.schemas import day_start
from server.insurance.search import insuree_query
from server.kernel.clock import Clock
from server.kernel.documents import DuplicateDocument
from server.kernel.errors import Conflict, NotFound, ValidationFailed
from server.kernel.identifiers import CHF_ID, PRODUCT_CODE
from server.kernel.money import AmountError, AmountNotPositive, format_amount, parse_positive_amount

T = TypeVar("T")
Page = tuple[list[T], int]


def _amount(text: str, currency: str, field: str) -> int:
    """A price or a policy's value: more than zero."""
    try:
        return parse_positive_amount(text, currency)
    except AmountError as err:
        raise ValidationFailed(str(err), {"fields": {field: [str(err)]}}) from None


def require_exact_amount(policy: Policy, amount: str) -> None:
    """A payment is more than zero and equals the policy's value exactly, in the policy's
    currency. A policy whose stored value is not more than zero cannot be paid."""
    try:
        minor = parse_positive_amount(amount, policy["currency"])
    except AmountNotPositive as err:
        raise ValidationFailed(str(err), {"fields": {"amount": [str(err)]}}) from None
    except AmountError as err:
        raise ValidationFailed(
            str(err), {"fields": {"amount": [str(err)]}}, code="invalid_amount"
        ) from None
    if policy["value"] <= 0:
        value = format_amount(policy["value"], policy["currency"])
        raise Conflict(
            f"the policy's value is {value} {policy['currency']}: it cannot be "
            "paid until it is given a value greater than 0",
            {"value": value, "currency": policy["currency"]},
            code="policy_value_not_positive",
        )
    if minor != policy["value"]:
        expected = format_amount(policy["value"], policy["currency"])
        word = "small" if minor < policy["value"] else "large"
        raise ValidationFailed(
            f"amount too {word}: the policy costs {expected} {policy['currency']}",
            {"expected": expected, "currency": policy["currency"]},
            code=f"amount_too_{word}",
        )


def require_own_record(backend: InsuranceBackend, things: str) -> None:
    """Insurees and policies are made and changed where they are kept: with a remote
    backend, there (a policy made here would be unknown to it)."""
    if backend.remote:
        raise Conflict(
            f"{things} are kept in {backend.name} (insurance.backend): make and change "
            f"them there; the gateway reads them from it",
            code="kept_in_backend",
        )


def _dates(data: dict[str, Any]) -> dict[str, Any]:
    return {
        key: day_start(value) if key.endswith("_date") else value for key, value in data.items()
    }


class InsureeService:
    def __init__(
        self,
        insurees: InsureeRepository,
        clock: Clock,
        backend: InsuranceBackend | None = None,
    ) -> None:
        self.insurees = insurees
        self.clock = clock
        self.backend: InsuranceBackend = backend or BuiltInBackend()

    async def create(self, data: dict[str, Any]) -> Insuree:
        require_own_record(self.backend, "insurees")
        now = self.clock.now()
        try:
            return await self.insurees.insert(
                {
                    "_id": str(uuid.uuid4()),
                    "chf_id": data["chf_id"],
                    "first_name": data["first_name"],
                    "last_name": data["last_name"],
                    "phone": data["phone"],
                    "wallet": data["wallet"],
                    "sms_opt_out": bool(data.get("sms_opt_out", False)),
                    "created_at": now,
                    "updated_at": now,
                }
            )
        except DuplicateDocument:
            raise Conflict(
                f"insuree {data['chf_id']} already exists", code="insuree_exists"
            ) from None

    async def get(self, chf_id: str) -> Insuree:
        chf_id = CHF_ID.normalise(chf_id)
        await self.backend.refresh_insuree(chf_id)
        insuree = await self.insurees.find_one({"chf_id": chf_id})
        if insuree is None:
            raise NotFound(f"no insuree with number {chf_id}", code="unknown_insuree")
        return insuree

    async def list(self, filters: dict[str, Any], limit: int, offset: int) -> Page[Insuree]:
        return await self.insurees.page(filters, [("chf_id", 1)], limit, offset)

    async def found_with_idle_policies(
        self, text: str, limit: int
    ) -> builtins.list[tuple[Insuree, builtins.list[Policy]]]:
        """The insurees an operator's `text` finds (server.insurance.search), by number,
        each with its policies awaiting payment."""
        return await self.insurees.matching_with_idle_policies(insuree_query(text), limit)

    async def update(self, chf_id: str, changes: dict[str, Any]) -> Insuree:
        chf_id = CHF_ID.normalise(chf_id)
        await self.backend.refresh_insuree(chf_id)
        updated = await self.insurees.update(
            {"chf_id": chf_id}, {**changes, "updated_at": self.clock.now()}
        )
        if updated is None:
            raise NotFound(f"no insuree with number {chf_id}", code="unknown_insuree")
        return updated


class ProductService:
    def __init__(self, products: ProductRepository, clock: Clock) -> None:
        self.products = products
        self.clock = clock

    async def create(self, data: dict[str, Any]) -> Product:
        now = self.clock.now()
        document: Product = {
            "_id": str(uuid.uuid4()),
            "code": data["code"],
            "name": data["name"],
            "price": _amount(data["price"], data["currency"], "price"),
            "currency": data["currency"],
            "created_at": now,
            "updated_at": now,
        }
        try:
            return await self.products.insert(document)
        except DuplicateDocument:
            raise Conflict(
                f"product {data['code']} already exists", code="product_exists"
            ) from None

    async def get(self, code: str) -> Product:
        code = PRODUCT_CODE.normalise(code)
        product = await self.products.find_one({"code": code})
        if product is None:
            raise NotFound(f"no product with code {code}", code="unknown_product")
        return product

    async def list(self, filters: dict[str, Any], limit: int, offset: int) -> Page[Product]:
        return await self.products.page(filters, [("code", 1)], limit, offset)

    async def update(self, code: str, changes: dict[str, Any]) -> Product:
        product = await self.get(code)
        if "price" in changes:
            changes["price"] = _amount(changes["price"], product["currency"], "price")
        updated = await self.products.update(
            {"code": product["code"]}, {**changes, "updated_at": self.clock.now()}
        )
        if updated is None:
            raise NotFound(f"no product with code {code}", code="unknown_product")
        return updated


class PolicyService:
    def __init__(
        self,
        policies: PolicyRepository,
        insurees: InsureeService,
        products: ProductService,
        clock: Clock,
    ) -> None:
        self.policies = policies
        self.insurees = insurees
        self.products = products
        self.clock = clock
        self.backend = insurees.backend

    async def refresh(self, chf_id: str) -> None:
        """Bring an insuree's policies up to date from the insurance backend before a
        caller reads them from the store itself."""
        await self.backend.refresh_insuree(chf_id)

    async def create(self, data: dict[str, Any]) -> Policy:
        require_own_record(self.backend, "policies")
        await self.insurees.get(data["chf_id"])
        product = await self.products.get(data["product_code"])
        currency = product["currency"]
        value = (
            _amount(data["amount"], currency, "amount") if "amount" in data else product["price"]
        )
        if value <= 0:
            price = format_amount(value, currency)
            message = (
                f"product {product['code']} costs {price} {currency}: give the policy "
                "an amount greater than 0"
            )
            raise ValidationFailed(message, {"fields": {"amount": [message]}})
        now = self.clock.now()
        document: Policy = {
            "_id": str(uuid.uuid4()),
            "chf_id": data["chf_id"],
            "payment_token": secrets.token_urlsafe(18),
            "product_code": product["code"],
            "product_name": product["name"],
            "value": value,
            "currency": currency,
            "status": data["status"],
            "start_date": day_start(data["start_date"]),
            "created_at": now,
            "updated_at": now,
        }
        if "expiry_date" in data:
            document["expiry_date"] = day_start(data["expiry_date"])
        return await self.policies.insert(document)

    async def get(self, policy_uuid: str) -> Policy:
        await self.backend.refresh_policy(policy_uuid)
        policy = await self.policies.find_one({"_id": policy_uuid})
        if policy is None:
            raise NotFound(f"no policy {policy_uuid}", code="unknown_policy")
        return policy

    async def with_insuree(self, policy_uuid: str) -> tuple[Policy, Insuree]:
        """The policy and its insuree, read together."""
        await self.backend.refresh_policy(policy_uuid)
        policy, insuree = await self.policies.with_insuree(policy_uuid)
        if policy is None:
            raise NotFound(f"no policy {policy_uuid}", code="unknown_policy")
        if insuree is None:  # never: a policy is made for an existing insuree
            insuree = await self.insurees.get(policy["chf_id"])
        return policy, insuree

    async def list(self, filters: dict[str, Any], limit: int, offset: int) -> Page[Policy]:
        return await self.policies.page(filters, [("chf_id", 1), ("created_at", 1)], limit, offset)

    async def idle_of(self, chf_id: str) -> builtins.list[Policy]:
        """The policies of an insuree that await payment."""
        await self.backend.refresh_insuree(chf_id)
        return await self.policies.idle_of(chf_id)

    async def by_payment_token(self, token: str) -> Policy | None:
        policy = await self.policies.find_one({"payment_token": token})
        if policy is None or not self.backend.remote:
            return policy
        await self.backend.refresh_insuree(policy["chf_id"])
        return await self.policies.find_one({"_id": policy["_id"]})

    async def update(self, policy_uuid: str, changes: dict[str, Any]) -> Policy:
        require_own_record(self.backend, "policies")
        policy = await self.get(policy_uuid)
        changes = _dates(changes)
        if "amount" in changes:
            changes["value"] = _amount(changes.pop("amount"), policy["currency"], "amount")
        updated = await self.policies.update(
            {"_id": policy_uuid}, {**changes, "updated_at": self.clock.now()}
        )
        if updated is None:
            raise NotFound(f"no policy {policy_uuid}", code="unknown_policy")
        return updated
