"""The streamed exports against the real gateway: each export's columns and filters, a
10,000-row CSV read back and compared row by row, the answer arriving batch by batch,
cells guarded against spreadsheet formulas, bad input refused, and `python run.py
export` writing the same rows with its progress."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import logging
import os
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from pymongo.errors import ServerSelectionTimeoutError

from server.kernel.store import open_store
from server.mpesa.schemas import NAIROBI
from server.ops.export_definitions import EXPORTS
from server.ops.exports import Exports
from server.reconciliation import items
from server.reconciliation.items import Item, ItemRepository
from server.startup.export_command import export_arguments, write_export
from server.startup.services import INDEXES
from server.web.csv_answer import spreadsheet_cell

from support import (
    BASIC_GMD,
    PAYMENTS,
    TEST_ENV,
    headers_for_role,
    idle_policy,
    make_settings,
    psp_user,
    request_json,
    run_py,
    unknown_debit,
    wait_until,
)

MONGODB_URI = os.environ.get("TEST_MONGODB_URI")
EXPORTS_URL = "/api/v1/exports"
DAY = date(2026, 12, 1)
# 09:00 in Nairobi on DAY.
NINE = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
SHORTCODE = "600984"


def payment(
    trans_id: str,
    at: datetime,
    amount: int = 150_00,
    status: str = "settled",
    **fields: Any,
) -> dict[str, Any]:
    """A C2B payment as the gateway stores it (server.mpesa.documents.C2BPayment)."""
    document: dict[str, Any] = {
        "trans_id": trans_id,
        "transaction_type": "Pay Bill",
        "trans_time": at,
        "amount": amount,
        "currency": "KES",
        "shortcode": SHORTCODE,
        "bill_ref": "070707070",
        "invoice_number": "",
        "org_balance": None,
        "third_party_trans_id": "",
        "msisdn": "2547 ***** 149",
        "msisdn_form": "masked",
        "payer_name": "JOHN DOE",
        "fingerprint": trans_id,
        "inbox_id": f"inbox-{trans_id}",
        "received_at": at + timedelta(seconds=2),
        "review": [],
        "review_open": False,
        "status": status,
        "updated_at": at + timedelta(seconds=2),
        "allocation_history": [
            {
                "status": status,
                "by": "system",
                "reason": "settled" if status == "settled" else "no_insuree",
                "policy_uuid": None,
                "at": at + timedelta(seconds=2),
            }
        ],
    }
    if status == "settled":
        document.update(
            policy_uuid=f"policy-{trans_id}",
            transaction_uuid=f"transaction-{trans_id}",
            receipt=f"R-{trans_id}",
        )
    if status == "unmatched":
        document["unmatched_reason"] = "no_insuree"
    document.update(fields)
    return document


class Desk:
    """A gateway on the lane's store, an operator and the store itself."""

    def __init__(self, http, gateway, store, operator: dict[str, str]) -> None:
        self.http, self.gateway, self.store, self.operator = http, gateway, store, operator

    @property
    def exports(self) -> Exports:
        return self.gateway.services.exports

    async def csv(self, name: str, **params: str) -> list[dict[str, str]]:
        """The export's rows, read back with the csv module (header checked)."""
        text = await self.text(name, **params)
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader)
        assert tuple(header) == EXPORTS[name].columns
        return [dict(zip(header, row, strict=True)) for row in reader]

    async def text(self, name: str, **params: str) -> str:
        async with self.http.get(
            f"{self.gateway.url}{EXPORTS_URL}/{name}.csv", params=params, headers=self.operator
        ) as response:
            assert response.status == 200, await response.text()
            assert response.content_type == "text/csv"
            assert response.headers["Content-Disposition"] == (
                f'attachment; filename="{name}-{params["from"]}-{params["to"]}.csv"'
            )
            return (await response.read()).decode()

    async def refused(self, name: str, params: dict[str, str], status: int = 400, **kw) -> Any:
        answered, body = await request_json(
            self.http,
            "GET",
            f"{self.gateway.url}{EXPORTS_URL}/{name}.csv",
            params=params,
            headers=kw.get("headers", self.operator),
        )
        assert answered == status, body
        return body["error"]


