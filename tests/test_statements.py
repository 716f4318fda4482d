"""Statement files read and checked whole (an M-Pesa org-portal export, a provider's
settlement file); the import service in-process (M-Pesa Express receipts, an import
cut off and finished by importing again); `python run.py import-statement`.

The helpers at the top write files as the org portal and a provider write them; the
HTTP tests (test_statements_http.py) use them too."""

from __future__ import annotations

import argparse
import csv
import io
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.integrations.notifications import RecordingNotifier
from server.kernel.errors import ValidationFailed
from server.kernel.store import open_store
from server.ledger import states
from server.ledger.transactions import new_transaction
from server.reconciliation import items
from server.reconciliation.statement_store import STATEMENT_ROWS, STATEMENTS
from server.reconciliation.statements import StatementRefused, parse_mpesa, parse_psp
from server.startup import cli
from server.startup.services import Services, build_services

from support import (
    BASIC_KES,
    INBOX,
    PAYMENTS,
    PREMIUMS,
    TEST_ENV,
    callback_body,
    deliver_callback,
    idle_policy,
    make_settings,
    run_py,
)

MONGODB_URI = os.environ.get("TEST_MONGODB_URI")
ITEMS = items.ITEMS

# --- statement files ---------------------------------------------------------------

MPESA_HEADER = [
    "Receipt No.",
    "Completion Time",
    "Initiation Time",
    "Details",
    "Transaction Status",
    "Paid In",
    "Withdrawn",
    "Balance",
    "Balance Confirmed",
    "Reason Type",
    "Other Party Info",
    "Linked Transaction ID",
    "A/C No.",
]
TITLE_LINES = [
    ["Organization Name:", "Health Insurance Fund"],
    ["Short Code:", "600984"],
    ["Time Period:", "2026-12-01 00:00:00 to 2026-12-01 23:59:59"],
    [],
]
DAY = "2026-12-01"


@dataclass(frozen=True)
class Paid:
    """A payment row of an M-Pesa statement: a paybill payment received on DAY."""

    receipt: str
    time: str  # HH:MM:SS, Nairobi time
    amount: str
    account: str
    status: str = "Completed"

    def cells(self) -> list[str]:
        when = f"{DAY} {self.time}"
        return [
            self.receipt,
            when,
            when,
            f"Pay Bill from 254708374149 - JANE DOE Acc. {self.account}",
            self.status,
            self.amount,
            "",
            "100000.00",
            "true",
            "Pay Bill Online",
            "254708374149 - JANE DOE",
            "",
            self.account,
        ]

    def confirmation(self) -> dict[str, str]:
        """The Daraja confirmation of the same payment."""
        return callback_body(
            TransID=self.receipt,
            TransTime=f"{DAY.replace('-', '')}{self.time.replace(':', '')}",
            TransAmount=self.amount,
            BillRefNumber=self.account,
        )


@dataclass(frozen=True)
class Charge:
    """A withdrawn row: the paybill's charge."""

    receipt: str
    time: str
    amount: str

    def cells(self) -> list[str]:
        when = f"{DAY} {self.time}"
        return [
            self.receipt,
            when,
            when,
            "Business Pay Bill Charge",
            "Completed",
            "",
            f"-{self.amount}",
            "99000.00",
            "true",
            "Business Pay Bill Charge",
            "",
            "",
            "",
        ]


