"""The operators' dashboard page in a real browser (Debian's Chromium through Playwright),
against the real sandbox: sign in, see the demo data, watch a new payment arrive,
act on what needs attention."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, async_playwright, expect

from server.ops.dashboard_page import STATIC_DIR
from server.sandbox import Sandbox, simulate_paybill_payment, start_sandbox

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WAIT_MS = 10_000
SCREENSHOT = "/tmp/dashboard.png"


def chromium_path() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@pytest.mark.asyncio
async def test_dashboard_page_and_its_files_are_served(
        start_gateway_with: Callable[..., Awaitable[Any]]) -> None:
    gateway = await start_gateway_with()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway.url}/dashboard") as answer:
            assert answer.status == 200
            assert answer.headers["Content-Type"].startswith("text/html")
            assert answer.headers["Cache-Control"] == "no-store"
            assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
            page = await answer.text()
        # Everything the page loads comes from the gateway itself.
        assert not re.search(r"""(src|href)=["'](https?:)?//""", page)
        for name, kind in (("dashboard.js", "javascript"), ("dashboard.css", "text/css")):
            assert f'"/dashboard/static/{name}"' in page
            async with session.get(f"{gateway.url}/dashboard/static/{name}") as answer:
                assert answer.status == 200
                assert kind in answer.headers["Content-Type"]
                body = await answer.text()
            outside = body.replace("http://www.w3.org/2000/svg", "")   # a namespace name
            assert "http://" not in outside and "https://" not in outside
        async with session.get(f"{gateway.url}/dashboard/static/nothing.js") as answer:
            assert answer.status == 404
        async with session.get(f"{gateway.url}/dashboard/static/%2E%2E/dashboard_page.py"
                               ) as answer:
            assert answer.status in (403, 404)
    # The JavaScript never writes markup built from data.
    script = (STATIC_DIR / "dashboard.js").read_text(encoding="utf-8")
    assert not re.search(r"\.(inner|outer)HTML\b|insertAdjacentHTML|document\.write", script)


async def _operator_token(session: aiohttp.ClientSession, base: str) -> str:
    async with session.post(f"{base}/api/v1/auth/token", json={
            "username": "operator", "password": "sandbox-operator"}) as answer:
        assert answer.status == 200
        return (await answer.json())["access_token"]


