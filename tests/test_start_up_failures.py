"""A command that cannot start says why in one line and exits non-zero: a port already
taken, a MongoDB out of reach, the in-memory store where a persistent one is needed."""

import asyncio
import os
import signal
import sys

import pytest

from support import ROOT, TEST_ENV, free_port_triple, occupied_port, run_py

# Nothing listens on port 1; the URI's own timeout keeps the wait short.
UNREACHABLE = "mongodb://gw-user:hunter2-secret@127.0.0.1:1/?serverSelectionTimeoutMS=200"
UNREACHABLE_LINE = "cannot reach MongoDB at mongodb://127.0.0.1:1 (127.0.0.1:1: "


@pytest.mark.asyncio
async def test_serve_on_a_port_in_use_says_so_in_one_line() -> None:
    with occupied_port() as holder:
        port = holder.getsockname()[1]
        code, _, err = await run_py("serve", env={**TEST_ENV, "GATEWAY_SERVER_PORT": str(port)})
    assert code == 1
    assert err.strip().splitlines() == [
        f"cannot listen on 127.0.0.1:{port}: address already in use"
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("offset", "what"),
    [(0, "the gateway"), (1, "the Daraja simulator"), (2, "the Qmoney simulator")],
)
async def test_sandbox_on_a_port_in_use_names_the_part_and_the_port(offset: int, what: str) -> None:
    port = free_port_triple()
    with occupied_port(port + offset):
        code, out, err = await run_py("--port", str(port), env={})
    assert code == 1
    assert err.strip().splitlines() == [
        f"cannot listen on 127.0.0.1:{port + offset} for {what}: address already in use"
    ]
    assert "Sandbox is running" not in out


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "command",
    [
        ("serve",),
        ("create-user", "alice", "--role", "operator", "--password-stdin"),
        ("create-psp", "Bank", "--kind", "external", "--account", "B-1", "--currency", "GMD"),
        ("replay-inbox",),
    ],
)
async def test_an_unreachable_mongodb_is_one_line_without_credentials(command: tuple) -> None:
    env = {**TEST_ENV, "GATEWAY_STORE_URI": UNREACHABLE}
    code, out, err = await run_py(*command, env=env, stdin="alice-password\n")
    assert code == 1
    [line] = err.strip().splitlines()
    assert line.startswith(UNREACHABLE_LINE), line
    assert "hunter2" not in out + err and "gw-user" not in out + err


@pytest.mark.asyncio
async def test_replay_inbox_refuses_the_in_memory_store() -> None:
    code, _, err = await run_py("replay-inbox", env=TEST_ENV)
    assert code == 2
    assert err.strip().splitlines() == [
        "configuration error: store.uri: replay-inbox needs a persistent MongoDB store "
        "(set GATEWAY_STORE_URI)"
    ]


@pytest.mark.asyncio
async def test_serve_on_the_in_memory_store_warns_that_nothing_survives_a_restart() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "run.py",
        "serve",
        cwd=ROOT,
        env={**os.environ, **TEST_ENV},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        listening = await asyncio.wait_for(process.stdout.readline(), 30)
        assert b"gateway listening" in listening
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert (
        "warning: store.uri is memory://, the in-memory store: nothing will survive a "
        "restart (set GATEWAY_STORE_URI to a MongoDB URI)"
    ) in err.decode().splitlines()
