from pathlib import Path

import pytest

from server.startup.cli import main
from server.startup.config import ConfigError, load_settings

SECRETS = {
    "GATEWAY_AUTH_JWT_SECRET": "x" * 40,
    "GATEWAY_C2B_CALLBACK_SECRET": "callback-path",
    "GATEWAY_SECURITY_PIN_KEY": "dGVzdC1vbmx5LXBpbi1rZXktMzItYnl0ZXMtbG9uZyE=",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_environment_overrides_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 9000\nc2b:\n  ip_allowlist: [10.0.0.1]\n")
    settings = load_settings(
        path,
        {
            **SECRETS,
            "GATEWAY_SERVER_PORT": "9100",
            "GATEWAY_C2B_IP_ALLOWLIST": "196.201.214.200, 10.1.0.0/16",
        },
    )
    assert settings.server.port == 9100
    assert settings.c2b.ip_allowlist == ("196.201.214.200", "10.1.0.0/16")


def test_the_shipped_config_file_loads_with_secrets_from_the_environment() -> None:
    settings = load_settings(env=SECRETS)
    assert settings.auth.jwt_secret == "x" * 40
    assert settings.daraja.response_type == "Completed"


def test_secret_in_config_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "auth:\n  jwt_secret: hunter2hunter2hunter2hunter2hunter2\n")
    with pytest.raises(ConfigError, match="auth.jwt_secret: secrets come from the environment"):
        load_settings(path, SECRETS)


def test_missing_secret_outside_sandbox_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="GATEWAY_C2B_CALLBACK_SECRET"):
        load_settings(env={"GATEWAY_AUTH_JWT_SECRET": "x" * 40})


def test_sandbox_uses_labelled_secrets_and_the_memory_store() -> None:
    settings = load_settings(env={"GATEWAY_STORE_URI": "mongodb://db.example.org"}, sandbox=True)
    assert settings.c2b.callback_secret == "sandbox-callback"
    assert settings.daraja.consumer_key == "sandbox-key"
    assert settings.auth.jwt_secret.startswith("sandbox-only")
    assert settings.store.uri == "memory://"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GATEWAY_SERVER_PORT", "70000", "server.port"),
        ("GATEWAY_SERVER_PORT", "eighty", "server.port: expected int"),
        ("GATEWAY_SERVER_PUBLIC_URL", "not a url", "server.public_url"),
        ("GATEWAY_STORE_URI", "postgres://x", "store.uri"),
        ("GATEWAY_DARAJA_RESPONSE_TYPE", "completed", "daraja.response_type"),
        ("GATEWAY_C2B_VALIDATION_MAX_AMOUNT", "1.234", "c2b.validation_max_amount"),
        ("GATEWAY_C2B_CALLBACK_SECRET", "my-mpesa-path", "c2b.callback_secret"),
        ("GATEWAY_C2B_IP_ALLOWLIST", "somewhere", "c2b.ip_allowlist"),
        ("GATEWAY_AUTH_JWT_SECRET", "short", "auth.jwt_secret"),
        ("GATEWAY_SECURITY_PIN_KEY", "not-a-key", "security.pin_key: not a Fernet key"),
        ("GATEWAY_SECURITY_PIN_KEY", "", "security.pin_key: missing"),
        ("GATEWAY_QMONEY_MAX_OTP_ATTEMPTS", "0", "qmoney.max_otp_attempts"),
    ],
)
def test_invalid_setting_is_named(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env={**SECRETS, variable: value})


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="server.prot: unknown setting"):
        load_settings(write(tmp_path, "server:\n  prot: 1\n"), SECRETS)


def test_invalid_configuration_stops_start_up_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_AUTH_JWT_SECRET", "x" * 40)
    monkeypatch.setenv("GATEWAY_C2B_CALLBACK_SECRET", "callback-path")
    monkeypatch.setenv("GATEWAY_SECURITY_PIN_KEY", SECRETS["GATEWAY_SECURITY_PIN_KEY"])
    monkeypatch.setenv("GATEWAY_SERVER_PORT", "99999")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "configuration error: server.port: 99999 is not a TCP port (0-65535) "
        "(from GATEWAY_SERVER_PORT)"
    ]
