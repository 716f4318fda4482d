"""Every command we print or document that posts JSON says so (`Content-Type:
application/json`; curl's `-d` alone sends a form type), and so do our own clients."""

import re

import pytest
from aiohttp import web

from server.sandbox.environment import (
    NothingPaid,
    allocation_walkthrough,
    c2b_walkthrough,
    provider_walkthrough,
    qmoney_walkthrough,
    sandbox_settings,
    simulate_paybill_payment,
    start_sandbox,
    stk_walkthrough,
)

from support import ROOT

JSON_TYPE = '-H "Content-Type: application/json"'


def posting_commands(shell: str) -> list[str]:
    """The curl commands of a shell text that send a body, continuation lines joined."""
    joined = shell.replace("\\\n", " ")
    commands = [part for line in joined.splitlines() for part in line.split("&&")]
    return [command for command in commands if "curl" in command and " -d " in command]


@pytest.mark.asyncio
async def test_every_printed_walkthrough_post_sends_the_json_type() -> None:
    sandbox = await start_sandbox("127.0.0.1", 0)
    try:
        walkthroughs = [
            c2b_walkthrough(sandbox.settings),
            qmoney_walkthrough(sandbox.settings, sandbox.demo),
            provider_walkthrough(sandbox.settings, sandbox.demo),
            allocation_walkthrough(sandbox.settings, sandbox.allocatable),
            stk_walkthrough(sandbox.settings, sandbox.demo.stk_policy),
            stk_walkthrough(sandbox.settings, sandbox.demo.stk_cancel_policy, "254700000201"),
        ]
    finally:
        await sandbox.stop()
    posts = [command for text in walkthroughs for command in posting_commands(text)]
    # 6 logins, simulate, debit, OTP, payment, allocation, 2 prompts
    assert len(posts) == 13
    for command in posts:
        assert JSON_TYPE in command, command


def test_every_readme_command_that_posts_sends_the_json_type() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL)
    posts = [command for block in blocks for command in posting_commands(block)]
    assert any("/api/v1/auth/token" in command for command in posts)
    for command in posts:
        assert JSON_TYPE in command, command


@pytest.mark.asyncio
async def test_simulate_payment_signs_in_with_the_json_type(unused_tcp_port: int) -> None:
    received: list[str] = []

    async def token(request: web.Request) -> web.Response:
        received.append(request.headers.get("Content-Type", ""))
        return web.json_response(
            {
                "error": {
                    "code": "invalid_credentials",
                    "message": "invalid username or password",
                    "details": {},
                }
            },
            status=401,
        )

    app = web.Application()
    app.router.add_post("/api/v1/auth/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        with pytest.raises(NothingPaid, match="answered 401 .invalid_credentials"):
            await simulate_paybill_payment(
                sandbox_settings("127.0.0.1", unused_tcp_port),
                "040404040",
                "1500.00",
                "254708374149",
                "operator",
                "wrong",
            )
    finally:
        await runner.cleanup()
    assert received == ["application/json"]
