"""Typed settings: config.yaml defaults, overridden by environment variables.

Every setting `section.key` can be overridden by the variable
`GATEWAY_<SECTION>_<KEY>` (upper case), e.g. `GATEWAY_SERVER_PORT=9000`.
Lists are comma-separated. Secrets (fields marked `secret`) are read from the
environment only: config.yaml must not hold them. In sandbox mode the secrets
get fixed, clearly labelled sandbox values and the store is in memory.
Settings are loaded once and passed down; nothing reads them globally.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml
from cryptography.fernet import Fernet

from server.auth.settings import AuthSettings
from server.insurance.settings import InsuranceSettings, OpenimisSettings
from server.jobs.settings import JobsSettings
from server.kernel.settings import (
    LoggingSettings,
    RetentionSettings,
    SecuritySettings,
    ServerSettings,
    SettingError,
    StoreSettings,
)
from server.mpesa.settings import C2BSettings, DarajaSettings
from server.notifications.settings import NotificationSettings
from server.ops.settings import DashboardSettings
from server.psp_api.settings import PspApiSettings
from server.qmoney.settings import QmoneySettings
from server.reconciliation.settings import ReconciliationSettings

log = logging.getLogger("gateway.config")

ENV_PREFIX = "GATEWAY_"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "config.yaml"


class ConfigError(Exception):
    """Invalid configuration; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    sandbox: bool = False
    server: ServerSettings = field(default_factory=ServerSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    daraja: DarajaSettings = field(default_factory=DarajaSettings)
    c2b: C2BSettings = field(default_factory=C2BSettings)
    qmoney: QmoneySettings = field(default_factory=QmoneySettings)
    psp_api: PspApiSettings = field(default_factory=PspApiSettings)
    insurance: InsuranceSettings = field(default_factory=InsuranceSettings)
    openimis: OpenimisSettings = field(default_factory=OpenimisSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    jobs: JobsSettings = field(default_factory=JobsSettings)
    reconciliation: ReconciliationSettings = field(default_factory=ReconciliationSettings)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)


# Every section, in config.yaml's order: a section is one field of Settings.
SECTIONS = tuple(spec.name for spec in fields(Settings) if spec.name != "sandbox")

# Fixed, public values used only in sandbox mode. Never valid in production.
SANDBOX_SECRETS: dict[str, dict[str, str]] = {
    "auth": {"jwt_secret": "sandbox-only-jwt-secret-not-for-production"},
    "daraja": {
        "consumer_key": "sandbox-key",
        "consumer_secret": "sandbox-secret",
        # Daraja's published sandbox passkey (shortcodes 174379 and 600984 in the sandbox).
        "passkey": "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919",
        # The initiator password the bundled Daraja simulator accepts.
        "initiator_password": "Safaricom999!*!",
    },
    "c2b": {"callback_secret": "sandbox-callback"},
    "qmoney": {"channel_secret": "sandbox-channel-secret", "password": "sandbox-qmoney"},
    # The password of the API user the sandbox's openIMIS simulator is started with.
    "openimis": {"password": "sandbox-openimis"},
    # base64 of "sandbox-only-pin-key-not-secret!": a valid Fernet key, public on purpose.
    "security": {"pin_key": "c2FuZGJveC1vbmx5LXBpbi1rZXktbm90LXNlY3JldCE="},
    # The key the bundled SMS simulator accepts, and the delivery reports' path segment.
    "notifications": {
        "api_key": "sandbox-sms-key",
        "delivery_report_secret": "sandbox-sms-reports",
    },
}

# Non-secret values the sandbox fixes so it matches its bundled simulators.
SANDBOX_VALUES: dict[str, dict[str, str]] = {
    "qmoney": {"channel_id": "sandbox-channel", "username": "14001502"},
    "openimis": {"username": "gateway"},
    "daraja": {"initiator": "testapi"},
    "notifications": {"username": "sandbox", "sender_id": "NHIA"},
}


# The secrets that protect the gateway itself: required outside the sandbox, and never
# the public sandbox values there (with the sandbox JWT key anyone can sign a token).
GATEWAY_SECRETS = (("auth", "jwt_secret"), ("c2b", "callback_secret"), ("security", "pin_key"))

# A setting's single-setting error message starts with its name: "server.port: ...".
_SETTING_PREFIX = re.compile(r"([a-z0-9_]+\.[a-z0-9_]+): ")


def env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section}_{key}".upper()


def load_settings(
    path: Path | None = None, env: Mapping[str, str] | None = None, *, sandbox: bool = False
) -> Settings:
    """Read config.yaml, apply environment overrides, fill sandbox secrets, validate.
    An error names the setting and where its value came from (variable or file);
    a `GATEWAY_*` variable that is no setting is logged as a warning and ignored."""
    env = os.environ if env is None else env
    path = path or DEFAULT_CONFIG_PATH
    raw = _read_yaml(path)
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"config: unknown section {sorted(unknown)[0]!r} in {path}")
    sources: dict[str, str] = {}
    sections = {}
    for name in SECTIONS:
        cls = type(getattr(Settings(), name))
        sections[name] = _build_section(
            name, cls, raw.get(name) or {}, env, sandbox, str(path), sources
        )
    _warn_unknown_variables(env)
    settings = Settings(sandbox=sandbox, **sections)
    if sandbox:
        settings = replace(settings, store=replace(settings.store, uri="memory://"))
    try:
        validate(settings)
    except ConfigError as err:
        raise ConfigError(_with_source(str(err), sources)) from None
    return settings


