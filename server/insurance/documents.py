"""The stored shapes of insurees, products and policies.

A field added after documents were first stored, or written only in some states,
is `NotRequired`: a document read back may lack it."""

from __future__ import annotations

from datetime import datetime
from typing import NotRequired, TypedDict


class Insuree(TypedDict):
    _id: str
    chf_id: str  # the insuree number (server.kernel.identifiers.CHF_ID)
    first_name: str
    last_name: str
    phone: str  # "" when not given
    wallet: str  # the Qmoney wallet; "" when not given
    sms_opt_out: NotRequired[bool]  # no SMS receipts; insurees stored before it lack it
    created_at: datetime
    updated_at: datetime


class Product(TypedDict):
    _id: str
    code: str
    name: str
    price: int  # minor units of `currency`
    currency: str
    created_at: datetime
    updated_at: datetime


class Policy(TypedDict):
    _id: str
    chf_id: str
    payment_token: NotRequired[str]  # policies stored before providers used it lack it
    product_code: str
    product_name: str
    value: int  # minor units of `currency`
    currency: str
    status: int  # an openIMIS status code (server.insurance.repository)
    start_date: datetime  # dates are UTC midnight
    expiry_date: NotRequired[datetime]
    effective_date: NotRequired[datetime]  # set with `activated_by` when a payment activates it
    activated_by: NotRequired[str]  # the transaction that activated it
    created_at: datetime
    updated_at: datetime
