"""A configuration problem is named in full the first time: every missing secret, the
variable or file a bad value came from, a misspelt variable, limits that cross."""

import logging
from pathlib import Path

import pytest

from server.startup.config import ConfigError, load_settings

from support import TEST_ENV

SECRETS = ("GATEWAY_AUTH_JWT_SECRET", "GATEWAY_C2B_CALLBACK_SECRET", "GATEWAY_SECURITY_PIN_KEY")


def test_every_missing_secret_is_named_at_once() -> None:
    env = {key: value for key, value in TEST_ENV.items() if key not in SECRETS}
    with pytest.raises(ConfigError) as missing:
        load_settings(env=env)
    assert str(missing.value) == (
        "auth.jwt_secret, c2b.callback_secret, security.pin_key: missing; set "
        "GATEWAY_AUTH_JWT_SECRET, GATEWAY_C2B_CALLBACK_SECRET and GATEWAY_SECURITY_PIN_KEY"
    )


def test_a_type_error_names_the_setting_and_the_variable() -> None:
    with pytest.raises(ConfigError) as wrong:
        load_settings(env={**TEST_ENV, "GATEWAY_SERVER_PORT": "abc"})
    assert str(wrong.value) == "server.port: expected int, got 'abc' (from GATEWAY_SERVER_PORT)"


def test_a_type_error_from_the_config_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("server:\n  idle_timeout_seconds: soon\n")
    env = {key: value for key, value in TEST_ENV.items() if key != "GATEWAY_SERVER_PORT"}
    with pytest.raises(ConfigError) as wrong:
        load_settings(path, env)
    assert str(wrong.value) == (
        f"server.idle_timeout_seconds: expected float, got 'soon' (from {path})"
    )


def test_a_range_error_names_the_variable_too() -> None:
    with pytest.raises(
        ConfigError,
        match=r"server.port: 99999 is not a TCP port \(0-65535\) "
        r"\(from GATEWAY_SERVER_PORT\)",
    ):
        load_settings(env={**TEST_ENV, "GATEWAY_SERVER_PORT": "99999"})


def test_a_minimum_amount_above_the_maximum_is_refused() -> None:
    with pytest.raises(
        ConfigError,
        match="c2b.validation_min_amount: 300 is above "
        r"c2b.validation_max_amount \(200\)",
    ):
        load_settings(
            env={
                **TEST_ENV,
                "GATEWAY_C2B_VALIDATION_MIN_AMOUNT": "300",
                "GATEWAY_C2B_VALIDATION_MAX_AMOUNT": "200",
            }
        )


def test_equal_minimum_and_maximum_amounts_are_accepted() -> None:
    settings = load_settings(
        env={
            **TEST_ENV,
            "GATEWAY_C2B_VALIDATION_MIN_AMOUNT": "200",
            "GATEWAY_C2B_VALIDATION_MAX_AMOUNT": "200.00",
        }
    )
    assert settings.c2b.validation_min_amount == "200"


def test_a_misspelt_variable_is_warned_about_with_the_closest_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "gateway.config")
    settings = load_settings(
        env={**TEST_ENV, "GATEWAY_SERVER_PROT": "9000", "GATEWAY_NOTHING_LIKE_IT": "1"}
    )
    assert settings.server.port == 0  # the misspelt one changed nothing
    warnings = [
        record.getMessage() for record in caplog.records if record.levelno == logging.WARNING
    ]
    assert warnings == [
        "unknown_setting_variable variable=GATEWAY_NOTHING_LIKE_IT ignored=yes",
        "unknown_setting_variable variable=GATEWAY_SERVER_PROT ignored=yes "
        "did_you_mean=GATEWAY_SERVER_PORT setting=server.port",
    ]


def test_known_variables_and_other_names_are_not_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "gateway.config")
    load_settings(env={**TEST_ENV, "HOME": "/root", "MY_GATEWAY_PORT": "1"})
    assert not caplog.records
