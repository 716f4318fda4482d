"""The janitor: resolves debits in doubt with their provider's status call.

A debit is in doubt when it is `unknown` (the answer to the completing call, or to
the start, was lost; or its channel's status checks ended without an answer) or
`processing` for longer than a grace (the completing call was cut off: it is made
`unknown` first). For every channel whose adapter has a status call
(`DebitAdapter.status_call`), the `janitor` job asks that call on a backoff schedule
(`jobs.janitor_backoff_minutes`, counted from when the debit became in doubt). A
decided answer completes the debit through the engine's `complete` (the same amount
and payer checks, and settlement, as a callback); an undecided one, or a failed
call, is kept as a history entry and the next attempt is scheduled. After the last
attempt the debit is marked for the operators (`needs_operator`), as is one without
a provider reference (nothing to ask about) or one whose answer does not fit it.

A channel without a status call (Qmoney) is never picked: its `unknown` debits stay
for an operator (`resolve`), who checks with the provider. A debit still under its
channel's own status checks (`next_check_at`, the `check-debits` job) is left to
them until they end."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from server.debits.contract import DebitAdapter, unknown_since
from server.debits.engine import DebitEngine, Outcome
from server.kernel.schemas import iso_stamp
from server.ledger import states
from server.ledger.documents import Transaction

log = logging.getLogger("gateway.debits")

JANITOR = "janitor"  # the actor of the janitor's history entries and decisions
LIMIT = 200  # debits looked at per run

# What one run did, by debit (`checked`: status calls made).
CHECKED, RESOLVED, STILL_UNKNOWN, GIVEN_UP = "checked", "resolved", "still_unknown", "given_up"
SCHEDULED, DISAGREED = "scheduled", "disagreed"
SUMMARY_KEYS = (CHECKED, RESOLVED, STILL_UNKNOWN, GIVEN_UP, SCHEDULED, DISAGREED)


def attempt_due(since: datetime, backoff: Sequence[timedelta], done: int) -> datetime | None:
    """When attempt `done + 1` is due for a debit in doubt since `since`; None: no
    attempt is left."""
    return since + backoff[done] if done < len(backoff) else None


def janitor_channels(engine: DebitEngine) -> dict[str, DebitAdapter]:
    """The debit channels whose adapter has a status call, by name."""
    return {adapter.channel: adapter for adapter in engine.channels.debits if adapter.status_call}


class Janitor:
    def __init__(
        self,
        engine: DebitEngine,
        backoff: Sequence[timedelta],
        processing_grace: timedelta,
        limit: int = LIMIT,
    ) -> None:
        """`backoff`: after how long in doubt each attempt is due (increasing, at least
        one); `processing_grace`: how long a debit may stay `processing` before its
        completing call counts as cut off."""
        if not backoff:
            raise ValueError("the janitor needs at least one attempt")
        self.engine = engine
        self.transactions = engine.transactions
        self.clock = engine.clock
        self.backoff = tuple(backoff)
        self.processing_grace = processing_grace
        self.limit = limit

    async def run(self) -> dict[str, int]:
        """One pass: every debit in doubt whose next attempt is due is asked about (or
        handed to the operators); returns what it did, counts by outcome."""
        summary = dict.fromkeys(SUMMARY_KEYS, 0)
        channels = janitor_channels(self.engine)
        if not channels:
            return summary
        now = self.clock.now()
        found = await self.transactions.in_doubt(
            channels, now, now - self.processing_grace, self.limit
        )
        for debit in found:
            try:
                for outcome in await self._tend(channels[debit["channel"]], debit):
                    summary[outcome] += 1
            except Exception:  # one debit's trouble never stops the others'
                log.exception("janitor_failed transaction=%s", debit["_id"])
        return summary

    async def _tend(self, adapter: DebitAdapter, debit: Transaction) -> list[str]:
        if debit["status"] == states.PROCESSING:
            moved = await self._cut_off(debit)
            if moved is None:  # moved meanwhile: no longer in doubt this way
                return []
            debit = moved
        now = self.clock.now()
        since = debit.get("janitor_from") or unknown_since(debit) or debit["updated_at"]
        done = debit.get("janitor_attempts", 0)
        due = debit.get("janitor_next_at") or attempt_due(since, self.backoff, done)
        if due is None:  # fewer attempts configured than it has had
            return await self._give_up(debit, since, done, "no janitor attempt left")
        if due > now:  # first seen: its first attempt is scheduled
            await self.transactions.set_fields(
                debit["_id"],
                states.UNKNOWN,
                {"janitor_from": since, "janitor_attempts": done, "janitor_next_at": due},
            )
            return [SCHEDULED]
        reference = debit.get("provider_reference")
        if not reference:
            return await self._give_up(
                debit, since, done, f"no {adapter.label} reference: its status call cannot be asked"
            )
        return [CHECKED, *await self._attempt(adapter, debit, reference, since, done + 1)]

    async def _cut_off(self, debit: Transaction) -> Transaction | None:
        """A debit `processing` past the grace: the answer to its completing call is
        lost, so it is `unknown`, in doubt since it went `processing`."""
        since = debit["updated_at"]
        return await self.transactions.transition(
            debit["_id"],
            states.PROCESSING,
            states.UNKNOWN,
            self.clock.now(),
            actor=JANITOR,
            reason=(
                f"processing for over {_minutes(self.processing_grace)}: the answer to "
                "the completing call was lost"
            ),
            changes={
                "next_check_at": None,  # the janitor's from now, not the status checks'
                "janitor_from": since,
                "janitor_attempts": 0,
                "janitor_next_at": since + self.backoff[0],
            },
        )

    async def _attempt(
        self,
        adapter: DebitAdapter,
        debit: Transaction,
        reference: str,
        since: datetime,
        attempt: int,
    ) -> list[str]:
        asked = await self.engine.ask(adapter, debit, reference, JANITOR)
        answer = asked.answer
        log.info(
            "janitor_attempt transaction=%s attempt=%s answer=%s detail=%s",
            debit["_id"],
            attempt,
            answer.status.value,
            answer.detail or "-",
        )
        completion = asked.completion
        if completion is not None:
            if completion.outcome in (Outcome.APPLIED, Outcome.ALREADY):
                return [RESOLVED]  # its history has the janitor's decision
            if completion.outcome == Outcome.REVIEW:
                reason = f"{adapter.label}'s answer does not fit the debit: {completion.reason}"
                return await self._give_up(completion.transaction, since, attempt, reason)
            return await self._disagrees(completion.transaction, answer.status.value)
        heard = "the status call failed" if asked.failed else answer.status.value
        said = f"attempt {attempt} of {len(self.backoff)}: {heard} ({answer.detail or '-'})"
        upcoming = attempt_due(since, self.backoff, attempt)
        if upcoming is None:
            return await self._give_up(debit, since, attempt, f"no decision after {said}")
        upcoming = max(upcoming, self.clock.now())
        noted = await self._note(
            debit,
            f"{said}; next attempt at {iso_stamp(upcoming)}",
            {"janitor_from": since, "janitor_attempts": attempt, "janitor_next_at": upcoming},
        )
        return [STILL_UNKNOWN] if noted is not None else [RESOLVED]

    async def _give_up(
        self, debit: Transaction, since: datetime, attempts: int, why: str
    ) -> list[str]:
        """No attempt is left, or none can be made: the debit is for an operator."""
        reason = f"automatic status checks exhausted ({why}): for an operator to resolve"
        noted = await self._note(
            debit,
            reason,
            {
                "janitor_from": since,
                "janitor_attempts": attempts,
                "janitor_next_at": None,
                "needs_operator": True,
                "operator_reason": reason,
                "janitor_gave_up_at": self.clock.now(),
            },
        )
        if noted is None:  # decided meanwhile (a late callback)
            return [RESOLVED]
        log.warning("janitor_gave_up transaction=%s reason=%s", debit["_id"], why)
        return [GIVEN_UP]

    async def _disagrees(self, current: Transaction, said: str) -> list[str]:
        """The debit was decided otherwise meanwhile: kept in its history, for a person."""
        log.warning(
            "janitor_answer_disagrees transaction=%s status=%s provider_says=%s",
            current["_id"],
            current["status"],
            said,
        )
        await self.transactions.note(
            current["_id"],
            current["status"],
            self.clock.now(),
            reason=f"the provider's status call says {said}; the debit is {current['status']}",
            actor=JANITOR,
        )
        return [DISAGREED]

    async def _note(
        self, debit: Transaction, reason: str, changes: dict[str, Any]
    ) -> Transaction | None:
        """A history entry on an `unknown` debit, with the janitor's fields; None when it
        is no longer `unknown`."""
        return await self.transactions.note(
            debit["_id"],
            states.UNKNOWN,
            self.clock.now(),
            reason=reason,
            actor=JANITOR,
            changes=changes,
        )


def _minutes(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"
