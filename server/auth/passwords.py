"""Password hashing with argon2id, off the event loop in a bounded pool of threads."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

# Verified against when the user does not exist, so both paths cost the same.
_DUMMY_HASH = _hasher.hash("no-such-user")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when password matches; constant work whether or not the user exists."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


# The nice value of the hashing threads (0 is normal, 19 the lowest). The lowest: argon2
# runs four lanes per check, and on busy cores the loop's thread (callbacks with a
# deadline) must run first.
HASHING_NICENESS = 19


def _yield_to_the_loop() -> None:
    """Lower this thread's CPU priority (and so that of the threads argon2 starts from it):
    the lowest nice value and Linux's idle scheduling class, so that whenever the cores
    are busy the event loop runs first; logins progress on the cores' spare time."""
    if sys.platform != "linux":  # only Linux sets a nice value per thread
        return
    thread = threading.get_native_id()
    if os.getpriority(os.PRIO_PROCESS, thread) < HASHING_NICENESS:  # never raise it
        os.setpriority(os.PRIO_PROCESS, thread, HASHING_NICENESS)
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


class PasswordHashing:
    """Hashes and verifies in its own threads (argon2 releases the GIL), so the event
    loop keeps serving while a password is checked, and logins never take the threads
    of the loop's default executor (which resolves host names)."""

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=threads,
            thread_name_prefix="password-hashing",
            initializer=_yield_to_the_loop,
        )

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._pool, hash_password, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, verify_password, password_hash, password
        )

    def close(self) -> None:
        """Drop checks still queued, wait for the running ones, end the threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)
