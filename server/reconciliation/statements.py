"""Statement files, read and checked whole before anything is applied: an M-Pesa
org-portal statement export, or a payment provider's settlement file (both CSV).

A file is UTF-8 (with or without a byte-order mark). The org portal may put a few
title lines above the header: the header is the first row naming `Receipt No.` (a
provider's file: `psp_transaction_id`); header names are compared trimmed and in any
case. Every row is checked; any problem refuses the whole file (StatementRefused,
naming the row and the column of each problem, at most MAX_PROBLEMS of them). Rows are
numbered as a spreadsheet numbers them: every CSV record counts, the title lines and
the header included."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from server.kernel.identifiers import PSP_TRANSACTION_ID, TRANS_ID
from server.kernel.money import MINOR_UNIT_EXPONENTS, AmountError, parse_amount
from server.mpesa.recovered import STATEMENT_TIME
from server.mpesa.schemas import NAIROBI

MPESA, PSP = "mpesa", "psp"
KINDS = (MPESA, PSP)

RECEIPT, COMPLETED_AT, INITIATED_AT = "Receipt No.", "Completion Time", "Initiation Time"
STATUS, PAID_IN, WITHDRAWN, ACCOUNT = "Transaction Status", "Paid In", "Withdrawn", "A/C No."
# The org portal's columns (PROTOCOLS.md); `Balance Confirmed` is read when present.
MPESA_COLUMNS = (
    RECEIPT,
    COMPLETED_AT,
    INITIATED_AT,
    "Details",
    STATUS,
    PAID_IN,
    WITHDRAWN,
    "Balance",
    "Reason Type",
    "Other Party Info",
    "Linked Transaction ID",
    ACCOUNT,
)
MPESA_OPTIONAL = ("Balance Confirmed",)
COMPLETED = "completed"

PSP_ID, PSP_AMOUNT, PSP_CURRENCY, PSP_DATE = "psp_transaction_id", "amount", "currency", "date"
PSP_COLUMNS = (PSP_ID, PSP_AMOUNT, PSP_CURRENCY, PSP_DATE)

MAX_PROBLEMS = 20
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class Problem:
    """What is wrong, and where: the row (None: the file as a whole) and the column."""

    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = [f"row {self.row}" if self.row is not None else "", self.column or ""]
        place = ", ".join(part for part in where if part)
        return f"{place}: {self.message}" if place else self.message


class StatementRefused(Exception):
    """The file cannot be imported; `problems` names each row and column at fault."""

    def __init__(self, problems: Sequence[Problem], more: bool = False) -> None:
        super().__init__(str(problems[0]))
        self.problems = list(problems)
        self.more = more  # there were more than MAX_PROBLEMS


@dataclass(frozen=True)
class MpesaRow:
    number: int
    receipt: str  # normalised (server.kernel.identifiers TRANS_ID)
    completed_at: datetime  # UTC
    status: str
    paid_in: int  # minor units; 0 when the row pays nothing in
    withdrawn: int  # minor units, as a positive amount; 0 when nothing is withdrawn
    account: str
    fields: dict[str, str]  # the row as the file gives it, by column name

    @property
    def is_payment(self) -> bool:
        """A payment received: paid in and completed (charges, transfers are not)."""
        return self.paid_in > 0 and self.status.strip().lower() == COMPLETED


@dataclass(frozen=True)
class PspRow:
    number: int
    psp_transaction_id: str
    amount: int  # minor units of `currency`
    currency: str
    at: datetime  # UTC: the date's start when the file gives a date only
    until: datetime  # the date's last moment (a date), or `at` (a date and time)
    fields: dict[str, str]


@dataclass(frozen=True)
class Statement:
    """A checked file: its rows and the period it covers (UTC, both ends included)."""

    kind: str
    mpesa_rows: tuple[MpesaRow, ...] = ()
    psp_rows: tuple[PspRow, ...] = ()
    period_from: datetime | None = None
    period_to: datetime | None = None

    @property
    def rows(self) -> int:
        return len(self.mpesa_rows) + len(self.psp_rows)


class _Problems:
    """Collects problems up to MAX_PROBLEMS."""

    def __init__(self) -> None:
        self.found: list[Problem] = []
        self.more = False

    def add(self, row: int | None, column: str | None, message: str) -> None:
        if len(self.found) < MAX_PROBLEMS:
            self.found.append(Problem(row, column, message))
        else:
            self.more = True

    def refuse(self) -> None:
        if self.found:
            raise StatementRefused(self.found, self.more)


def parse_mpesa(raw: bytes, currency: str) -> Statement:
    """An org-portal statement export; amounts in `currency`."""
    problems = _Problems()
    records = _table(raw, RECEIPT, MPESA_COLUMNS, MPESA_OPTIONAL)
    rows: list[MpesaRow] = []
    receipts: dict[str, int] = {}
    for number, fields in records:
        row = _mpesa_row(number, fields, currency, problems)
        if row is None:
            continue
        if row.is_payment:
            first = receipts.setdefault(row.receipt, number)
            if first != number:
                problems.add(number, RECEIPT, f"{row.receipt} is paid in already on row {first}")
        rows.append(row)
    if not rows and not problems.found:
        problems.add(None, None, "the file has no rows under its header")
    problems.refuse()
    times = [row.completed_at for row in rows]
    return Statement(MPESA, mpesa_rows=tuple(rows), period_from=min(times), period_to=max(times))


def parse_psp(raw: bytes) -> Statement:
    """A provider's settlement file: psp_transaction_id, amount, currency, date."""
    problems = _Problems()
    records = _table(raw, PSP_ID, PSP_COLUMNS, ())
    rows: list[PspRow] = []
    ids: dict[str, int] = {}
    for number, fields in records:
        row = _psp_row(number, fields, problems)
        if row is None:
            continue
        first = ids.setdefault(row.psp_transaction_id, number)
        if first != number:
            problems.add(
                number, PSP_ID, f"{row.psp_transaction_id} is listed already on row {first}"
            )
        rows.append(row)
    if not rows and not problems.found:
        problems.add(None, None, "the file has no rows under its header")
    problems.refuse()
    return Statement(
        PSP,
        psp_rows=tuple(rows),
        period_from=min(row.at for row in rows),
        period_to=max(row.until for row in rows),
    )


