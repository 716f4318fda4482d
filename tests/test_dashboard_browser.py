"""The operators' dashboard page in a real browser (Debian's Chromium through Playwright),
against the real sandbox: sign in, see the demo data, watch a new payment arrive,
act on what needs attention."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, async_playwright, expect

from server.integrations.notifications import LogNotifier
from server.ledger import states
from server.ops.dashboard import STUCK_AFTER
from server.ops.dashboard_page import STATIC_DIR
from server.sandbox.demo_history import PastClock
from server.sandbox.environment import Sandbox, simulate_paybill_payment, start_sandbox
from server.startup.services import build_services

from support import BASIC_GMD, idle_policy_over_api, login_headers, request_json, wait_until

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 10_000
SCREENSHOT = "/tmp/dashboard.png"
LOST_ANSWER_WALLET = "10000003"  # Qmoney simulator: verifyCode debits, then drops the answer


def chromium_path() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@pytest.mark.asyncio
async def test_dashboard_page_and_its_files_are_served(
    start_gateway_with: Callable[..., Awaitable[Any]],
) -> None:
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
            outside = body.replace("http://www.w3.org/2000/svg", "")  # a namespace name
            assert "http://" not in outside and "https://" not in outside
        async with session.get(f"{gateway.url}/dashboard/static/nothing.js") as answer:
            assert answer.status == 404
        async with session.get(
            f"{gateway.url}/dashboard/static/%2E%2E/dashboard_page.py"
        ) as answer:
            assert answer.status in (403, 404)
    # The JavaScript never writes markup built from data.
    script = (STATIC_DIR / "dashboard.js").read_text(encoding="utf-8")
    assert not re.search(r"\.(inner|outer)HTML\b|insertAdjacentHTML|document\.write", script)


async def _api(
    base: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
    *,
    user: str = "operator",
    expect_status: int = 200,
) -> dict[str, Any]:
    """One call to the gateway's API as `user` (operator or admin), checked and decoded."""
    async with aiohttp.ClientSession() as session:
        headers = await login_headers(session, base, user, f"sandbox-{user}")
        status, answer = await request_json(
            session, method, f"{base}/api/v1{path}", body, headers=headers, params=params
        )
    assert status == expect_status, answer
    return answer


@dataclass(frozen=True)
class StuckDebits:
    lost_answer: dict[str, Any]  # `unknown`: Qmoney debited the wallet, the answer was lost
    waiting: dict[str, Any]  # `otp_sent`: the payer never read out the OTP


async def _stuck_debits(sandbox: Sandbox) -> StuckDebits:
    """Two Qmoney debits made the way the sandbox history makes its own: through the real
    services with a clock set in the past (the dashboard only lists a debit once it has
    sat for STUCK_AFTER) and the real Qmoney simulator. Insurees and policies come from
    the admin API."""
    assert sandbox.demo is not None
    base = sandbox.settings.server.public_url
    psp = sandbox.demo.qmoney_psp["_id"]
    made = []
    # Listed once they have sat for STUCK_AFTER; the waiting one is well within its
    # OTP lifetime (5 minutes), so the gateway's upkeep does not expire it meanwhile.
    for chf_id, wallet, ago in (
        ("5590001", LOST_ANSWER_WALLET, STUCK_AFTER[states.UNKNOWN] * 3),
        ("5590002", "5811724c", STUCK_AFTER[states.OTP_SENT] + timedelta(seconds=40)),
    ):
        async with aiohttp.ClientSession() as session:
            admin = await login_headers(session, base, "admin", "sandbox-admin")
            policy = await idle_policy_over_api(
                session,
                base,
                admin,
                chf_id,
                BASIC_GMD,
                start_date=date.today().isoformat(),
                first_name="Stuck",
                last_name=f"Debit {chf_id}",
                wallet=wallet,
            )
        services = build_services(
            sandbox.settings,
            sandbox.gateway.services.store,
            sandbox.gateway.providers,
            LogNotifier(),
            PastClock(ago),
        )
        debit = await services.debits.initiate(policy["uuid"], psp, policy["amount"], "operator")
        assert debit["status"] == "otp_sent"
        if wallet == LOST_ANSWER_WALLET:
            async with sandbox.session.get(
                f"{sandbox.settings.qmoney.base_url}/_sim/otp/{wallet}"
            ) as answer:
                otp = (await answer.json())["otp"]
            debit = await services.debits.process(debit["_id"], otp, "operator")
            assert debit["status"] == "unknown"
        made.append(
            {"uuid": debit["_id"], "policy_uuid": policy["uuid"], "amount": policy["amount"]}
        )
    return StuckDebits(*made)


