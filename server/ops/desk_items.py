"""The desk's items: one line per thing the gateway holds (a paybill payment, a
transaction, an insuree, an inbox entry, a premium, a policy), with its kind, id, time,
a summary in words and links to where it is read whole. The search and the review
list answer them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from marshmallow import Schema, fields

from server.insurance.repository import ACTIVE, EXPIRED, IDLE, READY, SUSPENDED
from server.kernel.money import format_amount
from server.kernel.schemas import iso_stamp
from server.web import answer_schemas as answers

PAYMENT, TRANSACTION, INSUREE, INBOX_ENTRY, PREMIUM, POLICY = (
    "c2b_payment",
    "transaction",
    "insuree",
    "inbox_entry",
    "premium",
    "policy",
)
KINDS = (PAYMENT, TRANSACTION, INSUREE, INBOX_ENTRY, PREMIUM, POLICY)
POLICY_STATUS_WORDS = {
    IDLE: "idle",
    ACTIVE: "active",
    SUSPENDED: "suspended",
    EXPIRED: "expired",
    READY: "ready",
}
SOURCE_WORDS = {
    "daraja_c2b": "M-Pesa paybill",
    "daraja_stk": "M-Pesa Express",
    "daraja_result": "M-Pesa result",
    "daraja_pull": "M-Pesa pulled record",
    "statement": "Statement row",
    "africastalking": "SMS delivery report",
}
API = "/api/v1"

Document = Mapping[str, Any]


class DeskItemSchema(Schema):
    """What the desk's item renderers answer."""

    kind = answers.one_of(KINDS)
    id = answers.text(metadata={"description": "the key its own endpoint takes"})
    summary = answers.text(metadata={"description": "one line in words"})
    at = answers.stamp(
        metadata={
            "description": "a payment's transaction time; when an inbox entry arrived; when "
            "anything else was created"
        }
    )
    status = answers.text(nullable=True)
    links = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "`self` and related paths of the API"},
    )


def _path(*parts: str) -> str:
    return "/".join([API, *(quote(part, safe="") for part in parts)])


def _money(document: Document) -> str:
    return f"{format_amount(document['amount'], document['currency'])} {document['currency']}"


def payment_item(payment: Document) -> dict[str, Any]:
    trans_id = payment["trans_id"]
    status = payment["status"]
    summary = (
        f"M-Pesa payment {trans_id} of {_money(payment)} from "
        f"{payment['msisdn'] or 'an unknown number'} to account {payment['bill_ref'] or '(none)'}"
        f": {_payment_state(payment)}"
    )
    review = payment.get("review") or []
    if review:
        summary += f"; for review: {review[-1]['reason']}"
    links = {"self": _path("c2b", "payments", trans_id)}
    if payment.get("transaction_uuid"):
        links["transaction"] = _path("transactions", payment["transaction_uuid"])
    if payment.get("policy_uuid"):
        links["policy"] = _path("policies", payment["policy_uuid"])
    return _item(PAYMENT, trans_id, summary, payment["trans_time"], status, links)


def _payment_state(payment: Document) -> str:
    status = payment["status"]
    if status == "settled":
        receipt = f", receipt {payment['receipt']}" if payment.get("receipt") else ""
        return f"settled to policy {payment.get('policy_uuid')}{receipt}"
    if status == "unmatched":
        return f"unmatched ({payment.get('unmatched_reason') or 'no reason kept'})"
    if status == "allocating":
        return "being applied to a policy"
    if status == "held":
        return f"held: paid to shortcode {payment['shortcode']}, which this gateway does not serve"
    return str(status)


def transaction_item(transaction: Document, label: str) -> dict[str, Any]:
    """`label`: the channel's name for people (server.debits.registry)."""
    status = transaction["status"]
    summary = f"{label} of {_money(transaction)} for insuree {transaction['chf_id']}: {status}"
    settlement = transaction.get("settlement") or {}
    if settlement.get("receipt"):
        summary += f", receipt {settlement['receipt']}"
    elif settlement.get("status") == "refused":
        summary += f", not applied ({settlement.get('reason')})"
    failure = transaction.get("failure")
    if failure:
        summary += f" ({_one_line(failure['message'])})"
    if transaction.get("provider_reference"):
        summary += f"; provider reference {transaction['provider_reference']}"
    links = {
        "self": _path("transactions", transaction["_id"]),
        "policy": _path("policies", transaction["policy_uuid"]),
        "insuree": _path("insurees", transaction["chf_id"], "overview"),
    }
    return _item(TRANSACTION, transaction["_id"], summary, transaction["created_at"], status, links)


def insuree_item(insuree: Document) -> dict[str, Any]:
    chf_id = insuree["chf_id"]
    summary = f"Insuree {chf_id}: {insuree['first_name']} {insuree['last_name']}"
    if insuree.get("phone"):
        summary += f", phone {insuree['phone']}"
    links = {"self": _path("insurees", chf_id, "overview")}
    return _item(INSUREE, chf_id, summary, insuree["created_at"], None, links)


def inbox_item(entry: Document) -> dict[str, Any]:
    source = entry.get("source", "daraja_c2b")
    status = entry["status"]
    summary = f"{SOURCE_WORDS.get(source, source)} {entry['kind']} received: {status}"
    if entry.get("trans_id"):
        summary += f", TransID {entry['trans_id']}"
    failure = entry.get("failure")
    if failure:
        summary += f"; {failure['type']}: {_one_line(failure['message'])}"
    elif entry.get("errors"):
        summary += f"; unreadable: {_one_line(entry['errors'])}"
    links = {"self": _path("c2b", "inbox", entry["_id"])}
    if entry.get("trans_id"):
        links["payment"] = _path("c2b", "payments", entry["trans_id"])
    return _item(INBOX_ENTRY, entry["_id"], summary, entry["received_at"], status, links)


def premium_item(premium: Document) -> dict[str, Any]:
    """A premium has no endpoint of its own: `self` is the transaction that paid it,
    whose settlement names it."""
    summary = (
        f"Premium {premium['receipt']}: {_money(premium)} for policy {premium['policy_uuid']} "
        f"of insuree {premium['chf_id']}"
    )
    links = {
        "self": _path("transactions", premium["transaction_uuid"]),
        "policy": _path("policies", premium["policy_uuid"]),
        "insuree": _path("insurees", premium["chf_id"], "overview"),
    }
    return _item(PREMIUM, premium["_id"], summary, premium["created_at"], None, links)


def policy_item(policy: Document) -> dict[str, Any]:
    status = POLICY_STATUS_WORDS.get(policy["status"], str(policy["status"]))
    amount = f"{format_amount(policy['value'], policy['currency'])} {policy['currency']}"
    summary = f"Policy {policy['product_name']} of insuree {policy['chf_id']}: {amount}, {status}"
    links = {
        "self": _path("policies", policy["_id"]),
        "insuree": _path("insurees", policy["chf_id"], "overview"),
    }
    return _item(POLICY, policy["_id"], summary, policy["created_at"], status, links)


def _item(
    kind: str, key: str, summary: str, at: Any, status: str | None, links: dict[str, str]
) -> dict[str, Any]:
    return {
        "kind": kind,
        "id": key,
        "summary": summary,
        "at": iso_stamp(at),
        "status": status,
        "links": links,
    }


def _one_line(value: Any, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
