"""Operators' actions beside allocation, over HTTP: the policies an unmatched payment
could be allocated to, dismissing a payment's review flags or an inbox entry, and
replaying an inbox entry with an answer that says what changed; their routes."""

from __future__ import annotations

from server.kernel.schemas import ReasonSchema
from server.mpesa.action_schemas import (
    CandidateListSchema,
    CandidateQuerySchema,
    ReplayAnswerSchema,
    render_candidates,
    render_replay,
)
from server.mpesa.candidates import SEARCHED_INSUREES
from server.mpesa.schemas import (
    C2BPaymentSchema,
    InboxEntrySchema,
    render_inbox_entry,
    render_payment,
)
from server.web.handler import BaseHandler
from server.web.operations import AUTH, BODY, STAFF, Operation

TRANS_ID = {"trans_id": "M-Pesa TransID of the payment"}
ENTRY_ID = {"entry_id": "Id of the inbox entry"}


class CandidatesHandler(BaseHandler):
    path_parameters = TRANS_ID
    operations = {
        "get": Operation(
            "The idle policies an unmatched payment could be allocated to",
            "c2b-payments",
            CandidateListSchema,
            roles=STAFF,
            query=CandidateQuerySchema,
            errors=(400, *AUTH, 404, 409),
            description="First the policies awaiting payment of the insuree the account "
            "number names, then (with `q`) those of the insurees `q` finds (at most "
            f"{SEARCHED_INSUREES}). Each gives the amount it needs beside the amount paid, "
            "and `fits` (allocating refuses one that does not) with the reason in words. "
            "409 for a payment that is not unmatched (`invalid_state`; a held one: "
            "`shortcode_not_served`).",
        )
    }

    async def get(self, trans_id: str) -> None:
        await self.require_role(*STAFF)
        query = self.load_query(CandidateQuerySchema)
        candidates = await self.settings["services"].candidates.of_payment(trans_id, query.get("q"))
        self.write_json(render_candidates(candidates))


class ReviewDismissHandler(BaseHandler):
    path_parameters = TRANS_ID
    operations = {
        "post": Operation(
            "Dismiss a payment's open review flags, with the reason",
            "c2b-payments",
            C2BPaymentSchema,
            roles=STAFF,
            body=ReasonSchema,
            example={"reason": "the redelivery differs only in the payer's name"},
            errors=(*BODY, *AUTH, 404, 409),
            description="The flags are kept, each with who dismissed it, when and why; the "
            "payment leaves `needs_review` and the dashboard's list. Its status does not "
            "change: an unmatched payment can still be allocated. Dismissing again answers "
            "the payment as it is; 409 `nothing_to_dismiss` for a payment never flagged.",
        )
    }

    async def post(self, trans_id: str) -> None:
        identity = await self.require_role(*STAFF)
        request = self.load_json(ReasonSchema)
        payment = await self.settings["services"].c2b_actions.dismiss_review(
            trans_id, request["reason"], identity.username
        )
        self.write_json(render_payment(payment))


class InboxDismissHandler(BaseHandler):
    path_parameters = ENTRY_ID
    operations = {
        "post": Operation(
            "Dismiss an inbox entry that needs nothing more, with the reason",
            "c2b-payments",
            InboxEntrySchema,
            roles=STAFF,
            body=ReasonSchema,
            example={"reason": "a test delivery from the Daraja portal"},
            errors=(*BODY, *AUTH, 404, 409),
            description="For an entry that is `needs_review`, `failed` or `conflict`: it "
            "becomes `dismissed` with `dismissal` (who, when, why, the status it had), is "
            "never replayed and leaves the dashboard. Nothing else changes. Dismissing "
            "again answers the entry as the first dismissal left it; 409 `invalid_state` "
            "for any other status.",
        )
    }

    async def post(self, entry_id: str) -> None:
        identity = await self.require_role(*STAFF)
        request = self.load_json(ReasonSchema)
        entry = await self.settings["services"].c2b_actions.dismiss_entry(
            entry_id, request["reason"], identity.username
        )
        self.write_json(render_inbox_entry(entry))


class InboxReplayHandler(BaseHandler):
    path_parameters = ENTRY_ID
    operations = {
        "post": Operation(
            "Process a failed (or for-review) callback again, and say what changed",
            "c2b-payments",
            ReplayAnswerSchema,
            roles=STAFF,
            body=ReasonSchema,
            example={"reason": "the store was down when it arrived"},
            errors=(*BODY, *AUTH, 404, 409),
            description="Recorded on the entry (`replays`). `changed` is false when the "
            "replay changed nothing (the entry's status is the same and the payment, "
            "recorded already, too), and `message` says so; else `changes` lists the "
            "entry's and the payment's new status. 409 `invalid_state` for an entry that is "
            "not `received`, `failed` or `needs_review`, or of a kind never replayed.",
        )
    }

    async def post(self, entry_id: str) -> None:
        identity = await self.require_role(*STAFF)
        request = self.load_json(ReasonSchema)
        report = await self.settings["services"].c2b_actions.replay_entry(
            entry_id, request["reason"], identity.username
        )
        self.write_json(render_replay(report))


ROUTES = [
    (r"/api/v1/c2b/payments/([^/]+)/candidates", CandidatesHandler),
    (r"/api/v1/c2b/payments/([^/]+)/review/dismiss", ReviewDismissHandler),
    (r"/api/v1/c2b/inbox/([^/]+)/dismiss", InboxDismissHandler),
    (r"/api/v1/c2b/inbox/([^/]+)/replay", InboxReplayHandler),
]
