"""The gateway's jobs: what each one does and how often, and the runner that runs them."""

from __future__ import annotations

from datetime import timedelta

from server.debits.janitor import Janitor
from server.jobs.history import RunHistory, Summary
from server.jobs.leases import LeaseRepository
from server.jobs.runner import Job, JobRunner
from server.jobs.settings import JobsSettings
from server.kernel.clock import Clock
from server.startup.services import Services

EXPIRE_DEBITS = "expire-debits"
CHECK_DEBITS = "check-debits"
FINISH_SETTLEMENTS = "finish-settlements"
REPLAY_INBOX = "replay-inbox"
MPESA_PULL = "mpesa-pull"
JANITOR = "janitor"
SEND_NOTIFICATIONS = "send-notifications"
WRITE_PREMIUMS = "write-premiums"
JOB_NAMES = (
    EXPIRE_DEBITS,
    FINISH_SETTLEMENTS,
    REPLAY_INBOX,
    CHECK_DEBITS,
    JANITOR,
    MPESA_PULL,
    SEND_NOTIFICATIONS,
    WRITE_PREMIUMS,
)

# Inbox entries younger than this may still be in their own processing: replay leaves them.
REPLAY_GRACE = timedelta(seconds=60)
# Received payments `processing` for longer than this were cut off (a request takes
# seconds): finish-settlements completes them.
PROCESSING_GRACE = timedelta(minutes=2)


def gateway_jobs(settings: JobsSettings, services: Services) -> list[Job]:
    """Each job's work answers the summary of what it did (server.jobs.runner.Job)."""

    async def expire_debits() -> Summary:
        return {"expired": await services.debits.expire_stale()}

    async def check_debits() -> Summary:
        return {"checked": await services.debits.check_pending()}

    async def replay_inbox() -> Summary:
        return {"replayed": len(await services.inbox.replay(grace=REPLAY_GRACE))}

    async def finish_settlements() -> Summary:
        inbound = [channel.name for channel in services.channels.channels if channel.debit is None]
        received = await services.incoming.finish_pending(inbound, PROCESSING_GRACE)
        settled = await services.settlement.settle_pending()
        return {"payments_finished": received, "settlements_finished": settled}

    def every(seconds: float) -> timedelta:
        return timedelta(seconds=seconds)

    async def write_premiums() -> Summary:
        if services.premium_writes is None:  # the built-in backend: nothing to write
            return {"handled": 0}
        return await services.premium_writes.run()

    return [
        Job(
            EXPIRE_DEBITS,
            every(settings.expire_debits_interval_seconds),
            expire_debits,
        ),
        # Debits whose provider's answer has not come (an M-Pesa Express prompt without
        # its callback): asked about on their adapter's schedule.
        Job(
            CHECK_DEBITS,
            every(settings.check_debits_interval_seconds),
            check_debits,
        ),
        Job(
            FINISH_SETTLEMENTS,
            every(settings.finish_settlements_interval_seconds),
            finish_settlements,
        ),
        Job(REPLAY_INBOX, every(settings.replay_inbox_interval_seconds), replay_inbox),
        # M-Pesa's own list of the paybill's payments: what never arrived is recovered.
        Job(MPESA_PULL, every(settings.mpesa_pull_interval_seconds), services.pull.run),
        # Debits in doubt (`unknown`, or `processing` cut off) of channels with a status
        # call, asked about on jobs.janitor_backoff_minutes, then left to an operator.
        Job(
            JANITOR,
            every(settings.janitor_interval_seconds),
            Janitor(services.debits, settings.janitor_backoff(), PROCESSING_GRACE).run,
        ),
        # The payers' SMS receipts that are due (new, to try again, or whose answer was
        # lost and no delivery report came), every notifications.send_interval_seconds.
        Job(SEND_NOTIFICATIONS, services.sms.interval, services.sms.send_due),
        # Premiums settled here and not yet in openIMIS (insurance.backend: openimis).
        Job(WRITE_PREMIUMS, every(settings.write_premiums_interval_seconds), write_premiums),
    ]


def job_runner(settings: JobsSettings, services: Services, clock: Clock) -> JobRunner:
    return JobRunner(
        gateway_jobs(settings, services),
        LeaseRepository(services.store),
        RunHistory(services.store),
        clock,
        services.metrics,
        lease_for=timedelta(seconds=settings.lease_seconds),
    )
