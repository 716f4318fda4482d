"""C2B rules with the store lanes: deadline fallback, store failures, replay."""

import asyncio
import json
from datetime import timedelta

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from server.inbox.repository import InboxRepository
from server.integrations.notifications import RecordingNotifier
from server.kernel.clock import Clock
from server.mpesa.service import C2BService, InboxUnavailable
from server.startup.services import Services, build_services

from support import INBOX, PAYMENTS, FailingPayments, callback_body, make_settings, wait_until

RAW = json.dumps(callback_body()).encode()
HEADERS = {"Content-Type": "application/json"}


class SlowInbox(InboxRepository):
    delay = 0.3

    async def add(self, *args, **kwargs):
        await asyncio.sleep(self.delay)  # the slow store under test
        return await super().add(*args, **kwargs)


class FailingInbox(InboxRepository):
    async def add(self, *args, **kwargs):
        raise ServerSelectionTimeoutError("store unreachable")


def services_with(store, inbox=None, payments=None, deadline=1.0, fallback="accept") -> Services:
    """The services as the gateway builds them, with store faults swapped into C2B's."""
    settings = make_settings(
        c2b={"validation_deadline_seconds": deadline, "validation_fallback": fallback}
    )
    services = build_services(settings, store, None, RecordingNotifier(), Clock())
    c2b = services.c2b
    if inbox is not None:
        c2b.inbox = inbox
    if payments is not None:
        c2b.payments = c2b.allocation.payments = payments
    return services


def service(store, **faults) -> C2BService:
    return services_with(store, **faults).c2b


@pytest.mark.asyncio
async def test_slow_store_gets_the_fallback_answer_and_the_entry_is_still_written(store) -> None:
    c2b = service(store, inbox=SlowInbox(store), deadline=0.05, fallback="reject")
    answer = await c2b.validate(RAW, "127.0.0.1", HEADERS)
    # The rules would accept this payment: a rejection can only be the fallback.
    assert answer == {"ResultCode": "C2B00016", "ResultDesc": "Rejected"}

    async def processed() -> dict | None:
        entry = await store.collection(INBOX).find_one({})
        return entry if entry and entry["status"] == "processed" else None

    entry = await wait_until(processed, "the late inbox entry to be processed")
    assert entry["status"] == "processed" and entry["answer"]["ResultCode"] == "0"


@pytest.mark.asyncio
async def test_validation_answers_the_fallback_when_the_store_is_down(store) -> None:
    c2b = service(store, inbox=FailingInbox(store), fallback="accept")
    assert await c2b.validate(RAW, "127.0.0.1", HEADERS) == {
        "ResultCode": "0",
        "ResultDesc": "Accepted",
    }


@pytest.mark.asyncio
async def test_confirmation_the_inbox_cannot_take_is_not_acknowledged(store) -> None:
    with pytest.raises(InboxUnavailable):
        await service(store, inbox=FailingInbox(store)).confirm(RAW, "127.0.0.1", HEADERS)


@pytest.mark.asyncio
async def test_failed_processing_is_kept_and_replay_stores_it_exactly_once(store) -> None:
    payments = FailingPayments(store)
    services = services_with(store, payments=payments)
    c2b = services.c2b
    assert (await c2b.confirm(RAW, "127.0.0.1", HEADERS))["ResultCode"] == 0
    entry = await store.collection(INBOX).find_one({})
    assert entry["status"] == "failed" and entry["source"] == "daraja_c2b"
    assert entry["failure"]["type"] == "ServerSelectionTimeoutError"
    assert await store.collection(PAYMENTS).count_documents({}) == 0

    payments.failing = False
    results = await services.inbox.replay(grace=timedelta(0))
    assert [result.status for result in results] == ["processed"]
    assert await store.collection(PAYMENTS).count_documents({}) == 1
    assert await services.inbox.replay(grace=timedelta(0)) == []
    await services.sms.send_due()  # the job hands the payer's notice over
    assert len(c2b.notifier.sent) == 1


@pytest.mark.asyncio
async def test_replay_leaves_recent_entries_to_their_own_processing(store) -> None:
    payments = FailingPayments(store)
    services = services_with(store, payments=payments)
    c2b = services.c2b
    await c2b.confirm(RAW, "127.0.0.1", HEADERS)
    assert await services.inbox.replay() == []


@pytest.mark.asyncio
async def test_replay_of_a_malformed_confirmation_keeps_it_for_review(store) -> None:
    services = services_with(store)
    c2b = services.c2b
    await c2b.confirm(b'{"TransID": "X1"}', "127.0.0.1", HEADERS)
    assert await services.inbox.replay(grace=timedelta(0)) == []
    [result] = await services.inbox.replay(grace=timedelta(0), include_review=True)
    assert result.status == "needs_review"
    entry = await store.collection(INBOX).find_one({})
    assert entry["attempts"] == 2
    assert await store.collection(PAYMENTS).count_documents({}) == 0


@pytest.mark.asyncio
async def test_a_failing_notifier_never_fails_the_payment(store) -> None:
    class BrokenNotifier(RecordingNotifier):
        async def notify(self, notification):
            raise ConnectionError("sms gateway down")

    services = services_with(store)
    c2b = services.c2b
    c2b.notifier = BrokenNotifier()
    raw = json.dumps(callback_body(MSISDN="254708374149")).encode()  # a number to send to
    assert (await c2b.confirm(raw, "127.0.0.1", HEADERS))["ResultCode"] == 0
    entry = await store.collection(INBOX).find_one({})
    assert entry["status"] == "processed"
    # The notifier is only the job's: its failure leaves the notice to a later run.
    summary = await services.sms.send_due()
    assert (summary["recorded"], summary["retried"]) == (1, 1)
    [message] = (await services.sms.messages({}, 10, 0))[0]
    assert (message["status"], message["failure"]["code"]) == ("pending", "sender_error")
    assert (await store.collection(PAYMENTS).find_one({}))["status"] == "unmatched"


class FailingMarkInbox(InboxRepository):
    """Fails to record the outcome once, after the payment was stored."""

    failures = 1

    async def mark(self, entry_id, status, at, **kwargs):
        if status != "failed" and self.failures:
            self.failures -= 1
            raise ServerSelectionTimeoutError("store unreachable")
        return await super().mark(entry_id, status, at, **kwargs)


@pytest.mark.asyncio
async def test_crash_between_payment_and_inbox_mark_is_replayed_without_a_second_notice(
    store,
) -> None:
    services = services_with(store, inbox=FailingMarkInbox(store))
    c2b = services.c2b
    assert (await c2b.confirm(RAW, "127.0.0.1", HEADERS))["ResultCode"] == 0
    assert (await store.collection(INBOX).find_one({}))["status"] == "failed"
    await services.sms.send_due()  # the notice is sent before the replay comes
    assert len(c2b.notifier.sent) == 1
    [result] = await services.inbox.replay(grace=timedelta(0))
    assert result.status == "processed"
    assert await store.collection(PAYMENTS).count_documents({}) == 1
    assert (await services.sms.send_due())["recorded"] == 0
    assert len(c2b.notifier.sent) == 1
