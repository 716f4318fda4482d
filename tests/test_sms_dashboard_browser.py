"""The dashboard page's SMS receipts section in a real browser (Debian's Chromium through
Playwright): the counts per day, the failing messages with the provider's reason and
the number masked; its tables stay inside their cards on a wide and a narrow screen."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright, expect
from test_dashboard_browser import CHROMIUM_ARGS, WAIT_MS, chromium_path
from test_sms_outbox import ScriptedSender

from server.integrations.transport import ProviderRejected

from support import BASIC_KES, create_user, idle_policy, make_settings, password_for

SCREENSHOT = "/tmp/dashboard-sms.png"
NARROW_SCREENSHOT = "/tmp/dashboard-sms-420.png"
BLACKLISTED = "+254711000003"


async def _settle(services: Any, policy: dict[str, Any]) -> dict[str, Any]:
    """A PSP payment of the whole policy, settled: its premium carries the premium_paid
    message until the send-notifications job copies it into the outbox."""
    transaction = services.incoming.new_transaction(
        str(uuid.uuid4()), "psp_api", policy, None, uuid.uuid4().hex[:10].upper(), "afrimoney"
    )
    paid = await services.incoming.record(transaction, policy)
    assert paid["settlement"]["status"] == "settled"
    return paid


async def _sign_in(page: Page, username: str) -> None:
    await expect(page.locator("#login-form")).to_be_visible()
    await page.fill("#username", username)
    await page.fill("#password", password_for(username))
    await page.click("#login-submit")
    await expect(page.locator("#dashboard-view")).to_be_visible()


async def _stays_inside(page: Page, width: int) -> None:
    """At `width` pixels, no table of the section is wider than its card, no card sticks
    out of the window, and the page does not scroll sideways (a wide table scrolls inside
    its card)."""
    await page.set_viewport_size({"width": width, "height": 900})
    overflow = await page.evaluate(
        """() => ({
          page: document.documentElement.scrollWidth - window.innerWidth,
          cards: [...document.querySelectorAll('#sms .panel')].map((card) => ({
            id: card.id,
            inside: card.scrollWidth - card.clientWidth,
            right: card.getBoundingClientRect().right - window.innerWidth,
            tables: [...card.querySelectorAll('.table-wrap')].map((wrap) =>
              wrap.getBoundingClientRect().right - card.getBoundingClientRect().right),
            scrolled: [...card.querySelectorAll('.table-wrap')].map((wrap) =>
              wrap.scrollWidth - wrap.clientWidth),
          })),
        })"""
    )
    assert overflow["page"] <= 0, (width, overflow)
    assert {card["id"] for card in overflow["cards"]} == {"sms-days-card", "sms-failing"}
    for card in overflow["cards"]:
        assert card["inside"] <= 0 and card["right"] <= 0, (width, card)
        assert card["tables"] and all(right <= 0 for right in card["tables"]), (width, card)


@pytest.mark.asyncio
async def test_the_sms_receipts_section_in_a_browser(
    start_gateway_with: Callable[..., Awaitable[Any]],
) -> None:
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    gateway = await start_gateway_with(
        make_settings(jobs={"enabled": False}, notifications={"kind": "record"})
    )
    services = gateway.services
    sms = services.sms
    await create_user(services, "sami", "operator")

    # The record kind: a receipt sent when the job runs, and one with no number to send it to.
    await _settle(services, await idle_policy(services, "070707070", BASIC_KES, phone="0711000001"))
    await _settle(services, await idle_policy(services, "070707071", BASIC_KES, phone=""))
    summary = await sms.send_due()
    assert (summary["recorded"], summary["sent"], summary["unreachable"]) == (2, 1, 1), summary
    # A provider: one receipt delivered (its delivery report), one refused for good.
    local = sms.sender
    provider = ScriptedSender()
    provider.script = [None, ProviderRejected("africastalking", "406", "UserInBlacklist")]
    sms.sender = provider
    try:
        for chf_id, phone in (("070707072", "0711000002"), ("070707073", BLACKLISTED)):
            await _settle(services, await idle_policy(services, chf_id, BASIC_KES, phone=phone))
        summary = await sms.send_due()
        assert (summary["recorded"], summary["sent"], summary["failed"]) == (2, 1, 1), summary
    finally:
        sms.sender = local
    [accepted, _refused] = sorted(provider.sent, key=lambda outgoing: outgoing.recipient)
    [sent] = [m for m in (await sms.messages({}, 10, 0))[0] if m["recipient"] == "+254711000002"]
    reported = await sms.apply_report(
        sent["message_id"], "Success", accepted.recipient, "", datetime.now(UTC)
    )
    assert reported is not None and reported["status"] == "delivered"
    today = datetime.now(UTC).date().isoformat()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 900})
            page_errors: list[str] = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            await page.goto(f"{gateway.url}/dashboard?refresh=1")
            await _sign_in(page, "sami")

            row = page.locator(f'#sms-days tr[data-day="{today}"]')
            await expect(row.locator('[data-status="total"]')).to_have_text("4", timeout=WAIT_MS)
            for status, count in (("sent", 1), ("delivered", 1), ("failed", 1), ("other", 1)):
                await expect(row.locator(f'[data-status="{status}"]')).to_have_text(str(count))
            await expect(row.locator('[data-status="other"]')).to_have_attribute(
                "title", "unreachable 1"
            )
            await expect(page.locator("#sms-days tbody tr")).to_have_count(7)
            await expect(page.locator("#sms-period")).to_contain_text("UTC days")

            failing = page.locator("#sms-failing")
            await expect(failing).to_have_attribute("data-count", "2")
            refused = failing.locator('tr[data-status="failed"]')
            await expect(refused).to_contain_text("UserInBlacklist")
            await expect(refused).to_contain_text("406")
            await expect(refused).to_contain_text("premium_paid")
            await expect(refused).to_contain_text("+254******003")
            unreachable = failing.locator('tr[data-status="unreachable"]')
            await expect(unreachable).to_contain_text("no_reachable_number")
            await expect(unreachable).to_contain_text("no number")
            # The summary answers the number in full: the page never shows it.
            assert BLACKLISTED not in await page.locator("#sms").inner_text()
            # The page's display zone (dashboard.display_timezone), not the browser's.
            await expect(page.locator("#sms-zone")).to_have_text("Times in UTC.")

            await _stays_inside(page, 1366)
            await page.screenshot(path=SCREENSHOT, full_page=True)
            await _stays_inside(page, 420)
            await page.screenshot(path=NARROW_SCREENSHOT, full_page=True)
            assert page_errors == []
        finally:
            await browser.close()
