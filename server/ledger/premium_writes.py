"""The premiums waiting to be written into the insurance backend (openIMIS): an outbox
kept on the premiums themselves, worked by the `write-premiums` job.

A premium settled with a remote backend is inserted with `insurance_write` pending
(server.insurance.backend). Each run takes the due ones, oldest first, and for each:

1. after an earlier attempt (which may have reached the backend and lost its answer),
   asks the backend whether the premium is already there (then it is written), and
   whether that attempt is still queued there (then it waits for it);
2. asks whether the backend would refuse it (the policy no longer awaiting payment
   there): a refusal is kept with the backend's message for an operator;
3. claims the attempt (a compare-and-set on the attempts made, before sending) and
   sends it, following the backend's work until it ends or the deadline.

So a premium is written at most once, and a lost answer never makes a second one.
The backend unreachable: the attempt waits, doubling (`openimis.retry_*`). A refusal
is never dropped: the premium stays `refused`, counted on the dashboard and listed
among the items to review, until an operator sends it again (`retry`).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from server.insurance.backend import PremiumDestination, PremiumToWrite
from server.integrations.transport import ProviderError
from server.kernel.clock import Clock
from server.kernel.errors import Conflict, NotFound
from server.kernel.metrics import Metrics
from server.ledger.documents import Premium
from server.ledger.repository import PremiumRepository, TransactionRepository

log = logging.getLogger("gateway.premium_writes")

# A premium's write: its states, and what one run did with it (the job's summary).
PENDING, WRITTEN, REFUSED = "pending", "written", "refused"
WAITING, FOLLOWING, SKIPPED = "waiting", "following", "skipped"
# Looks at an attempt the backend has not finished (every first backoff) before it is
# left to an operator: 20 at 30 s is ten minutes.
FOLLOW_LIMIT = 20


class PremiumWrites:
    def __init__(
        self,
        premiums: PremiumRepository,
        transactions: TransactionRepository,
        destination: PremiumDestination,
        backoff: Backoff,
        clock: Clock,
        attempt_limit: timedelta,
        follow_limit: int = FOLLOW_LIMIT,
    ) -> None:
        """`attempt_limit`: the longest one attempt can take (its calls' timeouts and
        the mutation's deadline); `follow_limit`: how many times in a row an attempt the
        backend has not finished is looked at before it is left to an operator."""
        self.premiums = premiums
        self.transactions = transactions
        self.destination = destination
        self.backoff = backoff
        self.clock = clock
        self.attempt_limit = attempt_limit
        self.follow_limit = follow_limit

    async def run(self, limit: int = 100) -> dict[str, int]:
        """Write the due premiums; the summary counts them by outcome."""
        counts: Counter[str] = Counter()
        for premium in await self.premiums.writes_due(self.clock.now(), limit):
            counts[await self.write(premium)] += 1
        return dict(counts) or {"handled": 0}

    async def write(self, premium: Premium) -> str:
        state = premium["insurance_write"]
        wanted = _to_write(premium)
        tried = bool(state["attempts"])
        try:
            if tried and await self.destination.holds(wanted):
                return await self._written(premium)
            if tried and await self.destination.still_working(state["mutation_id"]):
                # The last attempt is queued in the backend: sending again now would
                # only race it. Its work is looked at again later.
                return await self._later(premium, "the backend has not finished the last attempt")
            refusal = await self.destination.refusal(wanted)
            if refusal:
                # The last attempt may have landed since: then the policy is paid by it.
                if tried and await self.destination.holds(wanted):
                    return await self._written(premium)
                return await self._refused(premium, refusal)
            mutation_id = str(uuid.uuid4())
            now = self.clock.now()
            if not await self.premiums.start_write(
                premium["_id"], state["attempts"], mutation_id, now, now + self.attempt_limit
            ):
                return SKIPPED  # another run took this attempt
            sent = await self.destination.send(mutation_id, wanted)
            if sent.written:
                return await self._written(premium)
            if sent.refusal:
                # A duplicate receipt may be this premium, written by a lost attempt.
                if await self.destination.holds(wanted):
                    return await self._written(premium)
                return await self._refused(premium, sent.refusal)
            return await self._later(premium, "the backend had not finished it by the deadline")
        except ProviderError as err:
            failures = state["failures"] + 1
            await self.premiums.write_later(
                premium["_id"],
                self.clock.now() + self.backoff.after(failures),
                failures,
                err.message,
            )
            log.warning(
                "premium_write_waiting premium=%s failures=%s error=%s",
                premium["_id"],
                failures,
                err.message,
            )
            return WAITING

    async def retry(self, premium_uuid: str, actor: str, reason: str) -> Premium:
        """An operator sends a refused premium again (after fixing it in the backend);
        who, when and why are kept with it."""
        now = self.clock.now()
        retried = await self.premiums.write_reopened(
            premium_uuid, {"by": actor, "at": now, "reason": reason}, now
        )
        if retried is None:
            if await self.premiums.find_one({"_id": premium_uuid}) is None:
                raise NotFound(f"no premium {premium_uuid}", code="unknown_premium")
            raise Conflict(
                "only a premium the insurance backend refused can be sent again",
                code="premium_not_refused",
            )
        log.info("premium_write_retried premium=%s by=%s", premium_uuid, actor)
        return retried

    async def refresh_metrics(self, metrics: Metrics) -> None:
        """The waiting premiums' gauges: how many wait and are refused, the oldest's age."""
        figures = await self.premiums.write_figures()
        metrics.premiums_waiting.labels("pending").set(figures["waiting"])
        metrics.premiums_waiting.labels("refused").set(figures["refused"])
        oldest = figures["oldest_at"]
        age = 0.0
        if isinstance(oldest, datetime):
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            age = max(0.0, (self.clock.now() - oldest).total_seconds())
        metrics.premiums_waiting_oldest.set(age)

    async def _later(self, premium: Premium, why: str) -> str:
        """The backend is at it: looked at again after the first backoff, the failures
        counted so far kept; after `follow_limit` looks in a row, left to an operator."""
        state = premium["insurance_write"]
        follows = state.get("follows", 0) + 1
        if follows > self.follow_limit:
            return await self._refused(
                premium,
                f"the backend has not finished mutation {state.get('mutation_id')} after "
                f"{follows - 1} looks: see to it there, then send the premium again",
            )
        next_at = self.clock.now() + self.backoff.first
        await self.premiums.write_later(premium["_id"], next_at, state["failures"], why, follows)
        return FOLLOWING

    async def _written(self, premium: Premium) -> str:
        status, effective = await self.destination.written_status(premium["policy_uuid"])
        # The transaction first: a run cut off between the two writes does it again.
        await self.transactions.record_policy_status(premium["transaction_uuid"], status)
        await self.premiums.write_ended(
            premium["_id"],
            {
                "state": WRITTEN,
                "written_at": self.clock.now(),
                "policy_status": status,
                "effective_date": effective,
            },
            (PENDING, REFUSED),
        )
        log.info(
            "premium_written premium=%s policy=%s policy_status=%s",
            premium["_id"],
            premium["policy_uuid"],
            status,
        )
        return WRITTEN

    async def _refused(self, premium: Premium, message: str) -> str:
        await self.premiums.write_ended(
            premium["_id"],
            {"state": REFUSED, "refused_at": self.clock.now(), "refusal": message[:500]},
            (PENDING,),
        )
        log.warning("premium_refused premium=%s message=%s", premium["_id"], message)
        return REFUSED


class Backoff:
    """Doubling waits between failed attempts, from `first` up to `longest`."""

    def __init__(self, first: timedelta, longest: timedelta) -> None:
        self.first = first
        self.longest = longest

    def after(self, failures: int) -> timedelta:
        return min(self.first * 2 ** min(max(failures - 1, 0), 20), self.longest)


def _to_write(premium: Premium) -> PremiumToWrite:
    paid_at = premium["pay_date"]
    return PremiumToWrite(
        policy_uuid=premium["policy_uuid"],
        amount=premium["amount"],
        currency=premium["currency"],
        receipt=premium["receipt"],
        paid_at=paid_at if paid_at.tzinfo else paid_at.replace(tzinfo=UTC),
    )
