"""Settings sections every gateway has, and how a section marks a secret.

Each package that needs settings of its own defines its section beside its code
(`server.mpesa.settings`, `server.qmoney.settings`, ...); start-up
(`server.startup.config`) reads config.yaml and the environment into all of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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


@dataclass(frozen=True)
class StoreSettings:
    uri: str = "memory://"
    database: str = "gateway"


@dataclass(frozen=True)
class SecuritySettings:
    pin_key: str = secret()


@dataclass(frozen=True)
class RetentionSettings:
    audit_days: int = 90
    provider_calls_days: int = 30


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    format: str = "text"
