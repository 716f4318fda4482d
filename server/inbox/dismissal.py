"""Dismissing inbox entries: an operator has looked at an entry that is kept for review,
conflicts with an earlier delivery, or is a validation that failed, and decides it needs
nothing more.

The entry becomes `dismissed` and keeps the dismissal (who, when, why, the status it
had), like a replay is kept on the entry it replayed; it is never replayed again and
leaves the dashboard's list. Dismissing changes nothing else: no payment is moved."""

from __future__ import annotations

import logging

from server.inbox import repository as repo
from server.inbox.documents import InboxEntry
from server.inbox.repository import InboxRepository
from server.kernel.clock import Clock
from server.kernel.errors import Conflict, NotFound

log = logging.getLogger("gateway.inbox")

# The one kind whose failed entry may be dismissed: a validation's answer is given and
# gone, and no money moved with it. Any other failed entry (a confirmation, an M-Pesa
# Express result...) may be money not yet recorded: it is replayed, never dismissed.
MONEYLESS_KIND = "validation"
# A status changes under a dismissal only by a replay or another dismissal: after that
# many changes the entry is read as it is.
ATTEMPTS = 3


class InboxDismissal:
    def __init__(self, inbox: InboxRepository, clock: Clock) -> None:
        self.inbox = inbox
        self.clock = clock

    async def dismiss(self, entry_id: str, reason: str, actor: str) -> InboxEntry:
        """The entry, dismissed. Dismissing it again answers it as the first dismissal
        left it; an entry in another state than DISMISSABLE is a Conflict."""
        status = ""
        for _ in range(ATTEMPTS):
            entry = await self.inbox.get(entry_id)
            if entry is None:
                raise NotFound(f"no inbox entry {entry_id}")
            status = entry["status"]
            if status == repo.DISMISSED:
                return entry
            if status == repo.FAILED and entry.get("kind") != MONEYLESS_KIND:
                raise Conflict(
                    f"the {entry.get('kind', 'callback')} failed while it was processed: "
                    "replay it (POST /api/v1/c2b/inbox/<id>/replay); it may carry money, "
                    "so it is not dismissed",
                    {"status": status},
                    code="invalid_state",
                )
            if entry["status"] not in repo.DISMISSABLE:
                raise Conflict(
                    f"the entry is {entry['status']}: only an entry that failed, needs "
                    "review or conflicts with an earlier delivery is dismissed",
                    {"status": entry["status"]},
                    code="invalid_state",
                )
            dismissed = await self.inbox.dismiss(
                entry_id,
                {
                    "by": actor,
                    "reason": reason,
                    "at": self.clock.now(),
                    "from_status": entry["status"],
                },
            )
            if dismissed is not None:
                log.info(
                    "inbox_entry_dismissed inbox_id=%s from=%s by=%s",
                    entry_id,
                    entry["status"],
                    actor,
                )
                return dismissed
        raise Conflict(
            "the entry kept changing while it was dismissed: try again",
            {"status": status},
            code="invalid_state",
        )
