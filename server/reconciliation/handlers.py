"""Reconciliation HTTP endpoints: import a statement (CSV), list the imported ones;
what each answers (server.web.operations) and their routes."""

from __future__ import annotations

import contextlib
from typing import Any

from tornado.web import stream_request_body

from server.kernel.errors import ApiError, PayloadTooLarge, UnsupportedMediaType
from server.kernel.schemas import page_body
from server.reconciliation.statement_schemas import (
    StatementImportQuerySchema,
    StatementImportSchema,
    StatementListItemPageSchema,
    StatementQuerySchema,
    render_import,
    render_listed,
)
from server.web.body_limit import DRAIN_BYTES, declared_length
from server.web.handler import BaseHandler
from server.web.operations import AUTH, STAFF, Operation

STATEMENTS_PATH = r"/api/v1/reconciliation/statements"
CSV = "text/csv"

IMPORT_DESCRIPTION = (
    "The body is the file itself, sent as `Content-Type: text/csv` (UTF-8), up to "
    "reconciliation.max_statement_bytes (20 MiB; this route only). `kind=mpesa`: an "
    "M-Pesa org-portal statement export (`Receipt No., Completion Time, Initiation "
    "Time, Details, Transaction Status, Paid In, Withdrawn, Balance, Reason Type, Other "
    "Party Info, Linked Transaction ID, A/C No.`; title lines above the header are "
    "skipped) of the paybill `shortcode` (default daraja.shortcode). `kind=psp&psp=<uuid>`: "
    "a provider's settlement file (`psp_transaction_id,amount,currency,date`). The whole "
    "file is checked first: any problem is a 400 `statement_malformed` naming each row "
    "and column in `details.problems`, and nothing is imported. Each payment row is "
    "then matched to the ledger: matched, recovered (an M-Pesa receipt the gateway "
    "lacked, stored and settled through the inbox, source `statement`), differing "
    "(flagged), missing here (a provider's payment the gateway lacks); the gateway's "
    "payments of the file's period it does not list are missing at the provider. Each "
    "finding is a reconciliation item. Importing a file again answers 200 with its "
    "first summary and `already_imported: true`; a row another file brought is counted "
    "`seen_before`."
)


class _OverServerLimit(Exception):
    """The body is over server.max_body_bytes: this route has its own limit."""


@stream_request_body
class StatementsHandler(BaseHandler):
    """The body is kept only once the caller is authenticated (streamed, up to
    reconciliation.max_statement_bytes), so only operators can have a large one held.
    A request refused before its body arrived (401, 403, 415) is answered once the
    body has been read and dropped, so a client that sends its whole body before it
    reads sees the answer; one declaring more than DRAIN_BYTES is answered at once."""

    operations = {
        "post": Operation(
            "Import a statement: an M-Pesa org-portal export or a provider's file (CSV)",
            "reconciliation",
            StatementImportSchema,
            roles=STAFF,
            query=StatementImportQuerySchema,
            success={
                201: "Imported: the summary of what was found",
                200: "This file was imported before: its summary, nothing changed",
            },
            errors=(400, *AUTH, 404, 413, 415),
            error_descriptions={413: "The body is larger than reconciliation.max_statement_bytes"},
            description=IMPORT_DESCRIPTION,
        ),
        "get": Operation(
            "List imported statements, newest first",
            "reconciliation",
            StatementListItemPageSchema,
            roles=STAFF,
            query=StatementQuerySchema,
            errors=(400, *AUTH),
        ),
    }

    @classmethod
    def body_limit(cls, settings: Any) -> int:
        """The largest body of this route (server.web.body_limit reads it too)."""
        return int(settings.reconciliation.max_statement_bytes)

    async def prepare(self) -> None:
        self.chunks: list[bytes] = []
        self.received = 0
        self.reading = False  # the body is kept only once the request is accepted
        self.refusal: ApiError | None = None
        with contextlib.suppress(_OverServerLimit):  # this route's own limit decides
            super().prepare()
        declared = declared_length(self.request.headers) or 0
        if declared > self.limit:  # cut off by server.web.body_limit, which drains it
            raise self.too_large()
        try:
            await self.require_role(*STAFF)
            if self.request.method == "POST" and not is_csv(
                self.request.headers.get("Content-Type", "")
            ):
                raise UnsupportedMediaType(f"send the file as Content-Type: {CSV} (UTF-8)")
        except ApiError as refused:
            if declared > DRAIN_BYTES:
                raise
            self.refusal = refused  # answered when the body has arrived
            return
        self.reading = True

    @property
    def limit(self) -> int:
        return self.body_limit(self.settings["gateway"])

    def body_too_large(self) -> Exception:
        return _OverServerLimit()

    def too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            "the statement is larger than reconciliation.max_statement_bytes",
            {"limit": self.limit},
        )

    def data_received(self, chunk: bytes) -> None:
        if not self.reading:
            return
        self.received += len(chunk)
        if self.received <= self.limit:
            self.chunks.append(chunk)

    def refuse(self) -> None:
        """The refusal decided before the body arrived."""
        if self.refusal is not None:
            raise self.refusal

    async def post(self) -> None:
        self.refuse()
        if self.received > self.limit:  # a chunked body past the limit, cut off
            raise self.too_large()
        query = self.load_query(StatementImportQuerySchema)
        assert self.identity is not None
        result = await self.settings["services"].statements.import_statement(
            query["kind"],
            b"".join(self.chunks),
            actor=self.identity.username,
            shortcode=query.get("shortcode"),
            psp_uuid=query.get("psp"),
        )
        self.write_json(render_import(result), status=200 if result.already_imported else 201)

    async def get(self) -> None:
        self.refuse()
        query = self.load_query(StatementQuerySchema)
        limit, offset = query.pop("limit"), query.pop("offset")
        items, total = await self.settings["services"].statements.page(query, limit, offset)
        self.write_json(page_body([render_listed(item) for item in items], total, limit, offset))


def is_csv(content_type: str) -> bool:
    """text/csv, in any case, with no charset or UTF-8's."""
    kind, _, parameters = content_type.partition(";")
    if kind.strip().lower() != CSV:
        return False
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


ROUTES = [
    (STATEMENTS_PATH, StatementsHandler),
]
