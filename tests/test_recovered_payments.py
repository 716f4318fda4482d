"""Payments recovered from M-Pesa's records (a pulled row, a statement row) go through
the confirmation's path: stored once per TransID, settled, and reconciled with a
confirmation that arrives later."""

import json
from dataclasses import replace

import pytest
from marshmallow import ValidationError

from server.integrations.notifications import RecordingNotifier
from server.kernel.clock import Clock
from server.ledger import states
from server.ledger.transactions import new_transaction
from server.mpesa import recovered
from server.mpesa.client import _pull_rows
from server.reconciliation.pull import PullIncomplete
from server.startup.services import build_services

from support import (
    BASIC_KES,
    INBOX,
    PAYMENTS,
    PREMIUMS,
    callback_body,
    idle_policy,
    make_settings,
)

HEADERS = {"Content-Type": "application/json"}
CHF = "080808080"


def pull_row(trans_id: str = "RKL51ZDR4F", amount: str = "1500.0", **fields: object) -> dict:
    row = {
        "transactionId": trans_id,
        "trxDate": "2026-12-01T08:15:32.000+03:00",
        "msisdn": 254708374149,
        "sender": "254708374149",
        "transactiontype": "c2b-pay-bill-debit",
        "billreference": CHF,
        "amount": amount,
        "organizationname": "Scheme",
    }
    row.update(fields)
    return row


def statement_row(receipt: str = "RKL51ZDR4F", paid_in: str = "1500.00") -> dict:
    return {
        "Receipt No.": receipt,
        "Completion Time": "2026-12-01 08:15:33",
        "Initiation Time": "2026-12-01 08:15:32",
        "Details": f"Pay Bill from 254708374149 - JOHN DOE Acc. {CHF}",
        "Transaction Status": "Completed",
        "Paid In": paid_in,
        "Withdrawn": "",
        "Balance": "228037.00",
        "Balance Confirmed": "true",
        "Reason Type": "Pay Bill Online",
        "Other Party Info": "254708374149 - JOHN DOE",
        "Linked Transaction ID": "",
        "A/C No.": CHF,
    }


def services(store):
    settings = make_settings(c2b={"currency": "KES"})
    notifier = RecordingNotifier()
    return build_services(settings, store, None, notifier, Clock()), notifier


def test_a_pulled_row_reads_as_a_confirmation_and_names_what_it_lacks() -> None:
    record = recovered.pull_record("600984", pull_row(trans_id=" rkl51zdr4f "))
    callback = record.callback
    assert callback.trans_id == "RKL51ZDR4F"
    assert callback.transaction_type == "Pay Bill"
    assert callback.trans_time.isoformat() == "2026-12-01T05:15:32+00:00"
    assert (callback.trans_amount, callback.bill_ref, callback.msisdn) == (
        "1500.0",
        CHF,
        "254708374149",
    )
    assert callback.first_name == ""  # the sender repeated the number: no name
    assert "FirstName" in record.missing and "OrgAccountBalance" in record.missing


