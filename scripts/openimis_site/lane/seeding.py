"""Test data through the ORM: products, insurees heading their own families, and idle
policies (the body and answer of `POST /_lane/seed`, shared with the simulator)."""

from datetime import date
from decimal import Decimal, InvalidOperation

from dateutil.relativedelta import relativedelta
from insuree.models import Family, Gender, Insuree, InsureePolicy
from policy.models import Policy
from product.models import Product

from lane.base_seed import AUDIT_USER_ID, officer, village

IDLE = 1


class SeedError(ValueError):
    """The body does not follow the seeding contract."""


def _text(item: dict, key: str, required: bool = True) -> str | None:
    value = item.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SeedError(f"{key} must be a non-empty string")
    return value.strip()


def _amount(item: dict, key: str) -> Decimal:
    text = _text(item, key)
    try:
        amount = Decimal(text)
    except InvalidOperation as error:
        raise SeedError(f"{key} must be a decimal string") from error
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise SeedError(f"{key} must be a non-negative amount with at most 2 decimals")
    return amount.quantize(Decimal("0.01"))


def _date(item: dict, key: str) -> date:
    try:
        return date.fromisoformat(_text(item, key))
    except ValueError as error:
        raise SeedError(f"{key} must be a date YYYY-MM-DD") from error


def _list(body: dict, key: str) -> list[dict]:
    items = body.get(key, [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise SeedError(f"{key} must be a list of objects")
    return items


def _product(item: dict) -> Product:
    code, name, lump_sum = _text(item, "code"), _text(item, "name"), _amount(item, "lump_sum")
    product = Product.objects.filter(code=code, validity_to__isnull=True).first()
    if product is None:
        product = Product(
            code=code,
            date_from=date(2000, 1, 1),
            date_to=date(2099, 12, 31),
            insurance_period=12,
            max_members=10,
            grace_period_enrolment=0,
            audit_user_id=AUDIT_USER_ID,
        )
    product.name, product.lump_sum = name, lump_sum
    product.save()
    return product


def _insuree(item: dict) -> Insuree:
    chf_id = _text(item, "chf_id")
    last_name, other_names = _text(item, "last_name"), _text(item, "other_names")
    phone = _text(item, "phone", required=False)
    insuree = Insuree.objects.filter(chf_id=chf_id, validity_to__isnull=True).first()
    if insuree is None:
        insuree = Insuree.objects.create(
            chf_id=chf_id,
            last_name=last_name,
            other_names=other_names,
            phone=phone,
            gender=Gender.objects.get(code="F"),
            dob=date(1990, 1, 1),
            head=True,
            card_issued=False,
            audit_user_id=AUDIT_USER_ID,
        )
        family = Family.objects.create(
            head_insuree=insuree, location=village(), audit_user_id=AUDIT_USER_ID
        )
        insuree.family = family
    insuree.last_name, insuree.other_names, insuree.phone = last_name, other_names, phone
    insuree.save()
    return insuree


def _policy(item: dict) -> Policy:
    chf_id, code = _text(item, "chf_id"), _text(item, "product_code")
    value, start = _amount(item, "value"), _date(item, "start_date")
    insuree = Insuree.objects.filter(chf_id=chf_id, validity_to__isnull=True).first()
    product = Product.objects.filter(code=code, validity_to__isnull=True).first()
    if insuree is None or product is None:
        raise SeedError(f"policy for unknown insuree {chf_id} or product {code}")
    expiry = start + relativedelta(months=product.insurance_period) - relativedelta(days=1)
    policy = Policy.objects.create(
        family=insuree.family,
        product=product,
        officer=officer(),
        status=IDLE,
        stage="N",
        value=value,
        enroll_date=start,
        start_date=start,
        expiry_date=expiry,
        audit_user_id=AUDIT_USER_ID,
    )
    InsureePolicy.objects.create(
        insuree=insuree,
        policy=policy,
        enrollment_date=start,
        start_date=start,
        expiry_date=expiry,
        audit_user_id=AUDIT_USER_ID,
    )
    return policy


def seed(body: object) -> dict:
    """Apply one seeding body (run it in a transaction: a SeedError leaves nothing)."""
    if not isinstance(body, dict):
        raise SeedError("the body must be a JSON object")
    unknown = set(body) - {"products", "insurees", "policies"}
    if unknown:
        raise SeedError(f"unknown keys: {', '.join(sorted(unknown))}")
    answer: dict[str, list[dict]] = {"products": [], "insurees": [], "policies": []}
    for item in _list(body, "products"):
        product = _product(item)
        answer["products"].append({"code": product.code, "uuid": str(product.uuid)})
    for item in _list(body, "insurees"):
        insuree = _insuree(item)
        answer["insurees"].append({"chf_id": insuree.chf_id, "uuid": str(insuree.uuid)})
    for item in _list(body, "policies"):
        policy = _policy(item)
        answer["policies"].append(
            {
                "uuid": str(policy.uuid),
                "chf_id": item["chf_id"].strip(),
                "product_code": policy.product.code,
                "status": policy.status,
                "value": f"{policy.value:.2f}",
            }
        )
    return answer
