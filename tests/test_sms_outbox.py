"""The SMS outbox on the store lanes, with a scripted sender: recording once, whom a
message goes to, opt-out, what each provider answer does, the claim, delivery reports."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from server.integrations.notifications import RecordingNotifier
from server.integrations.transport import (
    ProviderOutcomeUnknown,
    ProviderRejected,
    ProviderUnavailable,
)
from server.kernel.clock import Clock
from server.notifications.repository import SMS_OUTBOX
from server.notifications.senders import Accepted, Outgoing
from server.startup.services import Services, build_services

from support import BASIC_GMD, BASIC_KES, idle_policy, make_settings

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

    async def paid(
        self,
        policy: dict,
        *,
        channel: str = "mpesa_c2b",
        payer: str | None = "254708374149",
        reference: str | None = None,
    ) -> dict:
        """Record the premium_paid message of a payment of `policy`."""
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
        await self.sms.premium_paid(transaction, settlement, policy)
        return await self.message(f"premium_paid:{transaction['_id']}")

    async def received(self, reference: str = "RKL51ZDR4F", account: str = "070707070", **kw):
        await self.sms.payment_received(
            channel="mpesa_c2b",
            reference=reference,
            amount=kw.get("amount", 150000),
            currency="KES",
            account=account,
            phone_hint=kw.get("phone_hint", MASKED),
        )
        return await self.message(f"payment_received:{reference}")

    async def message(self, message_id: str) -> dict:
        return await self.store.collection(SMS_OUTBOX).find_one({"_id": message_id})

    async def messages(self) -> list[dict]:
        return await self.store.collection(SMS_OUTBOX).find({}).to_list(None)


@pytest_asyncio.fixture
async def world(store) -> World:
    return World(store)


# --- recording --------------------------------------------------------------------------


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
    for _ in range(3):
        await world.sms.premium_paid(transaction, settlement, policy)
        await world.received("RKL51ZDR4F")
    assert sorted(m["_id"] for m in await world.messages()) == [
        "payment_received:RKL51ZDR4F",
        "premium_paid:t-1",
    ]
    message = await world.message("premium_paid:t-1")
    assert (message["status"], message["attempts"], message["phone_hint"]) == ("pending", 0, None)
    assert message["receipt"] == "QM-1" and message["premium_receipt"] == "R-1"


@pytest.mark.asyncio
async def test_a_store_refusing_the_message_never_fails_the_settlement(world: World) -> None:
    async def refuse(message):
        raise ConnectionError("store gone")

    world.sms.outbox.insert_once = refuse
    services = world.services
    policy = await world.policy()
    paid = await services.incoming.record(
        services.incoming.new_transaction(
            str(uuid.uuid4()), "psp_api", policy, None, "AFR-1", "afrimoney"
        ),
        policy,
    )
    assert paid["settlement"]["status"] == "settled"
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
    ("sent", "failed", "retried", "unknown", "opted_out", "unreachable", "superseded"), 0
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
async def test_two_runs_at_once_never_send_one_message_twice(world: World) -> None:
    sender = world.use_provider()
    sender.delay = 0.02
    policy = await world.policy()
    for _ in range(6):
        await world.paid(policy)
    other = World(world.store)
    other.sms.sender = sender
    summaries = await asyncio.gather(world.sms.send_due(), other.sms.send_due())
    assert sum(summary["sent"] for summary in summaries) == 6
    assert len(sender.sent) == 6
    assert {m["status"] for m in await world.messages()} == {"sent"}


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
async def test_the_record_kind_delivers_at_once_and_shows_what_was_not_sent(world: World) -> None:
    policy = await world.policy(phone="")
    await world.paid(policy, payer="254708374149")
    await world.received("UNMATCHED1", account="555", phone_hint=MASKED)
    sent, not_sent = world.notifier.sent
    assert (sent.status, sent.recipient, sent.event) == ("sent", "+254708374149", "premium_paid")
    assert (not_sent.status, not_sent.recipient, not_sent.reference) == (
        "unreachable",
        MASKED,
        "UNMATCHED1",
    )
    assert world.notifier.delivered == [sent]
    assert {m["status"] for m in await world.messages()} == {"sent", "unreachable"}
    assert await world.sms.send_due() == SUMMARY


@pytest.mark.asyncio
async def test_a_notifier_that_fails_leaves_the_message_to_the_job(world: World) -> None:
    class Broken(RecordingNotifier):
        async def notify(self, notification):
            raise ConnectionError("notifier down")

    world.sms.local_notifier = Broken()
    message = await world.paid(await world.policy())
    stored = await world.message(message["_id"])
    assert (stored["status"], stored["failure"]["code"]) == ("pending", "sender_error")
    world.sms.local_notifier = world.notifier
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