def csv_text(rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue()


def mpesa_statement(
    rows: Sequence[Paid | Charge],
    *,
    titles: bool = True,
    bom: bool = False,
    header: Sequence[str] = MPESA_HEADER,
) -> bytes:
    cells = [row.cells()[: len(header)] for row in rows]
    text = csv_text([*(TITLE_LINES if titles else []), list(header), *cells])
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


def psp_file(rows: Sequence[tuple[str, str, str, str]]) -> bytes:
    """(psp_transaction_id, amount, currency, date) rows under their header."""
    return csv_text([["psp_transaction_id", "amount", "currency", "date"], *rows]).encode()


def refusal(raw: bytes, kind: str = "mpesa") -> StatementRefused:
    with pytest.raises(StatementRefused) as refused:
        if kind == "mpesa":
            parse_mpesa(raw, "KES")
        else:
            parse_psp(raw)
    return refused.value


# --- reading files -----------------------------------------------------------------


def test_title_lines_above_the_header_are_skipped_and_rows_numbered_as_in_the_file() -> None:
    statement = parse_mpesa(
        mpesa_statement(
            [
                Paid("RKL51ZDR4F", "08:00:00", "1500.00", " 070707070 "),
                Charge("RKL51ZDR4G", "08:00:05", "12.00"),
            ]
        ),
        "KES",
    )
    paid, charge = statement.mpesa_rows
    assert (paid.number, charge.number) == (6, 7)  # 4 title lines, then the header
    assert paid.is_payment and not charge.is_payment
    assert (paid.receipt, paid.paid_in, paid.account) == ("RKL51ZDR4F", 150000, "070707070")
    assert charge.withdrawn == 1200
    assert paid.completed_at == datetime(2026, 12, 1, 5, 0, tzinfo=UTC)  # Nairobi is UTC+3
    assert (statement.period_from, statement.period_to) == (
        datetime(2026, 12, 1, 5, 0, tzinfo=UTC),
        datetime(2026, 12, 1, 5, 0, 5, tzinfo=UTC),
    )
    assert paid.fields["Other Party Info"] == "254708374149 - JANE DOE"


def test_a_byte_order_mark_and_spaces_around_the_header_names_are_read() -> None:
    header = [f"  {name} " for name in MPESA_HEADER[:9]] + ["reason type", *MPESA_HEADER[10:]]
    raw = mpesa_statement([Paid("RKL51ZDR4F", "08:00:00", "5", "1")], titles=False, bom=True)
    raw = raw.replace(",".join(MPESA_HEADER).encode(), ",".join(header).encode())
    [row] = parse_mpesa(raw, "KES").mpesa_rows
    assert row.receipt == "RKL51ZDR4F" and row.paid_in == 500
    assert row.fields["Reason Type"] == "Pay Bill Online"


def test_the_columns_without_balance_confirmed_are_enough() -> None:
    header = [name for name in MPESA_HEADER if name != "Balance Confirmed"]
    row = Paid("RKL51ZDR4F", "08:00:00", "5", "1")
    cells = [cell for name, cell in zip(MPESA_HEADER, row.cells(), strict=True) if name in header]
    statement = parse_mpesa(csv_text([header, cells]).encode(), "KES")
    assert statement.mpesa_rows[0].account == "1"


def test_a_bad_amount_is_refused_naming_its_row_and_column() -> None:
    raw = mpesa_statement(
        [
            Paid("RKL51ZDR4F", "08:00:00", "1500.00", "1"),
            Paid("RKL51ZDR4G", "08:01:00", "1,500.0x", "1"),
        ]
    )
    [problem] = refusal(raw).problems
    assert (problem.row, problem.column) == (7, "Paid In")
    assert "1,500.0x" in problem.message
    assert str(problem).startswith("row 7, Paid In: ")


def test_a_float_like_amount_with_too_many_places_is_refused() -> None:
    [problem] = refusal(mpesa_statement([Paid("RKL51ZDR4F", "08:00:00", "10.005", "1")])).problems
    assert (problem.row, problem.column) == (6, "Paid In")
    assert "more than 2 decimal places" in problem.message


def test_a_bad_time_is_refused_naming_its_row_and_column() -> None:
    raw = mpesa_statement([Paid("RKL51ZDR4F", "8:00", "1500.00", "1")])
    problems = refusal(raw).problems
    assert [(p.row, p.column) for p in problems] == [(6, "Completion Time"), (6, "Initiation Time")]
    assert "YYYY-MM-DD HH:MM:SS" in problems[0].message


def test_times_at_the_calendars_edges_are_refused_not_crashed_on() -> None:
    row = Paid("RKL51ZDR4F", "08:00:00", "1500.00", "1").cells()
    row[1] = "0001-01-01 01:00:00"
    raw = csv_text([list(MPESA_HEADER), row]).encode()
    [problem] = refusal(raw).problems
    assert problem.column == "Completion Time"
    for moment in ("9999-12-31", "0001-01-01T00:00:00+05:00"):
        [problem] = refusal(psp_file([("AFR-1", "1", "GMD", moment)]), "psp").problems
        assert problem.column == "date"


def test_every_problem_is_named_not_only_the_first() -> None:
    raw = mpesa_statement(
        [
            Paid("RKL 51Z", "08:00:00", "1500.00", "1"),
            Paid("RKL51ZDR4G", "08:00:00", "abc", "1"),
            Paid("RKL51ZDR4G", "08:00:00", "5", "1"),
        ]
    )
    problems = refusal(raw).problems
    assert [(p.row, p.column) for p in problems] == [(6, "Receipt No."), (7, "Paid In")]


def test_a_receipt_paid_in_twice_is_refused() -> None:
    raw = mpesa_statement(
        [Paid("RKL51ZDR4F", "08:00:00", "5", "1"), Paid("rkl51zdr4f", "08:01:00", "5", "1")]
    )
    [problem] = refusal(raw).problems
    assert (problem.row, problem.column) == (7, "Receipt No.")
    assert "row 6" in problem.message


def test_a_missing_column_is_refused_naming_the_header_row() -> None:
    header = [name for name in MPESA_HEADER if name != "A/C No."]
    [problem] = refusal(mpesa_statement([], header=header)).problems
    assert (problem.row, problem.column) == (5, "A/C No.")
    assert "lacks" in problem.message


def test_a_file_without_a_header_or_without_rows_or_not_utf8_is_refused() -> None:
    [problem] = refusal(b"a,b,c\r\n1,2,3\r\n").problems
    assert problem.column == "Receipt No." and "no header row" in problem.message
    [problem] = refusal(mpesa_statement([])).problems
    assert problem.row is None and "no rows" in problem.message
    raw = mpesa_statement([Paid("RKL51ZDR4F", "08:00:00", "5", "caf\xe9")]).replace(
        "caf\xe9".encode(), b"caf\xe9"
    )
    [problem] = refusal(raw).problems
    assert problem.row == 6 and "UTF-8" in problem.message


def test_a_row_with_more_cells_than_the_header_is_refused() -> None:
    raw = mpesa_statement([Paid("RKL51ZDR4F", "08:00:00", "5", "1")]) + b"X,,,,,,,,,,,,,,extra\r\n"
    [problem] = refusal(raw).problems
    assert problem.row == 7 and "cells" in problem.message


def test_a_provider_file_is_read_with_dates_or_times() -> None:
    statement = parse_psp(
        psp_file(
            [
                ("AFR-1", "500.00", "GMD", "2026-12-01"),
                ("AFR-2", "250", "gmd", "2026-12-02T10:15:00+01:00"),
            ]
        )
    )
    first, second = statement.psp_rows
    assert (first.amount, first.currency, first.at) == (
        50000,
        "GMD",
        datetime(2026, 12, 1, tzinfo=UTC),
    )
    assert second.at == datetime(2026, 12, 2, 9, 15, tzinfo=UTC) and second.amount == 25000
    assert statement.period_from == datetime(2026, 12, 1, tzinfo=UTC)
    assert statement.period_to == datetime(2026, 12, 2, 9, 15, tzinfo=UTC)
    whole_day = parse_psp(psp_file([("AFR-1", "1", "GMD", "2026-12-01")]))
    assert whole_day.period_to == datetime(2026, 12, 1, 23, 59, 59, 999000, tzinfo=UTC)


def test_a_provider_file_with_bad_cells_names_them() -> None:
    raw = psp_file(
        [
            ("AFR 1", "500.00", "GMD", "2026-12-01"),
            ("AFR-2", "5.5.5", "GMD", "2026-12-01"),
            ("AFR-3", "5", "XYZ", "2026-12-01"),
            ("AFR-4", "5", "GMD", "01/12/2026"),
            ("AFR-5", "0", "GMD", "2026-12-01"),
        ]
    )
    problems = refusal(raw, "psp").problems
    assert [(p.row, p.column) for p in problems] == [
        (2, "psp_transaction_id"),
        (3, "amount"),
        (4, "currency"),
        (5, "date"),
        (6, "amount"),
    ]


# --- the import service, in-process ------------------------------------------------


def services_on(store) -> Services:
    return build_services(make_settings(), store, None, RecordingNotifier(), _Clock())


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@pytest.mark.asyncio
async def test_a_receipt_of_a_succeeded_mpesa_express_debit_is_matched_not_recovered(
    store,
) -> None:
    services = services_on(store)
    policy = await idle_policy(services, "070707070", BASIC_KES)
    debit = new_transaction(
        transaction_uuid="stk-1",
        channel="mpesa_stk",
        status=states.SUCCEEDED,
        policy=policy,
        psp_uuid=None,
        provider_reference="ws_CO_1",
        actor="olga",
        at=datetime.now(UTC),
        reason="",
        payer="254708374149",
    )
    await services.ledger.transactions.insert({**debit, "provider_confirmation": "STK7RT61SV"})
    raw = mpesa_statement(
        [
            Paid("STK7RT61SV", "08:00:00", "1500.00", "070707070"),
            Paid("STK7RT61SW", "08:05:00", "1500.00", "070707070"),
            Paid("STK7RT61SX", "08:06:00", "1500.00", "070707070", status="Failed"),
        ]
    )
    result = await services.statements.import_statement("mpesa", raw, actor="olga")
    summary = result.summary
    assert (summary["matched"], summary["recovered"], summary["other"]) == (1, 1, 1)
    matched = await store.collection(ITEMS).find_one({"key": "STK7RT61SV"})
    assert matched["outcome"] == "matched" and "stk-1" in matched["detail"]
    # Only the receipt the gateway lacked went through the inbox.
    assert await store.collection(INBOX).count_documents({"source": "statement"}) == 1
    assert await store.collection(PAYMENTS).count_documents({}) == 1


@pytest.mark.asyncio
async def test_an_import_cut_off_is_finished_by_importing_the_file_again(store) -> None:
    services = services_on(store)
    await idle_policy(services, "070707070", BASIC_KES)
    rows = [Paid(f"CUT000000{n}", f"08:0{n}:00", "1500.00", f"90000000{n}") for n in range(4)]
    raw = mpesa_statement(rows)
    statements = services.statements
    statements.chunk_rows = 2
    original = statements._apply
    calls = 0

    async def crash_after_first_chunk(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("the store went away")
        await original(*args, **kwargs)

    statements._apply = crash_after_first_chunk  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await statements.import_statement("mpesa", raw, actor="olga")
    [cut_off] = await store.collection(STATEMENTS).find({}).to_list(None)
    assert cut_off["complete"] is False
    statements._apply = original  # type: ignore[method-assign]

    result = await statements.import_statement("mpesa", raw, actor="olga")
    assert not result.already_imported and result.statement["_id"] == cut_off["_id"]
    # The rows of the cut-off run count as they were found then; the rest are recovered
    # now (the two of the second chunk got to the inbox before the cut).
    assert result.summary["recovered"] == 2
    assert result.summary["matched"] == 2
    assert await store.collection(PAYMENTS).count_documents({}) == 4
    assert await store.collection(STATEMENT_ROWS).count_documents({}) == 4
    again = await statements.import_statement("mpesa", raw, actor="olga")
    assert again.already_imported and again.summary == result.summary


@pytest.mark.asyncio
async def test_an_unknown_kind_or_a_provider_file_without_its_provider_is_refused(store) -> None:
    services = services_on(store)
    with pytest.raises(ValidationFailed):
        await services.statements.import_statement("bank", b"", actor="olga")
    with pytest.raises(ValidationFailed):
        await services.statements.import_statement("psp", psp_file([]), actor="olga")
    assert await store.collection(STATEMENTS).count_documents({}) == 0


# --- the command -------------------------------------------------------------------


def command_arguments(path: Path, kind: str = "mpesa", **options: str) -> argparse.Namespace:
    return argparse.Namespace(
        file=path, kind=kind, psp=options.get("psp"), shortcode=options.get("shortcode")
    )


@pytest.mark.asyncio
async def test_the_command_reports_progress_and_the_summary(
    store, tmp_path, capsys, monkeypatch
) -> None:
    services = services_on(store)
    rows = [Paid(f"CLI000000{n}", f"08:0{n}:00", "100.00", f"5000000{n}") for n in range(5)]
    path = tmp_path / "statement.csv"
    path.write_bytes(mpesa_statement([*rows, Charge("CLI0000009", "08:09:00", "5.00")]))
    services.statements.chunk_rows = 2
    monkeypatch.setattr(cli, "PROGRESS_ROWS", 2)

    assert (
        await cli.import_statement(services.statements, path.read_bytes(), command_arguments(path))
        == 0
    )
    out, err = capsys.readouterr()
    assert err.splitlines() == ["  3/6 rows", "  5/6 rows", "  6/6 rows"]
    first, counts = out.splitlines()
    assert first.startswith("statement ") and "imported: mpesa 600984, 6 rows from" in first
    assert counts == (
        "matched=0 recovered=5 differing=0 missing_here=0 missing_at_provider=0 other=1 "
        "seen_before=0"
    )
    [document] = await store.collection(STATEMENTS).find({}).to_list(None)
    assert (document["file_name"], document["imported_by"]) == ("statement.csv", "cli")

    assert (
        await cli.import_statement(services.statements, path.read_bytes(), command_arguments(path))
        == 0
    )
    out, _ = capsys.readouterr()
    assert "was imported before" in out and "nothing changed" in out


@pytest.mark.asyncio
async def test_the_command_names_the_rows_and_columns_of_a_malformed_file(
    store, tmp_path, capsys
) -> None:
    services = services_on(store)
    path = tmp_path / "statement.csv"
    path.write_bytes(
        mpesa_statement(
            [Paid("RKL51ZDR4F", "08:00:00", "x", "1"), Paid("RKL51ZDR4G", "8 o'clock", "5", "1")]
        )
    )
    assert (
        await cli.import_statement(services.statements, path.read_bytes(), command_arguments(path))
        == 1
    )
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith(
        "refused: the statement is refused, nothing was imported: row 6, Paid In: "
    )
    assert lines[1:] == [
        '  row 7, Completion Time: "2026-12-01 8 o\'clock" is not a time YYYY-MM-DD HH:MM:SS',
        '  row 7, Initiation Time: "2026-12-01 8 o\'clock" is not a time YYYY-MM-DD HH:MM:SS',
    ]
    assert await store.collection(STATEMENTS).count_documents({}) == 0
    assert await store.collection(INBOX).count_documents({}) == 0

    arguments = command_arguments(path, "psp")
    assert await cli.import_statement(services.statements, path.read_bytes(), arguments) == 1
    assert "--kind psp takes --psp UUID" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_import_statement_refuses_the_in_memory_store(tmp_path) -> None:
    path = tmp_path / "statement.csv"
    path.write_bytes(mpesa_statement([Paid("RKL51ZDR4F", "08:00:00", "5", "1")]))
    code, _, err = await run_py("import-statement", str(path), "--kind", "mpesa", env=TEST_ENV)
    assert code == 2
    assert "import-statement needs a persistent MongoDB store" in err and "Traceback" not in err


@pytest.mark.asyncio
@pytest.mark.skipif(not MONGODB_URI, reason="needs a MongoDB server: set TEST_MONGODB_URI")
async def test_import_statement_imports_into_the_configured_store(tmp_path) -> None:
    database = f"cli_{uuid.uuid4().hex[:12]}"
    env = {**TEST_ENV, "GATEWAY_STORE_URI": MONGODB_URI, "GATEWAY_STORE_DATABASE": database}
    store = open_store(MONGODB_URI, database)
    services = services_on(store)
    path = tmp_path / "december.csv"
    rows = [
        Paid("SUB0000001", "08:00:00", "1500.00", "070707070"),
        Paid("SUB0000002", "08:01:00", "20.00", "1"),
    ]
    path.write_bytes(mpesa_statement(rows))
    try:
        await store.ensure_indexes(services.indexes)
        await idle_policy(services, "070707070", BASIC_KES)
        code, out, err = await run_py("import-statement", str(path), "--kind", "mpesa", env=env)
        assert code == 0, err
        assert err == "  2/2 rows\n"
        assert out.splitlines()[1] == (
            "matched=0 recovered=2 differing=0 missing_here=0 missing_at_provider=0 other=0 "
            "seen_before=0"
        )
        settled = await store.collection(PAYMENTS).find_one({"trans_id": "SUB0000001"})
        assert settled["status"] == "settled"
        assert await store.collection(PREMIUMS).count_documents({}) == 1
        [statement] = await store.collection(STATEMENTS).find({}).to_list(None)
        assert (statement["file_name"], statement["imported_by"]) == ("december.csv", "cli")

        code, out, err = await run_py("import-statement", str(path), "--kind", "mpesa", env=env)
        assert code == 0, err
        assert "was imported before" in out
        assert await store.collection(PAYMENTS).count_documents({}) == 2

        bad = tmp_path / "bad.csv"
        bad.write_bytes(mpesa_statement([Paid("SUB0000003", "08:00:00", "-", "1")]))
        code, out, err = await run_py("import-statement", str(bad), "--kind", "mpesa", env=env)
        assert code == 1 and out == ""
        assert err.startswith(
            "refused: the statement is refused, nothing was imported: row 6, Paid In"
        )
    finally:
        await store.client.drop_database(database)
        await store.close()


@pytest.mark.asyncio
async def test_confirmations_delivered_before_an_import_are_matched(http, gateway, store) -> None:
    """The seeding the HTTP tests use: confirmations through the real callback."""
    row = Paid("RKL51ZDR4F", "08:00:00", "5.00", "070707070")
    status, _ = await deliver_callback(http, gateway, "confirmation", row.confirmation())
    assert status == 200
    result = await gateway.services.statements.import_statement(
        "mpesa", mpesa_statement([row]), actor="olga"
    )
    assert result.summary["matched"] == 1
