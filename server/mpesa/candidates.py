"""The policies an unmatched paybill payment could be allocated to: the operator's
picker, instead of a policy id pasted by hand.

First the policies awaiting payment (idle) of the insuree the payment's account number
names, then, when the operator searches, those of the insurees the search finds
(server.insurance.search). Each says whether the payment fits it (same amount and
currency, both more than zero) and, when not, why in words: allocating refuses a
payment that does not fit (server.mpesa.allocation)."""

from __future__ import annotations

from dataclasses import dataclass

from server.insurance.documents import Insuree, Policy
from server.insurance.service import InsureeService
from server.kernel.errors import NotFound
from server.kernel.identifiers import TRANS_ID
from server.mpesa.allocation import Allocation, require_unmatched
from server.mpesa.documents import C2BPayment
from server.mpesa.reasons import misfit_text
from server.mpesa.repository import C2BPaymentRepository

# Why a policy is listed: its insuree is the account number's, or the search found it.
ACCOUNT, SEARCH = "account", "search"
# The most insurees a search lists the policies of.
SEARCHED_INSUREES = 20


@dataclass(frozen=True)
class Candidate:
    policy: Policy
    insuree: Insuree
    found_by: str  # ACCOUNT or SEARCH
    misfit: str | None  # why the payment cannot pay the policy; None when it fits


@dataclass(frozen=True)
class Candidates:
    payment: C2BPayment
    account_insuree: Insuree | None  # the insuree the account number names
    query: str | None
    items: list[Candidate]


class AllocationCandidates:
    def __init__(
        self, payments: C2BPaymentRepository, allocation: Allocation, insurees: InsureeService
    ) -> None:
        self.payments = payments
        self.allocation = allocation
        self.insurees = insurees

    async def of_payment(self, trans_id: str, query: str | None = None) -> Candidates:
        """NotFound for an unknown payment, Conflict for one that is not unmatched."""
        trans_id = TRANS_ID.normalise(trans_id)
        payment = await self.payments.get(trans_id)
        if payment is None:
            raise NotFound(f"no C2B payment with TransID {trans_id}")
        require_unmatched(payment)
        match = await self.allocation.match(payment["bill_ref"], with_transactions=False)
        found: list[tuple[Insuree, list[Policy], str]] = []
        if match.insuree is not None:
            found.append((match.insuree, match.idle, ACCOUNT))
        if query:
            account = match.insuree["chf_id"] if match.insuree is not None else None
            found.extend(
                (insuree, idle, SEARCH)
                for insuree, idle in await self.insurees.found_with_idle_policies(
                    query, SEARCHED_INSUREES
                )
                if insuree["chf_id"] != account
            )
        items = [
            Candidate(
                policy,
                insuree,
                found_by,
                misfit_text(
                    payment["amount"], payment["currency"], policy["value"], policy["currency"]
                ),
            )
            for insuree, idle, found_by in found
            for policy in idle
        ]
        return Candidates(payment, match.insuree, query, items)
