"""`-v` turns on INFO logs wherever it is given: before the command or after it."""

import pytest

from support import TEST_ENV, run_py


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "argv", [("-v", "register-urls"), ("register-urls", "-v"), ("--verbose", "register-urls")]
)
async def test_verbose_before_or_after_the_command_logs_at_info(argv: tuple, daraja_sim) -> None:
    code, out, err = await run_py(
        *argv, env={**TEST_ENV, "GATEWAY_DARAJA_BASE_URL": daraja_sim.base_url}
    )
    assert code == 0, err
    assert out.startswith("registered shortcode 600984")
    assert " INFO gateway.daraja daraja_token_issued" in err


@pytest.mark.asyncio
async def test_without_verbose_there_are_no_info_logs(daraja_sim) -> None:
    code, _, err = await run_py(
        "register-urls", env={**TEST_ENV, "GATEWAY_DARAJA_BASE_URL": daraja_sim.base_url}
    )
    assert code == 0, err
    assert " INFO " not in err


@pytest.mark.asyncio
async def test_the_help_shows_the_verbose_option() -> None:
    code, out, _ = await run_py("--help", env={})
    assert code == 0
    assert "usage: python run.py [-h] [-v] COMMAND" in out
    assert "log at INFO level (before or after the command)" in out
