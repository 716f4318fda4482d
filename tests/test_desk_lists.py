"""The desk's lists: payments, transactions and the inbox with their sorts, amount
ranges and paging; the review items of both kinds in one list."""

from __future__ import annotations

import pytest
import pytest_asyncio
from test_openapi import Caller

from server.inbox.repository import INDEXES as INBOX_INDEXES
from server.ledger.repository import INDEXES as LEDGER_INDEXES
from server.ledger.schemas import TRANSACTION_SORTS, TransactionQuerySchema
from server.mpesa.repository import INDEXES as PAYMENT_INDEXES
from server.mpesa.schemas import (
    INBOX_SORTS,
    PAYMENT_SORTS,
    InboxQuerySchema,
    PaymentQuerySchema,
)

from desk_data import History, make_history
from support import request_json


@pytest_asyncio.fixture
async def history(http, gateway) -> History:
    return await make_history(http, gateway)


@pytest_asyncio.fixture
async def listing(http, gateway, operator_headers, history):
    call = Caller(http, gateway)

    async def run(path: str, answered: int = 200, **params: str) -> dict:
        return await call(
            "GET", f"/api/v1/{path}", answered, headers=operator_headers, params=params
        )

    return run


def ids(page: dict, key: str = "trans_id") -> list[str]:
    return [item[key] for item in page["items"]]


# --- every sort and filter is read from an index --------------------------------


def _prefixes(indexes, collection: str) -> list[list[str]]:
    return [[name for name, _ in keys] for owner, keys, _ in indexes if owner == collection]


@pytest.mark.parametrize(
    ("schema", "sorts", "indexes", "collection", "filters", "tiebreak"),
    [
        (
            PaymentQuerySchema,
            PAYMENT_SORTS,
            PAYMENT_INDEXES,
            "c2b_payments",
            ("shortcode", "bill_ref", "status"),
            "trans_id",
        ),
        (
            TransactionQuerySchema,
            TRANSACTION_SORTS,
            LEDGER_INDEXES,
            "transactions",
            ("status", "channel", "psp_uuid", "policy_uuid", "chf_id", "currency"),
            "_id",
        ),
        (
            InboxQuerySchema,
            INBOX_SORTS,
            INBOX_INDEXES,
            "c2b_inbox",
            ("status", "kind", "source", "trans_id"),
            "_id",
        ),
    ],
)
def test_every_sort_and_filter_has_an_index_that_reads_it_in_order(
    schema, sorts, indexes, collection, filters, tiebreak
) -> None:
    """The default order (newest first) under every equality filter, and every sort of
    the list, is an index's key order, the tie-break included: no sort in memory."""
    prefixes = _prefixes(indexes, collection)
    assert set(schema().fields["sort"].validate.choices) == set(sorts)
    newest = [sorts[0].lstrip("-"), tiebreak]
    for field in filters:
        assert field in schema().fields, field
        assert [field, *newest] in prefixes, field
    for sort in sorts:
        keys = [sort.lstrip("-"), tiebreak]
        assert any(prefix[-2:] == keys for prefix in prefixes), sort


# --- payments -------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["RKD0000004", "RKC0000003", "RKB0000002", "RKA0000001"]),
        ({"sort": "trans_time"}, ["RKA0000001", "RKB0000002", "RKC0000003", "RKD0000004"]),
        ({"sort": "-received_at"}, ["RKD0000004", "RKC0000003", "RKB0000002", "RKA0000001"]),
        ({"sort": "received_at", "limit": "2"}, ["RKA0000001", "RKB0000002"]),
        ({"sort": "amount"}, ["RKD0000004", "RKB0000002", "RKC0000003", "RKA0000001"]),
        ({"sort": "-amount", "status": "unmatched"}, ["RKC0000003", "RKB0000002", "RKD0000004"]),
        ({"min_amount": "250", "max_amount": "350.00"}, ["RKC0000003", "RKB0000002"]),
        ({"min_amount": "75.51"}, ["RKC0000003", "RKB0000002", "RKA0000001"]),
        ({"max_amount": "75.5", "sort": "amount"}, ["RKD0000004"]),
        ({"needs_review": "true"}, ["RKD0000004"]),
        ({"bill_ref": "070707070", "sort": "trans_time"}, ["RKA0000001", "RKC0000003"]),
    ],
)
async def test_payments_sort_and_filter(listing, params, expected) -> None:
    assert ids(await listing("c2b/payments", **params)) == expected


@pytest.mark.asyncio
async def test_a_payment_page_past_the_end_is_empty_with_the_total(listing) -> None:
    page = await listing("c2b/payments", sort="amount", limit="3", offset="3")
    assert (ids(page), page["total"]) == (["RKA0000001"], 4)
    page = await listing("c2b/payments", offset="10")
    assert (page["items"], page["total"], page["offset"]) == ([], 4, 10)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "params",
    [
        {"sort": "bill_ref"},
        {"sort": "-msisdn"},
        {"min_amount": "1.001"},  # more places than shillings have
        {"min_amount": "-5"},
        {"max_amount": "1e3"},
        {"max_amount": "9" * 40},
        {"min_amount": "100", "max_amount": "99.99"},
        {"from": "yesterday"},
        {"currency": "KES"},  # the paybill has one currency: not a filter here
    ],
)
async def test_bad_payment_list_queries_are_refused(listing, params) -> None:
    answer = await listing("c2b/payments", 400, **params)
    assert answer["error"]["code"] == "validation_error"
    assert answer["error"]["details"]["fields"]


