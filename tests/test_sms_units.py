"""SMS receipts without a store: templates and their safety, message length and parts,
phone numbers, Africa's Talking's answers, the settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from server.integrations.transport import (
    Answer,
    ProviderOutcomeUnknown,
    ProviderRejected,
    ProviderUnavailable,
)
from server.kernel.settings import SettingError
from server.notifications.africastalking import read_answer
from server.notifications.phones import international
from server.notifications.settings import NotificationSettings
from server.notifications.sms_text import GSM7, UCS2, encode, is_gsm7
from server.notifications.templates import (
    DEFAULTS,
    EVENTS,
    PLACEHOLDERS,
    SAMPLE_VALUES,
    load_templates,
)
from server.startup.config import ConfigError, load_settings

from support import TEST_ENV

# Values no message may ever carry, offered to every template beside the real ones.
FORBIDDEN = {
    "phone": "+254711999888",
    "msisdn": "254722333444",
    "pin": "4321",
    "otp": "918273",
    "token": "eyJhbGciOiJIUzI1NiJ9.secret",
    "password": "hunter2",
}


# --- templates ----------------------------------------------------------------------


@pytest.mark.parametrize("language", sorted(DEFAULTS))
@pytest.mark.parametrize("event", EVENTS)
def test_every_default_template_fits_one_gsm7_sms_and_carries_nothing_unsafe(
    language: str, event: str
) -> None:
    text = load_templates("", language).render(event, {**SAMPLE_VALUES, **FORBIDDEN})
    encoded = encode(text)
    assert (encoded.encoding, encoded.parts) == (GSM7, 1), (text, encoded)
    assert len(text) <= 160
    for value in FORBIDDEN.values():
        assert value not in text
    for name in PLACEHOLDERS[event]:
        if name in DEFAULTS["en"][event]:
            assert SAMPLE_VALUES[name] in text


def test_the_english_receipt_says_what_was_paid() -> None:
    text = load_templates("", "en").render("premium_paid", SAMPLE_VALUES)
    assert text == (
        "Premium of KES 1500.00 received for Basic cover, insuree 070707070. "
        "Cover active from 2026-01-01. Ref RKL51ZDR4F."
    )


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("Your PIN is {pin}", "unknown placeholder {pin}"),
        ("Call {phone}", "unknown placeholder {phone}"),
        ("Paid {amount!r}", "not a plain placeholder"),
        ("Ref {receipt:>40}", "not a plain placeholder"),
        ("Cover {product.__class__}", "not a plain placeholder"),
        ("Paid {0}", "not a plain placeholder"),
        ("Paid {}", "not a plain placeholder"),
        ("Unclosed {receipt", "not a template"),
        ("Account {account}", "unknown placeholder {account}"),  # not premium_paid's
        ("", "non-empty"),
    ],
)
def test_a_template_naming_anything_but_the_safe_values_is_refused(
    tmp_path: Path, template: str, problem: str
) -> None:
    path = tmp_path / "templates.yaml"
    path.write_text(f"en:\n  premium_paid: {template!r}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=problem.replace("{", r"\{").replace("}", r"\}")):
        load_templates(str(path), "en")


def test_a_templates_file_overrides_one_template_and_adds_a_language(tmp_path: Path) -> None:
    path = tmp_path / "templates.yaml"
    path.write_text(
        "en:\n"
        "  premium_paid: 'Paid {currency} {amount}, ref {receipt}.'\n"
        "sw:\n"
        "  premium_paid: 'Malipo ya {currency} {amount} yamepokelewa. Kumb {receipt}.'\n"
        "  payment_received: 'Tumepokea {currency} {amount} kwa akaunti {account}.'\n",
        encoding="utf-8",
    )
    english = load_templates(str(path), "en")
    assert english.render("premium_paid", SAMPLE_VALUES) == "Paid KES 1500.00, ref RKL51ZDR4F."
    assert english.texts["payment_received"] == DEFAULTS["en"]["payment_received"]
    swahili = load_templates(str(path), "sw")
    assert swahili.render("payment_received", SAMPLE_VALUES).startswith("Tumepokea KES 1500.00")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("en: [1, 2]\n", "must map events"),
        ("- one\n", "must map languages"),
        ("en:\n  refund: 'x'\n", "unknown event 'refund'"),
        ("en: {premium_paid: [\n", "not valid YAML"),
    ],
)
def test_an_unreadable_templates_file_is_refused(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "templates.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=problem):
        load_templates(str(path), "en")


def test_settings_name_the_templates_problem(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match="templates_path: no premium_paid template in"):
        NotificationSettings(language="sw").check()
    with pytest.raises(SettingError, match="templates_path: cannot read"):
        NotificationSettings(templates_path=str(tmp_path / "missing.yaml")).check()


# --- length and parts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "units", "parts"),
    [
        ("a" * 160, GSM7, 160, 1),
        ("a" * 161, GSM7, 161, 2),
        ("a" * 306, GSM7, 306, 2),
        ("a" * 307, GSM7, 307, 3),
        ("€" * 80, GSM7, 160, 1),  # extension characters take two septets
        ("a" + "€" * 80, GSM7, 161, 2),  # 1 + 76 pairs, then 4 pairs
        ("a" * 152 + "€" + "a" * 8, GSM7, 162, 2),  # the pair moves whole to part two
        ("a" * 152 + "€" + "a" * 152, GSM7, 306, 3),  # so 306 septets need three
        ("Réf à é è ù ì ò Ç Ñ ü @ £ $ ¥", GSM7, 29, 1),
        ("ç" * 70, UCS2, 70, 1),  # ç is not GSM-7 (only Ç is)
        ("ç" * 71, UCS2, 71, 2),
        ("ç" * 134, UCS2, 134, 2),
        ("ç" * 135, UCS2, 135, 3),
        ("\U0001f600" * 35, UCS2, 70, 1),  # a surrogate pair is two units
        ("a" * 66 + "\U0001f600" + "a" * 66, UCS2, 134, 3),  # and never split
    ],
)
def test_message_parts_follow_the_encoding(
    text: str, encoding: str, units: int, parts: int
) -> None:
    assert encode(text) == type(encode(""))(encoding, units, parts)


def test_gsm7_detection() -> None:
    assert is_gsm7("Premium of KES 1500.00 received. Ref RKL51ZDR4F.")
    assert is_gsm7("Prime enregistrée, assuré, dès le")
    assert not is_gsm7("Prime reçue")
    assert not is_gsm7("Malipo ✓")


# --- phone numbers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "country", "expected"),
    [
        ("254708374149", "254", "+254708374149"),
        ("+254708374149", "", "+254708374149"),
        ("00254708374149", "", "+254708374149"),
        ("0708 374 149", "254", "+254708374149"),
        ("708374149", "254", "+254708374149"),
        ("0110-000-002", "254", "+254110000002"),
        ("7712345", "220", "+2207712345"),
        ("2207000000", "220", "+2207000000"),
        ("+220 771 2345", "220", "+2207712345"),
        ("0708374149", "", None),  # a local number without a country code
        ("2547 ***** 126", "254", None),  # masked (C2B v2)
        ("a" * 64, "254", None),  # hashed (C2B v1)
        ("2" * 64, "254", None),  # 64 digits are no number either
        ("12345", "254", None),
        ("", "254", None),
        (None, "254", None),
        ("+0123456789", "", None),
        ("٠٧٠٨٣٧٤١٤٩", "254", None),  # digits, but not ASCII ones
    ],
)
def test_numbers_become_international(
    given: str | None, country: str, expected: str | None
) -> None:
    assert international(given, country) == expected


# --- Africa's Talking's answers -------------------------------------------------------

TO = "+254711000000"


def answer(
    code: int, status: str = "Success", message_id: str = "ATXid_1", cost: str = "KES 0.8000"
):
    recipient = {
        "statusCode": code,
        "number": TO,
        "status": status,
        "cost": cost,
        "messageId": message_id,
    }
    return Answer(201, {"SMSMessageData": {"Message": "Sent to 1/1", "Recipients": [recipient]}})


@pytest.mark.parametrize("code", [100, 101, 102])
def test_processed_sent_and_queued_are_accepted(code: int) -> None:
    accepted = read_answer(answer(code, "Queued"), TO)
    assert (accepted.message_id, accepted.status_code, accepted.cost) == (
        "ATXid_1",
        code,
        "KES 0.8000",
    )


@pytest.mark.parametrize("code", [401, 402, 403, 404, 405, 406, 407, 409, 500, 501, 502])
def test_a_refused_recipient_is_rejected_with_its_code(code: int) -> None:
    with pytest.raises(ProviderRejected) as refused:
        read_answer(answer(code, "Refused", message_id="None", cost="0"), TO)
    assert refused.value.code == str(code) and refused.value.reason == "Refused"


def test_http_errors_and_unreadable_answers() -> None:
    with pytest.raises(ProviderUnavailable):
        read_answer(Answer(500, None), TO)
    with pytest.raises(ProviderRejected) as refused:
        read_answer(Answer(401, None), TO)
    assert refused.value.code == "http_401"
    empty = Answer(201, {"SMSMessageData": {"Message": "InvalidSenderId", "Recipients": []}})
    with pytest.raises(ProviderRejected) as whole:
        read_answer(empty, TO)
    assert whole.value.code == "InvalidSenderId"
    for body in (None, {"other": 1}, {"SMSMessageData": {"Recipients": "x"}}):
        with pytest.raises(ProviderOutcomeUnknown):
            read_answer(Answer(201, body), TO)
    with pytest.raises(ProviderOutcomeUnknown):
        read_answer(answer(101, message_id="None"), TO)


# --- settings ---------------------------------------------------------------------------


def test_africastalking_needs_its_username_and_key() -> None:
    settings = NotificationSettings(kind="africastalking")
    with pytest.raises(SettingError, match="username"):
        settings.check()
    with pytest.raises(SettingError, match="api_key"):
        replace(settings, username="sandbox").check()
    replace(settings, username="sandbox", api_key="key").check()


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"kind": "email"}, "kind"),
        ({"delivery_report_secret": "short"}, "delivery_report_secret"),
        ({"delivery_report_secret": "has/a/slash-in-it"}, "delivery_report_secret"),
        ({"country_codes": ("KES=254", "Gambia")}, "country_codes"),
        ({"default_country_code": "+254"}, "default_country_code"),
        ({"retry_backoff_seconds": ("60", "30")}, "retry_backoff_seconds"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"language": "English"}, "language"),
        ({"delivery_report_ip_allowlist": ("not-a-network",)}, "delivery_report_ip_allowlist"),
    ],
)
def test_settings_refuse_what_cannot_work(changes: dict, problem: str) -> None:
    with pytest.raises(SettingError, match=problem):
        replace(NotificationSettings(), **changes).check()


def test_local_numbers_take_the_calling_code_of_the_payments_currency() -> None:
    settings = NotificationSettings(default_country_code="255")
    assert [settings.country_code(currency) for currency in ("KES", "GMD", "TZS")] == [
        "254",
        "220",
        "255",
    ]


def test_the_sandbox_delivery_report_secret_is_refused_in_production() -> None:
    env = {**TEST_ENV, "GATEWAY_NOTIFICATIONS_DELIVERY_REPORT_SECRET": "sandbox-sms-reports"}
    with pytest.raises(ConfigError, match="notifications.delivery_report_secret: public sandbox"):
        load_settings(env=env)
    sandbox = load_settings(env={}, sandbox=True).notifications
    assert (sandbox.username, sandbox.api_key, sandbox.sender_id) == (
        "sandbox",
        "sandbox-sms-key",
        "NHIA",
    )
