"""The openIMIS simulator's records: products, insurees, policies, premiums, mutation logs.

Money is Decimal with two places, as openIMIS's ``DecimalField(decimal_places=2)``
columns keep it. What a premium does to its policy follows the contribution module
(openimis-be-contribution 1.10, ``premium_updated``): the premium is compared with the
policy value minus the policy's other live premiums (photo fees left out), whatever the
policy's status:

- equal: paid; the policy takes effect on the later of pay date and start date;
- more: paid; it takes effect on the pay date (openIMIS logs a warning only);
- less: nothing changes (instalments add up), unless the action is ``ENFORCE``;
- action ``SUSPEND``: the policy is suspended (status 4) whatever the amount.

"Paid" means status 2 active with that effective date under the default activation
option, or status 16 ready (effective date unchanged) under the "ready" option.
"""

from __future__ import annotations

import calendar
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from simulators.common import JsonObject, parse_amount_minor

STATUS_IDLE, STATUS_ACTIVE, STATUS_SUSPENDED, STATUS_READY = 1, 2, 4, 16  # 8 is expired
ACTIVATIONS = ("active", "ready")
INSURANCE_PERIOD_MONTHS = 12
CENT = Decimal("0.01")
PREMIUM_FAILED = "contribution.mutation.failed_to_create_premium"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def money(value: Decimal) -> Decimal:
    """A stored amount: two decimal places, as a numeric(18, 2) column rounds it."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def new_uuid() -> str:
    return str(uuid.uuid4())


@dataclass
class Product:
    pk: int
    uuid: str
    code: str
    name: str
    lump_sum: Decimal


@dataclass
class Family:
    pk: int
    uuid: str
    head_insuree: Insuree


@dataclass
class Insuree:
    pk: int
    uuid: str
    chf_id: str
    last_name: str
    other_names: str
    phone: str | None
    status: str = "AC"
    family: Family | None = None


@dataclass
class Premium:
    pk: int
    uuid: str
    policy: Policy
    amount: Decimal
    receipt: str
    pay_date: date
    pay_type: str
    is_photo_fee: bool
    created_at: str
    client_mutation_id: str | None

    def as_json(self) -> JsonObject:
        return {
            "uuid": self.uuid,
            "policy_uuid": self.policy.uuid,
            "product_code": self.policy.product.code,
            "amount": str(self.amount),
            "receipt": self.receipt,
            "pay_date": self.pay_date.isoformat(),
            "pay_type": self.pay_type,
            "is_photo_fee": self.is_photo_fee,
            "client_mutation_id": self.client_mutation_id,
            "created_at": self.created_at,
        }


@dataclass
class Policy:
    pk: int
    uuid: str
    family: Family
    product: Product
    value: Decimal
    enroll_date: date
    start_date: date
    expiry_date: date
    effective_date: date | None = None
    status: int = STATUS_IDLE
    stage: str = "N"
    premiums: list[Premium] = field(default_factory=list)

    def paid_so_far(self, *, besides: Premium | None = None) -> Decimal:
        """The live premiums (photo fees left out), the one named excepted."""
        amounts = (p.amount for p in self.premiums if p is not besides and not p.is_photo_fee)
        return sum(amounts, Decimal("0.00"))

    @property
    def sum_premiums(self) -> float:
        """As openIMIS answers it: a GraphQL Float (the gateway adds up the premiums'
        decimal amounts instead)."""
        return float(self.paid_so_far())

    def as_json(self) -> JsonObject:
        effective = self.effective_date
        return {
            "uuid": self.uuid,
            "chf_id": self.family.head_insuree.chf_id,
            "product_code": self.product.code,
            "status": self.status,
            "value": str(self.value),
            "start_date": self.start_date.isoformat(),
            "effective_date": None if effective is None else effective.isoformat(),
            "expiry_date": self.expiry_date.isoformat(),
            "sum_premiums": str(self.paid_so_far()),
        }


@dataclass
class MutationLog:
    """One received mutation; status 0 received, 1 error, 2 success."""

    uuid: str
    client_mutation_id: str | None
    client_mutation_label: str | None
    user: str | None
    request_date_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: int = 0
    error: str | None = None

    @property
    def pk(self) -> str:
        return self.uuid

    def finish(self, errors: list[JsonObject] | None) -> None:
        self.status, self.error = (1, json.dumps(errors)) if errors else (2, None)


class SeedError(ValueError):
    """A seed body the simulator refuses (answered with HTTP 400)."""


# --------------------------------------------------------------------------- seeding


def _record_list(body: JsonObject, name: str, fields: set[str]) -> list[JsonObject]:
    records = body.get(name, [])
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise SeedError(f"{name} must be a list of objects")
    for record in records:
        if unknown := sorted(set(record) - fields):
            raise SeedError(f"{name}: unknown fields {unknown}")
    return records


def _text(record: JsonObject, name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        raise SeedError(f"{name} must be a non-empty string")
    return value


def _amount(record: JsonObject, name: str) -> Decimal:
    minor = parse_amount_minor(record.get(name), allow_zero=True)
    if minor is None:
        raise SeedError(f"{name} must be an amount with at most two decimals")
    return Decimal(minor).scaleb(-2)


def _date(record: JsonObject, name: str) -> date:
    value = record.get(name)
    try:
        if isinstance(value, str) and _DATE.fullmatch(value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise SeedError(f"{name} must be a date YYYY-MM-DD")


def _add_months(day: date, months: int) -> date:
    year, month = divmod(day.month - 1 + months, 12)
    year += day.year
    return day.replace(
        year=year, month=month + 1, day=min(day.day, calendar.monthrange(year, month + 1)[1])
    )


# --------------------------------------------------------------------------- the records


class OpenimisData:
    """Every record of one simulated openIMIS."""

    def __init__(self) -> None:
        self.products: dict[str, Product] = {}  # by code
        self.insurees: dict[str, Insuree] = {}  # by chf_id
        self.policies: dict[str, Policy] = {}  # by uuid, in creation order
        self.premiums: list[Premium] = []
        self.mutation_logs: list[MutationLog] = []
        self._next_pk = 1

    def _pk(self) -> int:
        pk, self._next_pk = self._next_pk, self._next_pk + 1
        return pk

    # ---- seeding

    def seed(self, body: Any) -> JsonObject:
        """Add or update products and insurees, add idle policies; nothing changes on an error."""
        if not isinstance(body, dict):
            raise SeedError("body must be a JSON object")
        if unknown := sorted(set(body) - {"products", "insurees", "policies"}):
            raise SeedError(f"unknown fields {unknown}")
        products = _record_list(body, "products", {"code", "name", "lump_sum"})
        insurees = _record_list(body, "insurees", {"chf_id", "last_name", "other_names", "phone"})
        policies = _record_list(body, "policies", {"chf_id", "product_code", "value", "start_date"})
        product_rows = [
            (_text(p, "code"), _text(p, "name"), _amount(p, "lump_sum")) for p in products
        ]
        insuree_rows = [
            (_text(i, "chf_id"), _text(i, "last_name"), _text(i, "other_names"), i.get("phone"))
            for i in insurees
        ]
        if any(phone is not None and not isinstance(phone, str) for *_, phone in insuree_rows):
            raise SeedError("phone must be a string")
        known_products = set(self.products) | {code for code, _, _ in product_rows}
        known_insurees = set(self.insurees) | {chf_id for chf_id, *_ in insuree_rows}
        policy_rows: list[tuple[str, str, Decimal | None, date | None]] = []
        for record in policies:
            chf_id, code = _text(record, "chf_id"), _text(record, "product_code")
            if chf_id not in known_insurees:
                raise SeedError(f"policies: no insuree {chf_id}")
            if code not in known_products:
                raise SeedError(f"policies: no product {code}")
            value = _amount(record, "value") if "value" in record else None
            start = _date(record, "start_date") if "start_date" in record else None
            policy_rows.append((chf_id, code, value, start))
        return {
            "products": [self._put_product(*row) for row in product_rows],
            "insurees": [self._put_insuree(*row) for row in insuree_rows],
            "policies": [self._add_policy(*row) for row in policy_rows],
        }

    def _put_product(self, code: str, name: str, lump_sum: Decimal) -> JsonObject:
        product = self.products.get(code)
        if product is None:
            product = self.products[code] = Product(self._pk(), new_uuid(), code, name, lump_sum)
        product.name, product.lump_sum = name, lump_sum
        return {"code": code, "uuid": product.uuid}

    def _put_insuree(
        self, chf_id: str, last_name: str, other_names: str, phone: str | None
    ) -> JsonObject:
        insuree = self.insurees.get(chf_id)
        if insuree is None:
            insuree = Insuree(self._pk(), new_uuid(), chf_id, last_name, other_names, phone)
            insuree.family = Family(self._pk(), new_uuid(), insuree)  # head of its own family
            self.insurees[chf_id] = insuree
        insuree.last_name, insuree.other_names, insuree.phone = last_name, other_names, phone
        return {"chf_id": chf_id, "uuid": insuree.uuid}

    def _add_policy(
        self, chf_id: str, code: str, value: Decimal | None, start: date | None
    ) -> JsonObject:
        product, family = self.products[code], self.insurees[chf_id].family
        assert family is not None
        start = start or datetime.now(UTC).date()
        expiry = _add_months(start, INSURANCE_PERIOD_MONTHS) - timedelta(days=1)
        value = product.lump_sum if value is None else value
        policy = Policy(self._pk(), new_uuid(), family, product, value, start, start, expiry)
        self.policies[policy.uuid] = policy
        return {
            "uuid": policy.uuid,
            "chf_id": chf_id,
            "product_code": code,
            "status": policy.status,
            "value": str(value),
        }

    # ---- queries

    def policies_of(self, chf_id: str) -> list[Policy]:
        return [p for p in self.policies.values() if p.family.head_insuree.chf_id == chf_id]

    def receipt_taken(self, code: str, policy_uuid: str) -> bool:
        """Whether a live premium of the policy's product has that receipt.

        An unknown policy fails as openIMIS's check does (it reads the product of None).
        """
        policy = self.policies.get(policy_uuid)
        if policy is None:
            raise AttributeError("'NoneType' object has no attribute 'product'")
        return any(p.receipt == code and p.policy.product is policy.product for p in self.premiums)

    # ---- createPremium

    def create_premium(
        self, data: JsonObject, user: str | None, activation: str, client_mutation_id: str | None
    ) -> list[JsonObject] | None:
        """Run a createPremium mutation: None on success, else its error list.

        The checks and their details follow the contribution module: a missing login,
        an unknown policy (a formatting error there), a receipt already taken, then
        the premium table's column rules as PostgreSQL words them.
        """
        if user is None:
            return _premium_failed("['mutation.authentication_required']")
        policy_uuid = data.get("policy_uuid")
        if not policy_uuid:
            return _premium_failed("policy_uuid_required")
        policy = self.policies.get(policy_uuid)
        if policy is None:
            return _premium_failed("not all arguments converted during string formatting")
        receipt = data.get("receipt")
        if receipt is not None and self.receipt_taken(receipt, policy_uuid):
            return _premium_failed("['mutation.code_already_taken']")
        if (problem := _column_problem(data)) is not None:
            return _premium_failed(problem)
        premium = Premium(
            self._pk(),
            new_uuid(),
            policy,
            money(data["amount"]),
            data["receipt"],
            data["pay_date"],
            data["pay_type"],
            bool(data.get("is_photo_fee")),
            datetime.now(UTC).isoformat(),
            client_mutation_id,
        )
        _premium_paid(premium, data.get("action"), activation)
        policy.premiums.append(premium)
        self.premiums.append(premium)
        return None


def _premium_failed(detail: str) -> list[JsonObject]:
    return [{"message": PREMIUM_FAILED, "detail": detail}]


def _column_problem(data: JsonObject) -> str | None:
    """What PostgreSQL says of a premium row that does not fit tblPremium, or None."""
    amount, receipt, pay_type = data.get("amount"), data.get("receipt"), data.get("pay_type")
    if amount is not None and abs(money(amount)) >= Decimal(10) ** 16:
        return (
            "numeric field overflow\nDETAIL:  A field with precision 18, scale 2 must round "
            "to an absolute value less than 10^16.\n"
        )
    if receipt is not None and len(receipt) > 50:
        return "value too long for type character varying(50)\n"
    if pay_type is not None and len(pay_type) > 1:
        return "value too long for type character varying(1)\n"
    for key, column in (
        ("amount", "Amount"),
        ("receipt", "Receipt"),
        ("pay_date", "PayDate"),
        ("pay_type", "PayType"),
    ):
        if data.get(key) is None:
            return (
                f'null value in column "{column}" of relation "tblPremium" '
                "violates not-null constraint"
            )
    return None


def _premium_paid(premium: Premium, action: str | None, activation: str) -> None:
    """What the new premium does to its policy (see the module docstring)."""
    policy = premium.policy
    if action == "SUSPEND":
        policy.status = STATUS_SUSPENDED
        return
    balance = policy.value - policy.paid_so_far()
    if premium.amount == balance:
        _activate(policy, max(premium.pay_date, policy.start_date), activation)
    elif premium.amount > balance or action == "ENFORCE":
        _activate(policy, premium.pay_date, activation)


def _activate(policy: Policy, effective: date, activation: str) -> None:
    if activation == "active":
        policy.effective_date, policy.status = effective, STATUS_ACTIVE
    else:
        policy.status = STATUS_READY
