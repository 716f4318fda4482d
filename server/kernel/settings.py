"""Settings sections every gateway has, and how a section marks a secret.

Each package that needs settings of its own defines its section beside its code
(`server.mpesa.settings`, `server.qmoney.settings`, ...); start-up
(`server.startup.config`) reads config.yaml and the environment into all of them."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit


class SettingError(ValueError):
    """A value a section refuses; the message starts with its key: `port: ...`. A
    section with rules of its own checks them in a `check()` method, which start-up
    calls, naming the section."""


def require_url(key: str, value: str, schemes: tuple[str, ...] = ("http", "https")) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise SettingError(f"{key}: {value!r} is not a valid {'/'.join(schemes)} URL")


def require_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SettingError(f"{key}: {value!r} is not one of {', '.join(choices)}")


def require_positive(section: Any, keys: Iterable[str]) -> None:
    for key in keys:
        if getattr(section, key) <= 0:
            raise SettingError(f"{key}: must be positive")


def increasing_schedule(
    key: str, values: Sequence[str], unit: str, example: str
) -> tuple[timedelta, ...]:
    """A schedule setting (e.g. "30,120,300" seconds): at least one whole number of
    `unit` ("seconds", "minutes"), positive and increasing."""
    try:
        numbers = [int(item) for item in values]
    except ValueError:
        raise SettingError(f"{key}: {tuple(values)!r} are not whole {unit}") from None
    if not numbers or numbers[0] <= 0 or any(b <= a for a, b in pairwise(numbers)):
        raise SettingError(f"{key}: give at least one, positive and increasing, e.g. {example}")
    return tuple(timedelta(**{unit: number}) for number in numbers)


def require_networks(key: str, entries: Iterable[str]) -> None:
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise SettingError(f"{key}: {entry!r} is not an IP address or network") from None


def secret() -> Any:
    """A field read from the environment only, never printed (repr) or written in config.yaml."""
    return field(default="", metadata={"secret": True}, repr=False)


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    max_body_bytes: int = 65536
    trusted_proxies: tuple[str, ...] = ()
    idle_timeout_seconds: float = 60.0
    body_timeout_seconds: float = 30.0
    internal_port: int = 0

    def check(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingError(f"port: {self.port} is not a TCP port (0-65535)")
        if self.max_body_bytes < 1024:
            raise SettingError("max_body_bytes: must be at least 1024")
        require_url("public_url", self.public_url)
        require_positive(self, ("idle_timeout_seconds", "body_timeout_seconds"))
        if not 0 <= self.internal_port <= 65535:
            raise SettingError(f"internal_port: {self.internal_port} is not a TCP port (0 = off)")
        if self.internal_port and self.internal_port == self.port:
            raise SettingError("internal_port: must differ from server.port")
        require_networks("trusted_proxies", self.trusted_proxies)


@dataclass(frozen=True)
class StoreSettings:
    uri: str = "memory://"
    database: str = "gateway"
    majority_writes: bool = True  # on a replica set: money written and read at majority

    def check(self) -> None:
        if not (self.uri == "memory://" or self.uri.startswith(("mongodb://", "mongodb+srv://"))):
            raise SettingError(
                f"uri: {self.uri!r} must start with mongodb://, mongodb+srv:// or be memory://"
            )
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,60}", self.database):
            raise SettingError(f"database: {self.database!r} is not a valid database name")


@dataclass(frozen=True)
class SecuritySettings:
    pin_key: str = secret()


@dataclass(frozen=True)
class RetentionSettings:
    audit_days: int = 90
    provider_calls_days: int = 30
    job_runs_days: int = 7

    def check(self) -> None:
        for key in ("audit_days", "provider_calls_days", "job_runs_days"):
            if getattr(self, key) < 1:
                raise SettingError(f"{key}: must be at least 1 day")


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    format: str = "text"

    def check(self) -> None:
        require_choice("level", self.level, ("DEBUG", "INFO", "WARNING", "ERROR"))
        require_choice("format", self.format, ("text", "json"))