@pytest_asyncio.fixture
async def desk(http, start_gateway_with, store) -> Desk:
    gateway = await start_gateway_with(make_settings(jobs={"enabled": False}))
    operator = await headers_for_role(http, gateway, "olga", "operator")
    return Desk(http, gateway, store, operator)


def day(value: date = DAY) -> dict[str, str]:
    return {"from": value.isoformat(), "to": value.isoformat()}


# --- 10,000 rows -----------------------------------------------------------------------


def expected_payment_row(document: dict[str, Any]) -> list[str]:
    """What the export must show for a settled payment, built here from the document."""
    whole, cents = divmod(document["amount"], 100)
    return [
        document["trans_id"],
        document["trans_time"].isoformat(),
        document["received_at"].isoformat(),
        f"{whole}.{cents:02d}",
        "KES",
        "settled",
        "mpesa_c2b",
        SHORTCODE,
        document["bill_ref"],
        document["payer_name"],
        "2547 ***** 149",
        document["policy_uuid"],
        document["transaction_uuid"],
        document["receipt"],
        "",
        "no",
        "",
    ]


async def many_rows(store) -> int:
    """10,000; 2,000 against the wire-protocol test server, whose engine (mongoeco, one
    Python process) checks a unique index by scanning, so that each insert costs more as
    the collection grows: 10,000 would take minutes there, not the read being tested."""
    if not store.in_memory:
        build = await store.client.admin.command("buildInfo")
        if build.get("gitVersion") == "mongoeco":
            return 2_000
    return 10_000


async def insert_in_bulk(store, documents: list[dict[str, Any]]) -> None:
    """One insert in memory; chunks of 500 over the wire, each a short operation."""
    size = len(documents) if store.in_memory else 500
    for start in range(0, len(documents), size):
        await store.collection(PAYMENTS).insert_many(documents[start : start + size])


@pytest.mark.asyncio
async def test_a_large_export_reads_back_row_by_row(desk: Desk) -> None:
    """10,000 payments (see many_rows), read back with the csv module, compared row by
    row with what was stored."""
    documents = [
        payment(
            f"TEN{n:07d}",
            NINE + timedelta(seconds=n),
            amount=100_00 + n,
            bill_ref=f"{n:09d}",
            # A comma, quotes and a non-ASCII letter: the CSV's quoting must carry them.
            payer_name=f'NJERI, "N" WAMBŨI {n}',
        )
        for n in range(await many_rows(desk.store))
    ]
    await insert_in_bulk(desk.store, documents)
    # Outside the window (the day before, in Nairobi: 20:59 UTC is 23:59 there).
    await desk.store.collection(PAYMENTS).insert_one(
        payment("OUT0000001", datetime(2026, 11, 30, 20, 59, tzinfo=UTC))
    )
    rows = await desk.csv("payments", **day())
    assert len(rows) == len(documents)
    for document, row in zip(documents, rows, strict=True):
        assert list(row.values()) == expected_payment_row(document)