# --- the table -----------------------------------------------------------------


def _table(
    raw: bytes, key: str, required: Sequence[str], optional: Sequence[str]
) -> list[tuple[int, dict[str, str]]]:
    """Every non-blank row below the header as (row number, {column: cell}), columns
    named as `required` and `optional` spell them (others are left out);
    StatementRefused for a file that is not UTF-8 CSV, has no header, lacks a column,
    or has a row longer than its header."""
    records = _records(_text(raw))
    known = {name.lower(): name for name in (*required, *optional)}
    problems = _Problems()
    for number, cells in records:
        names = [cell.strip() for cell in cells]
        if key.lower() not in (name.lower() for name in names):
            continue
        header: list[str | None] = []
        for name in names:
            canonical = known.get(name.lower())
            if canonical is not None and canonical in header:
                problems.add(number, canonical, "the column is named twice")
            header.append(canonical)
        for name in required:
            if name not in header:
                problems.add(number, name, "the header lacks this column")
        problems.refuse()
        return _rows(records, header, problems)
    raise StatementRefused(
        [Problem(None, key, f"no header row: expected a row naming {', '.join(required)}")]
    )


def _rows(
    records: Iterator[tuple[int, list[str]]], header: list[str | None], problems: _Problems
) -> list[tuple[int, dict[str, str]]]:
    rows = []
    for number, cells in records:
        if not any(cell.strip() for cell in cells):
            continue  # a blank line
        extra = [cell for cell in cells[len(header) :] if cell.strip()]
        if extra:
            problems.add(
                number, None, f"the row has {len(cells)} cells, the header {len(header)} columns"
            )
            continue
        padded = [*cells, *[""] * (len(header) - len(cells))]
        rows.append(
            (number, {name: cell for name, cell in zip(header, padded, strict=False) if name})
        )
    problems.refuse()
    return rows


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise StatementRefused(
            [Problem(line, None, "the file is not UTF-8 text (save it as CSV UTF-8)")]
        ) from None


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of every CSV record."""
    reader = csv.reader(io.StringIO(text, newline=""))
    number = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise StatementRefused([Problem(number + 1, None, f"not CSV: {err}")]) from None
        number += 1
        yield number, cells


# --- M-Pesa rows -----------------------------------------------------------------


def _mpesa_row(
    number: int, fields: dict[str, str], currency: str, problems: _Problems
) -> MpesaRow | None:
    before = len(problems.found) + problems.more
    receipt = TRANS_ID.normalise(fields[RECEIPT])
    if not receipt:
        problems.add(number, RECEIPT, "the receipt is missing")
    elif not TRANS_ID.is_valid(receipt):
        problems.add(number, RECEIPT, f"{fields[RECEIPT].strip()!r} is not a receipt")
    completed_at = _statement_time(number, COMPLETED_AT, fields[COMPLETED_AT], problems)
    if fields[INITIATED_AT].strip():
        _statement_time(number, INITIATED_AT, fields[INITIATED_AT], problems)
    status = fields[STATUS].strip()
    if not status:
        problems.add(number, STATUS, "the status is missing")
    paid_in = _amount(number, PAID_IN, fields[PAID_IN], currency, problems)
    withdrawn = _amount(number, WITHDRAWN, fields[WITHDRAWN], currency, problems, signed=True)
    if paid_in is not None and withdrawn is not None:
        if paid_in and withdrawn:
            problems.add(number, WITHDRAWN, "a row pays in or withdraws, not both")
        elif not (fields[PAID_IN].strip() or fields[WITHDRAWN].strip()):
            problems.add(number, PAID_IN, "Paid In or Withdrawn must be given")
    if len(problems.found) + problems.more != before:
        return None
    assert completed_at is not None and paid_in is not None and withdrawn is not None
    return MpesaRow(
        number=number,
        receipt=receipt,
        completed_at=completed_at,
        status=status,
        paid_in=paid_in,
        withdrawn=withdrawn,
        account=fields[ACCOUNT].strip(),
        fields=fields,
    )


def _statement_time(number: int, column: str, text: str, problems: _Problems) -> datetime | None:
    """`YYYY-MM-DD HH:MM:SS`, Nairobi time, as UTC."""
    try:
        local = datetime.strptime(text.strip(), STATEMENT_TIME)
        # OverflowError: a time at the very edge of the calendar (0001-01-01 01:00:00).
        return local.replace(tzinfo=NAIROBI).astimezone(UTC)
    except (ValueError, OverflowError):
        problems.add(number, column, f"{text.strip()!r} is not a time YYYY-MM-DD HH:MM:SS")
        return None


def _amount(
    number: int,
    column: str,
    text: str,
    currency: str,
    problems: _Problems,
    *,
    signed: bool = False,
) -> int | None:
    """Minor units of a decimal string (empty: 0). The org portal may write a
    withdrawal as a negative amount: `signed` columns take it as positive."""
    value = text.strip()
    if not value:
        return 0
    if signed and value.startswith("-"):
        value = value[1:]
    try:
        return parse_amount(value, currency)
    except AmountError as err:
        problems.add(number, column, str(err))
        return None


# --- provider rows ---------------------------------------------------------------


def _psp_row(number: int, fields: dict[str, str], problems: _Problems) -> PspRow | None:
    before = len(problems.found) + problems.more
    psp_transaction_id = PSP_TRANSACTION_ID.normalise(fields[PSP_ID])
    if not PSP_TRANSACTION_ID.is_valid(psp_transaction_id):
        problems.add(number, PSP_ID, f"must be {PSP_TRANSACTION_ID.allowed}")
    currency = fields[PSP_CURRENCY].strip().upper()
    amount: int | None = None
    if currency not in MINOR_UNIT_EXPONENTS:
        problems.add(
            number,
            PSP_CURRENCY,
            f"{fields[PSP_CURRENCY].strip()!r} is not one of {', '.join(MINOR_UNIT_EXPONENTS)}",
        )
    else:
        try:
            amount = parse_amount(fields[PSP_AMOUNT].strip(), currency)
        except AmountError as err:
            problems.add(number, PSP_AMOUNT, str(err))
        else:
            if amount <= 0:
                problems.add(number, PSP_AMOUNT, "the amount must be greater than 0")
    moment = _psp_date(number, fields[PSP_DATE], problems)
    if len(problems.found) + problems.more != before:
        return None
    assert amount is not None and moment is not None
    return PspRow(number, psp_transaction_id, amount, currency, *moment, fields)


def _psp_date(number: int, text: str, problems: _Problems) -> tuple[datetime, datetime] | None:
    """`YYYY-MM-DD` (the whole day, UTC) or an ISO 8601 date and time (UTC without an
    offset): its first and last moment."""
    value = text.strip()
    try:
        if _DAY.fullmatch(value):
            start = datetime.combine(date.fromisoformat(value), time(), UTC)
            return start, start + timedelta(days=1) - timedelta(milliseconds=1)
        moment: datetime | None = datetime.fromisoformat(value)
        if moment is not None and moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = None if moment is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # Overflow: the calendar's edges (9999-12-31)
        moment = None
    if moment is None or ("T" not in value.upper() and " " not in value):  # not a bare 20261201
        problems.add(
            number, PSP_DATE, f"{value!r} is not a date YYYY-MM-DD or an ISO date and time"
        )
        return None
    return moment, moment
