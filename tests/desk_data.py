"""A small history for the desk's tests, made the way it happens (paybill confirmations
and a provider's payment over HTTP) where it can be, and written to the store where a
debit would need a provider: M-Pesa Express and Qmoney debits, an inbox entry whose
processing failed."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from server.inbox import repository as inbox
from server.startup.runtime import Gateway

from support import (
    BASIC_KES,
    INBOX,
    TRANSACTIONS,
    callback_body,
    deliver_callback,
    idle_policy,
    psp_user,
    request_json,
)

PHONE = "254708374149"  # the payer of the paybill payments and of the prompt
HASHED = hashlib.sha256(PHONE.encode()).hexdigest()
MASKED = "2547 ***** 149"
OTHER_MASKED = "2547 ***** 321"
KES_INSUREE, GMD_INSUREE, UNKNOWN_ACCOUNT = "070707070", "060606060", "999999999"
WALLET = "5811724c"
PSP_REFERENCE = "AFR-2026-0001"
STK_RECEIPT, CHECKOUT_ID = "RKE0000005", "ws_CO_061220261010101010"

# trans_id, Nairobi time, account, amount, MSISDN as M-Pesa sent it
PAYMENTS = [
    ("RKA0000001", "20260105100000", KES_INSUREE, "1500.00", MASKED),  # settles the policy
    ("RKB0000002", "20260106100000", UNKNOWN_ACCOUNT, "250.00", HASHED),
    ("RKC0000003", "20260107100000", KES_INSUREE, "350.00", PHONE),  # no idle policy left
    ("RKD0000004", "20260108100000", "080808080", "75.50", OTHER_MASKED),
]


@dataclass
class History:
    kes_policy: dict[str, Any]
    gmd_policy: dict[str, Any]
    psp_payment: dict[str, Any]  # the provider API's answer
    stk: dict[str, Any]  # the M-Pesa Express debit's document
    qmoney: dict[str, Any]  # the Qmoney debit's document
    unreadable_id: str  # an inbox entry kept for review
    failed_id: str  # an inbox entry whose processing failed
    psp_headers: dict[str, str]  # a payment provider's API user


def _body(trans_id: str, when: str, account: str, amount: str, msisdn: str) -> dict[str, str]:
    return callback_body(
        TransID=trans_id,
        TransTime=when,
        BillRefNumber=account,
        TransAmount=amount,
        MSISDN=msisdn,
    )


async def make_history(http: aiohttp.ClientSession, gateway: Gateway) -> History:
    services = gateway.services
    kes_policy = await idle_policy(services, KES_INSUREE, BASIC_KES, phone="0708374149")
    for row in PAYMENTS:
        status, _ = await deliver_callback(http, gateway, "confirmation", _body(*row))
        assert status == 200
    # RKD0000004 again with another amount: the payment is flagged for review.
    redelivered = _body(*PAYMENTS[3][:3], "80.00", PAYMENTS[3][4])
    await deliver_callback(http, gateway, "confirmation", redelivered)
    await deliver_callback(http, gateway, "confirmation", b"{not json")

    provider = await psp_user(http, gateway)
    gmd_policy = await idle_policy(
        services, GMD_INSUREE, first_name="Fatou", last_name="Ceesay", phone="+2207712345"
    )
    status, psp_payment = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/payments",
        {
            "chf_id": GMD_INSUREE,
            "amount": "500.00",
            "psp_transaction_id": PSP_REFERENCE,
            "policy": {
                "token": gmd_policy["payment_token"],
                "product_code": "BASIC-GMD",
                "product_name": "Basic cover",
            },
        },
        headers=provider.headers,
    )
    assert status == 201, psp_payment

    now = services.c2b.clock.now()
    stk = _debit(
        kes_policy, "mpesa_stk", "succeeded", now + timedelta(seconds=1), PHONE, 150000, "KES"
    )
    stk.update(provider_reference=CHECKOUT_ID, provider_confirmation=STK_RECEIPT)
    qmoney = _debit(gmd_policy, "qmoney", "failed", now + timedelta(seconds=2), WALLET, 50000)
    await services.store.collection(TRANSACTIONS).insert_many([stk, qmoney])

    entries = services.c2b.inbox
    failed = await entries.add("daraja_c2b", "confirmation", b"{}", "10.0.0.1", {}, now)
    await entries.mark(failed["_id"], inbox.FAILED, now, failure=RuntimeError("store down"))
    unreadable = await services.store.collection(INBOX).find_one({"status": inbox.NEEDS_REVIEW})
    assert unreadable is not None
    return History(
        kes_policy,
        gmd_policy,
        psp_payment,
        stk,
        qmoney,
        unreadable["_id"],
        failed["_id"],
        provider.headers,
    )


def _debit(
    policy: dict[str, Any],
    channel: str,
    status: str,
    at: datetime,
    payer: str,
    amount: int,
    currency: str = "GMD",
) -> dict[str, Any]:
    return {
        "_id": str(uuid.uuid4()),
        "channel": channel,
        "status": status,
        "open": False,
        "amount": amount,
        "currency": currency,
        "policy_uuid": policy["_id"],
        "chf_id": policy["chf_id"],
        "psp_uuid": None,
        "payer": payer,
        "provider_reference": f"ref-{channel}",
        "failure": None,
        "settlement": None,
        "channel_data": {},
        "created_by": "olga",
        "created_at": at,
        "updated_at": at,
        "history": [
            {"from": None, "to": "initiated", "at": at, "reason": "started", "actor": "olga"},
            {"from": "initiated", "to": status, "at": at, "reason": "answered", "actor": "-"},
        ],
    }


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)
