"""Beside openIMIS, on the dashboard page in a real browser (Debian's Chromium through
Playwright) against the real sandbox (`--insurance openimis`): a premium openIMIS
refused is among the items to review, and an operator sends it again with a reason;
the premiums waiting for openIMIS have their own panel, each with why it waits."""

from __future__ import annotations

import aiohttp
import pytest
from playwright.async_api import async_playwright, expect
from test_dashboard_browser import CHROMIUM_ARGS, WAIT_MS, _sign_in, chromium_path
from test_desk_browser import _confirm

from server.sandbox.environment import simulate_paybill_payment, start_sandbox

from support import sim_control

REFUSAL = "contribution.mutation.failed_to_create_premium"
PAYER = "254708374149"


@pytest.mark.asyncio
async def test_a_refused_premium_is_sent_again_from_the_page() -> None:
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    sandbox = await start_sandbox("127.0.0.1", 0, insurance="openimis")
    assert sandbox.openimis is not None
    base, openimis = sandbox.settings.server.public_url, sandbox.openimis.base_url
    jobs, store = sandbox.gateway.jobs, sandbox.gateway.services.store
    try:
        async with aiohttp.ClientSession() as http:
            fault = {"operation": "createPremium", "fault": "mutation_error", "message": REFUSAL}
            await sim_control(http, openimis, "POST", "faults", fault)
            payment = await simulate_paybill_payment(
                sandbox.settings,
                "040404040",
                "1500.00",
                "254708374149",
                "operator",
                "sandbox-operator",
            )
            assert payment["status"] == "settled"
            await jobs.run_now("write-premiums")
            refused = await store.collection("premiums").find_one(
                {"insurance_write.state": "refused"}
            )
            assert refused is not None and REFUSAL in refused["insurance_write"]["refusal"]
            # openIMIS then fails every policy read: the next premium waits, with why.
            down = {"operation": "policies", "fault": "http500", "times": 1000}
            await sim_control(http, openimis, "POST", "faults", down)
            waiting = await simulate_paybill_payment(
                sandbox.settings, "020202020", "1500.00", PAYER, "operator", "sandbox-operator"
            )
            assert waiting["status"] == "settled"
            await jobs.run_now("write-premiums")
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page(viewport={"width": 1366, "height": 900})
                page_errors: list[str] = []
                page.on("pageerror", lambda error: page_errors.append(str(error)))
                await page.goto(f"{base}/dashboard?refresh=2")
                await _sign_in(page)
                panel = page.locator("#attention-premiums_waiting")
                await expect(panel).to_be_visible(timeout=WAIT_MS)
                await expect(panel).to_have_attribute("data-count", "1", timeout=WAIT_MS)
                await expect(panel.locator("tbody tr")).to_contain_text("HTTP 500")
                row = page.locator(
                    f'#review-items tr[data-kind="premium"][data-id="{refused["_id"]}"]'
                )
                await expect(row).to_have_count(1, timeout=WAIT_MS)
                await expect(row.locator('[data-role="reasons"]')).to_contain_text(REFUSAL)
                await row.locator('button[data-action="send-premium"]').click()
                await expect(page.locator("#action-subject")).to_contain_text(refused["receipt"])
                await _confirm(page, "the policy was reopened in openIMIS")
                await expect(page.locator("#flash")).to_have_text(
                    f"Premium {refused['_id']} waits to be sent to openIMIS again.",
                    timeout=WAIT_MS,
                )
                await expect(row).to_have_count(0, timeout=WAIT_MS)
                assert page_errors == []
            finally:
                await browser.close()
        async with aiohttp.ClientSession() as http:
            await sim_control(http, openimis, "DELETE", "faults")
        await jobs.run_now("write-premiums")
        written = await store.collection("premiums").find_one({"_id": refused["_id"]})
        assert written["insurance_write"]["state"] == "written"
        assert written["insurance_write"]["retried"]["by"] == "operator"
    finally:
        await sandbox.stop()