# --- transactions -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_transactions_sort_by_amount_within_a_currency(listing, history) -> None:
    psp = history.psp_payment["payment_id"]
    page = await listing("transactions", currency="GMD", sort="amount")
    assert ids(page, "uuid") == sorted([history.qmoney["_id"], psp])  # equal: by id
    assert [item["amount"] for item in page["items"]] == ["500.00", "500.00"]
    page = await listing("transactions", currency="KES", sort="-amount")
    assert [item["amount"] for item in page["items"]] == ["1500.00", "1500.00"]
    assert page["total"] == 2


@pytest.mark.asyncio
async def test_transactions_filter_by_amount_status_and_channel(listing, history) -> None:
    page = await listing("transactions", currency="KES", min_amount="1500", max_amount="1500")
    assert page["total"] == 2
    assert ids(await listing("transactions", currency="KES", max_amount="1499.99"), "uuid") == []
    page = await listing("transactions", channel="qmoney", status="failed")
    assert ids(page, "uuid") == [history.qmoney["_id"]]
    page = await listing("transactions", sort="created_at")
    stamps = [item["created_at"] for item in page["items"]]
    assert stamps == sorted(stamps) and page["total"] == 4
    page = await listing("transactions", offset="4")
    assert (page["items"], page["total"]) == ([], 4)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sort": "amount"}, "currency"),
        ({"min_amount": "10"}, "currency"),
        ({"currency": "GMD", "min_amount": "10.001"}, "min_amount"),
        ({"currency": "GMD", "min_amount": "20", "max_amount": "10"}, "min_amount"),
        ({"currency": "XYZ"}, "currency"),
        ({"sort": "-updated_at"}, "sort"),
        ({"channel": "cash"}, "channel"),
    ],
)
async def test_bad_transaction_list_queries_are_refused(listing, params, field) -> None:
    answer = await listing("transactions", 400, **params)
    assert field in answer["error"]["details"]["fields"]


# --- the inbox --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_inbox_filters_by_trans_id_and_time_and_sorts_both_ways(listing, history) -> None:
    page = await listing("c2b/inbox", trans_id=" rkd0000004 ")
    assert [item["status"] for item in page["items"]] == ["conflict", "processed"]
    everything = await listing("c2b/inbox", limit="100")
    oldest_first = await listing("c2b/inbox", sort="received_at", limit="100")
    assert ids(oldest_first, "id") == ids(everything, "id")[::-1]
    newest = everything["items"][0]
    page = await listing("c2b/inbox", **{"from": newest["received_at"]})
    assert ids(page, "id") == [newest["id"]]
    page = await listing("c2b/inbox", to=newest["received_at"], limit="1", offset="1")
    assert page["total"] == everything["total"] - 1
    page = await listing("c2b/inbox", status="failed", kind="confirmation", source="daraja_c2b")
    assert ids(page, "id") == [history.failed_id]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "params", [{"sort": "status"}, {"trans_id": "has space"}, {"to": "2026-13-01T00:00:00Z"}]
)
async def test_bad_inbox_queries_are_refused(listing, params) -> None:
    await listing("c2b/inbox", 400, **params)


# --- review items -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_review_items_merge_flagged_payments_and_inbox_entries_newest_first(
    listing, history
) -> None:
    page = await listing("review-items")
    assert page["total"] == 4
    assert [(item["kind"], item["id"]) for item in page["items"]][:3] == [
        ("inbox_entry", history.failed_id),
        ("inbox_entry", history.unreadable_id),
        ("inbox_entry", page["items"][2]["id"]),
    ]
    assert [item["status"] for item in page["items"]] == [
        "failed",
        "needs_review",
        "conflict",
        "unmatched",
    ]
    flagged = page["items"][3]
    assert (flagged["kind"], flagged["id"]) == ("c2b_payment", "RKD0000004")
    assert flagged["reasons"] == ["conflicting_duplicate"]
    assert flagged["summary"].endswith("; for review: conflicting_duplicate")
    assert page["items"][0]["reasons"] == ["processing failed: RuntimeError: store down"]
    assert page["items"][1]["reasons"][0].startswith("unreadable: ")
    assert page["items"][2]["reasons"] == ["differs from the payment stored under its TransID"]


@pytest.mark.asyncio
async def test_review_items_page_across_both_kinds(listing) -> None:
    everything = (await listing("review-items"))["items"]
    pages = [(await listing("review-items", limit="3", offset=str(at)))["items"] for at in (0, 3)]
    assert pages[0] + pages[1] == everything
    page = await listing("review-items", offset="4")
    assert (page["items"], page["total"], page["offset"]) == ([], 4, 4)
    page = await listing("review-items", kind="c2b_payment")
    assert ([item["id"] for item in page["items"]], page["total"]) == (["RKD0000004"], 1)
    page = await listing("review-items", kind="inbox_entry", limit="1", offset="2")
    assert [item["status"] for item in page["items"]] == ["conflict"] and page["total"] == 3


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "101"}, {"offset": "10001"}, {"kind": "policy"}, {"q": "x"}],
)
async def test_bad_review_queries_are_refused(listing, params) -> None:
    await listing("review-items", 400, **params)


@pytest.mark.asyncio
async def test_review_items_are_for_operators_and_admins(
    http, gateway, headers_for, history
) -> None:
    url = f"{gateway.url}/api/v1/review-items"
    assert (await request_json(http, "GET", url)).status == 401
    assert (await request_json(http, "GET", url, headers=history.psp_headers)).status == 403
    admin = await headers_for("root", "admin")
    assert (await request_json(http, "GET", url, headers=admin)).status == 200
