"""Operators' actions on C2B payments and inbox entries beside allocation: dismissing
a payment's review flags or an inbox entry that needs nothing more, and replaying an
inbox entry with an answer that says what the replay changed, or that it changed
nothing.

Each action is kept where it acted (a dismissed flag keeps who, when and why; an entry
its dismissal or replay) and logged, as an allocation is in the payment's history.
Dismissing never moves money: the payment stays as it is and can still be allocated."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from marshmallow import ValidationError

from server.inbox.dismissal import InboxDismissal
from server.inbox.documents import InboxEntry
from server.inbox.replay import EntryReplay, InboxReplay
from server.inbox.repository import LEGACY_SOURCE_KIND, decode_body
from server.kernel.clock import Clock
from server.kernel.errors import Conflict, NotFound
from server.kernel.identifiers import TRANS_ID
from server.mpesa import recovered
from server.mpesa.documents import C2BPayment, ReviewFlag
from server.mpesa.reasons import review_text, unmatched_text
from server.mpesa.repository import C2BPaymentRepository
from server.mpesa.schemas import parse_callback
from server.mpesa.service import SOURCE as C2B_SOURCE

log = logging.getLogger("gateway.c2b")

# Flags are only appended; a dismissal that keeps missing them gives up after this many.
ATTEMPTS = 3
ENTRY, PAYMENT = "inbox_entry", "payment"


@dataclass(frozen=True)
class Change:
    """One thing a replay changed: the entry's status, or the payment's."""

    subject: str  # ENTRY or PAYMENT
    trans_id: str | None
    before: str | None  # the status before; None: the payment was not recorded
    after: str
    text: str


@dataclass(frozen=True)
class ReplayReport:
    entry: InboxEntry  # as the replay left it
    changes: list[Change]
    message: str

    @property
    def changed(self) -> bool:
        return bool(self.changes)


class OperatorActions:
    def __init__(
        self,
        payments: C2BPaymentRepository,
        replay: InboxReplay,
        dismissal: InboxDismissal,
        clock: Clock,
    ) -> None:
        self.payments = payments
        self.replay = replay
        self.dismissal = dismissal
        self.clock = clock

    async def dismiss_review(self, trans_id: str, reason: str, actor: str) -> C2BPayment:
        """The payment with every open review flag dismissed. A payment whose flags are
        all dismissed already is answered as it is; one never flagged is a Conflict."""
        trans_id = TRANS_ID.normalise(trans_id)
        status = ""
        for _ in range(ATTEMPTS):
            payment = await self.payments.get(trans_id)
            if payment is None:
                raise NotFound(f"no C2B payment with TransID {trans_id}")
            status = payment["status"]
            flags = payment.get("review", [])
            if not flags:
                raise Conflict(
                    "the payment has no review flag to dismiss",
                    {"status": payment["status"]},
                    code="nothing_to_dismiss",
                )
            if all("dismissed_at" in flag for flag in flags):
                return payment
            now = self.clock.now()
            dismissed: list[ReviewFlag] = [
                flag
                if "dismissed_at" in flag
                else {
                    **flag,
                    "dismissed_by": actor,
                    "dismissed_reason": reason,
                    "dismissed_at": now,
                }
                for flag in flags
            ]
            updated = await self.payments.replace_review(trans_id, flags, dismissed)
            if updated is not None:
                log.info(
                    "c2b_review_dismissed trans_id=%s flags=%s by=%s",
                    trans_id,
                    sum("dismissed_at" not in flag for flag in flags),
                    actor,
                )
                return updated
        raise Conflict(
            "the payment was flagged again while its flags were dismissed: look again",
            {"status": status},
            code="invalid_state",
        )

    async def dismiss_entry(self, entry_id: str, reason: str, actor: str) -> InboxEntry:
        return await self.dismissal.dismiss(entry_id, reason, actor)

    async def replay_entry(self, entry_id: str, reason: str, actor: str) -> ReplayReport:
        """Replay an entry (server.inbox.replay) and say what it changed: the entry's
        status, and the payment it carries when that is known before the replay."""
        trans_id = _trans_id_of(await self.replay.entry(entry_id))
        before = await self.payments.get(trans_id) if trans_id else None
        replayed = await self.replay.replay_entry(entry_id, reason, actor)
        after = await self.payments.get(trans_id) if trans_id else None
        changes = _entry_changes(replayed)
        if trans_id is not None and after is not None:
            changes.extend(_payment_changes(trans_id, before, after))
        return ReplayReport(replayed.after, changes, _message(replayed, changes, before, after))


def _trans_id_of(entry: InboxEntry) -> str | None:
    """The TransID an entry carries: as marked on it, or read from its body when it is
    a paybill confirmation or a record of M-Pesa's; None for other entries and for a
    body that cannot be read."""
    if entry.get("trans_id"):
        return entry["trans_id"]
    source = entry.get("source", LEGACY_SOURCE_KIND[0])
    try:
        if (source, entry["kind"]) == (C2B_SOURCE, "confirmation"):
            return parse_callback(decode_body(entry)).trans_id
        if entry["kind"] == recovered.RECORD_KIND:
            return recovered.read_record(source, decode_body(entry)).callback.trans_id
    except ValidationError:
        return None
    return None


def _entry_changes(replayed: EntryReplay) -> list[Change]:
    before, after = replayed.before["status"], replayed.after["status"]
    if before == after:
        return []
    text = f"the entry is now {after} (was {before})"
    return [Change(ENTRY, replayed.after.get("trans_id"), before, after, text)]


def _payment_changes(trans_id: str, before: C2BPayment | None, after: C2BPayment) -> list[Change]:
    status = after["status"]
    if before is None:
        return [
            Change(PAYMENT, trans_id, None, status, f"payment {trans_id} recorded: {_state(after)}")
        ]
    changes = []
    if before["status"] != status:
        text = f"payment {trans_id} is now {_state(after)} (was {before['status']})"
        changes.append(Change(PAYMENT, trans_id, before["status"], status, text))
    for flag in after.get("review", [])[len(before.get("review", [])) :]:
        text = f"payment {trans_id} flagged for review: {review_text(after, flag['reason'])}"
        changes.append(Change(PAYMENT, trans_id, status, status, text))
    completed = after.get("recovered", {}).get("completed_by")
    if completed and not before.get("recovered", {}).get("completed_by"):
        text = f"payment {trans_id}: the confirmation filled in what M-Pesa's record lacked"
        changes.append(Change(PAYMENT, trans_id, status, status, text))
    return changes


def _state(payment: C2BPayment) -> str:
    """`settled to policy ...`, `unmatched: <why>`, `held: <why>`."""
    if payment.get("policy_uuid") and payment["status"] == "settled":
        return f"settled to policy {payment['policy_uuid']}"
    why = unmatched_text(payment)
    return f"{payment['status']}: {why}" if why else payment["status"]


def _message(
    replayed: EntryReplay,
    changes: list[Change],
    before: C2BPayment | None,
    after: C2BPayment | None,
) -> str:
    """What the replay did, in one sentence an operator reads at a glance."""
    entry = replayed.after
    parts = [change.text for change in changes] or [_unchanged(entry)]
    if after is not None and before is not None and not any(c.subject == PAYMENT for c in changes):
        parts.append(
            f"payment {after['trans_id']} was already recorded ({after['status']}) and is unchanged"
        )
    return ("" if changes else "nothing changed: ") + "; ".join(parts)


def _unchanged(entry: InboxEntry) -> str:
    status = entry["status"]
    failure = entry.get("failure")
    if failure:
        return f"the entry is still {status}: {failure['type']}: {failure['message']}"
    return f"the entry is still {status}"
