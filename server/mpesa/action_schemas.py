"""Wire formats of the operators' actions beside allocation: what the candidates, dismiss
and replay endpoints load, what they answer (render_*) and the schemas of those answers."""

from __future__ import annotations

from typing import Any, cast

from marshmallow import Schema, fields, validate

from server.insurance.documents import Insuree
from server.kernel.money import format_amount
from server.kernel.schemas import StrictSchema
from server.mpesa.actions import ENTRY, PAYMENT, Change, ReplayReport
from server.mpesa.candidates import ACCOUNT, SEARCH, Candidate, Candidates
from server.mpesa.reasons import unmatched_text
from server.mpesa.schemas import InboxEntrySchema, render_inbox_entry
from server.web import answer_schemas as answers


class CandidateQuerySchema(StrictSchema):
    q = fields.String(
        validate=[
            validate.Length(min=1, max=100),
            validate.Regexp(r".*\S", error="must name an insuree number or a name"),
        ],
        metadata={
            "description": "an insuree number (matched whole) or names (each word the "
            "start of a first or last name): their insurees' policies follow the account's"
        },
    )


class MoneySchema(Schema):
    amount = answers.amount()
    currency = answers.text()


class InsureeNameSchema(Schema):
    chf_id = answers.text()
    name = answers.text()


class CandidateSchema(Schema):
    policy_uuid = answers.text()
    chf_id = answers.text()
    insuree_name = answers.text()
    product_code = answers.text()
    product_name = answers.text()
    expected = answers.nested(MoneySchema)
    paid = answers.nested(MoneySchema)
    fits = fields.Boolean(
        required=True, metadata={"description": "the payment can be allocated to the policy"}
    )
    reason_text = answers.text(
        nullable=True,
        metadata={
            "description": "why it does not fit; null when it fits",
            "example": "paid 350.00 KES; the policy needs 1500.00 KES",
        },
    )
    found_by = answers.one_of(
        [ACCOUNT, SEARCH],
        metadata={"description": "`account`: the insuree the account number names; `search`: q"},
    )


class CandidateListSchema(Schema):
    """What render_candidates answers."""

    trans_id = answers.text()
    bill_ref = answers.text()
    paid = answers.nested(MoneySchema)
    status = answers.text()
    unmatched_reason = answers.text(nullable=True)
    reason_text = answers.text(nullable=True)
    account_insuree = answers.nested(InsureeNameSchema, nullable=True)
    q = answers.text(nullable=True)
    items = answers.list_of(CandidateSchema)


def _money(amount: int, currency: str) -> dict[str, str]:
    return {"amount": format_amount(amount, currency), "currency": currency}


def _name(insuree: Insuree) -> str:
    return f"{insuree['first_name']} {insuree['last_name']}"


def render_candidates(candidates: Candidates) -> dict[str, Any]:
    payment, insuree = candidates.payment, candidates.account_insuree
    return {
        "trans_id": payment["trans_id"],
        "bill_ref": payment["bill_ref"],
        "paid": _money(payment["amount"], payment["currency"]),
        "status": payment["status"],
        "unmatched_reason": payment.get("unmatched_reason"),
        "reason_text": unmatched_text(payment),
        "account_insuree": None
        if insuree is None
        else {"chf_id": insuree["chf_id"], "name": _name(insuree)},
        "q": candidates.query,
        "items": [
            _candidate(item, payment["amount"], payment["currency"]) for item in candidates.items
        ],
    }


def _candidate(candidate: Candidate, paid: int, currency: str) -> dict[str, Any]:
    policy = candidate.policy
    return {
        "policy_uuid": policy["_id"],
        "chf_id": policy["chf_id"],
        "insuree_name": _name(candidate.insuree),
        "product_code": policy["product_code"],
        "product_name": policy["product_name"],
        "expected": _money(policy["value"], policy["currency"]),
        "paid": _money(paid, currency),
        "fits": candidate.misfit is None,
        "reason_text": candidate.misfit,
        "found_by": candidate.found_by,
    }


class ReplayChangeSchema(Schema):
    subject = answers.one_of([ENTRY, PAYMENT])
    trans_id = answers.text(nullable=True)
    before = answers.text(
        nullable=True, metadata={"description": "the status before; null: not recorded"}
    )
    after = answers.text(metadata={"description": "the status after"})
    text = answers.text()


class ReplayAnswerSchema(InboxEntrySchema):
    """What render_replay answers: the entry as the replay left it, and what changed."""

    changed = fields.Boolean(
        required=True,
        metadata={"description": "false: the replay changed nothing (message says why)"},
    )
    message = answers.text(
        metadata={
            "example": "nothing changed: the entry is still needs_review",
        }
    )
    changes = answers.list_of(ReplayChangeSchema)


def render_replay(report: ReplayReport) -> dict[str, Any]:
    return {
        **render_inbox_entry(cast(dict[str, Any], report.entry)),
        "changed": report.changed,
        "message": report.message,
        "changes": [_change(change) for change in report.changes],
    }


def _change(change: Change) -> dict[str, Any]:
    return {
        "subject": change.subject,
        "trans_id": change.trans_id,
        "before": change.before,
        "after": change.after,
        "text": change.text,
    }
