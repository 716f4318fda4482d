"""The operators' desk on the dashboard page, in a real browser (Debian's Chromium through
Playwright) against the real sandbox: a new operator finds a payment by its receipt or
the payer's phone, opens its detail, allocates an unmatched payment through the picker
(no id pasted), replays and dismisses a review item with a reason, downloads an export
and the month's close; every time shows its zone, and no table is wider than its card at
1920, 1366 and 420 px wide."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Download, Page, async_playwright, expect
from test_dashboard_browser import CHROMIUM_ARGS, WAIT_MS, _api, _sign_in, chromium_path

from server.sandbox.environment import Sandbox, start_sandbox

ZONE = "Africa/Nairobi"
SCREENSHOTS = "/tmp/desk-{width}.png"
WIDTHS = (1920, 1366, 420)


@pytest.mark.asyncio
async def test_the_desk_in_a_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    monkeypatch.setenv("GATEWAY_DASHBOARD_DISPLAY_TIMEZONE", ZONE)
    sandbox = await start_sandbox("127.0.0.1", 0)
    base = sandbox.settings.server.public_url
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS
            )
            try:
                context = await browser.new_context(
                    viewport={"width": 1366, "height": 900}, accept_downloads=True
                )
                page = await context.new_page()
                page_errors: list[str] = []
                page.on("pageerror", lambda error: page_errors.append(str(error)))
                await page.goto(f"{base}/dashboard?refresh=2")
                await _sign_in(page)
                await _times_show_their_zone(page)
                await _figures_add_up(page)
                await _search_by_receipt(page, base)
                await _search_by_phone(page)
                await _allocate_with_the_picker(page, sandbox, base)
                await _replay_then_dismiss_a_review_item(page, base)
                await _download_an_export(page, base)
                await _download_the_close(page)
                for width in WIDTHS:
                    await _no_table_overflows(page, width)
                assert page_errors == []
            finally:
                await browser.close()
    finally:
        await sandbox.stop()


async def _zone_name(page: Page) -> str:
    """The short name the browser gives the display zone now (EAT, or GMT+3)."""
    return await page.evaluate(
        """(zone) => new Intl.DateTimeFormat("en-GB", {timeZone: zone, timeZoneName: "short"})
             .formatToParts(new Date()).find((part) => part.type === "timeZoneName").value""",
        ZONE,
    )


async def _times_show_their_zone(page: Page) -> None:
    short = await _zone_name(page)
    await expect(page.locator("#zone-label")).to_have_text(f"Times in {ZONE} ({short})")
    await expect(page.locator("#docs-link")).to_have_attribute("href", "/docs")
    await expect(page.locator("#updated-at")).to_have_text(
        re.compile(rf"^updated at \d\d:\d\d:\d\d {re.escape(short)}$"), timeout=WAIT_MS
    )
    await expect(page.locator("#window-label")).to_contain_text(short)
    received = page.locator("#attention-c2b_unmatched tbody tr").first.locator("td").first
    await expect(received).to_contain_text(re.compile(rf"\d\d:\d\d {re.escape(short)}"))


async def _figures_add_up(page: Page) -> None:
    """By channel: every row's transactions are succeeded + failed + not finished, and
    its success rate reads as a percentage. Provider health: Qmoney's wrong OTPs are
    refusals, in plain text, apart from failures."""
    rows = page.locator("#by-channel tbody tr")
    await expect(rows.first).to_be_visible(timeout=WAIT_MS)
    for row in await rows.all():
        figures = {
            name: await row.locator(f'[data-figure="{name}"]').inner_text()
            for name in ("count", "succeeded", "failed", "other")
        }
        numbers = {name: int(value) for name, value in figures.items()}
        assert numbers["count"] == numbers["succeeded"] + numbers["failed"] + numbers["other"]
        rate = await row.locator("td").last.inner_text()
        assert re.fullmatch(r"\d+(\.\d)?%|—", rate), rate
    verify = page.locator('#providers tr[data-provider="qmoney"][data-endpoint="verifyCode"]')
    await expect(verify.locator('[data-figure="refusal_rate"]')).to_have_class(
        re.compile(r"\bplain\b")
    )
    await expect(verify.locator('[data-figure="refusal_rate"]')).to_have_text(re.compile(r"%$"))
    await expect(verify.locator('[data-figure="failure_rate"]')).to_have_text(re.compile(r"%$"))


async def _search(page: Page, text: str) -> None:
    await page.fill("#search-q", text)
    await page.click("#search-submit")
    await expect(page.locator("#search")).to_be_visible()
    await expect(page.locator("#search-query")).to_contain_text(text, timeout=WAIT_MS)


async def _close_detail(page: Page) -> None:
    await page.click("#detail-close")
    await expect(page.locator("#detail-dialog")).to_be_hidden()


async def _search_by_receipt(page: Page, base: str) -> None:
    """The payer quotes the M-Pesa receipt (the TransID, any case): the payment, with the
    callback as it came (raw body), its allocation and its settlement. The premium's own
    receipt finds the premium, which opens the transaction that paid it."""
    [payment] = (await _api(base, "GET", "/c2b/payments", params={"bill_ref": "080808080"}))[
        "items"
    ]
    trans_id = payment["trans_id"]
    await _search(page, trans_id.lower())
    found = page.locator(f'#search-results tr[data-kind="c2b_payment"][data-id="{trans_id}"]')
    await expect(found).to_have_count(1, timeout=WAIT_MS)
    await expect(found).to_have_attribute("data-match", "trans_id")
    await found.locator('[data-role="open"]').click()
    detail = page.locator("#detail-dialog")
    await expect(detail).to_be_visible()
    await expect(detail).to_have_attribute("data-kind", "payment")
    await expect(detail.locator(".full-id").first).to_have_text(trans_id, timeout=WAIT_MS)
    raw = detail.locator('pre[data-role="raw-body"]').first
    await expect(raw).to_contain_text(re.compile(rf'"TransID":\s*"{trans_id}"'))
    await expect(raw).to_contain_text(re.compile(r'"BillRefNumber":\s*"080808080"'))
    await expect(detail.locator("#detail-body")).to_contain_text(payment["receipt"])
    await expect(detail.locator("#detail-body")).to_contain_text("Allocation history")
    await _close_detail(page)

    await _search(page, payment["receipt"])
    premium = page.locator('#search-results tr[data-kind="premium"]')
    await expect(premium).to_have_count(1, timeout=WAIT_MS)
    await premium.locator('[data-role="open"]').click()
    await expect(detail).to_have_attribute("data-kind", "transaction")
    await expect(detail.locator(".full-id").first).to_have_text(payment["transaction_uuid"])
    await expect(detail.locator("#detail-body")).to_contain_text("History")
    await expect(detail.locator("#detail-body")).to_contain_text("succeeded")
    await _close_detail(page)


async def _search_by_phone(page: Page) -> None:
    """A phone number as the payer says it: the insuree of that number, and the paybill
    payments whose number M-Pesa masked, said to be possibly another payer's."""
    await _search(page, "0708 374 149")
    insuree = page.locator('#search-results tr[data-kind="insuree"][data-id="050505050"]')
    await expect(insuree).to_have_count(1, timeout=WAIT_MS)
    masked = page.locator('#search-results tr[data-kind="c2b_payment"][data-match="phone_masked"]')
    await expect(masked.first).to_contain_text("possibly another payer")
    await insuree.locator('[data-role="open"]').click()
    detail = page.locator("#detail-dialog")
    await expect(detail).to_have_attribute("data-kind", "insuree")
    await expect(detail.locator("#detail-body")).to_contain_text("Njeri Mwangi", timeout=WAIT_MS)
    await expect(detail.locator("#detail-body")).to_contain_text("Basic cover")
    # From the overview on to one of its policies, and back.
    await detail.locator('#detail-body button[data-open="policy"]').first.click()
    await expect(detail).to_have_attribute("data-kind", "policy")
    await expect(detail.locator("#detail-body")).to_contain_text("idle", timeout=WAIT_MS)
    await page.click("#detail-back")
    await expect(detail).to_have_attribute("data-kind", "insuree")
    await _close_detail(page)


