"""The plain callback reader (server.mpesa.schemas.read_plain_callback) against the
schema it stands in for: whenever it reads a body, the schema loads the same callback."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from server.mpesa.schemas import (
    C2BCallbackSchema,
    parse_callback,
    parse_trans_time,
    read_plain_callback,
)

DARAJA_BODY = {
    "TransactionType": "Pay Bill",
    "TransID": "RKTQDM7W6S",
    "TransTime": "20241201103000",
    "TransAmount": "150.00",
    "BusinessShortCode": "600638",
    "BillRefNumber": "100000001",
    "InvoiceNumber": "",
    "OrgAccountBalance": "49197.00",
    "ThirdPartyTransID": "",
    "MSISDN": "2547 ***** 126",
    "FirstName": "JOHN",
    "MiddleName": "",
    "LastName": "DOE",
}


def schema_answer(body: dict[str, Any]) -> Any:
    try:
        return C2BCallbackSchema().load(body)
    except ValidationError:
        return "refused"


def test_a_daraja_body_is_read_plainly_as_the_schema_reads_it() -> None:
    callback = read_plain_callback(dict(DARAJA_BODY))
    assert callback is not None
    assert callback == C2BCallbackSchema().load(dict(DARAJA_BODY))


def test_a_body_with_only_the_required_fields_is_read_plainly() -> None:
    body = {k: DARAJA_BODY[k] for k in ("TransID", "TransTime", "TransAmount")}
    body["BusinessShortCode"] = " 600638 "
    callback = read_plain_callback(body)
    assert callback is not None
    assert (callback.shortcode, callback.bill_ref, callback.msisdn) == ("600638", "", "")


def test_identifiers_are_normalised_as_the_schema_normalises_them() -> None:
    body = {**DARAJA_BODY, "TransID": " rktqdm7w6s ", "BillRefNumber": " 100000001 "}
    callback = read_plain_callback(body)
    assert callback is not None
    assert (callback.trans_id, callback.bill_ref) == ("RKTQDM7W6S", "100000001")


def test_what_is_not_plain_is_left_to_the_schema() -> None:
    for change in (
        {"TransID": None},
        {"TransID": "RK TQ"},
        {"TransTime": "20240230103000"},  # 30 February
        {"TransTime": "2024120110300"},
        {"TransTime": "２０２４１２０１１０３０００"},  # digits, but not ASCII ones
        {"TransTime": "00010101000000"},  # 3 hours before UTC's first day
        {"TransAmount": ""},
        {"BusinessShortCode": 600638},
        {"FirstName": "x" * 201},
        {"MiddleName": ["a"]},
    ):
        assert read_plain_callback({**DARAJA_BODY, **change}) is None, change


def test_a_trans_time_before_utc_s_first_day_is_refused_in_words() -> None:
    body = {**DARAJA_BODY, "TransTime": "00010101000000"}
    with pytest.raises(ValidationError) as refused:
        parse_callback(json.dumps(body).encode())
    assert refused.value.messages == {"TransTime": ["TransTime must be YYYYMMDDHHmmss"]}


def test_trans_time_is_the_same_instant_both_ways() -> None:
    callback = read_plain_callback(dict(DARAJA_BODY))
    assert callback is not None
    assert callback.trans_time == parse_trans_time(DARAJA_BODY["TransTime"])


FIELDS = [*DARAJA_BODY]
TEXT = st.text(alphabet=string.ascii_letters + string.digits + " *.-\n\t", max_size=24)
DIGITS = st.text(alphabet="0123456789", min_size=12, max_size=15)
VALUES = st.one_of(
    TEXT,
    DIGITS,
    st.sampled_from(list(DARAJA_BODY.values())),
    st.text(max_size=3),
    st.text(min_size=199, max_size=202, alphabet="ab"),
    st.none(),
    st.integers(),
    st.lists(st.text(max_size=2), max_size=1),
)


@settings(max_examples=600, deadline=None)
@given(
    st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=len(FIELDS)),
    st.sets(st.sampled_from(FIELDS)),
)
@example({"TransTime": "20241301103000"}, set())
@example({"TransTime": "20240229235959"}, set())
@example({"TransTime": "20241231240000"}, set())
@example({"TransTime": "20241231235960"}, set())
def test_whatever_it_reads_the_schema_loads_the_same(
    changes: dict[str, Any], dropped: set[str]
) -> None:
    body = {k: v for k, v in {**DARAJA_BODY, **changes}.items() if k not in dropped}
    plain = read_plain_callback(body)
    if plain is not None:
        assert schema_answer(body) == plain
