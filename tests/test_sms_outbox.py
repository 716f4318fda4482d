"""The SMS outbox on the store lanes, with a scripted sender: the notices a premium or a
payment carries, copied into the outbox once by the job; whom a message goes to,
opt-out, what each provider answer does, the claim, delivery reports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from pymongo.errors import ServerSelectionTimeoutError

from server.integrations.notifications import RecordingNotifier
from server.integrations.transport import (
    ProviderOutcomeUnknown,
    ProviderRejected,
    ProviderUnavailable,
)
from server.kernel.clock import Clock
from server.ledger.repository import PremiumRepository
from server.notifications.documents import NOTICE, NOTICE_COPIED, NOTICE_STATE
from server.notifications.notices import NoticeSource
from server.notifications.repository import SMS_OUTBOX
from server.notifications.senders import Accepted, Outgoing
from server.startup.services import Services, build_services

from support import (
    BASIC_GMD,
    BASIC_KES,
    INBOX,
    PAYMENTS,
    PREMIUMS,
    callback_body,
    idle_policy,
    make_settings,
)

MASKED = "2547 ***** 126"
HASHED = "a3f1" * 16


class MovableClock(Clock):
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


class ScriptedSender:
    """A provider that answers each send with the next scripted outcome (accepted when
    the script is empty), and remembers what it was asked to send."""

    local = False

    def __init__(self) -> None:
        self.script: list[BaseException | None] = []
        self.sent: list[Outgoing] = []
        self.delay = 0.0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        yield

    async def send(self, message: Outgoing) -> Accepted:
        self.sent.append(message)
        if self.delay:
            await asyncio.sleep(self.delay)  # the slow provider under test
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        return Accepted(f"ATXid_{uuid.uuid4().hex}", 101, "Success", "KES 0.8000")


class World:
    def __init__(self, store, **notifications: Any) -> None:
        self.clock = MovableClock()
        self.notifier = RecordingNotifier()
        self.store = store
        settings = make_settings(notifications=notifications)
        self.services: Services = build_services(settings, store, None, self.notifier, self.clock)
        self.sms = self.services.sms
        self.sender = ScriptedSender()

    def use_provider(self) -> ScriptedSender:
        self.sms.sender = self.sender
        return self.sender

    async def policy(self, chf_id: str = "070707070", product=BASIC_KES, **insuree: Any) -> dict:
        return await idle_policy(self.services, chf_id, product, **insuree)

    async def premium(
        self,
        policy: dict,
        *,
        channel: str = "mpesa_c2b",
        payer: str | None = "254708374149",
        reference: str | None = None,
    ) -> dict:
        """A premium of a payment of `policy`, carrying its premium_paid notice as the
        settlement writes it (in the premium's own insert); the notice's message, not in
        the outbox yet."""
        now = self.clock.now()
        transaction = {
            "_id": str(uuid.uuid4()),
            "channel": channel,
            "amount": policy["value"],
            "currency": policy["currency"],
            "payer": payer,
            "provider_reference": reference or uuid.uuid4().hex[:10].upper(),
        }
        settlement = {
            "status": "settled",
            "receipt": "R-" + uuid.uuid4().hex[:12].upper(),
            "effective_date": policy["start_date"],
            "settled_at": now,
        }
        notice = self.sms.premium_notice(transaction, settlement, policy)
        await self.store.collection(PREMIUMS).insert_one(
            {
                "_id": str(uuid.uuid4()),
                "transaction_uuid": transaction["_id"],
                "policy_uuid": policy["_id"],
                "receipt": settlement["receipt"],
                **notice,
            }
        )
        return notice[NOTICE]

    async def paid(self, policy: dict, **payment: Any) -> dict:
        """The same, copied into the outbox as the job's first step does: the stored
        message."""
        message = await self.premium(policy, **payment)
        await self.sms.collect()
        return await self.message(message["_id"])

    async def unmatched(
        self, reference: str = "RKL51ZDR4F", account: str = "070707070", **kw: Any
    ) -> dict:
        """A paybill payment not applied to a policy, carrying its payment_received
        notice as the C2B service writes it (in the payment's own insert); the notice's
        message, not in the outbox yet."""
        notice = self.received_notice(reference, account, **kw)
        await self.store.collection(PAYMENTS).insert_one(
            {"trans_id": reference, "bill_ref": account, "status": "unmatched", **notice}
        )
        return notice[NOTICE]

    def received_notice(self, reference: str, account: str, **kw: Any) -> dict:
        return self.sms.payment_received_notice(
            channel="mpesa_c2b",
            reference=reference,
            amount=kw.get("amount", 150000),
            currency="KES",
            account=account,
            phone_hint=kw.get("phone_hint", MASKED),
        )

    async def received(self, reference: str = "RKL51ZDR4F", account: str = "070707070", **kw):
        """The same, copied into the outbox: the stored message."""
        message = await self.unmatched(reference, account, **kw)
        await self.sms.collect()
        return await self.message(message["_id"])

    def source(self, collection: str) -> NoticeSource:
        [source] = [source for source in self.sms.sources if source.name == collection]
        return source

    async def carriers(self) -> list[dict]:
        """The premiums and payments that still carry a notice, or whose notice is not
        marked copied."""
        found = []
        for collection in (PREMIUMS, PAYMENTS):
            query = {
                "$or": [
                    {NOTICE: {"$exists": True}},
                    {NOTICE_STATE: {"$exists": True, "$ne": NOTICE_COPIED}},
                ]
            }
            found += await self.store.collection(collection).find(query).to_list(None)
        return found

    async def copied(self) -> list[str]:
        """The premiums (by `_id`) and payments (by `trans_id`) whose notice the job
        copied: marked copied, the message removed. Sorted."""
        query = {NOTICE_STATE: NOTICE_COPIED, NOTICE: {"$exists": False}}
        premiums = await self.store.collection(PREMIUMS).find(query).to_list(None)
        payments = await self.store.collection(PAYMENTS).find(query).to_list(None)
        return sorted([p["_id"] for p in premiums] + [p["trans_id"] for p in payments])

    async def message(self, message_id: str) -> dict:
        return await self.store.collection(SMS_OUTBOX).find_one({"_id": message_id})

    async def messages(self) -> list[dict]:
        return await self.store.collection(SMS_OUTBOX).find({}).to_list(None)


@pytest_asyncio.fixture
async def world(store) -> World:
    return World(store)


# --- notices, and their copy into the outbox ----------------------------------------------

HEADERS = {"Content-Type": "application/json"}


async def psp_payment(services: Services, policy: dict, reference: str = "AFR-1") -> dict:
    """A provider-API payment of the whole policy, through the ledger as the API makes it."""
    return await services.incoming.record(
        services.incoming.new_transaction(
            str(uuid.uuid4()), "psp_api", policy, None, reference, "afrimoney"
        ),
        policy,
    )


async def paybill(services: Services, trans_id: str, account: str, msisdn: str) -> dict:
    """A paybill confirmation through the C2B service: the stored payment."""
    body = callback_body(
        TransID=trans_id, TransAmount="1500.00", BillRefNumber=account, MSISDN=msisdn
    )
    answer = await services.c2b.confirm(json.dumps(body).encode(), "127.0.0.1", HEADERS)
    assert answer["ResultCode"] == 0
    return await services.c2b.get_payment(trans_id)


@pytest.mark.asyncio
async def test_a_premium_and_an_unmatched_payment_carry_their_notice_until_the_job_runs(
    world: World,
) -> None:
    sender = world.use_provider()
    services = world.services
    policy = await world.policy(phone="0711000001")
    paid = await psp_payment(services, policy)
    assert paid["settlement"]["status"] == "settled"
    payment = await paybill(services, "RKL51ZDR4F", "999999", "254708374149")
    assert payment["status"] == "unmatched"
    premium = await world.store.collection(PREMIUMS).find_one({"transaction_uuid": paid["_id"]})
    for carrier, message_id in (
        (premium, f"premium_paid:{paid['_id']}"),
        (payment, "payment_received:RKL51ZDR4F"),
    ):
        assert carrier[NOTICE_STATE] == "pending"
        assert (carrier[NOTICE]["_id"], carrier[NOTICE]["status"]) == (message_id, "pending")
    assert await world.messages() == [] and sender.sent == []  # nothing in the payment's step

    summary = await world.sms.send_due()
    assert summary == {**SUMMARY, "recorded": 2, "sent": 2}
    # Both keep the mark, without the message: copied, never to be given it again.
    assert await world.carriers() == []
    assert await world.copied() == sorted([premium["_id"], "RKL51ZDR4F"])
    assert sorted(m["_id"] for m in await world.messages()) == [
        "payment_received:RKL51ZDR4F",
        f"premium_paid:{paid['_id']}",
    ]
    assert sorted(sent.event for sent in sender.sent) == ["payment_received", "premium_paid"]
    assert await world.sms.send_due() == SUMMARY


@pytest.mark.asyncio
async def test_a_payment_is_recorded_once_whatever_runs_again(world: World) -> None:
    world.use_provider()
    policy = await world.policy()
    transaction = {
        "_id": "t-1",
        "channel": "qmoney",
        "amount": policy["value"],
        "currency": "KES",
        "payer": "5811724c",
        "provider_reference": "QM-1",
    }
    settlement = {"status": "settled", "receipt": "R-1", "settled_at": world.clock.now()}
    before: list[dict] = []
    for run in range(3):
        # The notices written into their documents again, then the job's copy. The
        # gateway gives no copied document its notice again (see the replay test
        # below); were one written again, the outbox still keeps one message.
        await world.store.collection(PREMIUMS).update_one(
            {"_id": "p-1"},
            {"$set": world.sms.premium_notice(transaction, settlement, policy)},
            upsert=True,
        )
        await world.store.collection(PAYMENTS).update_one(
            {"trans_id": "RKL51ZDR4F"},
            {"$set": world.received_notice("RKL51ZDR4F", "070707070")},
            upsert=True,
        )
        assert await world.sms.collect() == (2 if run == 0 else 0)
        assert await world.carriers() == []
        assert await world.copied() == ["RKL51ZDR4F", "p-1"]
        if run == 0:
            message = await world.message("premium_paid:t-1")
            assert (message["status"], message["attempts"], message["phone_hint"]) == (
                "pending",
                0,
                None,
            )
            assert message["receipt"] == "QM-1" and message["premium_receipt"] == "R-1"
            await world.sms.send_due()
            before = await world.messages()
        else:  # a message already in the outbox is left as it is
            assert await world.messages() == before
    assert sorted(m["_id"] for m in before) == [
        "payment_received:RKL51ZDR4F",
        "premium_paid:t-1",
    ]


@pytest.mark.asyncio
async def test_a_notice_cut_off_between_the_copy_and_its_removal_is_recorded_once(
    world: World,
) -> None:
    sender = world.use_provider()
    message = await world.premium(await world.policy())
    premiums = world.source(PREMIUMS)

    async def cut(ids: list[Any]) -> None:
        raise ServerSelectionTimeoutError("store gone")

    premiums.clear = cut  # type: ignore[method-assign]
    # The failing source is logged and the run goes on: the copied message is sent.
    assert (await world.sms.send_due())["sent"] == 1
    [copied] = await world.messages()
    assert (copied["_id"], copied["status"], copied["attempts"]) == (message["_id"], "sent", 1)
    [carrier] = await world.carriers()
    assert carrier[NOTICE]["_id"] == message["_id"]  # the premium still carries it
    assert carrier[NOTICE_STATE] == "pending"

    del premiums.clear  # the store is back: the next run copies and sends nothing twice
    assert await world.sms.send_due() == SUMMARY
    assert await world.carriers() == [] and await world.copied() == [carrier["_id"]]
    [sent] = await world.messages()
    assert (sent["_id"], sent["status"], sent["attempts"]) == (message["_id"], "sent", 1)
    assert await world.sms.send_due() == SUMMARY
    assert len(sender.sent) == 1


@pytest.mark.asyncio
async def test_an_unmatched_payment_replayed_after_its_notice_was_copied_gets_none_again(
    world: World,
) -> None:
    sender = world.use_provider()
    services = world.services
    payment = await paybill(services, "RKL51ZDR4F", "999999", "254708374149")
    assert payment["status"] == "unmatched" and payment[NOTICE_STATE] == "pending"
    assert await world.sms.send_due() == {**SUMMARY, "recorded": 1, "sent": 1}
    assert await world.copied() == ["RKL51ZDR4F"]

    # M-Pesa delivers the confirmation again (a new inbox entry: a duplicate), and the
    # inbox replays the first delivery (its own entry: the payment is allocated again
    # and is still unmatched).
    await paybill(services, "RKL51ZDR4F", "999999", "254708374149")
    entry = await world.store.collection(INBOX).find_one({"_id": payment["inbox_id"]})
    assert await services.c2b.process_entry(entry) == "processed"
    # Nor does the repository give it a notice when asked directly (a replay that read
    # the payment before the job marked it).
    notice = world.received_notice("RKL51ZDR4F", "999999", phone_hint="254708374149")
    await services.c2b.payments.add_notice("RKL51ZDR4F", notice)

    stored = await services.c2b.get_payment("RKL51ZDR4F")
    assert stored["status"] == "unmatched"
    assert NOTICE not in stored and stored[NOTICE_STATE] == "copied"
    assert await world.carriers() == []
    assert await world.sms.send_due() == SUMMARY  # nothing recorded, nothing sent
    [message] = await world.messages()
    assert (message["_id"], message["status"], message["attempts"]) == (
        "payment_received:RKL51ZDR4F",
        "sent",
        1,
    )
    assert len(sender.sent) == 1


@pytest.mark.asyncio
async def test_a_source_that_fails_to_collect_never_stops_the_run(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    sender = world.use_provider()
    policy = await world.policy()
    due = await world.paid(policy)  # in the outbox already, due
    waiting = await world.premium(policy)  # its notice still in the premium
    received = await world.unmatched("RKL51ZDR4F", account="999999", phone_hint="254708374149")
    premiums = world.source(PREMIUMS)

    async def down(limit: int) -> list[dict]:
        raise ServerSelectionTimeoutError("store gone")

    premiums.pending = down  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR, logger="gateway.sms")
    # The premiums (the first source) fail: the payments are still collected, and what
    # is due is sent.
    assert await world.sms.send_due() == {
        **SUMMARY,
        "recorded": 1,
        "sent": 2,
        "sources_failed": 1,
    }
    assert "sms_collect_failed source=premiums" in caplog.text
    assert sorted(outgoing.event for outgoing in sender.sent) == [
        "payment_received",
        "premium_paid",
    ]
    for message in (due, received):
        assert (await world.message(message["_id"]))["status"] == "sent"
    assert await world.message(waiting["_id"]) is None
    [carrier] = await world.carriers()
    assert carrier[NOTICE]["_id"] == waiting["_id"] and carrier[NOTICE_STATE] == "pending"
    assert "RKL51ZDR4F" in await world.copied()

    del premiums.pending  # back: the next run collects what waited
    assert await world.sms.send_due() == {**SUMMARY, "recorded": 1, "sent": 1}
    assert await world.carriers() == []
    assert (await world.message(waiting["_id"]))["status"] == "sent"
    assert len(sender.sent) == 3


@pytest.mark.asyncio
async def test_a_document_marked_pending_without_a_usable_notice_is_marked_copied(
    world: World,
) -> None:
    sender = world.use_provider()
    policy = await world.policy()
    good = await world.premium(policy)
    await world.store.collection(PREMIUMS).insert_one(
        {
            "_id": "p-no-notice",
            "transaction_uuid": "t-no-notice",
            "policy_uuid": policy["_id"],
            NOTICE_STATE: "pending",
        }
    )
    await world.store.collection(PAYMENTS).insert_one(
        {
            "trans_id": "RKL51ZDR4F",
            "bill_ref": "999999",
            "status": "unmatched",
            NOTICE: "not a message",
            NOTICE_STATE: "pending",
        }
    )
    # The one usable notice (in the same batch as the unusable one) is recorded and sent.
    assert await world.sms.send_due() == {**SUMMARY, "recorded": 1, "sent": 1}
    [message] = await world.messages()
    assert (message["_id"], message["status"]) == (good["_id"], "sent")
    assert [outgoing.event for outgoing in sender.sent] == ["premium_paid"]
    # Nothing waits any more: each is marked copied, without a message.
    assert await world.carriers() == []
    copied = await world.copied()
    assert len(copied) == 3 and {"p-no-notice", "RKL51ZDR4F"} <= set(copied)
    assert await world.sms.send_due() == SUMMARY
    assert len(await world.messages()) == 1


@pytest.mark.asyncio
async def test_a_store_refusing_the_premium_fails_the_step_and_its_retry_carries_the_notice(
    world: World,
) -> None:
    class RefusingPremiums(PremiumRepository):
        refusals = 1

        async def insert_once(self, premium):
            if self.refusals:
                self.refusals -= 1
                raise ServerSelectionTimeoutError("store gone")
            return await super().insert_once(premium)

    sender = world.use_provider()
    services = world.services
    services.settlement.premiums = RefusingPremiums(world.store)
    policy = await world.policy(phone="0711000001")
    with pytest.raises(ServerSelectionTimeoutError):
        await psp_payment(services, policy)
    assert await world.store.collection(PREMIUMS).count_documents({}) == 0
    assert await world.sms.send_due() == SUMMARY  # no payment, no message
    world.clock.advance(1)
    assert await services.incoming.finish_pending(["psp_api"], timedelta(0)) == 1
    [premium] = await world.store.collection(PREMIUMS).find({}).to_list(None)
    assert premium[NOTICE_STATE] == "pending"
    assert await world.sms.send_due() == {**SUMMARY, "recorded": 1, "sent": 1}
    assert [outgoing.recipient for outgoing in sender.sent] == ["+254711000001"]


@pytest.mark.asyncio
async def test_a_notice_that_cannot_be_made_never_fails_its_payment(world: World) -> None:
    def broken(*args: Any, **kwargs: Any) -> dict:
        raise ValueError("no template")

    services = world.services
    services.settlement.notice = broken
    world.sms.payment_received_notice = broken  # type: ignore[method-assign]
    paid = await psp_payment(services, await world.policy())
    assert paid["settlement"]["status"] == "settled"
    payment = await paybill(services, "RKL51ZDR4F", "999999", "254708374149")
    assert payment["status"] == "unmatched"
    assert await world.store.collection(PREMIUMS).count_documents({}) == 1
    assert await world.carriers() == [] and await world.copied() == []
    assert await world.sms.send_due() == SUMMARY
    assert await world.messages() == []


# --- whom it goes to ------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("payer", "channel", "insuree_phone", "recipient"),
    [
        ("254708374149", "mpesa_c2b", "0711000001", "+254708374149"),  # the clear MSISDN
        ("254708374149", "mpesa_stk", "", "+254708374149"),  # the STK phone
        (MASKED, "mpesa_c2b", "0711000001", "+254711000001"),  # masked: the insuree's
        (HASHED, "mpesa_c2b", "+254 711 000 001", "+254711000001"),  # hashed: the insuree's
        ("5811724c", "qmoney", "0711000001", "+254711000001"),  # a wallet is no phone
        (None, "psp_api", "711000001", "+254711000001"),
    ],
)
async def test_the_recipient_is_the_payers_clear_number_else_the_insurees(
    world: World, payer, channel, insuree_phone, recipient
) -> None:
    sender = world.use_provider()
    policy = await world.policy(phone=insuree_phone)
    message = await world.paid(policy, channel=channel, payer=payer)
    assert (await world.sms.send_due())["sent"] == 1
    [outgoing] = sender.sent
    assert outgoing.recipient == recipient
    stored = await world.message(message["_id"])
    assert (stored["status"], stored["recipient"], stored["parts"]) == ("sent", recipient, 1)
    assert stored["message_id"].startswith("ATXid_") and stored["cost"] == "KES 0.8000"
    assert outgoing.text == stored["text"] and "KES 1500.00" in stored["text"]


@pytest.mark.asyncio
async def test_a_gambian_local_number_gets_its_calling_code(world: World) -> None:
    sender = world.use_provider()
    policy = await world.policy("060606060", BASIC_GMD, phone="7712345")
    await world.paid(policy, channel="qmoney", payer="5811724c")
    await world.sms.send_due()
    assert [outgoing.recipient for outgoing in sender.sent] == ["+2207712345"]
    assert "GMD 500.00" in sender.sent[0].text


@pytest.mark.asyncio
async def test_no_reachable_number_is_recorded_and_never_sent(world: World) -> None:
    sender = world.use_provider()
    policy = await world.policy(phone="")
    message = await world.paid(policy, payer=MASKED)
    unmatched = await world.received("NOINSUREE1", account="999999", phone_hint=HASHED)
    assert await world.sms.send_due() == {**SUMMARY, "unreachable": 2}
    assert sender.sent == []
    for item in (message, unmatched):
        stored = await world.message(item["_id"])
        assert stored["status"] == "unreachable" and stored["next_attempt_at"] is None
        assert stored["failure"]["code"] == "no_reachable_number"
        assert stored["text"]  # what it would have said


SUMMARY = dict.fromkeys(
    (
        "recorded",
        "sent",
        "failed",
        "retried",
        "unknown",
        "opted_out",
        "unreachable",
        "superseded",
        "sources_failed",
    ),
    0,
)


@pytest.mark.asyncio
@pytest.mark.parametrize("channel", ["mpesa_c2b", "mpesa_stk", "qmoney", "psp_api"])
async def test_an_opted_out_insuree_gets_nothing_whatever_the_channel(
    world: World, channel: str
) -> None:
    sender = world.use_provider()
    policy = await world.policy(phone="0711000001")
    await world.services.insurees.update("070707070", {"sms_opt_out": True})
    message = await world.paid(policy, channel=channel, payer="254708374149")
    received = await world.received(account="070707070", phone_hint="254708374149")
    assert await world.sms.send_due() == {**SUMMARY, "opted_out": 2}
    assert sender.sent == []
    for item in (message, received):
        assert (await world.message(item["_id"]))["status"] == "opted_out"


@pytest.mark.asyncio
async def test_a_received_notice_gives_way_to_the_premiums_receipt(world: World) -> None:
    sender = world.use_provider()
    policy = await world.policy()
    received = await world.received("RKL51ZDR4F", phone_hint="254708374149")
    await world.paid(policy, reference="RKL51ZDR4F")
    assert await world.sms.send_due() == {**SUMMARY, "sent": 1, "superseded": 1}
    assert (await world.message(received["_id"]))["status"] == "superseded"
    assert [outgoing.event for outgoing in sender.sent] == ["premium_paid"]


# --- what each answer does ------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("code", ["403", "404", "406", "409"])
async def test_a_permanent_refusal_fails_and_is_never_retried(world: World, code: str) -> None:
    sender = world.use_provider()
    message = await world.paid(await world.policy())
    sender.script = [ProviderRejected("africastalking", code, "refused")]
    assert (await world.sms.send_due())["failed"] == 1
    world.clock.advance(86400)
    assert await world.sms.send_due() == SUMMARY
    stored = await world.message(message["_id"])
    assert (stored["status"], stored["attempts"], stored["next_attempt_at"]) == ("failed", 1, None)
    assert stored["failure"] == {"code": code, "reason": "refused"}
    assert len(sender.sent) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("code", ["401", "402", "405", "407", "500", "501", "502"])
async def test_other_refusals_are_retried_with_backoff_then_fail(world: World, code: str) -> None:
    world = World(world.store, max_attempts=3, retry_backoff_seconds=("30", "120"))
    sender = world.use_provider()
    message = await world.paid(await world.policy())
    sender.script = [ProviderRejected("africastalking", code, "refused")] * 3
    assert (await world.sms.send_due())["retried"] == 1
    stored = await world.message(message["_id"])
    assert stored["status"] == "pending" and stored["failure"]["code"] == code
    wait = stored["next_attempt_at"].replace(tzinfo=UTC) - world.clock.now()
    assert timedelta(seconds=28) < wait <= timedelta(seconds=30)
    assert (await world.sms.send_due())["retried"] == 0  # not due yet
    world.clock.advance(31)
    assert (await world.sms.send_due())["retried"] == 1
    world.clock.advance(121)
    assert (await world.sms.send_due())["failed"] == 1
    stored = await world.message(message["_id"])
    assert (stored["status"], stored["attempts"]) == ("failed", 3)
    assert len(sender.sent) == 3


@pytest.mark.asyncio
async def test_an_unavailable_provider_stops_the_run_and_the_rest_wait(world: World) -> None:
    sender = world.use_provider()
    policy = await world.policy()
    for _ in range(3):
        await world.paid(policy)
    sender.script = [ProviderUnavailable("africastalking", "HTTP 500")]
    assert (await world.sms.send_due())["retried"] == 1
    assert len(sender.sent) == 1
    statuses = sorted((m["status"], m["attempts"]) for m in await world.messages())
    assert statuses == [("pending", 0), ("pending", 0), ("pending", 1)]
    world.clock.advance(31)
    assert (await world.sms.send_due())["sent"] == 3


@pytest.mark.asyncio
async def test_a_lost_answer_is_not_sent_again_until_the_hold_passes(world: World) -> None:
    sender = world.use_provider()
    message = await world.paid(await world.policy())
    sender.script = [ProviderOutcomeUnknown("africastalking", "no answer (timed out)")]
    assert (await world.sms.send_due())["unknown"] == 1
    world.clock.advance(600)
    assert await world.sms.send_due() == SUMMARY
    world.clock.advance(301)  # past notifications.unknown_hold_seconds (900)
    assert (await world.sms.send_due())["sent"] == 1
    stored = await world.message(message["_id"])
    assert (stored["status"], stored["attempts"]) == ("sent", 2)
    assert len(sender.sent) == 2  # without a delivery report: the documented second SMS


@pytest.mark.asyncio
async def test_a_delivery_report_adopts_a_message_whose_answer_was_lost(world: World) -> None:
    sender = world.use_provider()
    message = await world.paid(await world.policy())
    sender.script = [ProviderOutcomeUnknown("africastalking", "no answer (cut off)")]
    await world.sms.send_due()
    adopted = await world.sms.apply_report(
        "ATXid_lost", "Success", "+254708374149", "", world.clock.now()
    )
    assert adopted is not None and adopted["_id"] == message["_id"]
    assert (adopted["status"], adopted["message_id"]) == ("delivered", "ATXid_lost")
    world.clock.advance(3600)
    assert await world.sms.send_due() == SUMMARY
    assert len(sender.sent) == 1


@pytest.mark.asyncio
async def test_delivery_reports_move_a_sent_message_and_never_undo_a_final_one(
    world: World,
) -> None:
    world.use_provider()
    policy = await world.policy()
    first, second = await world.paid(policy), await world.paid(policy)
    await world.sms.send_due()
    ids = [(await world.message(m["_id"]))["message_id"] for m in (first, second)]
    now = world.clock.now()
    await world.sms.apply_report(ids[0], "Buffered", "+254708374149", "", now)
    assert (await world.message(first["_id"]))["provider_status"] == "Buffered"
    await world.sms.apply_report(ids[0], "Success", "+254708374149", "", now)
    await world.sms.apply_report(ids[0], "Sent", "+254708374149", "", now)  # late, out of order
    await world.sms.apply_report(ids[1], "Failed", "+254708374149", "DeliveryFailure", now)
    delivered, failed = [await world.message(m["_id"]) for m in (first, second)]
    assert (delivered["status"], delivered["provider_status"]) == ("delivered", "Success")
    assert failed["status"] == "failed"
    assert failed["failure"] == {"code": "Failed", "reason": "DeliveryFailure"}
    assert await world.sms.apply_report("ATXid_nobody", "Success", "+254700000000", "", now) is None


# --- the claim ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_two_runs_at_once_never_record_or_send_one_message_twice(world: World) -> None:
    sender = world.use_provider()
    sender.delay = 0.02
    policy = await world.policy()
    for _ in range(6):
        await world.premium(policy)
    other = World(world.store)
    other.sms.sender = sender
    summaries = await asyncio.gather(world.sms.send_due(), other.sms.send_due())
    assert sum(summary["recorded"] for summary in summaries) == 6
    assert sum(summary["sent"] for summary in summaries) == 6
    assert len(sender.sent) == 6
    assert {m["status"] for m in await world.messages()} == {"sent"}
    assert len(await world.messages()) == 6 and await world.carriers() == []
    assert len(await world.copied()) == 6


@pytest.mark.asyncio
async def test_a_claimed_message_is_claimed_once(world: World) -> None:
    world.use_provider()
    message = await world.paid(await world.policy())
    now = world.clock.now()
    outbox = world.sms.outbox
    first = await outbox.claim(now, now + timedelta(minutes=15), "one", 6)
    second = await outbox.claim(now, now + timedelta(minutes=15), "two", 6)
    assert first is not None and first["_id"] == message["_id"] and second is None
    assert await outbox.finish(message["_id"], "two", {"status": "sent"}, "late", now) is None
    # A run that stopped mid-send: its message is due again once the hold has passed.
    later = now + timedelta(minutes=16)
    again = await outbox.claim(later, later + timedelta(minutes=15), "three", 6)
    assert again is not None and again["attempts"] == 2


# --- the local kinds --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_record_kind_delivers_when_the_job_runs_and_shows_what_was_not_sent(
    world: World,
) -> None:
    policy = await world.policy(phone="")
    await world.premium(policy, payer="254708374149")
    await world.unmatched("UNMATCHED1", account="555", phone_hint=MASKED)
    assert world.notifier.sent == []  # nothing is handed over in the payment's step
    assert await world.sms.send_due() == {
        **SUMMARY,
        "recorded": 2,
        "sent": 1,
        "unreachable": 1,
    }
    by_status = {notification.status: notification for notification in world.notifier.sent}
    assert len(world.notifier.sent) == 2
    sent, not_sent = by_status["sent"], by_status["unreachable"]
    assert (sent.recipient, sent.event) == ("+254708374149", "premium_paid")
    assert (not_sent.recipient, not_sent.reference) == (MASKED, "UNMATCHED1")
    assert world.notifier.delivered == [sent]
    assert {m["status"] for m in await world.messages()} == {"sent", "unreachable"}
    assert await world.sms.send_due() == SUMMARY
    assert len(world.notifier.sent) == 2


@pytest.mark.asyncio
async def test_a_notifier_that_fails_gets_the_message_again_on_a_later_run(world: World) -> None:
    class Broken(RecordingNotifier):
        async def notify(self, notification):
            raise ConnectionError("notifier down")

    world.sms.local_notifier = Broken()
    message = await world.paid(await world.policy())
    assert await world.sms.send_due() == {**SUMMARY, "retried": 1}
    stored = await world.message(message["_id"])
    assert (stored["status"], stored["failure"]["code"]) == ("pending", "sender_error")
    world.sms.local_notifier = world.notifier
    assert await world.sms.send_due() == SUMMARY  # not due before the first backoff
    world.clock.advance(31)
    assert (await world.sms.send_due())["sent"] == 1
    [notification] = world.notifier.sent
    assert notification.recipient == "+254708374149"
    assert (await world.message(message["_id"]))["attempts"] == 2


# --- the operators' view ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_daily_summary_counts_by_status_and_lists_the_failing(world: World) -> None:
    sender = world.use_provider()
    policy = await world.policy()
    await world.paid(policy)
    await world.paid(policy)
    sender.script = [None, ProviderRejected("africastalking", "406", "UserInBlacklist")]
    await world.sms.send_due()
    world.clock.advance(-86400)
    await world.paid(policy)  # yesterday's, still pending
    world.clock.advance(86400)
    summary = await world.sms.daily(3)
    days = {day["day"]: day for day in summary["days"]}
    today = world.clock.now().date()
    assert list(days) == [(today - timedelta(days=n)).isoformat() for n in (2, 1, 0)]
    assert (days[today.isoformat()]["sent"], days[today.isoformat()]["failed"]) == (1, 1)
    assert days[(today - timedelta(days=1)).isoformat()]["pending"] == 1
    assert days[today.isoformat()]["total"] == 2
    [failing] = summary["failing"]
    assert failing["failure"] == {"code": "406", "reason": "UserInBlacklist"}
    page, total = await world.sms.messages({"status": "failed"}, 10, 0)
    assert total == 1 and page[0]["_id"] == failing["_id"]