def _warn_unknown_variables(env: Mapping[str, str]) -> None:
    """One warning per `GATEWAY_*` variable that sets nothing, with the closest setting."""
    known = {
        env_name(name, spec.name): f"{name}.{spec.name}"
        for name in SECTIONS
        for spec in fields(type(getattr(Settings(), name)))
    }
    by_suffix = {variable.removeprefix(ENV_PREFIX): variable for variable in known}
    for variable in sorted(env):
        upper = variable.upper()
        if variable in known or not upper.startswith(ENV_PREFIX):
            continue
        closest = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), by_suffix, n=1)
        hint = ""
        if closest:
            hint = f" did_you_mean={by_suffix[closest[0]]} setting={known[by_suffix[closest[0]]]}"
        log.warning("unknown_setting_variable variable=%s ignored=yes%s", variable, hint)


def _with_source(message: str, sources: Mapping[str, str]) -> str:
    """The message, plus where the value of the one setting it names came from."""
    named = _SETTING_PREFIX.match(message)
    if named is None or named.group(1) not in sources or sources[named.group(1)] in message:
        return message
    return f"{message} (from {sources[named.group(1)]})"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config: {path} is not valid YAML ({err.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a mapping of sections")
    return data


def _build_section(
    name: str,
    cls: type,
    values: Mapping[str, Any],
    env: Mapping[str, str],
    sandbox: bool,
    path: str,
    sources: dict[str, str],
) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{name}: must be a mapping (in {path})")
    known = {f.name: f for f in fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown setting (in {path})")
    kwargs: dict[str, Any] = {}
    for key, spec in known.items():
        setting = f"{name}.{key}"
        is_secret = spec.metadata.get("secret", False)
        if is_secret and key in values and values[key] not in ("", None):
            raise ConfigError(
                f"{setting}: secrets come from the environment "
                f"({env_name(name, key)}), not from config.yaml"
            )
        if env_name(name, key) in env:
            value: Any = env[env_name(name, key)]
            sources[setting] = env_name(name, key)
        elif is_secret and sandbox:
            value = SANDBOX_SECRETS[name][key]
        elif sandbox and key in SANDBOX_VALUES.get(name, {}):
            value = SANDBOX_VALUES[name][key]
        elif key in values:
            value = values[key]
            sources[setting] = path
        else:
            continue
        try:
            kwargs[key] = _coerce(setting, spec.type, value)
        except ConfigError as err:
            raise ConfigError(_with_source(str(err), sources)) from None
    return cls(**kwargs)


def _coerce(setting: str, type_name: Any, value: Any) -> Any:
    kind = str(type_name)
    try:
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)  # only durations in seconds are floats; never money
        if kind == "bool":
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind.startswith("tuple"):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(item).strip() for item in items if str(item).strip())
        if isinstance(value, (dict, list)):
            raise ValueError
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{setting}: expected {kind}, got {value!r}") from None


def validate(settings: Settings) -> None:
    """Check every setting that can be checked before start-up: each section's own
    rules (its `check()`), then the rules across sections."""
    for name in SECTIONS:
        check = getattr(getattr(settings, name), "check", None)
        if check is not None:
            try:
                check()
            except SettingError as err:
                raise ConfigError(f"{name}.{err}") from None
    _check_pin_key(settings.security.pin_key)
    if not settings.sandbox:
        _check_gateway_secrets(settings)
        _check_delivery_report_secret(settings)
        if len(settings.auth.jwt_secret) < 32:
            raise ConfigError("auth.jwt_secret: must be at least 32 characters")


def _check_gateway_secrets(settings: Settings) -> None:
    """Outside the sandbox: every gateway secret set, none of them the sandbox's."""
    values = {
        (section, key): getattr(getattr(settings, section), key) for section, key in GATEWAY_SECRETS
    }
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ConfigError(_naming(missing, "missing; set"))
    public = [name for name, value in values.items() if value == SANDBOX_SECRETS[name[0]][name[1]]]
    if public:
        raise ConfigError(
            _naming(public, "public sandbox secret, refused outside the sandbox; set your own in")
        )


def _check_delivery_report_secret(settings: Settings) -> None:
    """The SMS delivery reports' path segment is optional, but never the sandbox's."""
    public = SANDBOX_SECRETS["notifications"]["delivery_report_secret"]
    if settings.notifications.delivery_report_secret == public:
        raise ConfigError(
            _naming(
                [("notifications", "delivery_report_secret")],
                "public sandbox secret, refused outside the sandbox; set your own in",
            )
        )


def _naming(names: list[tuple[str, str]], problem: str) -> str:
    """`a.b, c.d: <problem> GATEWAY_A_B and GATEWAY_C_D`."""
    variables = [env_name(section, key) for section, key in names]
    listed = (
        variables[0] if len(variables) == 1 else f"{', '.join(variables[:-1])} and {variables[-1]}"
    )
    return f"{', '.join(f'{section}.{key}' for section, key in names)}: {problem} {listed}"


def _check_pin_key(value: str) -> None:
    if not value:
        return
    try:
        Fernet(value.encode())
    except (ValueError, TypeError):
        raise ConfigError(
            "security.pin_key: not a Fernet key (32 url-safe base64 bytes); "
            "make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from None