async def _idle_policy(base: str, chf_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {await _operator_token(session, base)}"}
        async with session.get(f"{base}/api/v1/policies", params={"chf_id": chf_id},
                               headers=headers) as answer:
            assert answer.status == 200
            items = (await answer.json())["items"]
    return next(item for item in items if item["status"] == 1)


async def _sign_in(page: Page) -> None:
    await expect(page.locator("#login-form")).to_be_visible()
    await page.fill("#username", "operator")
    await page.fill("#password", "sandbox-operator")
    await page.click("#login-submit")
    await expect(page.locator("#dashboard-view")).to_be_visible()


@pytest.mark.asyncio
async def test_dashboard_in_a_browser() -> None:
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    sandbox = await start_sandbox("127.0.0.1", 0)
    base = sandbox.settings.server.public_url
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=executable,
                                                       args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                requested: list[str] = []
                page_errors: list[str] = []
                page.on("request", lambda request: requested.append(request.url))
                page.on("pageerror", lambda error: page_errors.append(str(error)))
                await _run_dashboard(page, sandbox, base)
                await page.screenshot(path=SCREENSHOT, full_page=True)
                assert page_errors == []
                outside = [url for url in requested
                           if not url.startswith(base + "/") and not url.startswith("data:")]
                assert outside == [], "the page loaded something from elsewhere"
            finally:
                await browser.close()
    finally:
        await sandbox.stop()


async def _run_dashboard(page: Page, sandbox: Sandbox, base: str) -> None:
    await page.goto(f"{base}/dashboard?refresh=1")

    # A wrong password: the API's message, still on the login form.
    await page.fill("#username", "operator")
    await page.fill("#password", "not-the-password")
    await page.click("#login-submit")
    await expect(page.locator("#login-error")).to_be_visible()
    await expect(page.locator("#login-error")).not_to_be_empty()
    await expect(page.locator("#dashboard-view")).to_be_hidden()

    await _sign_in(page)
    await expect(page.locator("#updated-at")).to_have_text(
        re.compile(r"^updated at \d\d:\d\d:\d\d$"))

    # The sandbox's demo data: money in KES and GMD (never added together), unmatched
    # paybill payments, a debit whose answer was lost, provider health.
    kes = page.locator('[data-card="total"][data-currency="KES"]')
    await expect(kes).to_be_visible()
    await expect(page.locator('[data-card="total"][data-currency="GMD"]')).to_be_visible()
    unmatched = page.locator("#attention-c2b_unmatched")
    for account in ("090909090", "070707070"):
        await expect(unmatched.locator(f'tr[data-bill-ref="{account}"]')).to_have_count(1)
    await expect(unmatched.locator('tr[data-bill-ref="090909090"]')).to_contain_text("350.00")
    stuck = page.locator('#attention-stuck_debits tr[data-status="unknown"]')
    await expect(stuck.first).to_be_visible()
    await expect(page.locator('#providers tr[data-provider="qmoney"]').first).to_be_visible()
    await expect(page.locator('#by-channel tr[data-channel="mpesa_c2b"]')).to_have_count(1)
    await expect(page.locator('#chart svg[data-chart="KES"] rect.bar').first).to_be_attached()
    await expect(page.locator('#currency option[value="KES"]')).to_have_count(1)

    # A new paybill payment settles 040404040's policy: the page shows it by itself.
    count_before = int((await kes.locator('[data-role="count"]').inner_text()).split()[0])
    amount_before = Decimal(await kes.locator('[data-role="amount"]').inner_text())
    payment = await simulate_paybill_payment(sandbox.settings, "040404040", "1500.00",
                                             "254708374149", "operator", "sandbox-operator")
    assert payment["status"] == "settled"
    await expect(kes.locator('[data-role="count"]')).to_have_text(
        f"{count_before + 1} payments", timeout=WAIT_MS)
    await expect(kes.locator('[data-role="amount"]')).to_have_text(
        f"{amount_before + Decimal('1500.00'):.2f}", timeout=WAIT_MS)
    await expect(page.locator(
        f'#recent-payments tr[data-trans-id="{payment["trans_id"]}"]')).to_contain_text(
        "settled", timeout=WAIT_MS)

    # Allocating the 350.00 payment to a 1500.00 policy is refused: the API's reason shows.
    policy = await _idle_policy(base, "090909090")
    await unmatched.locator('tr[data-bill-ref="090909090"] button[data-action="allocate"]').click()
    dialog = page.locator("#action-dialog")
    await expect(dialog).to_be_visible()
    await page.fill("#action-policy", policy["uuid"])
    await page.fill("#action-reason", "payer says it was for the basic cover")
    await page.click("#action-submit")
    await expect(page.locator("#action-error")).to_contain_text(
        "does not equal the policy's value", timeout=WAIT_MS)
    await page.click("#action-cancel")
    await expect(dialog).to_be_hidden()
    await expect(unmatched.locator('tr[data-bill-ref="090909090"]')).to_have_count(1)

    # The debit whose answer was lost: the provider says it failed; mark it so.
    uuid = await stuck.first.get_attribute("data-uuid")
    stuck_count = int(await page.locator("#attention-stuck_debits").get_attribute("data-count"))
    await stuck.first.locator('button[data-action="resolve-failed"]').click()
    await expect(dialog).to_be_visible()
    await expect(page.locator("#action-reference")).to_be_hidden()
    await page.fill("#action-reason", "Qmoney support confirms no money moved")
    await page.click("#action-submit")
    await expect(dialog).to_be_hidden(timeout=WAIT_MS)
    await expect(page.locator("#flash")).to_have_text(
        f"Transaction {uuid} is now failed.", timeout=WAIT_MS)
    await expect(page.locator(f'#attention-stuck_debits tr[data-uuid="{uuid}"]')).to_have_count(
        0, timeout=WAIT_MS)
    await expect(page.locator("#attention-stuck_debits")).to_have_attribute(
        "data-count", str(stuck_count - 1), timeout=WAIT_MS)

    # A stale access token is renewed with the refresh token, without a new sign-in.
    await page.evaluate("sessionStorage.setItem('gateway.access_token', 'stale')")
    for _ in range(WAIT_MS // 100):
        if await page.evaluate("sessionStorage.getItem('gateway.access_token')") != "stale":
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the stale access token was not renewed")
    await expect(page.locator("#dashboard-view")).to_be_visible()
    await expect(page.locator("#load-error")).to_be_hidden()

    # Narrow to one currency: only its card stays.
    await page.select_option("#currency", "GMD")
    await expect(page.locator('[data-card="total"][data-currency="KES"]')).to_have_count(
        0, timeout=WAIT_MS)
    await expect(page.locator('[data-card="total"][data-currency="GMD"]')).to_be_visible()
    await page.select_option("#currency", "")
    await page.select_option("#window", "7d")
    await expect(kes).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#chart-bucket")).to_have_text("(per day)", timeout=WAIT_MS)
