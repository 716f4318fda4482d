"""What the payer's SMS says: one template per event and language.

A template is Python format text whose placeholders come from a fixed, safe set per
event: the payment's receipt, amount and currency, the product, the insuree number and
the cover's start, the account number the payer typed, the scheme's premium receipt.
Nothing else can be placed in a message (no phone number, PIN, code or token: they are
never among the values), and a template naming anything else, or formatting a value
(`{amount!r}`, `{receipt:>20}`, `{product.name}`), is refused when the settings are
read. A file (notifications.templates_path, YAML: language -> event -> text) overrides
the defaults below, one template at a time."""

from __future__ import annotations

import logging
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from server.notifications.sms_text import encode

log = logging.getLogger("gateway.sms")

PREMIUM_PAID = "premium_paid"
PAYMENT_RECEIVED = "payment_received"
EVENTS = (PREMIUM_PAID, PAYMENT_RECEIVED)

# The values each event's templates may use.
PLACEHOLDERS: dict[str, frozenset[str]] = {
    PREMIUM_PAID: frozenset(
        {
            "receipt",  # the provider's receipt: M-Pesa TransID, Qmoney or provider reference
            "amount",  # a decimal string with the currency's places
            "currency",
            "product",  # the product's name
            "chf_id",  # the insuree number
            "effective_date",  # the day the cover starts (YYYY-MM-DD)
            "premium_receipt",  # the scheme's receipt of the premium
        }
    ),
    PAYMENT_RECEIVED: frozenset({"receipt", "amount", "currency", "account"}),
}

# Values a template is tried with when it is read: what a typical message holds.
SAMPLE_VALUES = {
    "receipt": "RKL51ZDR4F",
    "amount": "1500.00",
    "currency": "KES",
    "product": "Basic cover",
    "chf_id": "070707070",
    "effective_date": "2026-01-01",
    "premium_receipt": "R-6F1C2A4E8B3D",
    "account": "070707070",
}

DEFAULTS: dict[str, dict[str, str]] = {
    "en": {
        PREMIUM_PAID: "Premium of {currency} {amount} received for {product}, insuree "
        "{chf_id}. Cover active from {effective_date}. Ref {receipt}.",
        PAYMENT_RECEIVED: "Payment of {currency} {amount} received for account {account}, "
        "ref {receipt}. It is not applied to a policy yet: we will confirm when it is.",
    },
    "fr": {
        PREMIUM_PAID: "Prime de {currency} {amount} enregistrée pour {product}, assuré "
        "{chf_id}. Couverture active dès le {effective_date}. Réf {receipt}.",
        PAYMENT_RECEIVED: "Paiement de {currency} {amount} enregistré pour le compte "
        "{account}, réf {receipt}. Il n'est pas encore affecté à une police.",
    },
}


@dataclass(frozen=True)
class Templates:
    """The checked templates of one language."""

    language: str
    texts: Mapping[str, str]

    def render(self, event: str, values: Mapping[str, str]) -> str:
        """The message of `event`; `values` holds at least the event's placeholders."""
        return self.texts[event].format_map({name: values[name] for name in PLACEHOLDERS[event]})


def placeholders(text: str) -> set[str]:
    """The names a template uses; ValueError when it is not plain `{name}` text."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as err:
        raise ValueError(f"not a template ({err}); write a literal brace as {{{{ or }}}}") from None
    names = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ValueError(f"{{{shown}}} is not a plain placeholder: write {{name}}")
        names.add(name)
    return names


def check_template(language: str, event: str, text: Any) -> str:
    if event not in PLACEHOLDERS:
        raise ValueError(f"{language}: unknown event {event!r}; known: {', '.join(EVENTS)}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{language}.{event}: must be a non-empty text")
    unknown = placeholders(text) - PLACEHOLDERS[event]
    if unknown:
        allowed = ", ".join(sorted(PLACEHOLDERS[event]))
        raise ValueError(
            f"{language}.{event}: unknown placeholder {{{sorted(unknown)[0]}}}; "
            f"{event} may use {allowed}"
        )
    return text


def read_file(path: str) -> dict[str, dict[str, str]]:
    """The overrides of a templates file, checked."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"cannot read {path} ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML ({err.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must map languages to their templates")
    overrides: dict[str, dict[str, str]] = {}
    for language, events in data.items():
        if not isinstance(language, str) or not isinstance(events, dict):
            raise ValueError(f"{path}: {language!r} must map events to template texts")
        overrides[language] = {
            str(event): check_template(language, str(event), text) for event, text in events.items()
        }
    return overrides


def load_templates(path: str, language: str) -> Templates:
    """The templates of `language`: the defaults, overridden by the file at `path`."""
    merged = {name: dict(texts) for name, texts in DEFAULTS.items()}
    if path:
        for name, texts in read_file(path).items():
            merged.setdefault(name, {}).update(texts)
    texts = merged.get(language, {})
    missing = [event for event in EVENTS if event not in texts]
    if missing:
        raise ValueError(
            f"no {missing[0]} template in language {language!r} "
            f"(the defaults are in {', '.join(sorted(DEFAULTS))})"
        )
    for event in EVENTS:
        check_template(language, event, texts[event])
    templates = Templates(language, {event: texts[event] for event in EVENTS})
    for event in EVENTS:
        encoded = encode(templates.render(event, SAMPLE_VALUES))
        if encoded.parts > 1:
            log.warning(
                "sms_template_long language=%s event=%s encoding=%s parts=%s",
                language,
                event,
                encoded.encoding,
                encoded.parts,
            )
    return templates
