import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.kernel.money import AmountError, format_amount, parse_amount


@pytest.mark.parametrize(
    ("text", "minor"),
    [
        ("5", 500),
        ("5.0", 500),
        ("5.00", 500),
        ("5.5", 550),
        ("0.01", 1),
        ("10", 1000),
        ("5.000", 500),
        ("1234567.89", 123456789),
        ("0", 0),
    ],
)
def test_decimal_strings_parse_to_exact_minor_units(text: str, minor: int) -> None:
    assert parse_amount(text, "KES") == minor


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 5",
        "5 ",
        "-5",
        "+5",
        "5.",
        ".5",
        "5.001",
        "1e3",
        "NaN",
        "inf",
        "0x10",
        "05",
        "5,00",
        "１２",
        "12345678901234",
    ],
)
def test_malformed_amounts_are_refused(text: str) -> None:
    with pytest.raises(AmountError):
        parse_amount(text, "KES")


def test_non_string_amounts_are_refused() -> None:
    with pytest.raises(AmountError):
        parse_amount(5.5, "KES")  # type: ignore[arg-type]


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(AmountError, match="unsupported currency"):
        parse_amount("5", "XXX")


def test_zero_decimal_currency_refuses_fractions() -> None:
    assert parse_amount("500", "UGX") == 500
    assert format_amount(500, "UGX") == "500"
    with pytest.raises(AmountError):
        parse_amount("5.5", "UGX")


@given(st.integers(min_value=0, max_value=10**15 - 1))
def test_amounts_round_trip_exactly(minor: int) -> None:
    assert parse_amount(format_amount(minor, "KES"), "KES") == minor


def test_formatting_pads_the_minor_unit() -> None:
    assert format_amount(5, "GMD") == "0.05"
    assert format_amount(-150, "KES") == "-1.50"