async def _idle_policy(base: str, chf_id: str) -> dict[str, Any]:
    items = (await _api(base, "GET", "/policies", params={"chf_id": chf_id}))["items"]
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
        debits = await _stuck_debits(sandbox)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                requested: list[str] = []
                page_errors: list[str] = []
                page.on("request", lambda request: requested.append(request.url))
                page.on("pageerror", lambda error: page_errors.append(str(error)))
                await _run_dashboard(page, sandbox, base, debits)
                await page.screenshot(path=SCREENSHOT, full_page=True)
                assert page_errors == []
                outside = [
                    url
                    for url in requested
                    if not url.startswith(base + "/") and not url.startswith("data:")
                ]
                assert outside == [], "the page loaded something from elsewhere"
            finally:
                await browser.close()
    finally:
        await sandbox.stop()


async def _run_dashboard(page: Page, sandbox: Sandbox, base: str, debits: StuckDebits) -> None:
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
        re.compile(r"^updated at \d\d:\d\d:\d\d UTC$")  # dashboard.display_timezone
    )

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
    payment = await simulate_paybill_payment(
        sandbox.settings, "040404040", "1500.00", "254708374149", "operator", "sandbox-operator"
    )
    assert payment["status"] == "settled"
    await expect(kes.locator('[data-role="count"]')).to_have_text(
        f"{count_before + 1} payments", timeout=WAIT_MS
    )
    await expect(kes.locator('[data-role="amount"]')).to_have_text(
        f"{amount_before + Decimal('1500.00'):.2f}", timeout=WAIT_MS
    )
    await expect(
        page.locator(f'#payments-list tr[data-trans-id="{payment["trans_id"]}"]')
    ).to_contain_text("settled", timeout=WAIT_MS)

    # The 350.00 payment fits none of 090909090's policies (1500.00): the picker says why
    # and offers nothing to choose.
    policy = await _idle_policy(base, "090909090")
    await unmatched.locator('tr[data-bill-ref="090909090"] button[data-action="allocate"]').click()
    picker = page.locator("#allocate-dialog")
    await expect(picker).to_be_visible()
    misfit = picker.locator(f'tr[data-policy-uuid="{policy["uuid"]}"]')
    await expect(misfit).to_have_attribute("data-fits", "false", timeout=WAIT_MS)
    await expect(misfit).to_contain_text("paid 350.00 KES; the policy needs 1500.00 KES")
    await expect(misfit.locator('input[type="radio"]')).to_be_disabled()
    await page.fill("#allocate-note", "payer says it was for the basic cover")
    await page.click("#allocate-submit")
    await expect(page.locator("#allocate-error")).to_have_text("Choose a policy the payment fits.")
    await page.click("#allocate-cancel")
    await expect(picker).to_be_hidden()
    await expect(unmatched.locator('tr[data-bill-ref="090909090"]')).to_have_count(1)
    dialog = page.locator("#action-dialog")

    # The history's debit whose answer was lost (the oldest): the provider says it
    # failed; mark it so.
    uuid = await stuck.first.get_attribute("data-uuid")
    assert uuid != debits.lost_answer["uuid"]
    stuck_count = int(await page.locator("#attention-stuck_debits").get_attribute("data-count"))
    await stuck.first.locator('button[data-action="resolve-failed"]').click()
    await expect(dialog).to_be_visible()
    await expect(page.locator("#action-reference")).to_be_hidden()
    await page.fill("#action-reason", "Qmoney support confirms no money moved")
    await page.click("#action-submit")
    await expect(dialog).to_be_hidden(timeout=WAIT_MS)
    await expect(page.locator("#flash")).to_have_text(
        f"Transaction {uuid} is now failed.", timeout=WAIT_MS
    )
    await expect(page.locator(f'#attention-stuck_debits tr[data-uuid="{uuid}"]')).to_have_count(
        0, timeout=WAIT_MS
    )
    await expect(page.locator("#attention-stuck_debits")).to_have_attribute(
        "data-count", str(stuck_count - 1), timeout=WAIT_MS
    )

    await _resolve_succeeded(page, base, debits.lost_answer)
    await _expire(page, base, debits.waiting)
    await _allocate(page, base)
    await _replay(page, base)

    # A stale access token is renewed with the refresh token, without a new sign-in.
    await page.evaluate("sessionStorage.setItem('gateway.access_token', 'stale')")

    async def renewed() -> bool:
        return await page.evaluate("sessionStorage.getItem('gateway.access_token')") != "stale"

    await wait_until(
        renewed, "the stale access token to be renewed", within=WAIT_MS / 1000, every=0.1
    )
    await expect(page.locator("#dashboard-view")).to_be_visible()
    await expect(page.locator("#load-error")).to_be_hidden()

    # Narrow to one currency: only its card stays.
    await page.select_option("#currency", "GMD")
    await expect(page.locator('[data-card="total"][data-currency="KES"]')).to_have_count(
        0, timeout=WAIT_MS
    )
    await expect(page.locator('[data-card="total"][data-currency="GMD"]')).to_be_visible()
    await page.select_option("#currency", "")
    await page.select_option("#window", "7d")
    await expect(kes).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#chart-bucket")).to_have_text("(per UTC day)", timeout=WAIT_MS)

    # Signing out revokes the session on the server: its refresh token no longer works.
    refresh_token = await page.evaluate("sessionStorage.getItem('gateway.refresh_token')")
    async with page.expect_response(
        lambda answer: answer.url.endswith("/auth/logout"), timeout=WAIT_MS
    ) as logout:
        await page.click("#logout")
    assert (await logout.value).status == 204
    await expect(page.locator("#login-form")).to_be_visible()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base}/api/v1/auth/refresh", json={"refresh_token": refresh_token}
        ) as answer,
    ):
        assert answer.status == 401


