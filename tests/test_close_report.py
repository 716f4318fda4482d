"""The period close against the real gateway, on a small known history: per channel,
provider and currency, what was received, applied to policies, unmatched at the period's
end, recovered by reconciliation and still in doubt; as JSON, CSV and a printable page;
bad periods refused."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
import pytest_asyncio
from test_openapi import answer_schema, check_against

from server.api.app import openapi_spec
from server.mpesa.schemas import NAIROBI
from server.ops.close_report import FIGURES
from server.reconciliation.items import Item, ItemRepository

from support import (
    BASIC_GMD,
    BASIC_KES,
    CALLBACK_SECRET,
    Product,
    callback_body,
    headers_for_role,
    idle_policy,
    make_settings,
    psp_user,
    request_json,
    unknown_debit,
)
from systems import ManualClock

CLOSE = "/api/v1/reports/close"
SHORTCODE, FOREIGN = "600984", "600985"
SMALL_KES = Product("SMALL-KES", "100.00", "KES")
MID_KES = Product("MID-KES", "200.00", "KES")
NO_INSUREE = "099999999"


def nairobi(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(date(year, month, day), time(hour, minute), NAIROBI).astimezone(UTC)


class History:
    """A gateway on a clock the test sets, an operator, and the payments made so far."""

    def __init__(self, http, gateway, clock: ManualClock, operator, provider) -> None:
        self.http, self.gateway, self.clock = http, gateway, clock
        self.operator, self.provider = operator, provider
        self.spec = openapi_spec()

    def at(self, moment: datetime) -> None:
        self.clock.offset = moment - datetime.now(UTC)

    async def confirm(
        self, trans_id: str, at: datetime, amount: str, account: str = NO_INSUREE, **body: str
    ) -> None:
        """Daraja's confirmation of a payment made at `at`, arriving a second later."""
        self.at(at + timedelta(seconds=1))
        sent = callback_body(
            TransID=trans_id,
            TransTime=at.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S"),
            TransAmount=amount,
            BillRefNumber=account,
            **body,
        )
        url = f"{self.gateway.url}/api/v1/c2b/confirmation/{CALLBACK_SECRET}"
        status, answer = await request_json(self.http, "POST", url, sent)
        assert (status, answer["ResultCode"]) == (200, 0), answer

    async def allocate(self, trans_id: str, policy: dict[str, Any], at: datetime) -> None:
        self.at(at)
        status, answer = await request_json(
            self.http,
            "POST",
            f"{self.gateway.url}/api/v1/c2b/payments/{trans_id}/allocate",
            {"policy_uuid": policy["_id"], "note": "the payer called the office"},
            headers=self.operator,
        )
        assert status == 200 and answer["status"] == "settled", answer

    async def close(self, status: int = 200, headers: Any = None, **params: str) -> Any:
        answered, body = await request_json(
            self.http,
            "GET",
            self.gateway.url + CLOSE,
            params=params,
            headers=self.operator if headers is None else headers,
        )
        assert answered == status, body
        if status == 200:
            check_against(self.spec, answer_schema(self.spec, CLOSE, "get", 200), body)
        return body


@pytest_asyncio.fixture
async def history(http, start_gateway_with) -> History:
    clock = ManualClock()
    gateway = await start_gateway_with(make_settings(jobs={"enabled": False}), clock=clock)
    # Tokens are issued now: PyJWT checks their times against the real clock.
    operator = await headers_for_role(http, gateway, "olga", "operator")
    provider = await psp_user(http, gateway, "afrimoney", name="Afrimoney")
    return History(http, gateway, clock, operator, provider)


