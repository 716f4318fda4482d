"""The reconciliation view over HTTP against the real gateway: received against checked
per Nairobi day, channel, provider and currency; the open items; the last pull,
statement and janitor runs; the Account Balance; the CSV; the pull's gap on the
dashboard and in the metrics."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
import pytest_asyncio
from test_openapi import answer_schema, check_against, template_for

from server.api.app import openapi_spec
from server.kernel.clock import Clock
from server.mpesa.client import DarajaClient
from server.mpesa.initiator import ACCOUNT_BALANCE, REQUESTED
from server.mpesa.registration import register_callback_urls, register_pull
from server.mpesa.schemas import NAIROBI
from server.reconciliation import items
from server.reconciliation.items import Item, ItemRepository
from server.reconciliation.pull import PullStateRepository
from server.reconciliation.view import FIGURES, STATEMENTS
from server.startup.listen import listen
from simulators.daraja import (
    SANDBOX_CERTIFICATE_PATH,
    SANDBOX_INITIATOR,
    SANDBOX_INITIATOR_PASSWORD,
)

from support import (
    BASIC_KES,
    CALLBACK_SECRET,
    PAYMENTS,
    callback_body,
    create_user,
    external_psp,
    headers_for_role,
    idle_policy,
    make_settings,
    request_json,
    wait_until,
)
from systems import ManualClock

SHORTCODE = "600984"
C2B, PSP_API = "mpesa_c2b", "psp_api"
RECONCILIATION = "/api/v1/reconciliation"
NEVER_DELIVERED_PAYER = "254700000103"  # the simulator never delivers its confirmation
SAME = object()  # an item whose amount here is the provider's


class View:
    """A gateway on a clock the test moves, an operator and an admin."""

    def __init__(self, http, gateway, clock: ManualClock, operator, admin) -> None:
        self.http, self.gateway, self.clock = http, gateway, clock
        self.services = gateway.services
        self.operator, self.admin = operator, admin
        self.spec = openapi_spec()

    def today(self) -> date:
        return self.clock.now().astimezone(NAIROBI).date()

    async def call(
        self,
        method: str,
        path: str,
        status: int = 200,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        """A call, as the operator unless `headers` say otherwise, whose answer is checked
        against the OpenAPI document."""
        answered, payload = await request_json(
            self.http,
            method,
            self.gateway.url + path,
            body,
            headers=self.operator if headers is None else headers,
            params=params,
        )
        assert answered == status, payload
        schema = answer_schema(self.spec, template_for(path, self.spec), method.lower(), status)
        check_against(self.spec, schema, payload)
        return payload

    async def reconciliation(self, **params: str) -> dict[str, Any]:
        return await self.call("GET", RECONCILIATION, params=params)

    async def record(self, *found: Item) -> None:
        await ItemRepository(self.services.store).record(found, self.clock.now())

    async def run_job(self, name: str) -> dict[str, Any]:
        status, body = await request_json(
            self.http, "POST", f"{self.gateway.url}/api/v1/jobs/{name}/run", headers=self.admin
        )
        assert status == 200, body
        return body


async def start_view(http, start_gateway_with, **daraja: Any) -> View:
    clock = ManualClock()
    settings = make_settings(jobs={"enabled": False}, daraja=daraja)
    gateway = await start_gateway_with(settings, clock=clock)
    operator = await headers_for_role(http, gateway, "olga", "operator")
    admin = await headers_for_role(http, gateway, "ada", "admin")
    return View(http, gateway, clock, operator, admin)


@pytest_asyncio.fixture
async def view(http, start_gateway_with) -> View:
    return await start_view(http, start_gateway_with)


def nairobi(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), NAIROBI).astimezone(UTC)


def item(
    key: str,
    at: datetime,
    amount: int,
    outcome: str = items.MATCHED,
    *,
    channel: str = C2B,
    provider: str = SHORTCODE,
    currency: str = "KES",
    amount_here: Any = SAME,
    recovered: bool = False,
    source: str = "daraja_pull",
    detail: str = "",
) -> Item:
    return Item(
        channel=channel,
        provider=provider,
        key=key,
        at=at,
        currency=currency,
        amount=amount,
        amount_here=amount if amount_here is SAME else amount_here,
        outcome=outcome,
        source=source,
        recovered=recovered,
        detail=detail,
    )


def row_of(answer: dict[str, Any], day: date, channel: str, provider: str) -> dict[str, Any]:
    found = [
        row
        for row in answer["rows"]
        if (row["day"], row["channel"], row["provider"]) == (day.isoformat(), channel, provider)
    ]
    assert len(found) == 1, answer["rows"]
    return found[0]


def figures(row: dict[str, Any]) -> dict[str, tuple[int, str]]:
    return {name: (row[name]["count"], row[name]["total"]) for name in FIGURES}


async def confirm_payment(view: View, trans_id: str, at: datetime, amount: str) -> None:
    """A paybill confirmation from Daraja, as it arrives."""
    body = callback_body(
        TransID=trans_id,
        TransTime=at.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S"),
        TransAmount=amount,
        BillRefNumber="099999999",
    )
    status, answer = await request_json(
        view.http, "POST", f"{view.gateway.url}/api/v1/c2b/confirmation/{CALLBACK_SECRET}", body
    )
    assert (status, answer["ResultCode"]) == (200, 0), answer


async def provider_payment(view: View) -> dict[str, Any]:
    """A payment made through the provider API (succeeded and settled now): its PSP."""
    services = view.services
    await create_user(services, "afrimoney", "psp")
    psp = await external_psp(services, "afrimoney", account="AFR-1")
    policy = await idle_policy(services, "060606060", first_name="Fatou", last_name="Ceesay")
    provider = await headers_for_role_psp(view)
    status, paid = await request_json(
        view.http,
        "POST",
        f"{view.gateway.url}/api/v1/payments",
        {
            "chf_id": "060606060",
            "amount": "500.00",
            "psp_transaction_id": "AFR-1",
            "policy": {
                "token": policy["payment_token"],
                "product_code": "BASIC-GMD",
                "product_name": "Basic cover",
            },
        },
        headers=provider,
    )
    assert status == 201, paid
    return psp


async def headers_for_role_psp(view: View) -> dict[str, str]:
    status, tokens = await request_json(
        view.http,
        "POST",
        f"{view.gateway.url}/api/v1/auth/token",
        {"username": "afrimoney", "password": "afrimoney-password"},
    )
    assert status == 200, tokens
    return {"Authorization": f"Bearer {tokens['access_token']}"}


# --- the rows ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_items_and_received_money_are_grouped_by_day_channel_provider_and_currency(
    view: View,
) -> None:
    today = view.today()
    yesterday = today - timedelta(days=1)
    psp = await provider_payment(view)  # received today through the provider API
    await confirm_payment(view, "RCV0000001", nairobi(yesterday, 9), "100.00")
    await confirm_payment(view, "RCV0000002", nairobi(yesterday, 11), "70.00")
    await view.record(
        item("RCV0000001", nairobi(yesterday, 9), 100_00),
        item("RCV0000002", nairobi(yesterday, 11), 50_00, items.DIFFERING, amount_here=70_00),
        item("RKM0000001", nairobi(yesterday, 10), 30_00, recovered=True),
        item("RKM0000002", nairobi(yesterday, 12), 20_00),
        item("RKM0000003", nairobi(yesterday, 13), 15_00, items.MISSING_AT_PROVIDER),
        item("RKM0000004", nairobi(yesterday, 14), 40_00, items.MISSING_HERE, amount_here=None),
        # 23:30 in Nairobi is 20:30 UTC: still yesterday's business day.
        item("RKM0000005", nairobi(yesterday, 23, 30), 5_00),
        # 00:30 in Nairobi is 21:30 UTC the day before: today's.
        item("RKM0000006", nairobi(today, 0, 30), 7_00),
        item(
            "AFR-1",
            view.clock.now(),
            500_00,
            channel=PSP_API,
            provider=psp["_id"],
            currency="GMD",
            source="statement",
        ),
        # Outside the period asked for.
        item("RKM0000007", nairobi(today - timedelta(days=5), 12), 9_00),
    )

    answer = await view.reconciliation(**{"from": yesterday.isoformat(), "to": today.isoformat()})

    assert (answer["from"], answer["to"]) == (yesterday.isoformat(), today.isoformat())
    assert figures(row_of(answer, yesterday, C2B, SHORTCODE)) == {
        "received": (2, "170.00"),
        "matched": (3, "125.00"),  # 100.00 + 20.00 + 5.00; the recovered one apart
        "recovered": (1, "30.00"),
        "differing": (1, "50.00"),  # the provider's amount
        "missing_here": (1, "40.00"),
        "missing_at_provider": (1, "15.00"),
    }
    assert figures(row_of(answer, today, C2B, SHORTCODE))["matched"] == (1, "7.00")
    psp_row = row_of(answer, today, PSP_API, psp["_id"])
    assert (psp_row["currency"], psp_row["provider_name"]) == ("GMD", "Afrimoney")
    assert figures(psp_row)["received"] == (1, "500.00")
    assert figures(psp_row)["matched"] == (1, "500.00")
    assert [row["day"] for row in answer["rows"]] == sorted(row["day"] for row in answer["rows"])
    assert {(row["channel"], row["currency"]) for row in answer["rows"]} == {
        (C2B, "KES"),
        (PSP_API, "GMD"),
    }
    totals = {(row["channel"], row["currency"]): row for row in answer["totals"]}
    assert figures(totals[(C2B, "KES")])["matched"] == (4, "132.00")
    assert figures(totals[(C2B, "KES")])["received"] == (2, "170.00")
    assert figures(totals[(PSP_API, "GMD")])["received"] == (1, "500.00")
    assert {channel["name"] for channel in answer["channels"]} >= {C2B, PSP_API}


@pytest.mark.asyncio
async def test_the_period_is_the_last_seven_days_by_default(view: View) -> None:
    today = view.today()
    await view.record(
        item("RKM0000001", nairobi(today - timedelta(days=6), 12), 1_00),
        item("RKM0000002", nairobi(today - timedelta(days=7), 12), 1_00),
    )
    answer = await view.reconciliation()
    assert (answer["from"], answer["to"]) == (
        (today - timedelta(days=6)).isoformat(),
        today.isoformat(),
    )
    assert [row["day"] for row in answer["rows"]] == [(today - timedelta(days=6)).isoformat()]
    assert answer["open_items"] == {"count": 0, "items": []}
    assert answer["balance"] is None
    assert answer["runs"]["statement"] is None
    assert answer["runs"]["janitor"] is None
    assert answer["runs"]["pull"] == {
        "shortcode": SHORTCODE,
        "enabled": False,
        "last_attempt_at": None,
        "last_success_at": None,
        "covered_until": None,
        "last_error": None,
        "last_summary": {},
        "overdue_since": None,
    }


@pytest.mark.asyncio
async def test_the_rows_download_as_csv(view: View) -> None:
    today = view.today()
    await view.record(
        item("RKM0000001", nairobi(today, 1), 30_00, recovered=True),
        item("RKM0000002", nairobi(today, 2), 12_50, items.DIFFERING, amount_here=12_00),
    )
    await confirm_payment(view, "RKM0000002", nairobi(today, 2), "12.00")
    period = {"from": (today - timedelta(days=2)).isoformat(), "to": today.isoformat()}
    answer = await view.reconciliation(**period)
    async with view.http.get(
        f"{view.gateway.url}{RECONCILIATION}.csv", params=period, headers=view.operator
    ) as response:
        assert response.status == 200
        assert response.content_type == "text/csv"
        assert response.headers["Content-Disposition"] == (
            f'attachment; filename="reconciliation-{period["from"]}-{period["to"]}.csv"'
        )
        text = await response.text()
    lines = list(csv.DictReader(io.StringIO(text)))
    assert len(lines) == len(answer["rows"]) == 1
    line, row = lines[0], answer["rows"][0]
    assert (line["day"], line["channel"], line["provider"], line["currency"]) == (
        today.isoformat(),
        C2B,
        SHORTCODE,
        "KES",
    )
    assert line["provider_name"] == ""
    for name in FIGURES:
        assert (int(line[f"{name}_count"]), line[f"{name}_total"]) == (
            row[name]["count"],
            row[name]["total"],
        )
    assert (line["recovered_count"], line["recovered_total"]) == ("1", "30.00")
    assert (line["differing_count"], line["differing_total"]) == ("1", "12.50")
    assert (line["received_count"], line["received_total"]) == ("1", "12.00")


# --- the open items -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_open_items_are_listed_newest_first_whatever_their_day_until_cleared(
    view: View,
) -> None:
    today = view.today()
    await view.record(
        item(
            "RKM0000001",
            nairobi(today - timedelta(days=30), 9),
            10_00,
            items.MISSING_HERE,
            amount_here=None,
            detail="account 070707070",
        ),
        item("RKM0000002", nairobi(today, 8), 20_00, items.DIFFERING, amount_here=25_00),
        item("RKM0000003", nairobi(today, 9), 30_00, items.MISSING_AT_PROVIDER),
        item("RKM0000004", nairobi(today, 10), 40_00, items.DIFFERING, amount_here=45_00),
        item("RKM0000005", nairobi(today, 11), 50_00),  # matched: not open
        item("RKM0000006", nairobi(today, 12), 60_00, recovered=True),  # matched: not open
    )
    # An operator cleared one, with the reason.
    cleared = await view.call(
        "POST",
        f"{RECONCILIATION}/items/{C2B}:RKM0000004/clear",
        body={"reason": "the payer was refunded the difference"},
    )
    assert (cleared["cleared_reason"], cleared["outcome"]) == (
        "the payer was refunded the difference",
        items.DIFFERING,
    )
    # Cleared already, matched, or unknown: nothing to clear.
    reason = {"reason": "again"}
    for key, status in (("RKM0000004", 409), ("RKM0000005", 409), ("NOSUCH", 404)):
        await view.call("POST", f"{RECONCILIATION}/items/{C2B}:{key}/clear", status, body=reason)

    answer = await view.reconciliation(limit="2")

    assert answer["open_items"]["count"] == 3
    listed = answer["open_items"]["items"]
    assert [entry["key"] for entry in listed] == ["RKM0000003", "RKM0000002"]
    assert listed[1] == {
        "id": f"{C2B}:RKM0000002",
        "channel": C2B,
        "provider": SHORTCODE,
        "key": "RKM0000002",
        "day": today.isoformat(),
        "at": nairobi(today, 8).isoformat(),
        "currency": "KES",
        "amount": "20.00",
        "amount_here": "25.00",
        "outcome": items.DIFFERING,
        "detail": "",
        "sources": ["daraja_pull"],
        "recovered_by": None,
        "checked_at": listed[1]["checked_at"],
    }
    everything = (await view.reconciliation())["open_items"]["items"]
    assert [entry["key"] for entry in everything] == ["RKM0000003", "RKM0000002", "RKM0000001"]
    oldest = everything[-1]
    assert (oldest["amount"], oldest["amount_here"], oldest["outcome"], oldest["detail"]) == (
        "10.00",
        None,
        items.MISSING_HERE,
        "account 070707070",
    )


# --- the runs ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_last_pull_statement_and_janitor_runs_are_shown(view: View) -> None:
    now = view.clock.now().replace(microsecond=0)  # the store keeps milliseconds
    await PullStateRepository(view.services.store).succeeded(
        SHORTCODE,
        now - timedelta(minutes=10),
        now - timedelta(minutes=10),
        {"fetched": 12, "matched": 11, "recovered": 1},
    )
    statements = view.services.store.collection(STATEMENTS)
    for imported, rows in (
        (now - timedelta(days=2), 40),
        (now - timedelta(hours=1), 120),
        (None, 7),
    ):
        await statements.insert_one(
            {
                "_id": f"statement-{rows}",
                "kind": "mpesa",
                "provider": SHORTCODE,
                "file_hash": f"{rows:064x}",
                "file_name": f"statement-{rows}.csv",
                "started_at": imported or now,
                "imported_at": imported,  # None: still being imported
                "imported_by": "olga",
                "complete": imported is not None,
                "rows": rows,
                "period_from": now - timedelta(days=3),
                "period_to": now - timedelta(days=1),
                "summary": None
                if imported is None
                else {
                    "matched": rows - 2,
                    "recovered": 1,
                    "differing": 1,
                    "missing_here": 0,
                    "missing_at_provider": 0,
                    "other": 0,
                    "seen_before": 0,
                },
            }
        )
    janitor = await view.run_job("janitor")
    assert janitor["outcome"] == "ok"

    runs = (await view.reconciliation())["runs"]

    assert runs["pull"]["last_success_at"] == (now - timedelta(minutes=10)).isoformat()
    assert runs["pull"]["last_summary"] == {"fetched": 12, "matched": 11, "recovered": 1}
    assert (runs["pull"]["last_error"], runs["pull"]["overdue_since"]) == (None, None)
    statement = runs["statement"]
    assert (statement["id"], statement["rows"], statement["kind"]) == (
        "statement-120",
        120,
        "mpesa",
    )
    assert statement["imported_at"] == (now - timedelta(hours=1)).isoformat()
    assert statement["period_from"] == (now - timedelta(days=3)).isoformat()
    assert statement["summary"]["matched"] == 118
    assert runs["janitor"]["job"] == "janitor"
    assert runs["janitor"]["outcome"] == "ok"
    assert runs["janitor"]["last_success_at"] is not None
    assert runs["janitor"]["error"] is None


# --- the balance -----------------------------------------------------------------


async def answered_balance(view: View, accounts: str) -> None:
    """An Account Balance request (as the initiator records one), then M-Pesa's result
    on the result callback."""
    await view.services.initiator.requests.insert(
        {
            "_id": "balance-1",
            "kind": ACCOUNT_BALANCE,
            "trans_id": None,
            "originator_conversation_id": "orig-1",
            "conversation_id": "AG_1",
            "requested_by": "olga",
            "requested_at": view.clock.now(),
            "status": REQUESTED,
            "result": None,
        }
    )
    status, answer = await request_json(
        view.http,
        "POST",
        f"{view.gateway.url}/api/v1/daraja/results/{CALLBACK_SECRET}",
        {
            "Result": {
                "ResultType": 0,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "OriginatorConversationID": "orig-1",
                "ConversationID": "AG_1",
                "TransactionID": "RKM00BAL01",
                "ResultParameters": {
                    "ResultParameter": [{"Key": "AccountBalance", "Value": accounts}]
                },
            }
        },
    )
    assert status == 200, answer


@pytest.mark.asyncio
async def test_the_latest_balance_shows_beside_what_the_paybill_received(view: View) -> None:
    today = view.today()
    assert (await view.reconciliation())["balance"] is None
    await confirm_payment(view, "RCV0000001", nairobi(today, 0, 5), "1500.00")
    await confirm_payment(view, "RCV0000002", nairobi(today, 0, 6), "250.50")
    await answered_balance(
        view,
        "Working Account|KES|-12.50|-12.50|0.00|0.00"
        "&Utility Account|KES|228037.00|228037.00|0.00|0.00"
        "&Charges Paid Account|KES|-|0.00|0.00|0.00",
    )

    balance = (await view.reconciliation())["balance"]

    assert balance["account"] == "Utility Account"
    assert (balance["currency"], balance["available"]) == ("KES", "228037.00")
    assert balance["received"] == {"count": 2, "total": "1750.50"}
    assert balance["requested_by"] == "olga"
    assert balance["answered_at"] is not None
    assert balance["accounts"] == [
        {"name": "Working Account", "currency": "KES", "available": "-12.50"},
        {"name": "Utility Account", "currency": "KES", "available": "228037.00"},
        {"name": "Charges Paid Account", "currency": "KES", "available": None},
    ]


@pytest.mark.asyncio
async def test_asking_for_the_balance_without_an_initiator_is_refused(view: View) -> None:
    answer = await view.call("POST", f"{RECONCILIATION}/balance", 409)
    assert answer["error"]["code"] == "initiator_not_configured"


# --- parameters and roles ------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_wrong_period_is_refused_naming_the_parameter(view: View) -> None:
    today = view.today()

    async def refused(path: str, **params: str) -> dict[str, Any]:
        answer = await view.call("GET", path, 400, params=params)
        assert answer["error"]["code"] == "validation_error"
        return answer["error"]["details"]["fields"]

    for path in (RECONCILIATION, f"{RECONCILIATION}.csv"):
        backwards = {"from": today.isoformat(), "to": (today - timedelta(days=1)).isoformat()}
        assert list(await refused(path, **backwards)) == ["to"]
        too_long = {
            "from": (today - timedelta(days=92)).isoformat(),
            "to": today.isoformat(),
        }
        assert list(await refused(path, **too_long)) == ["to"]
        assert list(await refused(path, **{"from": (today - timedelta(days=92)).isoformat()})) == [
            "from"
        ]
        assert list(await refused(path, **{"from": "2024-13-01"})) == ["from"]
        assert list(await refused(path, to="yesterday")) == ["to"]
        assert list(await refused(path, **{"from": "1999-12-31"})) == ["from"]
        assert list(await refused(path, currency="KES")) == ["currency"]
    assert list(await refused(RECONCILIATION, limit="0")) == ["limit"]

    longest = {"from": (today - timedelta(days=91)).isoformat(), "to": today.isoformat()}
    assert (await view.reconciliation(**longest))["from"] == longest["from"]
    one_day = {"from": today.isoformat(), "to": today.isoformat()}
    assert (await view.reconciliation(**one_day))["to"] == today.isoformat()


@pytest.mark.asyncio
async def test_only_staff_see_the_reconciliation(view: View) -> None:
    psp_user = await headers_for_role(view.http, view.gateway, "afrimoney", "psp")
    for method, path in (
        ("GET", RECONCILIATION),
        ("GET", f"{RECONCILIATION}.csv"),
        ("POST", f"{RECONCILIATION}/balance"),
    ):
        assert (await view.call(method, path, 401, headers={}))["error"]["code"] == (
            "missing_token"
        )
        await view.call(method, path, 403, headers=psp_user)
    await view.call("GET", RECONCILIATION, headers=view.admin)
    await view.call("GET", RECONCILIATION, headers=view.operator)


# --- the pull's gap: needs attention, metrics ------------------------------------------


async def pull_gauges(view: View) -> dict[str, float]:
    async with view.http.get(f"{view.gateway.url}/metrics") as response:
        text = await response.text()
    return {
        name: float(value)
        for name, value in re.findall(
            rf'^(gateway_mpesa_pull_\w+)\{{shortcode="{SHORTCODE}"\}} (\S+)$', text, re.M
        )
    }


@pytest.mark.asyncio
async def test_a_pull_failing_for_longer_than_its_reach_needs_attention(
    http, start_gateway_with, caplog
) -> None:
    # M-Pesa cannot be reached: every pull fails, through the real job.
    view = await start_view(
        http,
        start_gateway_with,
        pull_enabled=True,
        base_url="http://127.0.0.1:9",
        timeout_seconds=2.0,
    )
    assert (await view.call("GET", "/api/v1/dashboard"))["attention"]["mpesa_pull_overdue"] == {
        "count": 0,
        "oldest": [],
    }
    assert await pull_gauges(view) == {"gateway_mpesa_pull_overdue": 0.0}
    succeeded = view.clock.now().replace(microsecond=0)  # the store keeps milliseconds
    await PullStateRepository(view.services.store).succeeded(
        SHORTCODE, succeeded, succeeded, {"fetched": 3}
    )

    # 47 hours later the pull still reaches back to its last success.
    view.clock.offset = timedelta(hours=47)
    assert (await view.run_job("mpesa-pull"))["outcome"] == "failed"
    attention = (await view.call("GET", "/api/v1/dashboard"))["attention"]
    assert attention["mpesa_pull_overdue"]["count"] == 0
    gauges = await pull_gauges(view)
    assert gauges["gateway_mpesa_pull_overdue"] == 0.0
    assert gauges["gateway_mpesa_pull_last_success_timestamp_seconds"] == pytest.approx(
        succeeded.timestamp()
    )
    assert (await view.reconciliation())["runs"]["pull"]["overdue_since"] is None

    # 49 hours: payments from the first hour after the last success are out of its reach.
    view.clock.offset = timedelta(hours=49)
    caplog.clear()
    assert (await view.run_job("mpesa-pull"))["outcome"] == "failed"
    assert "mpesa_pull_gap" in caplog.text
    overdue = (await view.call("GET", "/api/v1/dashboard"))["attention"]["mpesa_pull_overdue"]
    assert overdue["count"] == 1
    (entry,) = overdue["oldest"]
    assert entry["shortcode"] == SHORTCODE
    assert entry["since"] == succeeded.isoformat()
    assert entry["last_success_at"] == succeeded.isoformat()
    assert entry["last_error"]
    assert "statement" in entry["note"]
    assert (await pull_gauges(view))["gateway_mpesa_pull_overdue"] == 1.0
    pull = (await view.reconciliation())["runs"]["pull"]
    assert pull["overdue_since"] == succeeded.isoformat()
    assert pull["enabled"] is True
    assert pull["last_error"]


# --- against the Daraja simulator -----------------------------------------------------


@pytest.mark.asyncio
async def test_a_pull_and_a_balance_check_through_m_pesa_show_in_the_view(
    http, start_gateway_with, daraja_sim
) -> None:
    """Two paybill payments, one whose confirmation never comes: the pull recovers it,
    and the view shows both received, one matched and one recovered. An operator asks
    for the balance; M-Pesa's answer shows beside what the paybill received."""
    sockets = listen("127.0.0.1", 0)  # the result callbacks come back to this gateway
    settings = make_settings(
        server={"public_url": f"http://127.0.0.1:{sockets[0].getsockname()[1]}"},
        daraja={
            "base_url": daraja_sim.base_url,
            "initiator": SANDBOX_INITIATOR,
            "initiator_password": SANDBOX_INITIATOR_PASSWORD,
            "certificate_path": str(SANDBOX_CERTIFICATE_PATH),
            "pull_enabled": True,
            "pull_nominated_number": "254722000000",
        },
        c2b={"currency": "KES"},
        jobs={"enabled": False},
    )
    gateway = await start_gateway_with(settings, sockets=sockets)
    client = DarajaClient(http, settings.daraja, Clock())
    await register_callback_urls(settings.server.public_url, settings.daraja, settings.c2b, client)
    assert (
        await register_pull(settings.server.public_url, settings.daraja, settings.c2b, client)
    ).status == "1000"
    view = View(
        http,
        gateway,
        ManualClock(),
        await headers_for_role(http, gateway, "olga", "operator"),
        await headers_for_role(http, gateway, "ada", "admin"),
    )
    await idle_policy(view.services, "000000001", BASIC_KES)
    await client.simulate_payment("600984", "1500.00", "254708374149", "000000001")
    await client.simulate_payment("600984", "250.00", NEVER_DELIVERED_PAYER, "000000002")
    payments = view.services.store.collection(PAYMENTS)

    async def delivered() -> bool:
        return await payments.count_documents({"status": "settled"}) == 1

    await wait_until(delivered, "the delivered confirmation to settle")
    assert (await view.run_job("mpesa-pull"))["recovered"] == 1

    answer = await view.reconciliation()
    (row,) = answer["rows"]
    assert (row["channel"], row["provider"], row["currency"]) == (C2B, SHORTCODE, "KES")
    assert figures(row) == {
        "received": (2, "1750.00"),
        "matched": (1, "1500.00"),
        "recovered": (1, "250.00"),
        "differing": (0, "0.00"),
        "missing_here": (0, "0.00"),
        "missing_at_provider": (0, "0.00"),
    }
    assert answer["runs"]["pull"]["last_summary"]["recovered"] == 1
    assert answer["balance"] is None

    asked = await view.call("POST", f"{RECONCILIATION}/balance", 202)
    assert (asked["kind"], asked["status"], asked["requested_by"]) == (
        ACCOUNT_BALANCE,
        REQUESTED,
        "olga",
    )

    async def balance() -> dict[str, Any] | None:
        return (await view.reconciliation())["balance"]

    shown = await wait_until(balance, "M-Pesa's Account Balance in the view")
    assert (shown["account"], shown["currency"]) == ("Utility Account", "KES")
    assert shown["available"] is not None
    assert shown["received"] == {"count": 2, "total": "1750.00"}