async def _confirm(page: Page, reason: str, *, reference: str | None = None) -> None:
    """Fill the open action dialog and confirm; the dialog closes on success."""
    dialog = page.locator("#action-dialog")
    await expect(dialog).to_be_visible()
    if reference is None:
        await expect(page.locator("#action-reference")).to_be_hidden()
    else:
        await page.fill("#action-reference", reference)
    await page.fill("#action-reason", reason)
    await page.click("#action-submit")
    await expect(page.locator("#action-error")).to_be_hidden()
    await expect(dialog).to_be_hidden(timeout=WAIT_MS)


async def _resolve_succeeded(page: Page, base: str, debit: dict[str, Any]) -> None:
    """The debit whose answer was lost, made for this test: Qmoney's statement shows
    the money moved; mark it succeeded with Qmoney's reference. The policy settles."""
    block = page.locator("#attention-stuck_debits")
    row = block.locator(f'tr[data-uuid="{debit["uuid"]}"]')
    await expect(row).to_have_attribute("data-status", "unknown")
    count = int(await block.get_attribute("data-count"))
    await row.locator('button[data-action="resolve-succeeded"]').click()
    await expect(page.locator("#action-reference")).to_be_focused()
    await _confirm(page, "Qmoney statement shows the debit", reference="QM-STATEMENT-0001")
    await expect(page.locator("#flash")).to_have_text(
        f"Transaction {debit['uuid']} is now succeeded.", timeout=WAIT_MS
    )
    await expect(row).to_have_count(0, timeout=WAIT_MS)
    await expect(block).to_have_attribute("data-count", str(count - 1), timeout=WAIT_MS)

    transaction = await _api(base, "GET", f"/transactions/{debit['uuid']}")
    assert transaction["status"] == "succeeded"
    assert transaction["settlement"]["status"] == "settled"
    assert transaction["settlement"]["receipt"]
    assert transaction["settlement"]["policy_status"] == 2
    last = transaction["history"][-1]
    assert (last["from"], last["to"], last["actor"], last["reason"]) == (
        "unknown",
        "succeeded",
        "operator",
        "Qmoney statement shows the debit",
    )
    policy = await _api(base, "GET", f"/policies/{debit['policy_uuid']}")
    assert policy["status"] == 2


async def _expire(page: Page, base: str, debit: dict[str, Any]) -> None:
    """A debit still waiting for its OTP: the payer cannot receive texts; expire it.
    No money moved, so the policy stays idle."""
    block = page.locator("#attention-stuck_debits")
    row = block.locator(f'tr[data-uuid="{debit["uuid"]}"]')
    await expect(row).to_have_attribute("data-status", "otp_sent")
    await expect(row.locator("button[data-action]")).to_have_count(1)
    count = int(await block.get_attribute("data-count"))
    await row.locator('button[data-action="expire"]').click()
    await expect(page.locator("#action-subject")).to_contain_text("waiting for its OTP")
    await _confirm(page, "the payer cannot receive SMS")
    await expect(page.locator("#flash")).to_have_text(
        f"Transaction {debit['uuid']} is now expired.", timeout=WAIT_MS
    )
    await expect(row).to_have_count(0, timeout=WAIT_MS)
    await expect(block).to_have_attribute("data-count", str(count - 1), timeout=WAIT_MS)

    transaction = await _api(base, "GET", f"/transactions/{debit['uuid']}")
    assert transaction["status"] == "expired"
    assert transaction["settlement"] is None
    last = transaction["history"][-1]
    assert (last["from"], last["to"], last["actor"], last["reason"]) == (
        "otp_sent",
        "expired",
        "operator",
        "the payer cannot receive SMS",
    )
    policy = await _api(base, "GET", f"/policies/{debit['policy_uuid']}")
    assert policy["status"] == 1


