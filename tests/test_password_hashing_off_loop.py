"""Passwords are checked in a bounded pool of threads of their own, at a lower CPU
priority: the event loop and its default executor stay free while logins wait for
argon2."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Literal

import aiohttp
import pytest
from argon2 import PasswordHasher

from server.auth import passwords
from server.startup.runtime import Gateway, start_gateway

from support import make_settings


class HeldChecks:
    """A password check that waits until released, noting its thread and how many run;
    `started` is set (on the loop) once `expected` checks run at the same time."""

    def __init__(self, expected: int = 1) -> None:
        self.release = threading.Event()
        self.started = asyncio.Event()
        self.expected = expected
        self.loop = asyncio.get_running_loop()
        self.threads: set[threading.Thread] = set()
        self.niceness: set[int] = set()
        self.policies: set[int] = set()
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def verify(self, password_hash: str | None, password: str) -> bool:
        with self._lock:
            self.threads.add(threading.current_thread())
            self.niceness.add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            self.policies.add(os.sched_getscheduler(0))
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            if self.running == self.expected:
                self.loop.call_soon_threadsafe(self.started.set)
        try:
            self.release.wait(2)
            return False
        finally:
            with self._lock:
                self.running -= 1


async def log_in(http: aiohttp.ClientSession, gateway: Gateway, username: str) -> int:
    async with http.post(
        f"{gateway.url}/api/v1/auth/token",
        json={"username": username, "password": "wrong-password"},
    ) as answer:
        return answer.status


@pytest.mark.asyncio
async def test_password_checks_run_off_the_loop_in_a_pool_of_their_own(
    http, start_gateway_with, monkeypatch
) -> None:
    gateway = await start_gateway_with(make_settings(auth={"password_hash_threads": 2}))
    held = HeldChecks(expected=2)
    monkeypatch.setattr(passwords, "verify_password", held.verify)
    logins = [asyncio.ensure_future(log_in(http, gateway, f"user-{number}")) for number in range(8)]
    async with asyncio.timeout(30):
        await held.started.wait()
        async with http.get(f"{gateway.url}/healthz") as answer:
            assert answer.status == 200
        free = await asyncio.get_running_loop().run_in_executor(None, str, "default executor")
        assert free == "default executor"
        assert not any(login.done() for login in logins)  # all still waiting for argon2
        held.release.set()
        assert await asyncio.gather(*logins) == [401] * 8
    assert held.most_at_once == 2
    assert threading.main_thread() not in held.threads
    assert {thread.name.split("_")[0] for thread in held.threads} == {"password-hashing"}
    assert min(held.niceness) >= passwords.HASHING_NICENESS  # the loop's thread runs first
    assert held.policies == {os.SCHED_IDLE}  # and so does everything else


@pytest.mark.asyncio
async def test_stopping_the_gateway_ends_the_password_hashing_threads(
    http, store, monkeypatch
) -> None:
    gateway = await start_gateway(make_settings(), store=store, port=0)
    held = HeldChecks()
    held.release.set()
    monkeypatch.setattr(passwords, "verify_password", held.verify)
    assert await log_in(http, gateway, "olga") == 401
    assert held.threads and all(thread.is_alive() for thread in held.threads)
    await gateway.stop()
    assert not any(thread.is_alive() for thread in held.threads)


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__()
        self.verified: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verified.append(str(hash))
        return super().verify(hash, password)


@pytest.mark.asyncio
async def test_an_unknown_user_costs_a_full_password_check(http, gateway, monkeypatch) -> None:
    hasher = CountingHasher()
    monkeypatch.setattr(passwords, "_hasher", hasher)
    assert await log_in(http, gateway, "nobody") == 401
    assert hasher.verified == [passwords._DUMMY_HASH]