async def make_history(history: History) -> dict[str, Any]:
    """November 2025, and around it (Nairobi time):

    A  KES 100   30 Oct, unmatched; allocated by an operator on 10 Nov
    B  KES 1500  5 Nov, settled at once (the account's idle policy)
    C  KES 200   20 Nov, unmatched; allocated on 3 Dec
    D  KES 300   30 Nov 23:30, unmatched (still)
    E  KES 400   1 Dec 00:30 (30 Nov 21:30 UTC), unmatched (still)
    F  KES 50    15 Oct, unmatched (still)
    G  KES 70    12 Nov, to shortcode 600985, which the gateway does not serve: held
    H  GMD 500   7 Nov, paid through the provider API
    I  GMD 500   25 Nov, a Qmoney debit whose outcome is unknown
    and a payment of 8 Nov the M-Pesa pull recovered (KES 40)."""
    services = history.gateway.services
    history.at(nairobi(2025, 10, 1, 8))
    small = await idle_policy(services, "080808080", SMALL_KES)
    mid = await idle_policy(services, "090909090", MID_KES)
    await idle_policy(services, "070707070", BASIC_KES)
    paid = await idle_policy(services, "060606060", BASIC_GMD)
    doubtful = await idle_policy(services, "050505050", BASIC_GMD)

    await history.confirm("CLSF000001", nairobi(2025, 10, 15, 9), "50.00")
    await history.confirm("CLSA000001", nairobi(2025, 10, 30, 12), "100.00")
    await history.confirm("CLSB000001", nairobi(2025, 11, 5, 10), "1500.00", "070707070")
    history.at(nairobi(2025, 11, 7, 11))
    status, payment = await request_json(
        history.http,
        "POST",
        f"{history.gateway.url}/api/v1/payments",
        {
            "chf_id": "060606060",
            "amount": "500.00",
            "psp_transaction_id": "AFR-CLOSE-1",
            "policy": {
                "token": paid["payment_token"],
                "product_code": BASIC_GMD.code,
                "product_name": BASIC_GMD.name,
            },
        },
        headers=history.provider.headers,
    )
    assert status == 201 and payment["status"] == "succeeded", payment
    await history.allocate("CLSA000001", small, nairobi(2025, 11, 10, 15))
    await history.confirm(
        "CLSG000001", nairobi(2025, 11, 12, 9), "70.00", "070707070", BusinessShortCode=FOREIGN
    )
    await history.confirm("CLSC000001", nairobi(2025, 11, 20, 10), "200.00")
    await history.confirm("CLSD000001", nairobi(2025, 11, 30, 23, 30), "300.00")
    await history.confirm("CLSE000001", nairobi(2025, 12, 1, 0, 30), "400.00")
    await history.allocate("CLSC000001", mid, nairobi(2025, 12, 3, 9))

    unknown_at = nairobi(2025, 11, 25, 14)
    await unknown_debit(services.store, doubtful, unknown_at)
    await ItemRepository(services.store).record(
        [
            Item(
                channel="mpesa_c2b",
                provider=SHORTCODE,
                key="CLSR000001",
                at=nairobi(2025, 11, 8, 16),
                currency="KES",
                amount=40_00,
                amount_here=40_00,
                outcome="matched",
                source="daraja_pull",
                recovered=True,
            )
        ],
        nairobi(2025, 11, 8, 17),
    )
    history.clock.offset = timedelta(0)
    return {"psp": history.provider.psp["_id"]}


def figures(row: dict[str, Any]) -> dict[str, tuple[int, str]]:
    return {name: (row[name]["count"], row[name]["total"]) for name in FIGURES}


def expect(**given: tuple[int, str]) -> dict[str, tuple[int, str]]:
    return {name: given.get(name, (0, "0.00")) for name in FIGURES}


@pytest.mark.asyncio
async def test_a_month_close_per_channel_provider_and_currency(history: History) -> None:
    made = await make_history(history)
    report = await history.close(period="2025-11")
    assert (report["period"], report["kind"], report["from"], report["to"]) == (
        "2025-11",
        "month",
        "2025-11-01",
        "2025-11-30",
    )
    assert (report["starts_at"], report["ends_at"], report["complete"]) == (
        "2025-10-31T21:00:00+00:00",
        "2025-11-30T21:00:00+00:00",
        True,
    )
    assert "Nairobi" in report["days"]
    rows = {(row["channel"], row["provider"], row["currency"]): row for row in report["rows"]}
    assert list(rows) == [
        ("mpesa_c2b", SHORTCODE, "KES"),
        ("mpesa_c2b", FOREIGN, "KES"),
        ("qmoney", "qmoney-psp", "GMD"),
        ("psp_api", made["psp"], "GMD"),
    ]
    # Received B, C, D (E is 1 December's); applied A (allocated in November, received in
    # October) and B, not C (allocated in December); unmatched when November ended: C, D
    # and October's F, not A (allocated by then).
    assert figures(rows[("mpesa_c2b", SHORTCODE, "KES")]) == expect(
        received=(3, "2000.00"),
        applied=(2, "1600.00"),
        unmatched_at_end=(3, "550.00"),
        recovered=(1, "40.00"),
    )
    # A payment to a shortcode the gateway does not serve: received, held for review.
    assert figures(rows[("mpesa_c2b", FOREIGN, "KES")]) == expect(
        received=(1, "70.00"), in_doubt=(1, "70.00")
    )
    assert figures(rows[("qmoney", "qmoney-psp", "GMD")]) == expect(in_doubt=(1, "500.00"))
    provider_row = rows[("psp_api", made["psp"], "GMD")]
    assert provider_row["provider_name"] == "Afrimoney"
    assert figures(provider_row) == expect(received=(1, "500.00"), applied=(1, "500.00"))
    totals = {(total["channel"], total["currency"]): figures(total) for total in report["totals"]}
    assert totals == {
        ("mpesa_c2b", "KES"): expect(
            received=(4, "2070.00"),
            applied=(2, "1600.00"),
            unmatched_at_end=(3, "550.00"),
            recovered=(1, "40.00"),
            in_doubt=(1, "70.00"),
        ),
        ("qmoney", "GMD"): expect(in_doubt=(1, "500.00")),
        ("psp_api", "GMD"): expect(received=(1, "500.00"), applied=(1, "500.00")),
    }
    assert [entry["figure"] for entry in report["definitions"]] == list(FIGURES)