async def _allocate_with_the_picker(page: Page, sandbox: Sandbox, base: str) -> None:
    """The 350.00 paid to 090909090 fits none of its insuree's policies: the picker says
    why, in words, and offers nothing to choose. The 1500.00 paid to 09090909 (a digit
    short) names no insuree: the operator finds 090909090 by number and picks its policy."""
    block = page.locator("#attention-c2b_unmatched")
    short = block.locator('tr[data-bill-ref="090909090"]')
    await short.locator('button[data-action="allocate"]').click()
    dialog = page.locator("#allocate-dialog")
    await expect(dialog).to_be_visible()
    misfit = dialog.locator('#allocate-candidates tr[data-fits="false"]')
    await expect(misfit.first).to_contain_text(
        "paid 350.00 KES; the policy needs 1500.00 KES", timeout=WAIT_MS
    )
    await expect(misfit.first.locator('input[type="radio"]')).to_be_disabled()
    await page.click("#allocate-cancel")
    await expect(dialog).to_be_hidden()

    assert sandbox.allocatable is not None
    trans_id = sandbox.allocatable.trans_id
    policy_uuid = sandbox.allocatable.policy["_id"]
    row = block.locator(f'tr[data-trans-id="{trans_id}"]')
    count = int(await block.get_attribute("data-count"))
    await expect(row).to_contain_text("no insuree has account number 09090909")
    await row.locator('button[data-action="allocate"]').click()
    await expect(dialog.locator('[data-role="account"]')).to_contain_text(
        "No insuree has this account number", timeout=WAIT_MS
    )
    await page.fill("#allocate-q", "090909090")
    await page.click("#allocate-find")
    candidate = dialog.locator(f'tr[data-policy-uuid="{policy_uuid}"]')
    await expect(candidate).to_have_attribute("data-fits", "true", timeout=WAIT_MS)
    await expect(candidate).to_contain_text("Otieno Ochieng")
    await candidate.locator("td").nth(2).click()  # the row chooses its policy
    await expect(candidate.locator('input[type="radio"]')).to_be_checked()
    await page.fill("#allocate-note", "payer mistyped the insuree number by a digit")
    await page.click("#allocate-submit")
    await expect(dialog).to_be_hidden(timeout=WAIT_MS)
    await expect(page.locator("#flash")).to_have_text(
        re.compile(rf"^Payment {trans_id} is now settled \(receipt R-\S+\)\.$"), timeout=WAIT_MS
    )
    await expect(row).to_have_count(0, timeout=WAIT_MS)
    await expect(block).to_have_attribute("data-count", str(count - 1), timeout=WAIT_MS)

    payment = await _api(base, "GET", f"/c2b/payments/{trans_id}")
    assert (payment["status"], payment["policy_uuid"]) == ("settled", policy_uuid)
    assert any(
        (step["by"], step["reason"], step["policy_uuid"])
        == ("operator", "payer mistyped the insuree number by a digit", policy_uuid)
        for step in payment["allocation_history"]
    )