async def held_after_the_first_batch(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> tuple[list[int], asyncio.Event]:
    """500 payments exported 100 to a batch, the reading held after each batch until the
    event is set; the sizes of the batches handed out so far."""
    await desk.store.collection(PAYMENTS).insert_many(
        [payment(f"{prefix}{n:07d}", NINE + timedelta(seconds=n)) for n in range(500)]
    )
    desk.exports.batch_size = 100
    read = desk.exports.batches
    handed: list[int] = []
    more = asyncio.Event()

    async def held(prepared):
        async for batch in read(prepared):
            handed.append(len(batch))
            yield batch
            await more.wait()

    monkeypatch.setattr(desk.exports, "batches", held)
    return handed, more


@pytest.mark.asyncio
async def test_the_answer_arrives_batch_by_batch_while_the_cursor_is_read(
    desk: Desk, monkeypatch
) -> None:
    handed, more = await held_after_the_first_batch(desk, monkeypatch, "STR")
    url = f"{desk.gateway.url}{EXPORTS_URL}/payments.csv"
    async with desk.http.get(url, params=day(), headers=desk.operator) as response:
        assert response.headers["Transfer-Encoding"] == "chunked"
        first = [await response.content.readline() for _ in range(101)]
        # The header and the first 100 rows arrived while the export waits to read on.
        assert first[0].startswith(b"trans_id,trans_time,")
        assert first[-1].startswith(b"STR0000099,")
        assert handed == [101]
        more.set()
        rest = (await response.content.read()).decode().splitlines()
    assert len(rest) == 400 and rest[-1].startswith("STR0000499,")
    assert handed == [101, 100, 100, 100, 100]


@pytest.mark.asyncio
async def test_a_client_that_goes_away_stops_the_reading(desk: Desk, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.http")
    handed, more = await held_after_the_first_batch(desk, monkeypatch, "GON")
    url = f"{desk.gateway.url}{EXPORTS_URL}/payments.csv"
    async with desk.http.get(url, params=day(), headers=desk.operator) as response:
        await response.content.readline()
        response.close()
    inflight = desk.gateway.services.inflight
    await wait_until(lambda: not inflight, "the gateway to see the connection closed")
    more.set()
    await wait_until(lambda: "csv_abandoned" in caplog.text, "the export to stop")
    assert handed == [101, 100]


@pytest.mark.asyncio
async def test_a_store_failure_after_the_first_rows_breaks_the_download(
    desk: Desk, monkeypatch, caplog
) -> None:
    """Rows are out already: the download must fail visibly, never end as a short file
    that reads as whole."""
    caplog.set_level(logging.ERROR, logger="gateway.http")
    await desk.store.collection(PAYMENTS).insert_many(
        [payment(f"CUT{n:07d}", NINE + timedelta(seconds=n)) for n in range(300)]
    )
    desk.exports.batch_size = 100
    read = desk.exports.batches

    async def failing_after_the_first(prepared):
        async for batch in read(prepared):
            yield batch
            raise ServerSelectionTimeoutError("store gone")

    monkeypatch.setattr(desk.exports, "batches", failing_after_the_first)
    url = f"{desk.gateway.url}{EXPORTS_URL}/payments.csv"
    with pytest.raises(aiohttp.ClientPayloadError):
        async with desk.http.get(url, params=day(), headers=desk.operator) as response:
            assert response.status == 200
            await response.read()
    await wait_until(lambda: "csv_cut_off" in caplog.text, "the cut to be logged")


@pytest.mark.asyncio
async def test_the_cursor_is_read_a_batch_at_a_time_header_first(desk: Desk) -> None:
    await desk.store.collection(PAYMENTS).insert_many(
        [payment(f"BAT{n:07d}", NINE + timedelta(seconds=n)) for n in range(250)]
    )
    exports = Exports(desk.store, ["mpesa_c2b"], {}, batch_size=100)
    prepared = exports.prepare(EXPORTS["payments"], {"date_from": DAY, "date_to": DAY})
    batches = [batch async for batch in exports.batches(prepared)]
    assert [len(batch) for batch in batches] == [101, 100, 50]
    assert batches[0][0] == list(EXPORTS["payments"].columns)
    nothing = exports.prepare(
        EXPORTS["payments"], {"date_from": DAY, "date_to": DAY, "currency": "GMD"}
    )
    assert [batch async for batch in exports.batches(nothing)] == [
        [list(EXPORTS["payments"].columns)]
    ]


def test_every_export_is_read_in_order_from_an_index() -> None:
    """The window and the order of every export (its time field, then its tie-break, both
    one way) are an index's first keys, read forwards or backwards."""
    for export in EXPORTS.values():
        assert any(
            collection == export.collection
            and [name for name, _ in keys[:2]] == [export.time_field, export.tiebreak]
            and keys[0][1] == keys[1][1]
            for collection, keys, _ in INDEXES
        ), export.name


# --- each export's columns and filters ----------------------------------------------


async def seed_payments(store) -> dict[str, dict[str, Any]]:
    found = {
        "settled": payment("PAY0000001", NINE, bill_ref="070707070"),
        "unmatched": payment(
            "PAY0000002",
            NINE + timedelta(hours=1),
            amount=70_00,
            status="unmatched",
            bill_ref="099999999",
            review=[{"inbox_id": "i-2", "reason": "amount_differs", "at": NINE}],
            review_open=True,
        ),
        "next_day": payment("PAY0000003", NINE + timedelta(days=1)),
        "held": payment(
            "PAY0000004",
            NINE + timedelta(hours=2),
            status="held",
            shortcode="600985",
            bill_ref="080808080",
            unmatched_reason="shortcode_not_served",
            recovered={"source": "statement", "inbox_id": "i-4", "missing": []},
            review=[{"inbox_id": "i-4", "reason": "shortcode_not_served", "at": NINE}],
            review_open=True,
        ),
    }
    await store.collection(PAYMENTS).insert_many(list(found.values()))
    return found


def keys(rows: list[dict[str, str]], column: str = "trans_id") -> list[str]:
    return [row[column] for row in rows]


@pytest.mark.asyncio
async def test_payments_are_filtered_as_the_list_filters_them(desk: Desk) -> None:
    await seed_payments(desk.store)
    rows = await desk.csv("payments", **day())
    assert keys(rows) == ["PAY0000001", "PAY0000002", "PAY0000004"]
    settled, unmatched, held = rows
    assert settled == {
        "trans_id": "PAY0000001",
        "trans_time": "2026-12-01T06:00:00+00:00",
        "received_at": "2026-12-01T06:00:02+00:00",
        "amount": "150.00",
        "currency": "KES",
        "status": "settled",
        "channel": "mpesa_c2b",
        "provider": SHORTCODE,
        "account": "070707070",
        "payer_name": "JOHN DOE",
        "msisdn": "2547 ***** 149",
        "policy_uuid": "policy-PAY0000001",
        "transaction_uuid": "transaction-PAY0000001",
        "receipt": "R-PAY0000001",
        "unmatched_reason": "",
        "needs_review": "no",
        "recovered_by": "",
    }
    assert (unmatched["status"], unmatched["unmatched_reason"], unmatched["needs_review"]) == (
        "unmatched",
        "no_insuree",
        "yes",
    )
    assert (held["provider"], held["recovered_by"], held["needs_review"]) == (
        "600985",
        "statement",
        "yes",
    )
    assert keys(await desk.csv("payments", **day(), status="unmatched")) == ["PAY0000002"]
    assert keys(await desk.csv("payments", **day(), needs_review="true")) == [
        "PAY0000002",
        "PAY0000004",
    ]
    assert keys(await desk.csv("payments", **day(), needs_review="false")) == ["PAY0000001"]
    assert keys(await desk.csv("payments", **day(), min_amount="100", currency="KES")) == [
        "PAY0000001",
        "PAY0000004",
    ]
    assert keys(await desk.csv("payments", **day(), max_amount="70.00", currency="KES")) == [
        "PAY0000002"
    ]
    assert keys(await desk.csv("payments", **day(), bill_ref="070707070")) == ["PAY0000001"]
    assert keys(await desk.csv("payments", **day(), shortcode="600985")) == ["PAY0000004"]
    assert await desk.csv("payments", **day(), currency="GMD") == []
    two_days = {"from": DAY.isoformat(), "to": (DAY + timedelta(days=1)).isoformat()}
    assert len(await desk.csv("payments", **two_days)) == 4
    # Instants: from 06:30 UTC up to (not including) 08:00 UTC.
    instants = {"from": "2026-12-01T06:30:00Z", "to": "2026-12-01T08:00:00+00:00"}
    async with desk.http.get(
        f"{desk.gateway.url}{EXPORTS_URL}/payments.csv", params=instants, headers=desk.operator
    ) as response:
        assert response.headers["Content-Disposition"] == (
            'attachment; filename="payments-20261201T063000Z-20261201T080000Z.csv"'
        )
        lines = list(csv.DictReader(io.StringIO(await response.text())))
    assert keys(lines) == ["PAY0000002"]


@pytest.mark.asyncio
async def test_unmatched_lists_what_is_unmatched_now_and_since_when(desk: Desk) -> None:
    found = await seed_payments(desk.store)
    [row] = await desk.csv("unmatched", **day())
    assert row["trans_id"] == "PAY0000002" and row["amount"] == "70.00"
    assert row["unmatched_since"] == found["unmatched"]["allocation_history"][0]["at"].isoformat()
    assert await desk.csv("unmatched", **day(), bill_ref="070707070") == []
    error = await desk.refused("unmatched", {**day(), "status": "settled"})
    assert error["details"]["fields"] == {"status": ["Unknown field."]}


@pytest.mark.asyncio
async def test_transactions_and_premiums_show_channel_provider_and_receipt(desk: Desk) -> None:
    services = desk.gateway.services
    provider = await psp_user(desk.http, desk.gateway, "afrimoney", name="Afrimoney")
    policy = await idle_policy(services, "060606060", BASIC_GMD)
    status, paid = await request_json(
        desk.http,
        "POST",
        f"{desk.gateway.url}/api/v1/payments",
        {
            "chf_id": "060606060",
            "amount": "500.00",
            "psp_transaction_id": "AFR-EXPORT-1",
            "policy": {
                "token": policy["payment_token"],
                "product_code": BASIC_GMD.code,
                "product_name": BASIC_GMD.name,
            },
        },
        headers=provider.headers,
    )
    assert status == 201, paid
    now = datetime.now(UTC)
    doubtful = await idle_policy(services, "050505050", BASIC_GMD)
    await unknown_debit(desk.store, doubtful, now)
    today = now.astimezone(NAIROBI).date()
    transactions = await desk.csv("transactions", **day(today))
    assert [row["channel"] for row in transactions] == ["psp_api", "qmoney"]
    paid_row, unknown_row = transactions
    [premium] = await desk.csv("premiums", **day(today))
    assert paid_row["uuid"] == paid["payment_id"]
    assert (paid_row["status"], paid_row["amount"], paid_row["currency"]) == (
        "succeeded",
        "500.00",
        "GMD",
    )
    assert (paid_row["provider"], paid_row["provider_name"]) == (provider.psp["_id"], "Afrimoney")
    assert (paid_row["provider_reference"], paid_row["chf_id"]) == ("AFR-EXPORT-1", "060606060")
    assert (paid_row["settlement"], paid_row["receipt"]) == ("settled", paid["receipt"])
    assert paid_row["premium_uuid"] == premium["premium_uuid"] == paid["premium"]["uuid"]
    assert datetime.fromisoformat(paid_row["paid_at"]).tzinfo == UTC
    assert (unknown_row["status"], unknown_row["provider"], unknown_row["paid_at"]) == (
        "unknown",
        "qmoney-psp",
        "",
    )
    assert premium == {
        "premium_uuid": paid["premium"]["uuid"],
        "pay_date": premium["pay_date"],
        "created_at": premium["created_at"],
        "amount": "500.00",
        "currency": "GMD",
        "chf_id": "060606060",
        "policy_uuid": policy["_id"],
        "transaction_uuid": paid["payment_id"],
        "channel": "psp_api",
        "provider": provider.psp["_id"],
        "provider_name": "Afrimoney",
        "provider_reference": "AFR-EXPORT-1",
        "receipt": paid["receipt"],
        "pay_type": "M",
    }
    assert keys(await desk.csv("transactions", **day(today), status="unknown"), "uuid") == [
        unknown_row["uuid"]
    ]
    assert keys(await desk.csv("transactions", **day(today), channel="psp_api"), "uuid") == [
        paid["payment_id"]
    ]
    assert len(await desk.csv("transactions", **day(today), chf_id="050505050")) == 1
    assert await desk.csv("premiums", **day(today), chf_id="050505050") == []
    assert await desk.csv("premiums", **day(today - timedelta(days=1))) == []
    error = await desk.refused("transactions", {**day(today), "channel": "carrier-pigeon"})
    assert list(error["details"]["fields"]) == ["channel"]


@pytest.mark.asyncio
async def test_reconciliation_items_filter_by_outcome_open_and_recovered(desk: Desk) -> None:
    def item(key: str, hour: int, outcome: str, **fields: Any) -> Item:
        return Item(
            channel="mpesa_c2b",
            provider=SHORTCODE,
            key=key,
            at=NINE + timedelta(hours=hour),
            currency="KES",
            amount=30_00,
            amount_here=fields.pop("amount_here", 30_00),
            outcome=outcome,
            source="daraja_pull",
            **fields,
        )

    repository = ItemRepository(desk.store)
    await repository.record(
        [
            item("REC0000001", 0, items.MATCHED, recovered=True),
            item("REC0000002", 1, items.DIFFERING, amount_here=25_00, detail="amount differs"),
            item("REC0000003", 2, items.MISSING_HERE, amount_here=None),
        ],
        NINE + timedelta(hours=3),
    )
    await repository.clear("mpesa_c2b:REC0000003", "olga", "taken up with M-Pesa", NINE)
    rows = await desk.csv("reconciliation", **day())
    assert keys(rows, "key") == ["REC0000001", "REC0000002", "REC0000003"]
    recovered, differing, cleared = rows
    assert (recovered["outcome"], recovered["recovered_by"], recovered["day"]) == (
        "matched",
        "daraja_pull",
        "2026-12-01",
    )
    assert (differing["amount"], differing["amount_here"], differing["detail"]) == (
        "30.00",
        "25.00",
        "amount differs",
    )
    assert (cleared["amount_here"], cleared["cleared_by"], cleared["sources"]) == (
        "",
        "olga",
        "daraja_pull",
    )
    assert keys(await desk.csv("reconciliation", **day(), open="true"), "key") == ["REC0000002"]
    assert keys(await desk.csv("reconciliation", **day(), open="false"), "key") == [
        "REC0000001",
        "REC0000003",
    ]
    assert keys(await desk.csv("reconciliation", **day(), recovered="true"), "key") == [
        "REC0000001"
    ]
    assert keys(await desk.csv("reconciliation", **day(), outcome="differing"), "key") == [
        "REC0000002"
    ]
    assert await desk.csv("reconciliation", **day(), channel="psp_api") == []


# --- spreadsheets, and bad input -----------------------------------------------------


def test_a_cell_a_spreadsheet_would_run_is_written_as_text() -> None:
    for formula in ("=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "\t=1", "\r=1"):
        assert spreadsheet_cell(formula) == "'" + formula
    for plain in ("150.00", "-5.00", "+254700000000", "JOHN DOE", "", "a=b"):
        assert spreadsheet_cell(plain) == plain


@pytest.mark.asyncio
async def test_cells_starting_like_a_formula_get_an_apostrophe(desk: Desk) -> None:
    await desk.store.collection(PAYMENTS).insert_one(
        payment(
            "INJ0000001",
            NINE,
            payer_name='=HYPERLINK("http://example.org","click")',
            bill_ref="@SUM(A1:A9)",
            msisdn="+2547 ***** 149",
        )
    )
    [row] = await desk.csv("payments", **day())
    assert row["payer_name"] == '\'=HYPERLINK("http://example.org","click")'
    assert row["account"] == "'@SUM(A1:A9)"
    assert row["msisdn"] == "'+2547 ***** 149"
    assert row["amount"] == "150.00"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "from,to"),
        ({"from": "2026-12-01"}, "to"),
        ({"from": "yesterday", "to": "2026-12-01"}, "from"),
        ({"from": "2026-13-01", "to": "2026-12-01"}, "from"),
        ({"from": "2026-12-01", "to": "9999-12-31"}, "to"),
        ({"from": "2026-12-01", "to": "2026-12-01T10:00:00+99:00"}, "to"),
        ({"from": "2026-12-02", "to": "2026-12-01"}, "to"),
        ({"from": "2026-12-01T10:00:00Z", "to": "2026-12-01T10:00:00Z"}, "to"),
        ({"from": "2026-12-01", "to": "2026-12-01", "limit": "10"}, "limit"),
        ({"from": "2026-12-01", "to": "2026-12-01", "status": "lost"}, "status"),
        ({"from": "2026-12-01", "to": "2026-12-01", "currency": "XXX"}, "currency"),
        ({"from": "2026-12-01", "to": "2026-12-01", "needs_review": "perhaps"}, "needs_review"),
        ({"from": "1" * 5000, "to": "2026-12-01"}, "from"),
        ({"from": "2026-12-01", "to": "2026-12-01", "min_amount": "5.00"}, "currency"),
        ({"from": "2026-12-01", "to": "2026-12-01", "max_amount": "-5"}, "max_amount"),
        (
            {"from": "2026-12-01", "to": "2026-12-01", "min_amount": "5.001", "currency": "KES"},
            "min_amount",
        ),
    ],
)
async def test_bad_input_is_refused_naming_the_parameter(
    desk: Desk, params: dict[str, str], field: str
) -> None:
    error = await desk.refused("payments", params)
    assert error["code"] == "validation_error"
    assert sorted(error["details"]["fields"]) == field.split(",")


