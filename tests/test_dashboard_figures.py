"""The dashboard's figures that must add up and tell things apart: a provider's refusals
(business answers, e.g. a payer's wrong OTP) apart from its failures (no answer, a
server error, an unreadable answer); each channel's transactions that are not finished
beside those that succeeded or failed; and the zone the page shows times in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.ops.dashboard import DashboardSchema
from server.startup.config import ConfigError, load_settings

from support import PROVIDER_CALLS, TEST_ENV, TRANSACTIONS, make_settings, request_json

NOW = datetime.now(UTC).replace(microsecond=0)


def call(endpoint: str, outcome: str, minutes_ago: int, error: str | None = None) -> dict:
    return {
        "provider": "qmoney",
        "endpoint": endpoint,
        "at": NOW - timedelta(minutes=minutes_ago),
        "duration_ms": 20.0,
        "outcome": outcome,
        "error": error,
    }


def debit(status: str, amount: int = 50000) -> dict[str, Any]:
    return {
        "_id": str(uuid.uuid4()),
        "channel": "qmoney",
        "status": status,
        "open": False,
        "amount": amount,
        "currency": "GMD",
        "policy_uuid": str(uuid.uuid4()),
        "chf_id": "070707070",
        "psp_uuid": "psp-q",
        "provider_reference": None,
        "created_at": NOW - timedelta(hours=1),
        "updated_at": NOW - timedelta(hours=1),
        "history": [],
    }


async def dashboard(http, gateway, headers) -> dict[str, Any]:
    status, board = await request_json(
        http, "GET", f"{gateway.url}/api/v1/dashboard", headers=headers
    )
    assert status == 200, board
    assert DashboardSchema().validate(board) == {}
    return board


@pytest.mark.asyncio
async def test_a_providers_refusals_are_told_apart_from_its_failures(
    http, gateway, store, operator_headers
) -> None:
    """Qmoney's verifyCode: 8 payers typed a wrong OTP (refused), one answer was lost
    (failed), 5 succeeded. 9 of 14 are errors, but only one is Qmoney's fault."""
    wrong_otp = "E0012 invalid OTP"
    await store.collection(PROVIDER_CALLS).insert_many(
        [call("verifyCode", "rejected", minutes, wrong_otp) for minutes in range(1, 9)]
        + [call("verifyCode", "unknown", 30, "/verifyCode: no answer (timed out)")]
        + [call("verifyCode", "ok", minutes) for minutes in range(40, 45)]
        + [call("getMoney", "rejected", 5, "E0021 insufficient balance")]
        + [call("getMoney", "ok", 6)]
        + [call("login", "unavailable", 7, "cannot connect (ClientConnectorError)")]
    )
    board = await dashboard(http, gateway, operator_headers)
    rows = {row["endpoint"]: row for row in board["providers"]}

    verify = rows["verifyCode"]
    assert (verify["count"], verify["refusals"], verify["failures"]) == (14, 8, 1)
    assert verify["refusal_rate"] == pytest.approx(8 / 14)
    assert verify["failure_rate"] == pytest.approx(1 / 14)
    assert verify["error_rate"] == pytest.approx(9 / 14)  # kept for its clients
    # The latest error is a refusal; the latest failure is the lost answer, further back.
    assert (verify["last_error"]["outcome"], verify["last_error"]["message"]) == (
        "rejected",
        wrong_otp,
    )
    assert verify["last_failure"] == {
        "at": (NOW - timedelta(minutes=30)).isoformat(),
        "message": "/verifyCode: no answer (timed out)",
        "outcome": "unknown",
    }

    money = rows["getMoney"]
    assert (money["refusal_rate"], money["failure_rate"], money["last_failure"]) == (0.5, 0.0, None)
    login = rows["login"]
    assert (login["refusals"], login["failures"], login["failure_rate"]) == (0, 1, 1.0)
    assert login["last_failure"] == login["last_error"]


@pytest.mark.asyncio
async def test_each_channels_count_is_succeeded_failed_and_not_finished(
    http, gateway, store, operator_headers
) -> None:
    """Three transactions, two succeeded, none failed: the third is counted, as not
    finished, instead of left unexplained."""
    await store.collection(TRANSACTIONS).insert_many(
        [debit("succeeded"), debit("succeeded"), debit("unknown")]
        + [debit(status) for status in ("failed", "expired", "otp_sent", "processing")]
    )
    board = await dashboard(http, gateway, operator_headers)
    [row] = board["by_channel"]
    assert (row["count"], row["succeeded"], row["failed"], row["other"]) == (7, 2, 2, 3)
    assert row["count"] == row["succeeded"] + row["failed"] + row["other"]
    assert row["success_rate"] == 0.5


@pytest.mark.asyncio
async def test_the_page_carries_the_display_zone(http, start_gateway_with) -> None:
    gateway = await start_gateway_with(
        make_settings(dashboard={"display_timezone": "Africa/Nairobi"})
    )
    async with http.get(f"{gateway.url}/dashboard") as answer:
        assert answer.status == 200
        page = await answer.text()
    assert '<body data-display-timezone="Africa/Nairobi">' in page
    assert "__DISPLAY_TIMEZONE__" not in page


def test_the_display_zone_defaults_to_utc_and_must_be_a_zone() -> None:
    assert load_settings(env=TEST_ENV).dashboard.display_timezone == "UTC"
    chosen = load_settings(env={**TEST_ENV, "GATEWAY_DASHBOARD_DISPLAY_TIMEZONE": "Africa/Banjul"})
    assert chosen.dashboard.display_timezone == "Africa/Banjul"
    with pytest.raises(ConfigError) as refused:
        load_settings(env={**TEST_ENV, "GATEWAY_DASHBOARD_DISPLAY_TIMEZONE": "Mars/Olympus"})
    assert str(refused.value).startswith("dashboard.display_timezone: 'Mars/Olympus'")
    assert "GATEWAY_DASHBOARD_DISPLAY_TIMEZONE" in str(refused.value)
