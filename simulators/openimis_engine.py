"""The openIMIS simulator's behaviour behind its GraphQL schema: settings, logins,
CSRF, and mutations that run at once or, like openIMIS on its task queue, later.

A mutation is answered as soon as it is logged; its outcome is only in the mutation
log. With ``async_mutations_seconds`` > 0 the log reads 0 (received) until that many
seconds have passed; the mutation runs at the first request after that (every
request settles what is due first), so whoever looks sees it done.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simulators.common import JsonObject
from simulators.openimis_auth import Sessions, Tokens
from simulators.openimis_state import ACTIVATIONS, MutationLog, OpenimisData, new_uuid

INCORRECT_CREDENTIALS = "INCORRECT_CREDENTIALS"


@dataclass
class OpenimisSimSettings:
    """How the simulated openIMIS behaves; csrf, activation, async_mutations_seconds and
    token_seconds can change at run time (``POST /_sim/config``)."""

    users: dict[str, str] = field(default_factory=lambda: {"Admin": "admin123"})
    token_seconds: float = 86400.0  # lifetime of a login token
    csrf: bool = True  # openIMIS outside its dev mode checks a CSRF token held in the session
    activation: str = "active"  # a paid policy becomes 2 active, or 16 "ready"
    async_mutations_seconds: float = 0.0  # 0: mutations are done when their call returns
    session_cookie: str = "sessionid"  # the session cookie's name


class LoginRefused(Exception):
    """A tokenAuth openIMIS refuses; the message is openIMIS's."""


# --------------------------------------------------------------------------- run-time config


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"csrf must be true or false, not {value!r}")
    return value


def _activation(value: object) -> str:
    if value not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, not {value!r}")
    return str(value)


def _seconds(name: str, *, positive: bool) -> Callable[[object], float]:
    def parse(value: object) -> float:
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is None or not 0 <= number < math.inf or (positive and number == 0):
            kind = "a positive" if positive else "a non-negative"
            raise ValueError(f"{name} must be {kind} number of seconds, not {value!r}")
        return float(number)

    return parse


CONFIG_PARSERS: Mapping[str, Callable[[object], Any]] = {
    "csrf": _bool,
    "activation": _activation,
    "async_mutations_seconds": _seconds("async_mutations_seconds", positive=False),
    "token_seconds": _seconds("token_seconds", positive=True),
}


@dataclass
class _Pending:
    """A logged mutation waiting for its turn."""

    log: MutationLog
    due: float  # monotonic
    data: JsonObject
    user: str | None
    fault_message: str | None


class OpenimisEngine:
    """One simulated openIMIS: its records, logins, sessions and run-time config."""

    def __init__(self, settings: OpenimisSimSettings) -> None:
        if not settings.users:
            raise ValueError("at least one user is needed")
        # Validated once; reset() restores these.
        self._initial_config = {
            name: parse(getattr(settings, name)) for name, parse in CONFIG_PARSERS.items()
        }
        self.settings = settings
        self.tokens = Tokens()
        self.sessions = Sessions()
        self.reset()

    def reset(self) -> None:
        """Back to the settings, with no records; earlier tokens and sessions stop working."""
        self.config: dict[str, Any] = dict(self._initial_config)
        self.data = OpenimisData()
        self.tokens.rotate()
        self.sessions.clear()
        self._pending: list[_Pending] = []

    def configure(self, changes: JsonObject) -> JsonObject:
        """Apply run-time config changes; nothing changes if one is bad (ValueError)."""
        if unknown := sorted(set(changes) - set(CONFIG_PARSERS)):
            raise ValueError(f"unknown settings {unknown}; known: {sorted(CONFIG_PARSERS)}")
        parsed = {name: CONFIG_PARSERS[name](value) for name, value in changes.items()}
        self.config.update(parsed)
        return dict(self.config)

    # ---- logins and CSRF

    def login(self, username: str, password: str) -> JsonObject:
        if not username or not password:
            raise LoginRefused("Missing username or password")
        expected = self.settings.users.get(username)
        if expected is None or expected != password:
            raise LoginRefused(INCORRECT_CREDENTIALS)
        return self.tokens.issue(username, self.config["token_seconds"])

    def csrf_problem(self, session_id: str | None, header: str | None) -> str | None:
        """Why the CSRF check fails, or None (always None with CSRF off: openIMIS's dev mode)."""
        if not self.config["csrf"]:
            return None
        return self.sessions.csrf_problem(session_id, header)

    # ---- mutations

    def submit_premium(
        self, data: JsonObject, user: str | None, fault_message: str | None
    ) -> MutationLog:
        """Log a createPremium and run it now or when due; fault_message makes it fail."""
        log = MutationLog(
            new_uuid(), data.get("client_mutation_id"), data.get("client_mutation_label"), user
        )
        self.data.mutation_logs.append(log)
        due = time.monotonic() + self.config["async_mutations_seconds"]
        self._pending.append(_Pending(log, due, data, user, fault_message))
        if self.config["async_mutations_seconds"] == 0:
            self.settle()
        return log

    def settle(self) -> None:
        """Run the mutations that are due, in the order they were received."""
        now = time.monotonic()
        due = [pending for pending in self._pending if pending.due <= now]
        self._pending = [pending for pending in self._pending if pending.due > now]
        for pending in due:
            if pending.fault_message is not None:
                pending.log.finish([{"message": pending.fault_message}])
                continue
            log, activation = pending.log, self.config["activation"]
            cmid = log.client_mutation_id
            log.finish(self.data.create_premium(pending.data, pending.user, activation, cmid))