async def _replay_then_dismiss_a_review_item(page: Page, base: str) -> None:
    """The history's unreadable confirmation: a replay reads the same body and changes
    nothing, which the page says plainly (not as a success); the operator then dismisses
    it with the reason, and it leaves the list."""
    block = page.locator("#review-items")
    row = block.locator('tr[data-kind="inbox_entry"][data-status="needs_review"]')
    await expect(row).to_have_count(1, timeout=WAIT_MS)
    entry_id = await row.get_attribute("data-id")
    count = int(await block.get_attribute("data-count"))

    await row.locator('button[data-action="replay"]').click()
    await _confirm(page, "check whether the body is readable now")
    flash = page.locator("#flash")
    await expect(flash).to_have_text(
        f"Inbox entry {entry_id} replayed: nothing changed: the entry is still needs_review",
        timeout=WAIT_MS,
    )
    await expect(flash).to_have_attribute("data-tone", "neutral")
    await expect(flash).to_have_class(re.compile(r"\bneutral\b"))

    await row.locator('button[data-action="dismiss-entry"]').click()
    await expect(page.locator("#action-subject")).to_contain_text(entry_id)
    await _confirm(page, "a test body from the portal, nothing was paid")
    await expect(flash).to_have_text(f"Inbox entry {entry_id} is now dismissed.", timeout=WAIT_MS)
    await expect(flash).to_have_attribute("data-tone", "good")
    await expect(flash).not_to_have_class(re.compile(r"\bneutral\b"))
    await expect(block.locator(f'tr[data-id="{entry_id}"]')).to_have_count(0, timeout=WAIT_MS)
    await expect(block).to_have_attribute("data-count", str(count - 1), timeout=WAIT_MS)

    entry = await _api(base, "GET", f"/c2b/inbox/{entry_id}")
    assert entry["status"] == "dismissed"
    assert (entry["dismissal"]["by"], entry["dismissal"]["reason"]) == (
        "operator",
        "a test body from the portal, nothing was paid",
    )
    assert entry["dismissal"]["from_status"] == "needs_review"


async def _confirm(page: Page, reason: str) -> None:
    dialog = page.locator("#action-dialog")
    await expect(dialog).to_be_visible()
    await expect(page.locator("#action-submit")).to_be_enabled()
    await page.fill("#action-reason", reason)
    await page.click("#action-submit")
    await expect(dialog).to_be_hidden(timeout=WAIT_MS)


async def _downloaded(page: Page, link: str) -> tuple[Download, str]:
    async with page.expect_download(timeout=WAIT_MS) as downloading:
        await page.click(link)
    download = await downloading.value
    path = await download.path()
    return download, await asyncio.to_thread(Path(path).read_text, encoding="utf-8")


