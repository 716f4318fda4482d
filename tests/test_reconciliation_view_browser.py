"""The dashboard page's Reconciliation section in a real browser (Debian's Chromium through
Playwright): the checked figures, the open items, the last runs, the balance, the CSV
download, and the M-Pesa pull's gap said loudly; its tables stay inside their cards on
a wide and a narrow screen."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright, expect
from test_dashboard_browser import CHROMIUM_ARGS, WAIT_MS, chromium_path

from server.mpesa.schemas import NAIROBI
from server.reconciliation import items
from server.reconciliation.items import Item, ItemRepository
from server.reconciliation.pull import PullStateRepository

from support import create_user, make_settings, password_for

SHORTCODE = "600984"
SCREENSHOT = "/tmp/dashboard-reconciliation.png"
NARROW_SCREENSHOT = "/tmp/dashboard-reconciliation-420.png"


def checked(key: str, at: datetime, amount: int, outcome: str, **options: Any) -> Item:
    return Item(
        channel="mpesa_c2b",
        provider=SHORTCODE,
        key=key,
        at=at,
        currency="KES",
        amount=amount,
        amount_here=options.pop("amount_here", amount),
        outcome=outcome,
        source="daraja_pull",
        **options,
    )


async def _sign_in(page: Page, username: str) -> None:
    await expect(page.locator("#login-form")).to_be_visible()
    await page.fill("#username", username)
    await page.fill("#password", password_for(username))
    await page.click("#login-submit")
    await expect(page.locator("#dashboard-view")).to_be_visible()


async def _stays_inside(page: Page, width: int) -> None:
    """At `width` pixels, no card of the section is wider than itself and the page does
    not scroll sideways (a wide table scrolls inside its card)."""
    await page.set_viewport_size({"width": width, "height": 900})
    overflow = await page.evaluate(
        """() => ({
          page: document.documentElement.scrollWidth - window.innerWidth,
          cards: [...document.querySelectorAll('#reconciliation .panel')].map((card) => ({
            id: card.id || card.querySelector('h3').textContent,
            inside: card.scrollWidth - card.clientWidth,
            right: card.getBoundingClientRect().right - window.innerWidth,
          })),
        })"""
    )
    assert overflow["page"] <= 0, overflow
    for card in overflow["cards"]:
        assert card["inside"] <= 0 and card["right"] <= 0, (width, card)


@pytest.mark.asyncio
async def test_the_reconciliation_section_in_a_browser(
    start_gateway_with: Callable[..., Awaitable[Any]],
) -> None:
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    gateway = await start_gateway_with(make_settings(jobs={"enabled": False}))
    services = gateway.services
    await create_user(services, "olga", "operator")
    now = datetime.now(UTC)
    today = now.astimezone(NAIROBI).date()
    early = datetime.combine(today, time(0, 30), NAIROBI).astimezone(UTC)
    await ItemRepository(services.store).record(
        [
            checked("RKM0000001", early, 30_00, items.MATCHED, recovered=True),
            checked(
                "RKM0000002", early + timedelta(minutes=1), 20_00, items.MATCHED, recovered=True
            ),
            checked("RKM0000003", early + timedelta(minutes=2), 70_00, items.MATCHED),
            checked(
                "RKM0000004",
                early + timedelta(minutes=3),
                12_50,
                items.DIFFERING,
                amount_here=12_00,
                detail="account 070707070",
            ),
        ],
        now,
    )
    # The pull has failed since long before M-Pesa's 48 hours.
    pulls = PullStateRepository(services.store)
    await pulls.attempted(SHORTCODE, now - timedelta(hours=50), "ProviderUnavailable: refused")
    await pulls.attempted(SHORTCODE, now, "ProviderUnavailable: refused")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 900})
            page_errors: list[str] = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            await page.goto(f"{gateway.url}/dashboard?refresh=1")
            await _sign_in(page, "olga")

            row = page.locator(
                f'#reconciliation-rows tr[data-day="{today.isoformat()}"]'
                f'[data-channel="mpesa_c2b"][data-provider="{SHORTCODE}"]'
            )
            recovered = row.locator('[data-figure="recovered"]')
            await expect(recovered).to_have_attribute("data-count", "2", timeout=WAIT_MS)
            await expect(recovered).to_contain_text("50.00")
            await expect(row.locator('[data-figure="matched"]')).to_have_attribute(
                "data-count", "1"
            )
            await expect(row.locator('[data-figure="differing"]')).to_contain_text("12.50")
            await expect(row).to_contain_text("M-Pesa paybill")

            open_items = page.locator("#reconciliation-open")
            await expect(open_items).to_have_attribute("data-count", "1")
            open_row = open_items.locator('tr[data-key="RKM0000004"]')
            await expect(open_row).to_contain_text("differing")
            await expect(open_row).to_contain_text("12.00")
            await expect(open_row).to_contain_text("account 070707070")

            await expect(page.locator('#reconciliation-runs tr[data-run="pull"]')).to_contain_text(
                "OVERDUE"
            )
            await expect(
                page.locator('#reconciliation-runs tr[data-run="statement"]')
            ).to_contain_text("none imported yet")
            await expect(
                page.locator('#reconciliation-balance [data-balance="none"]')
            ).to_be_visible()

            # The pull's gap, said loudly: a banner and a needs-attention item.
            await expect(page.locator("#pull-overdue")).to_contain_text("statement")
            overdue = page.locator("#attention-mpesa_pull_overdue")
            await expect(overdue).to_have_attribute("data-count", "1")
            await expect(overdue.locator(f'tr[data-shortcode="{SHORTCODE}"]')).to_contain_text(
                "ProviderUnavailable"
            )

            # Asking for the balance without an initiator: the API's reason shows.
            await page.click("#balance-check")
            await expect(page.locator("#balance-message")).to_contain_text(
                "daraja.initiator", timeout=WAIT_MS
            )

            # The CSV link downloads the rows of the period shown.
            period_from = (today - timedelta(days=6)).isoformat()
            link = page.locator("#reconciliation-csv")
            await expect(link).to_have_attribute(
                "href", f"/api/v1/reconciliation.csv?from={period_from}&to={today.isoformat()}"
            )
            async with page.expect_download(timeout=WAIT_MS) as downloading:
                await link.click()
            download = await downloading.value
            assert download.suggested_filename == (
                f"reconciliation-{period_from}-{today.isoformat()}.csv"
            )
            saved = await download.path()
            text = await asyncio.to_thread(Path(saved).read_text, encoding="utf-8")
            lines = list(csv.DictReader(io.StringIO(text)))
            assert [
                (line["day"], line["recovered_count"], line["recovered_total"]) for line in lines
            ] == [(today.isoformat(), "2", "50.00")]

            await _stays_inside(page, 1366)
            await page.screenshot(path=SCREENSHOT, full_page=True)
            await _stays_inside(page, 420)
            await page.screenshot(path=NARROW_SCREENSHOT, full_page=True)
            assert page_errors == []
        finally:
            await browser.close()
