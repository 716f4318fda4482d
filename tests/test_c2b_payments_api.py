"""GET /api/v1/c2b/payments and /payments/<trans_id> for operators."""

import pytest
import pytest_asyncio

from support import callback_body, deliver_callback, make_settings, request_json

PAYMENTS = [
    ("TX0000001A", "20240101080000", "070707070", "100.00", "600984"),
    ("TX0000002B", "20240102080000", "080808080", "250.50", "600984"),
    ("TX0000003C", "20240103080000", "070707070", "75", "600985"),
]


@pytest.fixture
def settings():
    """The gateway serves both shortcodes of the stored payments."""
    return make_settings(c2b={"validation_shortcodes": ("600984", "600985")})


@pytest_asyncio.fixture
async def stored(http, gateway) -> None:
    for trans_id, when, account, amount, shortcode in PAYMENTS:
        body = callback_body(
            TransID=trans_id,
            TransTime=when,
            BillRefNumber=account,
            TransAmount=amount,
            BusinessShortCode=shortcode,
        )
        status, _ = await deliver_callback(http, gateway, "confirmation", body)
        assert status == 200


async def listing(http, gateway, headers, **params) -> dict:
    status, page = await request_json(
        http, "GET", f"{gateway.url}/api/v1/c2b/payments", headers=headers, params=params
    )
    assert status == 200
    return page


@pytest.mark.asyncio
async def test_payments_are_listed_newest_first_with_decimal_amounts(
    http, gateway, operator_headers, stored
) -> None:
    page = await listing(http, gateway, operator_headers)
    assert [item["trans_id"] for item in page["items"]] == [
        "TX0000003C",
        "TX0000002B",
        "TX0000001A",
    ]
    assert page["total"] == 3
    item = page["items"][1]
    assert item["amount"] == "250.50" and item["currency"] == "KES"
    assert item["trans_time"] == "2024-01-02T05:00:00+00:00"
    assert item["bill_ref"] == "080808080" and item["status"] == "unmatched"
    assert item["unmatched_reason"] == "unknown_account"
    assert item["msisdn"] == "2547 ***** 126"
    assert "fingerprint" not in item and "_id" not in item


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"bill_ref": "070707070"}, ["TX0000003C", "TX0000001A"]),
        ({"shortcode": "600985"}, ["TX0000003C"]),
        ({"from": "2024-01-02T00:00:00Z"}, ["TX0000003C", "TX0000002B"]),
        ({"to": "2024-01-02T00:00:00Z"}, ["TX0000001A"]),
        ({"from": "2024-01-01T09:00:00+03:00", "to": "2024-01-03T00:00:00Z"}, ["TX0000002B"]),
        ({"status": "unmatched", "limit": "1", "offset": "1"}, ["TX0000002B"]),
        ({"needs_review": "true"}, []),
    ],
)
async def test_payment_filters(http, gateway, operator_headers, stored, params, expected) -> None:
    page = await listing(http, gateway, operator_headers, **params)
    assert [item["trans_id"] for item in page["items"]] == expected


@pytest.mark.asyncio
async def test_pagination_reports_total_limit_and_offset(
    http, gateway, operator_headers, stored
) -> None:
    page = await listing(http, gateway, operator_headers, limit="2", offset="2")
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 2)
    assert len(page["items"]) == 1


@pytest.mark.asyncio
async def test_one_payment_by_trans_id(http, gateway, operator_headers, stored) -> None:
    status, payment = await request_json(
        http, "GET", f"{gateway.url}/api/v1/c2b/payments/TX0000001A", headers=operator_headers
    )
    assert status == 200
    assert payment["amount"] == "100.00" and payment["trans_id"] == "TX0000001A"