async def _download_an_export(page: Page, base: str) -> None:
    """The window's paybill payments as CSV: the settled demo payment is a row of it."""
    [payment] = (await _api(base, "GET", "/c2b/payments", params={"bill_ref": "080808080"}))[
        "items"
    ]
    download, text = await _downloaded(page, '[data-export="payments"]')
    assert re.fullmatch(r"payments-\d{8}T\d{6}Z-\d{8}T\d{6}Z\.csv", download.suggested_filename)
    rows = {row["trans_id"]: row for row in csv.DictReader(io.StringIO(text))}
    row = rows[payment["trans_id"]]
    assert (row["amount"], row["currency"], row["status"], row["account"]) == (
        "1500.00",
        "KES",
        "settled",
        "080808080",
    )
    assert row["receipt"] == payment["receipt"]


async def _download_the_close(page: Page) -> None:
    """This month's close: its figures on the page, then the CSV and the printable page."""
    period = await page.input_value("#close-period")
    assert re.fullmatch(r"\d{4}-\d\d", period), period
    await page.click("#close-show")
    paybill = page.locator('#close-body tr[data-channel="mpesa_c2b"][data-currency="KES"]')
    await expect(paybill).to_be_visible(timeout=WAIT_MS)
    received = paybill.locator('[data-figure="received"]')
    assert int(await received.get_attribute("data-count")) >= 4  # the start-up payments

    download, text = await _downloaded(page, "#close-csv")
    assert download.suggested_filename == f"close-{period}.csv"
    lines = list(csv.DictReader(io.StringIO(text)))
    assert list(lines[0])[:4] == ["channel", "provider", "provider_name", "currency"]
    paybill_rows = [line for line in lines if line["channel"] == "mpesa_c2b"]
    assert sum(int(line["received_count"]) for line in paybill_rows) == int(
        await received.get_attribute("data-count")
    )

    download, text = await _downloaded(page, "#close-print")
    assert download.suggested_filename == f"close-{period}.html"
    assert text.lstrip().lower().startswith("<!doctype html")
    assert "<table" in text and period in text


async def _no_table_overflows(page: Page, width: int) -> None:
    """At `width` px, measured in the page: no table is wider than its card (nor scrolls
    inside it), no header is cut, the page does not scroll sideways, every action button
    is inside the window, and the chart's labels keep a legible size."""
    await page.set_viewport_size({"width": width, "height": 900})
    await page.wait_for_timeout(400)  # the chart is drawn again at the new width
    measured: dict[str, Any] = await page.evaluate(
        """() => {
          const visible = (node) => node.getClientRects().length > 0;
          const tables = [...document.querySelectorAll('#dashboard-view table')]
            .filter(visible).map((table) => {
              const card = table.closest('.panel');
              const wrap = table.closest('.table-wrap');
              const box = card.getBoundingClientRect();
              const style = getComputedStyle(card);
              const inner = box.right - parseFloat(style.borderRightWidth)
                            - parseFloat(style.paddingRight);
              return {
                card: card.id || card.querySelector('[id]').id,
                wider: table.scrollWidth - card.clientWidth,
                scrolls: wrap.scrollWidth - wrap.clientWidth,
                right: table.getBoundingClientRect().right - inner,
              };
            });
          const cut = [...document.querySelectorAll('#dashboard-view th')].filter(visible)
            .filter((th) => th.scrollWidth > th.clientWidth).map((th) => th.textContent);
          const buttons = [...document.querySelectorAll('#dashboard-view button[data-action]')]
            .filter(visible).map((button) => {
              const box = button.getBoundingClientRect();
              return { action: button.dataset.action, left: box.left,
                       right: box.right - window.innerWidth };
            });
          const ticks = [...document.querySelectorAll('#chart text.tick')]
            .map((tick) => tick.getBoundingClientRect().height);
          const kes = document.querySelector('#chart svg[data-chart="KES"]');
          return {
            page: document.documentElement.scrollWidth - window.innerWidth,
            tables, cut, buttons, ticks,
            yTicks: kes.querySelectorAll('[data-tick="y"]').length,
            xTicks: kes.querySelectorAll('[data-tick="x"]').length,
          };
        }"""
    )
    await page.screenshot(path=SCREENSHOTS.format(width=width), full_page=True)
    assert measured["page"] <= 0, (width, measured["page"])
    cards = {table["card"] for table in measured["tables"]}
    assert {"by-channel", "providers", "attention-stuck_debits", "search"} <= cards, cards
    assert {"payments-card", "transactions-card", "inbox-card", "close-card"} <= cards, cards
    for table in measured["tables"]:
        assert table["wider"] <= 0 and table["scrolls"] <= 0 and table["right"] <= 0.5, (
            width,
            table,
        )
    assert measured["cut"] == [], (width, measured["cut"])
    assert measured["buttons"], width
    for button in measured["buttons"]:
        assert button["left"] >= 0 and button["right"] <= 0, (width, button)
    assert measured["yTicks"] >= 3 and measured["xTicks"] >= 2, (width, measured)
    assert min(measured["ticks"]) >= 10, (width, measured["ticks"])
