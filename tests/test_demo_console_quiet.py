"""The failures the demo history stages on purpose print no warning at start-up."""

import logging

import pytest

from server.sandbox.environment import start_sandbox


@pytest.mark.asyncio
async def test_the_staged_demo_failures_print_no_warning_at_start_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    sandbox = await start_sandbox("127.0.0.1", 0)
    try:
        board = await sandbox.gateway.services.dashboard.summary(None, None, None)
    finally:
        await sandbox.stop()
    warnings = [
        record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING
    ]
    assert warnings == []
    assert any(record.getMessage().startswith("sandbox_ready") for record in caplog.records)
    # The staged events themselves are still there, for the dashboard to show.
    assert board["attention"]["stuck_debits"]["oldest"][0]["status"] == "unknown"
    assert board["attention"]["failed_inbox"]["count"] >= 1


@pytest.mark.asyncio
async def test_gateway_warnings_reach_the_log_again_after_the_history(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox = await start_sandbox("127.0.0.1", 0)
    try:
        logging.getLogger("gateway.c2b").warning("after_start_up")
    finally:
        await sandbox.stop()
    assert "after_start_up" in caplog.text
