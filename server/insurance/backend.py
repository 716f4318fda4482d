"""The insurance backend: where the insurees and policies the channels settle against
come from, and where their premiums go.

Every channel reads insurees and policies from the gateway's collections and settles
there (a compare-and-set claims an idle policy; unique indexes keep one premium per
transaction), whichever backend is configured: that is what keeps one payment from
paying a policy twice. The backend decides what stands behind those collections:

- **built-in**: nothing; the collections are the record (operators keep them through
  the admin API). No call, no round trip.
- **openIMIS**: the collections mirror openIMIS. Before an insuree or a policy is read
  the mirror is refreshed from openIMIS (at most once per `openimis.cache_seconds` per
  insuree, so a burst of callbacks does not hammer it), and a premium settled here is
  marked to be written into openIMIS by the `write-premiums` job (server.openimis), which
  then mirrors the policy's status as openIMIS reports it. openIMIS unreachable: the
  mirror as last read serves, and the payment is stored and acknowledged as always.

A policy a payment claimed here (`awaiting_backend`) keeps its local status until its
premium is in openIMIS, and once a payment has claimed it a refresh never makes it idle
again: openIMIS's view, read before the premium was written, cannot reopen it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from server.insurance.openimis_client import (
    ERROR,
    PROVIDER,
    RECEIVED,
    SUCCESS,
    OpenimisClient,
)
from server.insurance.repository import IDLE, POLICY_STATUSES, InsureeRepository, PolicyRepository
from server.insurance.schemas import day_start
from server.insurance.settings import OpenimisSettings
from server.integrations.transport import ProviderError, ProviderUnavailable
from server.kernel.clock import Clock
from server.kernel.identifiers import CHF_ID
from server.kernel.money import AmountError, format_amount, parse_amount

log = logging.getLogger("gateway.insurance")

# A premium's write into the backend starts pending (`insurance_write` on the premium's
# document; server.ledger.premium_writes takes it on).
WRITE_PENDING = "pending"


class InsuranceBackend(Protocol):
    name: str
    remote: bool  # the collections mirror another system, refreshed before reads

    async def refresh_insuree(self, chf_id: str) -> None:
        """Bring the insuree and its policies up to date before they are read."""

    async def refresh_policy(self, policy_uuid: str) -> None:
        """Bring the policy (and its insuree's others) up to date before it is read."""

    def activation_fields(self) -> Mapping[str, Any]:
        """Set on a policy with its claim by a payment."""

    def premium_fields(self, now: datetime) -> Mapping[str, Any]:
        """Stored with a premium in its insert: what the backend still has to do."""


@dataclass(frozen=True)
class PremiumToWrite:
    policy_uuid: str
    amount: int
    currency: str
    receipt: str
    paid_at: datetime  # when the money was paid; openIMIS's pay date is its day there


@dataclass(frozen=True)
class Sent:
    """What became of a premium sent: written, refused (with the backend's message), or
    neither yet (the backend is still at it when the deadline came)."""

    written: bool
    refusal: str = ""


class PremiumDestination(Protocol):
    """A backend premiums are written into, one at a time (server.ledger.premium_writes)."""

    async def holds(self, premium: PremiumToWrite) -> bool:
        """The backend has this premium (its receipt on its policy)."""

    async def refusal(self, premium: PremiumToWrite) -> str:
        """Why the backend would refuse the premium ("" when it would take it)."""

    async def send(self, mutation_id: str, premium: PremiumToWrite) -> Sent:
        """Write it, following the backend's work until it ends or the deadline."""

    async def still_working(self, mutation_id: str) -> bool:
        """The backend took that attempt and has not finished it."""

    async def written_status(self, policy_uuid: str) -> tuple[int, datetime | None]:
        """The policy's status and effective date in the backend after the premium;
        mirrored into the policy here, which no longer awaits the backend."""


class BuiltInBackend:
    """The gateway's own collections are the record."""

    name = "builtin"
    remote = False

    async def refresh_insuree(self, chf_id: str) -> None:
        return None

    async def refresh_policy(self, policy_uuid: str) -> None:
        return None

    def activation_fields(self) -> Mapping[str, Any]:
        return {}

    def premium_fields(self, now: datetime) -> Mapping[str, Any]:
        return {}


class OpenimisBackend:
    name = "openimis"
    remote = True

    def __init__(
        self,
        client: OpenimisClient | None,
        insurees: InsureeRepository,
        policies: PolicyRepository,
        settings: OpenimisSettings,
        clock: Clock,
    ) -> None:
        self.client = client
        self.insurees = insurees
        self.policies = policies
        self.settings = settings
        self.clock = clock
        self._fresh_until: dict[str, float] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}

    def activation_fields(self) -> Mapping[str, Any]:
        return {"awaiting_backend": True}

    def premium_fields(self, now: datetime) -> Mapping[str, Any]:
        return {
            "insurance_write": {
                "backend": self.name,
                "state": WRITE_PENDING,
                "attempts": 0,
                "failures": 0,
                "next_at": now,
            }
        }

    async def refresh_policy(self, policy_uuid: str) -> None:
        if self.client is None:  # a command-line task: the mirror as it is
            return
        known = await self.policies.find_one({"_id": policy_uuid})
        if known is not None:
            await self.refresh_insuree(known["chf_id"])
            return
        try:
            node = await self.client.policy(policy_uuid)
        except ProviderError as err:
            log.warning("openimis_refresh_failed policy=%s error=%s", policy_uuid, err.message)
            return
        for chf_id in _covered(node):
            await self.refresh_insuree(chf_id)

    async def refresh_insuree(self, chf_id: str) -> None:
        """Single-flight per insuree: callers arriving during a refresh wait for it."""
        chf_id = CHF_ID.normalise(chf_id)
        if self.client is None or not CHF_ID.is_valid(chf_id):
            return
        if self._fresh_until.get(chf_id, 0.0) > time.monotonic():
            return
        task = self._refreshing.get(chf_id)
        if task is None:
            task = asyncio.ensure_future(self._refresh(chf_id))
            self._refreshing[chf_id] = task
            task.add_done_callback(lambda _: self._refreshing.pop(chf_id, None))
        await asyncio.shield(task)

    async def _refresh(self, chf_id: str) -> None:
        assert self.client is not None
        try:
            insuree = await self.client.insuree(chf_id)
            nodes = await self.client.policies_of(chf_id) if insuree else []
            uuids = [str(node.get("uuid")) for node in nodes]
            paid = await self.client.premiums_by_policy(uuids) if uuids else {}
        except ProviderError as err:
            # Remembered as a refresh: a burst of callbacks does not wait on openIMIS's
            # timeout again and again, and reads the mirror as it is meanwhile.
            log.warning("openimis_refresh_failed chf_id=%s error=%s", chf_id, err.message)
        else:
            if insuree is not None:
                await self._mirror(chf_id, insuree, nodes, paid)
        self._fresh_until[chf_id] = time.monotonic() + self.settings.cache_seconds

    async def _mirror(
        self,
        chf_id: str,
        insuree: Mapping[str, Any],
        nodes: list[dict[str, Any]],
        paid: Mapping[str, list[dict[str, Any]]],
    ) -> None:
        """`paid`: each policy's premiums in openIMIS, by the policy's uuid."""
        now = self.clock.now()
        await self.insurees.mirror(
            chf_id,
            {
                "first_name": str(insuree.get("otherNames") or ""),
                "last_name": str(insuree.get("lastName") or ""),
                "phone": str(insuree.get("phone") or ""),
                "backend_uuid": str(insuree.get("uuid") or ""),
            },
            now,
        )
        known = await self.policies.uuids_of(chf_id)
        for node in nodes:
            fields = self._policy_fields(node, paid.get(str(node.get("uuid")), []))
            if fields is None:
                continue
            policy_uuid = str(node["uuid"])
            if policy_uuid in known:
                await self.policies.mirror_update(policy_uuid, fields)
            else:
                await self.policies.mirror_insert(policy_uuid, chf_id, fields, now)

    def _policy_fields(
        self, node: Mapping[str, Any], premiums: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The mirror's fields of one openIMIS policy; None for one it cannot read. Its
        `value` is what is left to pay: the policy's value less its premiums."""
        currency = self.settings.currency
        due = _left_to_pay(node, premiums, currency)
        try:
            status = int(node["status"])
            start = _day(node["startDate"])
        except (KeyError, TypeError, ValueError):
            due = None
        if due is None:
            log.warning("openimis_policy_unreadable uuid=%s", node.get("uuid"))
            return None
        if status not in POLICY_STATUSES:
            return None
        product = node.get("product")
        if not isinstance(product, dict):
            product = {}
        fields: dict[str, Any] = {
            "status": status,
            "product_code": str(product.get("code") or ""),
            "product_name": str(product.get("name") or ""),
            "value": due,
            "currency": currency,
            "start_date": start,
            "updated_at": self.clock.now(),
            "source": self.name,
        }
        for wire, stored in (("expiryDate", "expiry_date"), ("effectiveDate", "effective_date")):
            if node.get(wire):
                fields[stored] = _day(node[wire])
        return fields


def _covered(node: Mapping[str, Any] | None) -> list[str]:
    """The numbers of the insurees an openIMIS policy covers."""
    covered = (node or {}).get("insureePolicies") or {}
    edges = covered.get("edges") if isinstance(covered, dict) else None
    numbers = []
    for edge in edges if isinstance(edges, list) else []:
        insuree = ((edge or {}).get("node") or {}).get("insuree") or {}
        if insuree.get("chfId"):
            numbers.append(str(insuree["chfId"]))
    return numbers


def _left_to_pay(
    node: Mapping[str, Any], premiums: list[dict[str, Any]], currency: str
) -> int | None:
    """What an openIMIS policy still needs: its value less its premiums, photo fees
    left out as openIMIS leaves them out (None when openIMIS's answer cannot be read).
    Both are decimal strings on openIMIS's wire."""
    try:
        value = parse_amount(str(node["value"]), currency)
        paid = sum(
            parse_amount(str(premium["amount"]), currency)
            for premium in premiums
            if not premium.get("isPhotoFee")
        )
    except (KeyError, TypeError, ValueError, AmountError):
        return None
    return value - paid


def _day(text: Any) -> datetime:
    """openIMIS's "YYYY-MM-DD" (or a datetime's text), stored as UTC midnight."""
    return day_start(date.fromisoformat(str(text)[:10]))


class OpenimisPremiums:
    """Premiums written into openIMIS: `createPremium`, then its mutation log until it
    ends (PROTOCOLS.md section 4)."""

    def __init__(
        self,
        client: OpenimisClient,
        policies: PolicyRepository,
        settings: OpenimisSettings,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.policies = policies
        self.settings = settings
        self.clock = clock
        self.sleep = sleep

    async def holds(self, premium: PremiumToWrite) -> bool:
        found = await self.client.premiums_of(premium.policy_uuid)
        return any(str(node.get("receipt")) == premium.receipt for node in found)

    async def refusal(self, premium: PremiumToWrite) -> str:
        """A policy no longer idle in openIMIS would take the premium and activate
        nothing: the money would be applied twice. It is refused here instead."""
        policy = await self.client.policy(premium.policy_uuid)
        if policy is None:
            return f"openIMIS has no policy {premium.policy_uuid}"
        status = policy.get("status")
        if status != IDLE:
            return f"the policy is no longer awaiting payment in openIMIS (status {status})"
        due = _left_to_pay(
            policy, await self.client.premiums_of(premium.policy_uuid), premium.currency
        )
        if due != premium.amount:
            # openIMIS would take it and pay the policy more, or less, than it costs.
            shown = "unreadable" if due is None else format_amount(due, premium.currency)
            paid = format_amount(premium.amount, premium.currency)
            return (
                f"openIMIS expects {shown} {premium.currency} for the policy now, "
                f"the payment was {paid}"
            )
        if not await self.client.receipt_free(premium.receipt, premium.policy_uuid):
            return f"openIMIS has another premium with receipt {premium.receipt} for its product"
        return ""

    async def send(self, mutation_id: str, premium: PremiumToWrite) -> Sent:
        await self.client.create_premium(
            mutation_id,
            premium.policy_uuid,
            format_amount(premium.amount, premium.currency),
            premium.receipt,
            premium.paid_at.astimezone(self.settings.zone()).date(),
        )
        deadline = time.monotonic() + self.settings.mutation_deadline_seconds
        pause = 0.05
        while True:
            outcome = await self.client.mutation_outcome(mutation_id)
            if outcome.status == SUCCESS:
                return Sent(written=True)
            if outcome.status == ERROR:
                return Sent(written=False, refusal=outcome.message or "openIMIS refused it")
            if time.monotonic() + pause > deadline:
                return Sent(written=False)
            await self.sleep(pause)
            pause = min(pause * 2, 2.0)

    async def still_working(self, mutation_id: str) -> bool:
        return (await self.client.mutation_outcome(mutation_id)).status == RECEIVED

    async def written_status(self, policy_uuid: str) -> tuple[int, datetime | None]:
        node = await self.client.policy(policy_uuid)
        if node is None:
            raise ProviderUnavailable(PROVIDER, f"policy {policy_uuid} not found after its premium")
        status = int(node["status"])
        effective = _day(node["effectiveDate"]) if node.get("effectiveDate") else None
        changes: dict[str, Any] = {"updated_at": self.clock.now()}
        if status == IDLE:
            # openIMIS took the premium and still wants more: the policy stays claimed
            # here (never idle again), and the premium says what openIMIS reports.
            log.warning("openimis_policy_still_idle policy=%s", policy_uuid)
        else:
            changes["status"] = status
        if effective is not None:
            changes["effective_date"] = effective
        await self.policies.backend_written(policy_uuid, changes)
        return status, effective