@pytest.mark.asyncio
async def test_exports_are_for_operators_only(desk: Desk) -> None:
    provider = await headers_for_role(desk.http, desk.gateway, "afrimoney", "psp")
    for name in EXPORTS:
        assert (await desk.refused(name, day(), 403, headers=provider))["code"] == "forbidden"
        assert (await desk.refused(name, day(), 401, headers={}))["code"] == "missing_token"


# --- the command ------------------------------------------------------------------


def command(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    export_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.asyncio
async def test_the_command_writes_the_same_rows_with_progress(desk: Desk, tmp_path) -> None:
    await desk.store.collection(PAYMENTS).insert_many(
        [payment(f"CLI{n:07d}", NINE + timedelta(seconds=n)) for n in range(250)]
    )
    desk.exports.batch_size = 100
    out = tmp_path / "payments.csv"
    err = io.StringIO()
    args = command("payments", "--from", "2026-12-01", "--to", "2026-12-01", "--out", str(out))
    assert await write_export(desk.exports, args, progress_rows=100, stderr=err) == 0
    assert out.read_bytes().decode() == await desk.text("payments", **day())
    assert not (tmp_path / "payments.csv.part").exists()
    assert err.getvalue().splitlines() == [
        "  100 rows",
        "  200 rows",
        f"exported 250 rows of payments (2026-12-01 to 2026-12-01) to {out}",
    ]
    printed = io.StringIO()
    args = command("payments", "--from", "2026-12-01", "--to", "2026-12-01", "--status", "held")
    assert await write_export(desk.exports, args, stdout=printed, stderr=io.StringIO()) == 0
    assert printed.getvalue() == ",".join(EXPORTS["payments"].columns) + "\r\n"


@pytest.mark.asyncio
async def test_the_command_names_the_option_it_refuses(desk: Desk, tmp_path) -> None:
    out = tmp_path / "unmatched.csv"
    for argv, said in [
        (["--status", "settled"], "refused: --status is not a filter of the unmatched export"),
        (["--needs-review", "perhaps"], "refused: --needs-review: Not a valid boolean."),
    ]:
        err = io.StringIO()
        args = command("unmatched", "--from", "2026-12-01", "--to", "2026-12-01", *argv)
        args.out = out
        assert await write_export(desk.exports, args, stderr=err) == 1
        assert err.getvalue().strip() == said
    err = io.StringIO()
    args = command("payments", "--from", "2026-12-02", "--to", "2026-12-01")
    assert await write_export(desk.exports, args, stderr=err) == 1
    assert err.getvalue().strip() == "refused: --to: must be after from"
    assert not out.exists()


@pytest.mark.asyncio
async def test_the_command_needs_a_persistent_store() -> None:
    code, out, err = await run_py(
        "export", "payments", "--from", "2026-12-01", "--to", "2026-12-01", env=TEST_ENV
    )
    assert code == 2 and out == ""
    assert "export needs a persistent MongoDB store" in err and "Traceback" not in err


@pytest.mark.asyncio
@pytest.mark.skipif(not MONGODB_URI, reason="needs a MongoDB server: set TEST_MONGODB_URI")
async def test_the_command_exports_from_the_configured_mongodb(tmp_path: Path) -> None:
    database = f"cli_{uuid.uuid4().hex[:12]}"
    env = {**TEST_ENV, "GATEWAY_STORE_URI": MONGODB_URI, "GATEWAY_STORE_DATABASE": database}
    store = open_store(MONGODB_URI, database)
    try:
        documents = [payment(f"MDB{n:07d}", NINE + timedelta(seconds=n)) for n in range(30)]
        await store.collection(PAYMENTS).insert_many(documents)
        out = tmp_path / "out.csv"
        code, printed, err = await run_py(
            "export",
            "payments",
            "--from",
            "2026-12-01",
            "--to",
            "2026-12-01",
            "--out",
            str(out),
            env=env,
        )
        assert code == 0, err
        assert printed == ""
        assert err.strip() == f"exported 30 rows of payments (2026-12-01 to 2026-12-01) to {out}"
        rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
        assert [row["trans_id"] for row in rows] == [doc["trans_id"] for doc in documents]
        code, printed, err = await run_py(
            "export", "payments", "--from", "2026-12-01", "--to", "2026-12-01", env=env
        )
        assert code == 0 and printed.replace("\r\n", "\n") == out.read_text().replace("\r\n", "\n")
    finally:
        await store.client.drop_database(database)
        await store.close()
