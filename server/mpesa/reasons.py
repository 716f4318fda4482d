"""Why a C2B payment waits for an operator, in words.

The codes (a payment's `unmatched_reason`, a review flag's `reason`) stay what clients
match on; these functions say them to a person, with the amounts when the reason is
about an amount. They read only the payment's own fields (its `unmatched_detail` is
stored with the reason for that), so a list renders them without reading policies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from server.kernel.money import format_amount


def amount_text(amount: int, currency: str) -> str:
    """`1500.00 KES`."""
    return f"{format_amount(amount, currency)} {currency}"


def misfit_text(paid: int, paid_currency: str, value: int, currency: str) -> str | None:
    """Why a payment of `paid` cannot pay a policy worth `value`; None when it can."""
    if value <= 0:
        return (
            f"the policy's value is {amount_text(value, currency)}: it cannot be paid "
            "until it is given a value greater than 0"
        )
    if paid <= 0:
        return f"paid {amount_text(paid, paid_currency)}: nothing to apply to a policy"
    if (paid, paid_currency) == (value, currency):
        return None
    return (
        f"paid {amount_text(paid, paid_currency)}; the policy needs {amount_text(value, currency)}"
    )


def _either(amounts: Sequence[str]) -> str:
    return amounts[0] if len(amounts) == 1 else f"{', '.join(amounts[:-1])} or {amounts[-1]}"


def unmatched_text(payment: Mapping[str, Any]) -> str | None:
    """The payment's `unmatched_reason` in words; None when it has none."""
    reason = payment.get("unmatched_reason")
    if not reason:
        return None
    detail: Mapping[str, Any] = payment.get("unmatched_detail") or {}
    account = payment.get("bill_ref") or ""
    paid = amount_text(payment["amount"], payment["currency"])
    policy = f"policy {detail['policy_uuid']}" if detail.get("policy_uuid") else "the policy"
    if reason == "unknown_account":
        if not account:
            return "the payment names no account number"
        return f"no insuree has account number {account}"
    if reason == "no_idle_policy":
        return f"insuree {account} has no policy awaiting payment"
    if reason == "amount_mismatch":
        needed = [
            amount_text(item["amount"], item["currency"]) for item in detail.get("needed", [])
        ]
        if len(needed) == 1:
            return f"paid {paid}; the policy needs {needed[0]}"
        if needed:
            awaiting = f"the policies of insuree {account} awaiting payment"
            return f"paid {paid}; {awaiting} need {_either(needed)}"
        return f"paid {paid}; no policy of insuree {account} awaiting payment costs that"
    if reason == "several_candidates":
        how_many = detail.get("candidates") or "several"
        return f"{how_many} policies of insuree {account} await exactly {paid}: choose one"
    if reason == "payment_in_progress":
        return f"another payment of {policy} was in progress when this one was applied"
    if reason == "policy_not_idle":
        return f"{policy} was no longer awaiting payment when this payment was applied"
    if reason == "policy_missing":
        return f"{policy} no longer exists"
    if reason == "amount_not_positive":
        return f"paid {paid}; a payment or policy value of 0 or less is never applied"
    if reason == "shortcode_not_served":
        return _not_served(payment)
    return reason.replace("_", " ")


def _not_served(payment: Mapping[str, Any]) -> str:
    return (
        f"paid to shortcode {payment.get('shortcode', '?')}, which this gateway does not "
        "serve: kept for review, never applied to a policy"
    )


# Review flags: a redelivery, M-Pesa's records (server.mpesa.recovered's sources) and its
# Transaction Status findings (server.mpesa.initiator) that disagree with the payment.
REVIEW_TEXTS = {
    "conflicting_duplicate": "a redelivery of this TransID differs from the stored payment",
    "differs_from_daraja_pull": "M-Pesa's list of the paybill's payments (the pull) shows "
    "this payment differently",
    "differs_from_statement": "an imported M-Pesa statement shows this payment differently",
    "transaction_status_amount_differs": "M-Pesa's Transaction Status gives another amount "
    "for this receipt",
    "transaction_status_not_completed": "M-Pesa's Transaction Status reports this receipt "
    "not completed (reversed or failed)",
    "transaction_status_amount_unreadable": "M-Pesa's Transaction Status gave an amount "
    "that cannot be read",
}


def review_text(payment: Mapping[str, Any], reason: str) -> str:
    """A review flag's reason in words."""
    if reason == "shortcode_not_served":
        return _not_served(payment)
    return REVIEW_TEXTS.get(reason, reason.replace("_", " "))
