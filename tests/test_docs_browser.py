"""/docs in a real browser (Debian's Chromium through Playwright) under its
Content-Security-Policy: Swagger UI renders the document and "Try it out" calls the
gateway, with no policy violation and nothing loaded from elsewhere."""

from __future__ import annotations

import pytest
from playwright.async_api import async_playwright, expect
from test_dashboard_browser import CHROMIUM_ARGS, chromium_path

WAIT_MS = 10_000


@pytest.mark.asyncio
async def test_swagger_ui_works_under_the_docs_content_security_policy(gateway) -> None:
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            requested: list[str] = []
            problems: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on(
                "console",
                lambda message: (
                    problems.append(message.text)
                    if "Content Security Policy" in message.text
                    else None
                ),
            )
            await page.goto(f"{gateway.url}/docs")
            health = page.locator("#operations-operations-get_healthz")
            await expect(health).to_be_visible(timeout=WAIT_MS)
            await health.locator(".opblock-summary").click()
            await health.locator(".try-out__btn").click()
            await health.locator(".execute").click()
            status = health.locator(".live-responses-table td.response-col_status")
            await expect(status.last).to_contain_text("200", timeout=WAIT_MS)
            assert problems == []
            outside = [
                url
                for url in requested
                if not url.startswith(gateway.url + "/") and not url.startswith("data:")
            ]
            assert outside == []
        finally:
            await browser.close()
