"""The published sandbox secrets never protect a production gateway."""

import pytest

from server.startup.config import SANDBOX_SECRETS, ConfigError, load_settings

from support import TEST_ENV, run_py

SANDBOX_VALUES = {
    "GATEWAY_AUTH_JWT_SECRET": ("auth.jwt_secret", SANDBOX_SECRETS["auth"]["jwt_secret"]),
    "GATEWAY_C2B_CALLBACK_SECRET": (
        "c2b.callback_secret",
        SANDBOX_SECRETS["c2b"]["callback_secret"],
    ),
    "GATEWAY_SECURITY_PIN_KEY": ("security.pin_key", SANDBOX_SECRETS["security"]["pin_key"]),
}


@pytest.mark.parametrize("variable", sorted(SANDBOX_VALUES))
def test_a_sandbox_secret_is_refused_outside_the_sandbox(variable: str) -> None:
    setting, value = SANDBOX_VALUES[variable]
    with pytest.raises(ConfigError) as refused:
        load_settings(env={**TEST_ENV, variable: value})
    message = str(refused.value)
    assert message.startswith(f"{setting}: public sandbox secret, refused outside the sandbox")
    assert variable in message and value not in message


def test_every_sandbox_secret_is_named_in_one_refusal() -> None:
    env = {**TEST_ENV, **{variable: value for variable, (_, value) in SANDBOX_VALUES.items()}}
    with pytest.raises(
        ConfigError,
        match="auth.jwt_secret, c2b.callback_secret, security.pin_key: public sandbox secret",
    ):
        load_settings(env=env)


def test_the_sandbox_keeps_its_public_secrets() -> None:
    settings = load_settings(env={}, sandbox=True)
    assert settings.auth.jwt_secret == SANDBOX_SECRETS["auth"]["jwt_secret"]


def test_the_test_settings_use_no_refused_sandbox_secret() -> None:
    assert not {value for _, value in SANDBOX_VALUES.values()} & set(TEST_ENV.values())


def test_the_providers_sandbox_credentials_stay_accepted() -> None:
    """The Daraja and Qmoney sandbox credentials are the providers' own test accounts."""
    settings = load_settings(env=TEST_ENV)
    assert settings.daraja.consumer_key == SANDBOX_SECRETS["daraja"]["consumer_key"]
    assert settings.qmoney.password == SANDBOX_SECRETS["qmoney"]["password"]


@pytest.mark.asyncio
async def test_serve_with_the_sandbox_jwt_key_stops_with_one_line() -> None:
    env = {**TEST_ENV, "GATEWAY_AUTH_JWT_SECRET": SANDBOX_SECRETS["auth"]["jwt_secret"]}
    code, _, err = await run_py("serve", env=env)
    assert code == 2
    assert err.strip().splitlines() == [
        "configuration error: auth.jwt_secret: public sandbox secret, refused outside the "
        "sandbox; set your own in GATEWAY_AUTH_JWT_SECRET"
    ]
