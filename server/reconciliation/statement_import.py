"""Statement import: a provider's own list of the payments (an M-Pesa org-portal
statement, a payment provider's settlement file) checked against what the gateway
stored, row by row, once per file and once per row.

The whole file is read and checked first (server.reconciliation.statements): a file
with any problem is refused and nothing is written. Then each payment row is one of:

- matched: the gateway has the same payment (M-Pesa: a C2B payment of that receipt
  with the same amount, shortcode and account, or an M-Pesa Express debit that
  succeeded with that receipt and amount; a provider: its payment of that id,
  succeeded, same amount and currency);
- recovered (M-Pesa): the gateway lacked it; the row goes through the inbox (source
  `statement`) and the confirmation's path, stored and settled exactly once;
- differing: the gateway has it with another amount or account (M-Pesa: the row is
  kept in the inbox and the payment flagged for review), or not succeeded;
- missing here: a provider's payment the gateway does not have (it cannot be
  recovered: the file names no insuree), or an M-Pesa row the inbox keeps for review;

and the gateway's payments of the file's period that the file does not list are
missing at the provider. Every finding is a reconciliation item (server.reconciliation
.items), open for an operator unless matched. Withdrawn and uncompleted M-Pesa rows
(charges, transfers) are counted as `other`.

A file's document (server.reconciliation.statement_store) is written when its import
starts and completed last, so importing a file again after a crash finishes its work;
importing a completed file again answers its summary and changes nothing. A row that
another file brought already is not checked again (`seen_before`)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from marshmallow import ValidationError

from server.inbox import repository as inbox
from server.kernel.clock import Clock
from server.kernel.errors import ValidationFailed
from server.kernel.identifiers import SHORTCODE
from server.kernel.money import format_amount
from server.ledger import states
from server.ledger.documents import Transaction
from server.ledger.repository import TransactionRepository
from server.mpesa import recovered
from server.mpesa.allocation import CHANNEL as C2B_CHANNEL
from server.mpesa.repository import C2BPaymentRepository
from server.mpesa.service import C2BService
from server.mpesa.stk import CHANNEL as STK_CHANNEL
from server.psp_api.service import CHANNEL as PSP_API_CHANNEL
from server.psps.service import PspService
from server.reconciliation import items
from server.reconciliation.items import Item, ItemRepository
from server.reconciliation.statement_store import (
    RowRecord,
    StatementDocument,
    StatementRepository,
    StatementRowRepository,
)
from server.reconciliation.statements import (
    MPESA,
    PSP,
    MpesaRow,
    PspRow,
    Statement,
    StatementRefused,
    parse_mpesa,
    parse_psp,
)

log = logging.getLogger("gateway.reconciliation")

SOURCE = recovered.STATEMENT_SOURCE
MATCHED, RECOVERED, DIFFERING, MISSING_HERE = "matched", "recovered", "differing", "missing_here"
MISSING_AT_PROVIDER, OTHER, SEEN_BEFORE = "missing_at_provider", "other", "seen_before"
SUMMARY_KEYS = (
    MATCHED,
    RECOVERED,
    DIFFERING,
    MISSING_HERE,
    MISSING_AT_PROVIDER,
    OTHER,
    SEEN_BEFORE,
)
# Rows checked per round of reads and writes (and per progress report).
CHUNK_ROWS = 250
# The gateway's payments of a period are read this many at a time.
PAGE = 1000

Progress = Callable[[int, int], None]
R = TypeVar("R", MpesaRow, PspRow)


@dataclass(frozen=True)
class ImportResult:
    statement: StatementDocument
    already_imported: bool  # imported before: nothing was done now

    @property
    def summary(self) -> dict[str, int]:
        return dict(self.statement["summary"] or {})


@dataclass(frozen=True)
class Checked:
    """One payment row checked: what was found, as a row outcome and as an item."""

    key: str
    outcome: str  # matched, recovered, differing, missing_here
    item: Item
    at: datetime
    fields: dict[str, str]


def refused(err: StatementRefused) -> ValidationFailed:
    """The API's error for a file that cannot be imported: the first problem in the
    message, every problem (row, column, message) in `details.problems`."""
    first = err.problems[0]
    more = len(err.problems) - 1
    suffix = f" (and {more}{'+' if err.more else ''} more)" if more or err.more else ""
    return ValidationFailed(
        f"the statement is refused, nothing was imported: {first}{suffix}",
        {
            "row": first.row,
            "column": first.column,
            "problems": [
                {"row": problem.row, "column": problem.column, "message": problem.message}
                for problem in err.problems
            ],
        },
        code="statement_malformed",
    )


class StatementImport:
    def __init__(
        self,
        c2b: C2BService,
        payments: C2BPaymentRepository,
        transactions: TransactionRepository,
        psps: PspService,
        found: ItemRepository,
        statements: StatementRepository,
        rows: StatementRowRepository,
        clock: Clock,
        *,
        shortcode: str,
        chunk_rows: int = CHUNK_ROWS,
        check_receipt: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        """`shortcode`: the paybill an M-Pesa statement is of when none is named;
        `check_receipt(receipt, actor)` asks Transaction Status about a differing row."""
        self.c2b = c2b
        self.payments = payments
        self.transactions = transactions
        self.psps = psps
        self.found = found
        self.statements = statements
        self.rows = rows
        self.clock = clock
        self.shortcode = shortcode
        self.chunk_rows = chunk_rows
        self.check_receipt = check_receipt

    @property
    def currency(self) -> str:
        """The currency of M-Pesa amounts."""
        return self.c2b.rules.currency

    async def import_statement(
        self,
        kind: str,
        raw: bytes,
        *,
        actor: str,
        shortcode: str | None = None,
        psp_uuid: str | None = None,
        file_name: str | None = None,
        progress: Progress | None = None,
    ) -> ImportResult:
        """Check the file whole, then apply it (see the module's description).
        ValidationFailed names the rows and columns of a malformed file; NotFound an
        unknown PSP. `progress(done, total)` is called as rows are checked."""
        if kind == PSP:
            if not psp_uuid:
                raise ValidationFailed("a provider's file needs the PSP it comes from (psp)")
            provider = (await self.psps.get(psp_uuid))["_id"]
            statement = await _read(lambda: parse_psp(raw))
        elif kind == MPESA:
            provider = SHORTCODE.normalise(shortcode or self.shortcode)
            if not SHORTCODE.is_valid(provider):
                raise ValidationFailed(f"shortcode must be {SHORTCODE.allowed}")
            statement = await _read(lambda: parse_mpesa(raw, self.currency))
        else:
            raise ValidationFailed(f"kind must be {MPESA} or {PSP}")
        assert statement.period_from is not None and statement.period_to is not None
        document = await self.statements.start(
            {
                "_id": str(uuid.uuid4()),
                "kind": kind,
                "provider": provider,
                "file_hash": hashlib.sha256(raw).hexdigest(),
                "file_name": file_name,
                "started_at": self.clock.now(),
                "imported_at": None,
                "imported_by": actor,
                "complete": False,
                "rows": statement.rows,
                "period_from": statement.period_from,
                "period_to": statement.period_to,
                "summary": None,
            }
        )
        if document["complete"]:
            return ImportResult(document, already_imported=True)
        summary: Counter[str] = Counter({key: 0 for key in SUMMARY_KEYS})
        report = progress or (lambda done, total: None)
        if kind == MPESA:
            await self._mpesa(document, statement, summary, report)
        else:
            await self._psp(document, statement, summary, report)
        counts = {key: summary[key] for key in SUMMARY_KEYS}
        completed = await self.statements.complete(document["_id"], counts, self.clock.now())
        if completed is None:  # another import of the same file completed it first
            earlier = await self.statements.get(document["_id"])
            assert earlier is not None
            return ImportResult(earlier, already_imported=True)
        log.info(
            "statement_imported statement=%s kind=%s provider=%s rows=%s by=%s %s",
            completed["_id"],
            kind,
            provider,
            statement.rows,
            actor,
            " ".join(f"{key}={value}" for key, value in counts.items()),
        )
        return ImportResult(completed, already_imported=False)

    async def page(
        self, filters: dict[str, Any], limit: int, offset: int
    ) -> tuple[list[StatementDocument], int]:
        """Imported statements, newest first."""
        query = {key: filters[key] for key in ("kind", "provider") if key in filters}
        return await self.statements.page(query, limit, offset)

    # --- M-Pesa ----------------------------------------------------------------

    async def _mpesa(
        self,
        document: StatementDocument,
        statement: Statement,
        summary: Counter[str],
        progress: Progress,
    ) -> None:
        shortcode = document["provider"]
        payments = [row for row in statement.mpesa_rows if row.is_payment]
        summary[OTHER] = statement.rows - len(payments)
        done = summary[OTHER]
        progress(done, statement.rows)
        for chunk in _chunks(payments, self.chunk_rows):
            fresh = await self._fresh(document, chunk, lambda row: row.receipt, summary)
            await self._apply(document, await self._check_mpesa(shortcode, fresh), summary)
            done += len(chunk)
            progress(done, statement.rows)
        listed = {row.receipt for row in payments}
        await self._record_missing(await self._mpesa_missing(shortcode, statement, listed), summary)

    async def _check_mpesa(self, shortcode: str, rows: Sequence[MpesaRow]) -> list[Checked]:
        stored = await self.payments.cores([row.receipt for row in rows])
        express = await self._express_debits(
            [row.receipt for row in rows if row.receipt not in stored]
        )
        checked = []
        for row in rows:
            theirs = (row.paid_in, shortcode, _account(shortcode, row))
            core = stored.get(row.receipt)
            debit = express.get(row.receipt)
            here: int | None
            if core is not None and core == theirs:
                outcome, here, detail = MATCHED, core[0], ""
            elif core is None and debit is not None:
                same = (debit["amount"], debit["currency"]) == (row.paid_in, self.currency)
                outcome, here = (MATCHED if same else DIFFERING), debit["amount"]
                detail = f"M-Pesa Express transaction {debit['_id']}"
            else:
                outcome, here, detail = await self._recover(shortcode, row, core)
            account = f"account {theirs[2] or '-'}"
            item = Item(
                channel=C2B_CHANNEL,
                provider=shortcode,
                key=row.receipt,
                at=row.completed_at,
                currency=self.currency,
                amount=row.paid_in,
                amount_here=here,
                outcome=MATCHED if outcome == RECOVERED else outcome,
                source=SOURCE,
                recovered=outcome == RECOVERED,
                detail=f"{account}; {detail}" if detail else account,
            )
            checked.append(Checked(row.receipt, outcome, item, row.completed_at, row.fields))
        return checked

    async def _recover(
        self, shortcode: str, row: MpesaRow, core: tuple[int, str, str] | None
    ) -> tuple[str, int | None, str]:
        """A row the gateway lacks, or has otherwise: through the inbox and the
        confirmation's path. (outcome, the gateway's amount, detail)."""
        status = await self.c2b.recover(SOURCE, shortcode, row.fields)
        if status == inbox.PROCESSED and core is None:
            return RECOVERED, row.paid_in, "recovered from the statement"
        if status == inbox.DUPLICATE:  # stored meanwhile, the same payment
            return MATCHED, row.paid_in, ""
        if status == inbox.CONFLICT:
            here = core or (await self.payments.cores([row.receipt])).get(row.receipt)
            if self.check_receipt is not None:
                await self.check_receipt(row.receipt, "statement")
            return DIFFERING, here[0] if here else None, "flagged for review on the payment"
        return MISSING_HERE, None, f"kept in the inbox ({status})"

    async def _express_debits(self, receipts: list[str]) -> dict[str, Transaction]:
        """M-Pesa Express debits that succeeded with one of `receipts`, by receipt."""
        if not receipts:
            return {}
        debits, _ = await self.transactions.page(
            {
                "channel": STK_CHANNEL,
                "status": states.SUCCEEDED,
                "provider_confirmation": {"$in": receipts},
            },
            [("_id", 1)],
            len(receipts),
            0,
        )
        return {str(debit["provider_confirmation"]): debit for debit in debits}

    async def _mpesa_missing(
        self, shortcode: str, statement: Statement, listed: set[str]
    ) -> list[Item]:
        query = {
            "shortcode": shortcode,
            "trans_time": {"$gte": statement.period_from, "$lte": statement.period_to},
        }

        async def page(offset: int) -> list[Any]:
            return (await self.payments.page(query, PAGE, offset))[0]

        return [
            _missing_at_provider(
                C2B_CHANNEL,
                shortcode,
                payment["trans_id"],
                payment,
                payment["trans_time"],
                f"account {payment['bill_ref'] or '-'}; not on the statement",
            )
            async for payment in _every(page)
            if payment["trans_id"] not in listed
        ]

    # --- payment providers ---------------------------------------------------------

    async def _psp(
        self,
        document: StatementDocument,
        statement: Statement,
        summary: Counter[str],
        progress: Progress,
    ) -> None:
        psp_uuid = document["provider"]
        done = 0
        progress(done, statement.rows)
        for chunk in _chunks(statement.psp_rows, self.chunk_rows):
            fresh = await self._fresh(document, chunk, lambda row: row.psp_transaction_id, summary)
            await self._apply(document, await self._check_psp(psp_uuid, fresh), summary)
            done += len(chunk)
            progress(done, statement.rows)
        listed = {row.psp_transaction_id for row in statement.psp_rows}
        await self._record_missing(await self._psp_missing(psp_uuid, statement, listed), summary)

    async def _check_psp(self, psp_uuid: str, rows: Sequence[PspRow]) -> list[Checked]:
        here = await self._provider_payments(psp_uuid, [row.psp_transaction_id for row in rows])
        checked = []
        for row in rows:
            payment = here.get(row.psp_transaction_id)
            if payment is None:
                outcome, amount_here, at, detail = MISSING_HERE, None, row.at, "no payment here"
            else:
                same = (payment["amount"], payment["currency"]) == (row.amount, row.currency)
                succeeded = payment["status"] == states.SUCCEEDED
                outcome = MATCHED if same and succeeded else DIFFERING
                amount_here, at = payment["amount"], payment.get("paid_at") or row.at
                detail = (
                    f"payment {payment['_id']}: "
                    f"{format_amount(payment['amount'], payment['currency'])} "
                    f"{payment['currency']} {payment['status']} here"
                )
            item = Item(
                channel=PSP_API_CHANNEL,
                provider=psp_uuid,
                key=_psp_key(psp_uuid, row.psp_transaction_id),
                at=at,
                currency=row.currency,
                amount=row.amount,
                amount_here=amount_here,
                outcome=outcome,
                source=SOURCE,
                detail=detail,
            )
            checked.append(Checked(row.psp_transaction_id, outcome, item, row.at, row.fields))
        return checked

    async def _provider_payments(self, psp_uuid: str, ids: list[str]) -> dict[str, Transaction]:
        if not ids:
            return {}
        payments, _ = await self.transactions.page(
            {"channel": PSP_API_CHANNEL, "psp_uuid": psp_uuid, "provider_reference": {"$in": ids}},
            [("_id", 1)],
            len(ids),
            0,
        )
        return {str(payment["provider_reference"]): payment for payment in payments}

    async def _psp_missing(
        self, psp_uuid: str, statement: Statement, listed: set[str]
    ) -> list[Item]:
        query = {
            "channel": PSP_API_CHANNEL,
            "psp_uuid": psp_uuid,
            "status": states.SUCCEEDED,
            "paid_at": {"$gte": statement.period_from, "$lte": statement.period_to},
        }

        async def page(offset: int) -> list[Any]:
            order = [("paid_at", 1), ("_id", 1)]
            return (await self.transactions.page(query, order, PAGE, offset))[0]

        return [
            _missing_at_provider(
                PSP_API_CHANNEL,
                psp_uuid,
                _psp_key(psp_uuid, payment.get("provider_reference") or ""),
                payment,
                payment["paid_at"],
                f"payment {payment['_id']}: not in the provider's file",
            )
            async for payment in _every(page)
            if (payment.get("provider_reference") or "") not in listed
        ]

    # --- both ----------------------------------------------------------------------

    async def _fresh(
        self,
        document: StatementDocument,
        rows: Sequence[R],
        key: Callable[[R], str],
        summary: Counter[str],
    ) -> list[R]:
        """The rows no import has checked yet. A row this file's cut-off import
        checked counts as it was found then; one another file brought is seen_before."""
        known = await self.rows.known(
            document["kind"], document["provider"], [key(r) for r in rows]
        )
        fresh = []
        for row in rows:
            prior = known.get(key(row))
            if prior is None:
                fresh.append(row)
            elif prior["statement_id"] == document["_id"]:
                summary[prior["outcome"]] += 1
            else:
                summary[SEEN_BEFORE] += 1
        return fresh

    async def _apply(
        self, document: StatementDocument, checked: list[Checked], summary: Counter[str]
    ) -> None:
        """The items first, then the rows: a row recorded is a row done."""
        now = self.clock.now()
        await self.found.record([row.item for row in checked], now)
        await self.rows.record(
            document["_id"],
            document["kind"],
            document["provider"],
            [RowRecord(row.key, row.outcome, row.at, row.fields) for row in checked],
            now,
        )
        summary.update(row.outcome for row in checked)

    async def _record_missing(self, missing: list[Item], summary: Counter[str]) -> None:
        for chunk in _chunks(missing, PAGE):
            await self.found.record(chunk, self.clock.now())
        summary[MISSING_AT_PROVIDER] = len(missing)


async def _read(parse: Callable[[], Statement]) -> Statement:
    """The file read and checked in a thread: a month's statement takes seconds, which
    the event loop (and the callbacks it answers) must not wait for."""
    try:
        return await asyncio.to_thread(parse)
    except StatementRefused as err:
        raise refused(err) from None


def _account(shortcode: str, row: MpesaRow) -> str:
    """The account as the confirmation's path reads it from the row."""
    try:
        return recovered.statement_record(shortcode, row.fields).callback.bill_ref
    except ValidationError:
        return row.account


def _psp_key(psp_uuid: str, psp_transaction_id: str) -> str:
    """A provider's transaction id is unique per provider only: its item is keyed by
    both."""
    return f"{psp_uuid}:{psp_transaction_id}"


T = TypeVar("T")


def _chunks(rows: Sequence[T], size: int) -> list[Sequence[T]]:
    return [rows[start : start + size] for start in range(0, len(rows), size)]


async def _every(page: Callable[[int], Awaitable[list[Any]]]) -> AsyncIterator[Any]:
    """Every document of a query read PAGE at a time (`page(offset)`)."""
    offset = 0
    while True:
        found = await page(offset)
        for document in found:
            yield document
        if len(found) < PAGE:
            return
        offset += PAGE


def _missing_at_provider(
    channel: str, provider: str, key: str, payment: Any, at: datetime, detail: str
) -> Item:
    """A payment recorded here that the provider's file does not list."""
    return Item(
        channel=channel,
        provider=provider,
        key=key,
        at=at,
        currency=payment["currency"],
        amount=payment["amount"],
        amount_here=payment["amount"],
        outcome=items.MISSING_AT_PROVIDER,
        source=SOURCE,
        detail=detail,
    )