async def _allocate(page: Page, base: str) -> None:
    """The 350.00 KES paid to 090909090: the insuree's office issues a 350.00 KES policy
    for it (admin API); the picker offers it, the only one that fits, and allocating the
    payment to it settles both."""
    block = page.locator("#attention-c2b_unmatched")
    row = block.locator('tr[data-bill-ref="090909090"]')
    await expect(row).to_contain_text("350.00")
    trans_id = await row.get_attribute("data-trans-id")
    count = int(await block.get_attribute("data-count"))
    policy = await _api(
        base,
        "POST",
        "/policies",
        {
            "chf_id": "090909090",
            "product_code": "BASIC-KES",
            "amount": "350.00",
            "start_date": date.today().isoformat(),
        },
        user="admin",
        expect_status=201,
    )
    assert (policy["amount"], policy["currency"], policy["status"]) == ("350.00", "KES", 1)
    await row.locator('button[data-action="allocate"]').click()
    picker = page.locator("#allocate-dialog")
    candidate = picker.locator(f'tr[data-policy-uuid="{policy["uuid"]}"]')
    await expect(candidate).to_have_attribute("data-fits", "true", timeout=WAIT_MS)
    await expect(candidate.locator('input[type="radio"]')).to_be_checked()  # the only fit
    await page.fill("#allocate-note", "payer paid the reduced premium")
    await page.click("#allocate-submit")
    await expect(picker).to_be_hidden(timeout=WAIT_MS)
    await expect(page.locator("#flash")).to_have_text(
        re.compile(rf"^Payment {trans_id} is now settled \(receipt \S+\)\.$"), timeout=WAIT_MS
    )
    await expect(block.locator(f'tr[data-trans-id="{trans_id}"]')).to_have_count(0, timeout=WAIT_MS)
    await expect(block).to_have_attribute("data-count", str(count - 1), timeout=WAIT_MS)
    await expect(block.locator('tr[data-bill-ref="070707070"]')).to_have_count(1)

    payment = await _api(base, "GET", f"/c2b/payments/{trans_id}")
    assert payment["status"] == "settled"
    assert payment["policy_uuid"] == policy["uuid"]
    assert payment["receipt"]
    assert any(
        item["by"] == "operator"
        and item["reason"] == "payer paid the reduced premium"
        and item["policy_uuid"] == policy["uuid"]
        for item in payment["allocation_history"]
    )
    assert (await _api(base, "GET", f"/policies/{policy['uuid']}"))["status"] == 2


async def _replay(page: Page, base: str) -> None:
    """The history's unreadable confirmation: replaying it reads the same body again, so
    it stays needs_review; the page says so, not as a success, and the entry records the
    replay."""
    block = page.locator("#review-items")
    row = block.locator('tr[data-kind="inbox_entry"][data-status="needs_review"]')
    await expect(row).to_have_count(1)
    entry_id = await row.get_attribute("data-id")
    before = next(
        item
        for item in (
            await _api(
                base, "GET", "/c2b/inbox", params={"status": "needs_review", "kind": "confirmation"}
            )
        )["items"]
        if item["id"] == entry_id
    )
    assert before["replays"] == []
    await row.locator('button[data-action="replay"]').click()
    await expect(page.locator("#action-subject")).to_contain_text(entry_id)
    await _confirm(page, "check whether the body is readable now")
    await expect(page.locator("#flash")).to_have_text(
        f"Inbox entry {entry_id} replayed: nothing changed: the entry is still needs_review",
        timeout=WAIT_MS,
    )
    await expect(page.locator("#flash")).to_have_attribute("data-tone", "neutral")
    await expect(block.locator(f'tr[data-id="{entry_id}"]')).to_have_attribute(
        "data-status", "needs_review"
    )

    entries = (
        await _api(
            base, "GET", "/c2b/inbox", params={"status": "needs_review", "kind": "confirmation"}
        )
    )["items"]
    entry = next(item for item in entries if item["id"] == entry_id)
    assert entry["attempts"] == before["attempts"] + 1
    assert entry["errors"]
    assert [(item["by"], item["reason"]) for item in entry["replays"]] == [
        ("operator", "check whether the body is readable now")
    ]
