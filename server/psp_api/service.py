"""Rules of the payment-provider API: who may call it, verify, and idempotent payment.

A payment is idempotent on (PSP, psp_transaction_id): a replay with the same
content answers the first outcome; the same id with other content is a 409 and
changes nothing. The money has already been taken by the provider, so the
payment is recorded through the ledger's incoming payments and settled."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from typing import Any

from server.insurance.documents import Insuree, Policy
from server.insurance.repository import IDLE
from server.insurance.service import InsureeService, PolicyService, require_exact_amount
from server.kernel.clock import Clock
from server.kernel.errors import ApiError, Conflict, Forbidden, ValidationFailed
from server.kernel.identifiers import CHF_ID
from server.kernel.identity import Identity
from server.ledger import states
from server.ledger.documents import Transaction
from server.ledger.incoming import IncomingPayments, PolicyBusy, PolicyNotPayable
from server.ledger.repository import TransactionRepository
from server.ledger.settlement import settlement_of
from server.psp_api.audit import AuditedRequest, audit_entry
from server.psp_api.repository import AuditRepository
from server.psps.repository import PspRepository

CHANNEL = "psp_api"
# A concurrent identical request waits this long for the first one to finish.
REPLAY_WAIT_SECONDS = 5.0


def fingerprint(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


class PspApiService:
    def __init__(
        self,
        insurees: InsureeService,
        policies: PolicyService,
        psps: PspRepository,
        transactions: TransactionRepository,
        incoming: IncomingPayments,
        audit: AuditRepository,
        clock: Clock,
    ) -> None:
        self.insurees = insurees
        self.policies = policies
        self.psps = psps
        self.transactions = transactions
        self.incoming = incoming
        self.audit = audit
        self.clock = clock

    async def provider_of(self, identity: Identity) -> dict[str, Any]:
        """The active external-API PSP linked to this user, or 403."""
        psp = await self.psps.find_one({"username": identity.username})
        if psp is None or not psp["is_external_api"]:
            raise Forbidden("this user is not linked to a payment provider", code="not_a_psp")
        if not psp["active"]:
            raise Forbidden("the payment provider is inactive", code="psp_inactive")
        return psp

    async def verify(self, chf_id: str) -> tuple[Insuree, list[Policy]]:
        insuree = await self.insurees.get(chf_id)
        return insuree, await self.policies.idle_of(insuree["chf_id"])

    async def pay(
        self, psp: dict[str, Any], request: dict[str, Any], actor: str
    ) -> tuple[int, Transaction]:
        """(HTTP status, settled transaction): 201 when new, 200 for a replay.

        A new payment is not looked up first (one round trip less on every payment): a
        replay is refused by the checks (its policy is no longer idle) or by the unique
        index on (provider, psp_transaction_id), and any refusal is answered with the
        stored payment of that id when there is one."""
        digest = fingerprint(request)
        try:
            return 201, await self._record_new(psp, request, digest, actor)
        except ApiError:
            # A replay, or the same request sent concurrently: the stored payment's
            # outcome is the answer, not a refusal.
            existing = await self._existing(psp, request)
            if existing is None:
                raise
            return 200, await self._replay(existing, digest)

    async def _record_new(
        self, psp: dict[str, Any], request: dict[str, Any], digest: str, actor: str
    ) -> Transaction:
        policy = await self._check(psp, request)
        transaction = self.incoming.new_transaction(
            str(uuid.uuid4()),
            CHANNEL,
            policy,
            psp["_id"],
            request["psp_transaction_id"],
            actor,
            channel_data={"request_fingerprint": digest, "json_ext": request["json_ext"]},
        )
        try:
            recorded = await self.incoming.record(transaction, policy)
        except PolicyBusy:
            raise Conflict(
                "another payment of this policy is in progress", code="payment_in_progress"
            ) from None
        except PolicyNotPayable:
            raise _not_idle() from None
        return self._settled(recorded)

    async def record_audit(self, audited: AuditedRequest) -> None:
        await self.audit.add(
            {"_id": str(uuid.uuid4()), "at": self.clock.now(), **audit_entry(audited)}
        )

    async def _existing(self, psp: dict[str, Any], request: dict[str, Any]) -> Transaction | None:
        return await self.transactions.find_one(
            {
                "channel": CHANNEL,
                "psp_uuid": psp["_id"],
                "provider_reference": request["psp_transaction_id"],
            }
        )

    async def _check(self, psp: dict[str, Any], request: dict[str, Any]) -> Policy:
        reference = request["policy"]
        policy = await self.policies.by_payment_token(reference["token"])
        if policy is None or policy["chf_id"] != CHF_ID.normalise(request["chf_id"]):
            # The insuree is read only now: a policy of this insuree proves it exists.
            await self.insurees.get(request["chf_id"])  # NotFound: no such insuree
            raise ValidationFailed(
                "the policy token does not belong to this insuree", code="invalid_policy_token"
            )
        if policy["status"] != IDLE:
            raise _not_idle(policy["status"])
        if (reference["product_code"], reference["product_name"]) != (
            policy["product_code"],
            policy["product_name"],
        ):
            raise ValidationFailed(
                "product code or name does not match the policy",
                {"product_code": policy["product_code"], "product_name": policy["product_name"]},
                code="product_mismatch",
            )
        if psp["currency"] != policy["currency"]:
            raise ValidationFailed(
                f"the policy is paid in {policy['currency']}, this provider "
                f"settles in {psp['currency']}",
                code="currency_mismatch",
            )
        require_exact_amount(policy, request["amount"])
        return policy

    async def _replay(self, existing: Transaction, digest: str) -> Transaction:
        # Payments stored before `channel_data` existed keep the fingerprint top-level.
        fingerprint = existing.get("channel_data", {}).get(
            "request_fingerprint", existing.get("request_fingerprint")
        )
        if fingerprint != digest:
            raise Conflict(
                "this psp_transaction_id was already used for a different payment",
                {"payment_id": existing["_id"]},
                code="duplicate_transaction_id",
            )
        try:
            async with asyncio.timeout(REPLAY_WAIT_SECONDS):
                while existing["status"] == states.PROCESSING or (
                    existing["status"] == states.SUCCEEDED and not existing.get("settlement")
                ):
                    await asyncio.sleep(0.05)
                    again = await self.transactions.find_one({"_id": existing["_id"]})
                    if again is None:
                        raise RuntimeError(
                            f"transaction {existing['_id']} vanished while its replay waited"
                        )
                    existing = again
        except TimeoutError:
            raise Conflict(
                "the first request with this psp_transaction_id is still being "
                "processed; retry later",
                {"payment_id": existing["_id"]},
                code="payment_in_progress",
            ) from None
        if existing["status"] == states.FAILED:
            raise _not_idle()
        return self._settled(existing)

    @staticmethod
    def _settled(transaction: Transaction) -> Transaction:
        if settlement_of(transaction)["status"] != "settled":
            raise Conflict(
                "the payment was received but could not be applied to the policy",
                {"payment_id": transaction["_id"]},
                code="not_settled",
            )
        return transaction


def _not_idle(status: int | None = None) -> ApiError:
    return Conflict(
        "the policy is not awaiting payment",
        {"status": status} if status is not None else {},
        code="policy_not_idle",
    )