def test_a_statement_row_reads_as_a_confirmation_with_the_payers_name() -> None:
    record = recovered.statement_record("600984", statement_row())
    assert record.callback.first_name == "JOHN DOE"
    assert record.callback.msisdn == "254708374149"
    assert record.callback.trans_time.isoformat() == "2026-12-01T05:15:33+00:00"
    assert record.source == recovered.STATEMENT_SOURCE


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("transactionId", "RKL 51"),
        ("trxDate", "yesterday"),
        ("trxDate", "0001-01-01T00:00:00+05:00"),
        ("amount", ""),
    ],
)
def test_an_unreadable_pulled_row_names_its_field(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as raised:
        recovered.pull_record("600984", pull_row(**{field: value}))
    assert field in json.dumps(raised.value.messages)


@pytest.mark.parametrize(
    "answer",
    [
        {"ResponseCode": "1000", "Response": [[pull_row("A1"), pull_row("A2")]]},
        {"ResponseCode": "1000", "Response": [pull_row("A1"), pull_row("A2")]},
        {"ResponseCode": "1000", "Transactions": [pull_row("A1"), pull_row("A2")]},
        {"ResponseCode": "1000", "transactions": [[pull_row("A1")], [pull_row("A2")]]},
    ],
)
def test_pull_rows_are_read_under_every_published_shape(answer: dict) -> None:
    assert [row["transactionId"] for row in _pull_rows(answer)] == ["A1", "A2"]


@pytest.mark.asyncio
async def test_a_recovered_payment_is_stored_once_and_settles_its_policy(store) -> None:
    gateway, notifier = services(store)
    policy = await idle_policy(gateway, CHF, BASIC_KES)
    status = await gateway.c2b.recover(recovered.PULL_SOURCE, "600984", pull_row())
    assert status == "processed"
    again = await gateway.c2b.recover(recovered.PULL_SOURCE, "600984", pull_row())
    assert again == "duplicate"
    payments = await store.collection(PAYMENTS).find({}).to_list(None)
    assert len(payments) == 1
    payment = payments[0]
    assert payment["status"] == "settled" and payment["policy_uuid"] == policy["_id"]
    assert payment["recovered"]["source"] == "daraja_pull"
    assert "FirstName" in payment["recovered"]["missing"]
    await gateway.sms.send_due()  # the job hands the payer's receipt over
    assert len(notifier.sent) == 1  # notified like any confirmation, once
    entries = await store.collection(INBOX).find({"source": "daraja_pull"}).to_list(None)
    assert sorted(entry["status"] for entry in entries) == ["duplicate", "processed"]


@pytest.mark.asyncio
async def test_a_late_confirmation_of_a_recovered_payment_fills_it_in_and_changes_nothing_else(
    store,
) -> None:
    gateway, notifier = services(store)
    await idle_policy(gateway, CHF, BASIC_KES)
    await gateway.c2b.recover(recovered.PULL_SOURCE, "600984", pull_row())
    await gateway.sms.send_due()
    assert len(notifier.sent) == 1  # the payer's receipt, before the confirmation comes
    late = callback_body(
        TransAmount="1500.00", BillRefNumber=CHF, TransTime="20261201081532", FirstName="JOHN"
    )
    await gateway.c2b.confirm(json.dumps(late).encode(), "127.0.0.1", HEADERS)
    payments = await store.collection(PAYMENTS).find({}).to_list(None)
    assert len(payments) == 1
    payment = payments[0]
    assert payment["status"] == "settled" and payment["review"] == []
    assert payment["payer_name"] == "JOHN"
    assert payment["recovered"]["missing"] == [] and payment["recovered"]["completed_by"]
    await gateway.sms.send_due()
    assert len(notifier.sent) == 1  # none for the confirmation
    confirmation = await store.collection(INBOX).find_one({"source": "daraja_c2b"})
    assert confirmation["status"] == "duplicate"


@pytest.mark.asyncio
async def test_a_record_that_differs_from_the_stored_payment_is_flagged_not_applied(
    store,
) -> None:
    gateway, _ = services(store)
    await idle_policy(gateway, CHF, BASIC_KES)
    body = callback_body(TransAmount="1500.00", BillRefNumber=CHF)
    await gateway.c2b.confirm(json.dumps(body).encode(), "127.0.0.1", HEADERS)
    status = await gateway.c2b.recover(
        recovered.STATEMENT_SOURCE, "600984", statement_row(paid_in="1400.00")
    )
    assert status == "conflict"
    payment = await store.collection(PAYMENTS).find_one({})
    assert payment["amount"] == 150000 and payment["status"] == "settled"
    assert [flag["reason"] for flag in payment["review"]] == ["differs_from_statement"]
    assert "recovered" not in payment


@pytest.mark.asyncio
async def test_an_unreadable_record_is_kept_for_review_and_stores_nothing(store) -> None:
    gateway, _ = services(store)
    status = await gateway.c2b.recover(
        recovered.PULL_SOURCE, "600984", pull_row(trxDate="not a date")
    )
    assert status == "needs_review"
    assert await store.collection(PAYMENTS).count_documents({}) == 0
    entry = await store.collection(INBOX).find_one({"source": "daraja_pull"})
    assert entry["status"] == "needs_review"
    assert json.loads(entry["body"])["Record"]["trxDate"] == "not a date"


@pytest.mark.asyncio
async def test_a_differing_record_never_completes_another_insurees_prompt(store) -> None:
    """TransID T settled insuree A's policy; a statement row of T naming insuree B, who
    has an M-Pesa Express prompt waiting for the same amount, is a conflict: B's debit
    stays waiting and T makes one premium."""
    gateway, _ = services(store)
    await idle_policy(gateway, CHF, BASIC_KES)
    other = "070707070"
    policy_b = await idle_policy(gateway, other, BASIC_KES, phone="0708374149")
    waiting = new_transaction(
        transaction_uuid="stk-1",
        channel="mpesa_stk",
        status=states.PROMPT_SENT,
        policy=policy_b,
        psp_uuid=None,
        provider_reference="ws_CO_1",
        actor="olga",
        at=gateway.c2b.clock.now(),
        reason="",
        payer="254708374149",
    )
    await gateway.ledger.transactions.insert(waiting)
    body = callback_body(TransAmount="1500.00", BillRefNumber=CHF)
    await gateway.c2b.confirm(json.dumps(body).encode(), "127.0.0.1", HEADERS)
    row = {**statement_row(), "A/C No.": other}
    assert await gateway.c2b.recover(recovered.STATEMENT_SOURCE, "600984", row) == "conflict"
    debit = await gateway.ledger.get("stk-1")
    assert debit["status"] == "prompt_sent" and not debit.get("provider_confirmation")
    assert await store.collection(PREMIUMS).count_documents({}) == 1


class OffsetIgnored:
    """A Pull Transactions answer that repeats its first page whatever the offset."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows, self.calls = rows, 0

    async def pull_transactions(self, shortcode, start, end, offset) -> list[dict]:
        self.calls += 1
        return self.rows


@pytest.mark.asyncio
async def test_a_pull_m_pesa_answers_with_the_same_page_fails_and_covers_nothing(store) -> None:
    gateway, _ = services(store)
    pull = gateway.pull
    pull.settings = replace(pull.settings, pull_enabled=True)
    pull.client = OffsetIgnored([pull_row("RKL51ZDR4F"), pull_row(trxDate="not a date")])
    with pytest.raises(PullIncomplete):
        await pull.run()
    assert pull.client.calls == 2
    state = await pull.state.get("600984")
    assert "OffSetValue" in state["last_error"] and "covered_until" not in state
    # Each row was taken once: the unreadable one kept once for review, not per page.
    entries = await store.collection(INBOX).find({"source": "daraja_pull"}).to_list(None)
    assert sorted(entry["status"] for entry in entries) == ["needs_review", "processed"]