@pytest.mark.asyncio
async def test_a_day_close_counts_what_was_unmatched_when_that_day_ended(
    history: History,
) -> None:
    await make_history(history)
    fifth = await history.close(period="2025-11-05")
    assert (fifth["kind"], fifth["from"], fifth["to"]) == ("day", "2025-11-05", "2025-11-05")
    [row] = fifth["rows"]
    # A was still unmatched on 5 November (allocated on the 10th); F too.
    assert figures(row) == expect(
        received=(1, "1500.00"), applied=(1, "1500.00"), unmatched_at_end=(2, "150.00")
    )
    # 00:30 on 1 December in Nairobi is 30 November in UTC, and 1 December's payment.
    first = await history.close(period="2025-12-01")
    [row] = first["rows"]
    assert figures(row) == expect(received=(1, "400.00"), unmatched_at_end=(4, "950.00"))


@pytest.mark.asyncio
async def test_the_close_as_csv_and_as_a_printable_page(history: History) -> None:
    await make_history(history)
    report = await history.close(period="2025-11")
    url = history.gateway.url + CLOSE
    async with history.http.get(
        url, params={"period": "2025-11", "format": "csv"}, headers=history.operator
    ) as response:
        assert response.status == 200 and response.content_type == "text/csv"
        assert response.headers["Content-Disposition"] == (
            'attachment; filename="close-2025-11.csv"'
        )
        lines = list(csv.DictReader(io.StringIO(await response.text(), newline="")))
    assert len(lines) == len(report["rows"])
    for line, row in zip(lines, report["rows"], strict=True):
        assert (line["channel"], line["provider"], line["currency"]) == (
            row["channel"],
            row["provider"],
            row["currency"],
        )
        assert line["provider_name"] == (row["provider_name"] or "")
        for name in FIGURES:
            assert (int(line[f"{name}_count"]), line[f"{name}_total"]) == (
                row[name]["count"],
                row[name]["total"],
            )
    async with history.http.get(
        url, params={"period": "2025-11", "format": "html"}, headers=history.operator
    ) as response:
        assert response.status == 200 and response.content_type == "text/html"
        policy = response.headers["Content-Security-Policy"]
        page = await response.text()
    assert policy.startswith("default-src 'none'; style-src 'sha256-")
    assert "<title>Period close 2025-11</title>" in page
    assert "<script" not in page and "@media print" in page
    assert "<td>M-Pesa paybill</td><td>600984</td><td>KES</td>" in page
    assert '<td class="number">3</td><td class="number">2000.00</td>' in page
    assert "Afrimoney (" in page and "has not ended" not in page


@pytest.mark.asyncio
async def test_a_period_not_ended_says_so(history: History) -> None:
    month = datetime.now(NAIROBI).strftime("%Y-%m")
    report = await history.close(period=month)
    assert report["complete"] is False and report["rows"] == []
    async with history.http.get(
        history.gateway.url + CLOSE,
        params={"period": month, "format": "html"},
        headers=history.operator,
    ) as response:
        page = await response.text()
    assert "The period has not ended" in page and "Nothing in this period." in page


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "period"),
        ({"period": ""}, "period"),
        ({"period": "2025-13"}, "period"),
        ({"period": "2025-00"}, "period"),
        ({"period": "2025-11-31"}, "period"),
        ({"period": "2025-1"}, "period"),
        ({"period": "2025/11"}, "period"),
        ({"period": "1999-12"}, "period"),
        ({"period": "November"}, "period"),
        ({"period": "2" * 3000}, "period"),
        ({"period": "2025-11", "format": "pdf"}, "format"),
        ({"period": "2025-11", "limit": "5"}, "limit"),
    ],
)
async def test_a_bad_period_is_refused_naming_it(
    history: History, params: dict[str, str], field: str
) -> None:
    error = (await history.close(400, **params))["error"]
    assert error["code"] == "validation_error"
    assert list(error["details"]["fields"]) == [field]


@pytest.mark.asyncio
async def test_the_close_is_for_operators_only(history: History) -> None:
    assert (await history.close(403, headers=history.provider.headers, period="2025-11"))["error"][
        "code"
    ] == "forbidden"
    assert (await history.close(401, headers={}, period="2025-11"))["error"][
        "code"
    ] == "missing_token"
