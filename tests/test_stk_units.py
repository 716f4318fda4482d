"""M-Pesa Express pieces on their own: the payer's phone, the push's Password and
Timestamp, the result callback's body and what each result code means."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from marshmallow import ValidationError

from server.debits.contract import ProviderStatus
from server.debits.registry import Channel
from server.integrations.transport import ProviderRejected
from server.kernel.errors import ValidationFailed
from server.ledger import states
from server.mpesa.callback_urls import CallbackUrlError, stk_callback_url
from server.mpesa.client import nairobi_timestamp, stk_password
from server.mpesa.phones import NotAKenyanPhone, kenyan_phone
from server.mpesa.settings import DarajaSettings
from server.mpesa.stk import StkDebits, whole_shillings
from server.mpesa.stk_results import (
    RESULT_REASONS,
    parse_stk_callback,
    reason_for,
    result_answer,
    status_for,
)
from server.ops.dashboard import STUCK_AFTER, stuck_after
from server.startup.config import ConfigError, load_settings

from support import TEST_ENV

SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("0708374149", "254708374149"),
        ("0708 374 149", "254708374149"),
        ("+254708374149", "254708374149"),
        ("+254 708 374 149", "254708374149"),
        ("254708374149", "254708374149"),
        ("0110123456", "254110123456"),
        ("254110123456", "254110123456"),
        ("+254-110-123-456", "254110123456"),
        (" 0708374149 ", "254708374149"),
    ],
)
def test_a_kenyan_phone_in_any_common_form_is_normalised(given: str, normalised: str) -> None:
    assert kenyan_phone(given) == normalised


@pytest.mark.parametrize(
    "given",
    [
        "",
        "0808374149",  # not a mobile range
        "070837414",  # too short
        "07083741490",  # too long
        "255708374149",  # Tanzania
        "+1 708 374 149",
        "07083741a9",
        "708374149",
        "2547083741499",
    ],
)
def test_anything_else_is_not_a_kenyan_phone(given: str) -> None:
    with pytest.raises(NotAKenyanPhone, match="not a Kenyan mobile number"):
        kenyan_phone(given)


def test_the_password_is_base64_of_shortcode_passkey_and_timestamp() -> None:
    password = stk_password("174379", SANDBOX_PASSKEY, "20261202103000")
    assert base64.b64decode(password).decode() == f"174379{SANDBOX_PASSKEY}20261202103000"
    # Daraja's own published example for the sandbox shortcode.
    assert password == (
        "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZG"
        "ExZWQyYzkxOTIwMjYxMjAyMTAzMDAw"
    )


def test_the_timestamp_is_nairobi_time() -> None:
    moment = datetime(2026, 12, 2, 7, 30, 0, tzinfo=UTC)
    assert nairobi_timestamp(moment) == "20261202103000"
    assert nairobi_timestamp(datetime(2026, 12, 31, 22, 0, 5, tzinfo=UTC)) == "20270101010005"


def test_the_callback_url_is_on_the_gateways_secret_path() -> None:
    url = stk_callback_url("https://pay.example.org/", "s3cret-path")
    assert url == "https://pay.example.org/api/v1/stk/callback/s3cret-path"
    with pytest.raises(CallbackUrlError, match="mpesa"):
        stk_callback_url("https://mpesa.example.org", "s3cret-path")


def callback(code: int, items: list | None = None, **extra) -> bytes:
    result = {
        "MerchantRequestID": "29115-34620561-1",
        "CheckoutRequestID": "ws_CO_191220191020363925",
        "ResultCode": code,
        "ResultDesc": "The service request is processed successfully.",
        **extra,
    }
    if items is not None:
        result["CallbackMetadata"] = {"Item": items}
    return json.dumps({"Body": {"stkCallback": result}}).encode()


PAID_ITEMS = [
    {"Name": "Amount", "Value": 1500.00},
    {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
    {"Name": "Balance"},
    {"Name": "TransactionDate", "Value": 20191219102115},
    {"Name": "PhoneNumber", "Value": 254708374149},
]


def test_a_paid_callback_is_read_with_its_metadata() -> None:
    raw = callback(0, PAID_ITEMS).replace(b"1500.0", b"1500.00")
    parsed = parse_stk_callback(raw)
    assert parsed.checkout_request_id == "ws_CO_191220191020363925"
    assert (parsed.result_code, parsed.receipt, parsed.amount) == ("0", "NLJ7RT61SV", 150000)
    assert (parsed.phone, parsed.transaction_date) == ("254708374149", "20191219102115")
    answer = parsed.answer()
    assert answer.status is ProviderStatus.SUCCEEDED
    assert (answer.receipt, answer.amount, answer.payer) == ("NLJ7RT61SV", 150000, "254708374149")
    assert answer.provider_reference == "ws_CO_191220191020363925"


@pytest.mark.parametrize("amount", ["1", "1.00", '"1"', "1.0"])
def test_the_amount_is_read_exactly_whatever_its_form(amount: str) -> None:
    raw = callback(0, PAID_ITEMS).replace(b"1500.0", amount.encode())
    assert parse_stk_callback(raw).amount == 100


def test_a_declined_callback_needs_no_metadata() -> None:
    parsed = parse_stk_callback(callback(1032, ResultDesc="Request cancelled by user"))
    assert (parsed.result_code, parsed.receipt, parsed.amount) == ("1032", None, None)
    answer = parsed.answer()
    assert answer.status is ProviderStatus.CANCELLED and answer.code == "1032"
    assert answer.detail == "the payer cancelled the prompt"


def test_a_result_code_sent_as_a_string_is_read_too() -> None:
    assert parse_stk_callback(callback("2001")).result_code == "2001"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"Body": {}}',
        b'{"Body": {"stkCallback": []}}',
        callback(0),  # paid, without metadata
        callback(0, [{"Name": "Amount", "Value": 1}]),  # no receipt
        callback(0, [{"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"}]),  # no amount
        callback(0, [*PAID_ITEMS[1:], {"Name": "Amount", "Value": "lots"}]),
        callback(
            0, [{"Name": "Amount", "Value": 1}, {"Name": "MpesaReceiptNumber", "Value": "a b"}]
        ),
        json.dumps({"Body": {"stkCallback": {"ResultCode": 0}}}).encode(),  # no checkout id
        callback("x"),  # type: ignore[arg-type]
    ],
)
def test_a_callback_that_cannot_be_read_is_a_validation_error(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_stk_callback(raw)


@pytest.mark.parametrize(
    ("code", "status", "words"),
    [
        ("0", ProviderStatus.SUCCEEDED, "paid"),
        ("1", ProviderStatus.FAILED, "insufficient"),
        ("2", ProviderStatus.FAILED, "minimum"),
        ("3", ProviderStatus.FAILED, "maximum"),
        ("4", ProviderStatus.FAILED, "daily"),
        ("8", ProviderStatus.FAILED, "maximum balance"),
        ("17", ProviderStatus.FAILED, "2 minutes"),
        ("1019", ProviderStatus.EXPIRED, "expired"),
        ("1025", ProviderStatus.FAILED, "could not be sent"),
        ("9999", ProviderStatus.FAILED, "could not be sent"),
        ("1032", ProviderStatus.CANCELLED, "cancelled"),
        ("1037", ProviderStatus.FAILED, "could not be reached"),
        ("2001", ProviderStatus.FAILED, "wrong M-Pesa PIN"),
    ],
)
def test_each_result_code_has_its_outcome_and_plain_words(code, status, words) -> None:
    assert status_for(code) is status
    assert words in reason_for(code)
    answer = result_answer(code, "Daraja's words", "ws_CO_1")
    assert answer.status is status and answer.code == code
    if status is not ProviderStatus.SUCCEEDED:
        assert answer.detail == RESULT_REASONS[code]


def test_an_unknown_result_code_fails_with_darajas_own_words() -> None:
    answer = result_answer("1001", "Unable to lock subscriber")
    assert answer.status is ProviderStatus.FAILED
    assert answer.detail == "M-Pesa result 1001: Unable to lock subscriber"


def test_an_stk_amount_is_whole_shillings() -> None:
    assert whole_shillings("1500.00") == 1500 and whole_shillings("1") == 1
    with pytest.raises(ValueError, match="whole"):
        whole_shillings("1500.50")


def adapter(**daraja) -> StkDebits:
    settings = replace(DarajaSettings(consumer_key="k", consumer_secret="s", passkey="p"), **daraja)
    return StkDebits.configured(
        settings,
        "KES",
        "http://127.0.0.1:8080",
        "callback-secret",
        None,
        None,  # type: ignore[arg-type]
    )


def test_refusals_at_the_push_answer_typed_errors_with_darajas_code() -> None:
    stk = adapter()
    busy = stk.refused(ProviderRejected("daraja", "500.001.1001", "Unable to lock subscriber"))
    assert (busy.status, busy.code) == (409, "subscriber_busy")
    assert busy.details["provider_code"] == "500.001.1001"
    spike = stk.refused(ProviderRejected("daraja", "500.003.02", "Spike arrest"))
    assert (spike.status, spike.code) == (503, "provider_rate_limited")
    field = stk.refused(ProviderRejected("daraja", "400.002.02", "Invalid PhoneNumber"))
    assert (field.status, field.code) == (400, "provider_invalid_request")
    other = stk.refused(ProviderRejected("daraja", "1", "Insufficient"))
    assert other.status == 502


def test_the_payer_is_the_insurees_phone_normalised() -> None:
    stk = adapter()
    assert stk.payer_of({"chf_id": "1", "phone": "0708 374 149"}) == "254708374149"  # type: ignore[typeddict-item]
    with pytest.raises(ValidationFailed) as none:
        stk.payer_of({"chf_id": "1", "phone": ""})  # type: ignore[typeddict-item]
    assert none.value.code == "no_phone"
    with pytest.raises(ValidationFailed) as foreign:
        stk.payer_of({"chf_id": "1", "phone": "+4420 7946 0000"})  # type: ignore[typeddict-item]
    assert foreign.value.code == "invalid_phone"


def test_the_stk_shortcode_defaults_to_the_shortcode_and_the_checks_to_the_schedule() -> None:
    stk = adapter()
    assert stk.merchant_account == "600984" and stk.currency == "KES"
    assert stk.status_checks == (
        timedelta(seconds=30),
        timedelta(minutes=2),
        timedelta(minutes=5),
    )
    till = adapter(stk_shortcode="174379", stk_status_checks_seconds=("5", "10"))
    assert till.merchant_account == "174379"
    assert till.status_checks == (timedelta(seconds=5), timedelta(seconds=10))


def test_without_a_passkey_the_channel_is_not_ready() -> None:
    stk = adapter(passkey="")
    with pytest.raises(Exception, match=r"daraja\.passkey"):
        stk.require_ready()


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("GATEWAY_DARAJA_STK_TRANSACTION_TYPE", "CustomerPayBill", "stk_transaction_type"),
        ("GATEWAY_DARAJA_STK_STATUS_CHECKS_SECONDS", "30,20", "stk_status_checks_seconds"),
        ("GATEWAY_DARAJA_STK_STATUS_CHECKS_SECONDS", "soon", "stk_status_checks_seconds"),
        ("GATEWAY_DARAJA_STK_STATUS_CHECKS_SECONDS", "0,10", "stk_status_checks_seconds"),
        ("GATEWAY_DARAJA_STK_SHORTCODE", "17x379", "stk_shortcode"),
    ],
)
def test_stk_settings_are_checked(variable: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"daraja.{problem}"):
        load_settings(env={**TEST_ENV, variable: value})


def test_the_sandbox_uses_darajas_published_sandbox_passkey() -> None:
    assert load_settings(env={}, sandbox=True).daraja.passkey == SANDBOX_PASSKEY
    settings = load_settings(env={**TEST_ENV, "GATEWAY_DARAJA_STK_STATUS_CHECKS_SECONDS": "5,60"})
    assert settings.daraja.stk_status_checks() == (timedelta(seconds=5), timedelta(minutes=1))
    assert settings.daraja.passkey == ""


def test_prompts_are_stuck_only_past_the_status_check_schedule() -> None:
    stk = adapter()
    limits = stuck_after([Channel(stk.channel, stk.label, stk)])
    assert "prompt_sent" in STUCK_AFTER
    assert limits["prompt_sent"] == timedelta(minutes=6)  # the last check (5 min) + 1 min
    assert limits["otp_sent"] == STUCK_AFTER[states.OTP_SENT]
