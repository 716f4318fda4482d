"""Out of file descriptors, the gateway stops accepting for a moment and logs it once
per pause (it does not spin on accept() writing a traceback each time), and answers
again once the idle timeout has closed the connections that took them.

The real `serve` command runs in a process limited to few descriptors
(RLIMIT_NOFILE); this test opens more idle connections than it has."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from support import TEST_ENV, wait_until

ROOT = Path(__file__).resolve().parent.parent
DESCRIPTORS = 64  # the gateway process's limit
CONNECTIONS = 100  # idle ones, more than it can hold; fewer than the backlog
GUARD = 60  # seconds the whole exercise may take at most


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def few_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, DESCRIPTORS))


async def answers(url: str) -> bool:
    timeout = aiohttp.ClientTimeout(total=2)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as answer:
            return answer.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


@pytest.mark.asyncio
async def test_out_of_descriptors_the_gateway_backs_off_logs_once_a_pause_and_recovers() -> None:
    port = free_port()
    env = {
        **os.environ,
        **TEST_ENV,
        "GATEWAY_SERVER_PORT": str(port),
        "GATEWAY_SERVER_IDLE_TIMEOUT_SECONDS": "1",
        "GATEWAY_LOGGING_FORMAT": "text",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "run.py",
        "serve",
        cwd=ROOT,
        env=env,
        preexec_fn=few_descriptors,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    log: list[str] = []
    paused = asyncio.Event()

    async def read_log() -> None:
        while line := await process.stderr.readline():
            log.append(line.decode(errors="replace"))
            if "accept_paused" in log[-1]:
                paused.set()

    reading = asyncio.create_task(read_log())
    idle = []
    try:
        line = await asyncio.wait_for(process.stdout.readline(), GUARD)
        assert b"gateway listening" in line, "".join(log)
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(CONNECTIONS)]
        async with asyncio.timeout(GUARD):
            await paused.wait()
        await wait_until(
            lambda: answers(f"http://127.0.0.1:{port}/healthz"),
            "the gateway to answer again after pausing",
            within=GUARD,
            every=0.2,
        )
    finally:
        for _, writer in idle:
            writer.close()
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), GUARD)
        await reading
    pauses = [entry for entry in log if "accept_paused" in entry]
    assert "reason=EMFILE" in pauses[0]
    assert "Traceback" not in "".join(log) and "Too many open files" not in "".join(log)
    assert len(log) < 100, f"{len(log)} log lines"
