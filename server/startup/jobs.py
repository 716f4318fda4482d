"""The gateway's jobs: what each one does and how often, and the runner that runs them."""

from __future__ import annotations

from datetime import timedelta

from server.jobs.history import RunHistory
from server.jobs.leases import LeaseRepository
from server.jobs.runner import Job, JobRunner
from server.jobs.settings import JobsSettings
from server.kernel.clock import Clock
from server.startup.services import Services

EXPIRE_DEBITS = "expire-debits"
CHECK_DEBITS = "check-debits"
FINISH_SETTLEMENTS = "finish-settlements"
REPLAY_INBOX = "replay-inbox"
JOB_NAMES = (EXPIRE_DEBITS, FINISH_SETTLEMENTS, REPLAY_INBOX, CHECK_DEBITS)

# Inbox entries younger than this may still be in their own processing: replay leaves them.
REPLAY_GRACE = timedelta(seconds=60)
# Received payments `processing` for longer than this were cut off (a request takes
# seconds): finish-settlements completes them.
PROCESSING_GRACE = timedelta(minutes=2)


def gateway_jobs(settings: JobsSettings, services: Services) -> list[Job]:
    async def replay_inbox() -> int:
        return len(await services.inbox.replay(grace=REPLAY_GRACE))

    async def finish_settlements() -> int:
        inbound = [channel.name for channel in services.channels.channels if channel.debit is None]
        received = await services.incoming.finish_pending(inbound, PROCESSING_GRACE)
        return received + await services.settlement.settle_pending()

    def every(seconds: float) -> timedelta:
        return timedelta(seconds=seconds)

    return [
        Job(
            EXPIRE_DEBITS,
            every(settings.expire_debits_interval_seconds),
            services.debits.expire_stale,
        ),
        # Debits whose provider's answer has not come (an M-Pesa Express prompt without
        # its callback): asked about on their adapter's schedule.
        Job(
            CHECK_DEBITS,
            every(settings.check_debits_interval_seconds),
            services.debits.check_pending,
        ),
        Job(
            FINISH_SETTLEMENTS,
            every(settings.finish_settlements_interval_seconds),
            finish_settlements,
        ),
        Job(REPLAY_INBOX, every(settings.replay_inbox_interval_seconds), replay_inbox),
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
