"""Assembles the services from explicit parts: settings, store, providers, notifier, clock."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp

from server.auth import attempts as login_attempts
from server.auth import refresh_tokens
from server.auth import repository as auth_repository
from server.auth.passwords import PasswordHashing
from server.auth.repository import UserRepository
from server.auth.service import AuthService
from server.auth.sessions import RefreshSessions
from server.auth.throttle import LoginThrottle
from server.auth.tokens import TokenIssuer
from server.debits.engine import DebitEngine
from server.debits.registry import Channel, ChannelRegistry
from server.inbox import repository as inbox_repository
from server.inbox.dismissal import InboxDismissal
from server.inbox.replay import InboxReplay
from server.insurance import repository as insurance_repository
from server.insurance.backend import (
    BuiltInBackend,
    InsuranceBackend,
    OpenimisBackend,
    OpenimisPremiums,
    PremiumDestination,
)
from server.insurance.openimis_client import OpenimisClient
from server.insurance.service import InsureeService, PolicyService, ProductService
from server.insurance.settings import OPENIMIS, OpenimisSettings
from server.integrations.notifications import Notifier
from server.integrations.transport import CallLog
from server.jobs import history as job_history
from server.jobs.leases import LEASES as JOB_LEASES
from server.kernel.background import BackgroundTasks
from server.kernel.clock import Clock
from server.kernel.crypto import PinCipher
from server.kernel.errors import ApiError
from server.kernel.metrics import Metrics
from server.kernel.money import parse_amount
from server.kernel.store import IndexSpec, Store, expiring_index
from server.ledger import repository as ledger_repository
from server.ledger.incoming import IncomingPayments
from server.ledger.premium_writes import Backoff, PremiumWrites
from server.ledger.service import LedgerService
from server.ledger.settlement import Settlement
from server.mpesa import initiator, recovered
from server.mpesa import repository as c2b_repository
from server.mpesa.actions import OperatorActions
from server.mpesa.allocation import CHANNEL as C2B_CHANNEL
from server.mpesa.allocation import Allocation
from server.mpesa.callback_urls import CallbackUrlError, result_urls
from server.mpesa.candidates import AllocationCandidates
from server.mpesa.client import DarajaClient
from server.mpesa.details import PaymentDetails
from server.mpesa.initiator import InitiatorService
from server.mpesa.receipts import StkReceipts
from server.mpesa.rules import ValidationRules
from server.mpesa.service import SOURCE as C2B_SOURCE
from server.mpesa.service import C2BService
from server.mpesa.stk import INDEXES as STK_INDEXES
from server.mpesa.stk import StkDebits
from server.mpesa.stk_service import KIND as STK_KIND
from server.mpesa.stk_service import SOURCE as STK_SOURCE
from server.mpesa.stk_service import StkService
from server.notifications import reports as sms_reports
from server.notifications import repository as sms_repository
from server.notifications.assembly import make_sender, sms_receipts
from server.notifications.notices import notice_indexes
from server.notifications.outbox import SmsOutbox
from server.notifications.reports import DeliveryReports
from server.ops import close_report as close_report_module
from server.ops import export_definitions
from server.ops.close_report import CloseReport
from server.ops.dashboard import Dashboard
from server.ops.desk import Desk
from server.ops.exports import Exports
from server.psp_api import repository as psp_api_repository
from server.psp_api.ratelimit import RateLimiter
from server.psp_api.service import CHANNEL as PSP_API_CHANNEL
from server.psp_api.service import PspApiService
from server.psps import repository as psp_repository
from server.psps.service import PspService
from server.qmoney.adapter import QmoneyDebits
from server.reconciliation import items as reconciliation_items
from server.reconciliation import statement_store
from server.reconciliation import view as reconciliation_view
from server.reconciliation.openimis_check import OpenimisPremiumCheck
from server.reconciliation.pull import PullReconciler, PullStateRepository
from server.reconciliation.statement_import import StatementImport
from server.reconciliation.view import ReconciliationView
from server.startup.config import Settings

log = logging.getLogger("gateway.startup")

PROVIDER_CALLS = "provider_calls"

# The indexes no setting changes; `indexes` adds the retention ones.
# The collections whose documents carry the payers' SMS notices until the send job
# copies them into the outbox.
NOTICE_SOURCES = (ledger_repository.PREMIUMS, c2b_repository.PAYMENTS)

INDEXES: list[IndexSpec] = [
    *auth_repository.INDEXES,
    *c2b_repository.INDEXES,
    *inbox_repository.INDEXES,
    *login_attempts.INDEXES,
    *refresh_tokens.INDEXES,
    *insurance_repository.INDEXES,
    *psp_repository.INDEXES,
    *ledger_repository.INDEXES,
    *psp_api_repository.INDEXES,
    *STK_INDEXES,
    *initiator.INDEXES,
    *reconciliation_items.INDEXES,
    *reconciliation_view.INDEXES,
    *statement_store.INDEXES,
    *export_definitions.INDEXES,
    *close_report_module.INDEXES,
    *job_history.INDEXES,
    *sms_repository.INDEXES,
    *notice_indexes(NOTICE_SOURCES),
    (PROVIDER_CALLS, [("provider", 1), ("endpoint", 1), ("at", -1)], {}),
]


def indexes(settings: Settings) -> list[IndexSpec]:
    """Every index, with the retention (TTL) indexes whose expiry comes from the settings."""
    retention = settings.retention
    return [
        *INDEXES,
        expiring_index(psp_api_repository.AUDIT, "at", retention.audit_days),
        expiring_index(PROVIDER_CALLS, "at", retention.provider_calls_days),
        expiring_index(job_history.RUNS, "started_at", retention.job_runs_days),
    ]


# Written with write concern and read with read concern `majority` on a replica set: the
# collections whose writes decide money, and the job leases (a lease a failover rolled
# back would let two processes run one job).
MAJORITY_COLLECTIONS = (
    inbox_repository.INBOX,
    c2b_repository.PAYMENTS,
    ledger_repository.TRANSACTIONS,
    ledger_repository.PREMIUMS,
    insurance_repository.POLICIES,
    JOB_LEASES,
    # A notice is removed from its premium or payment once copied here.
    sms_repository.SMS_OUTBOX,
)


@dataclass
class ProviderClients:
    """What every outbound provider client shares: one HTTP session and the call log."""

    session: aiohttp.ClientSession
    calls: CallLog

    async def close(self) -> None:
        await self.session.close()


def open_provider_clients(calls: CallLog | None = None) -> ProviderClients:
    """Must be called inside the running event loop (aiohttp binds the session to it)."""
    return ProviderClients(session=aiohttp.ClientSession(), calls=calls or CallLog())


def call_log(
    store: Store, clock: Clock, metrics: Metrics, background: BackgroundTasks | None = None
) -> CallLog:
    return CallLog(store.collection(PROVIDER_CALLS), clock, metrics, background)


@dataclass
class Services:
    store: Store
    notifier: Notifier
    auth: AuthService
    c2b: C2BService
    stk: StkService
    initiator: InitiatorService
    pull: PullReconciler
    reconciliation: ReconciliationView
    statements: StatementImport
    incoming: IncomingPayments
    inbox: InboxReplay
    insurees: InsureeService
    products: ProductService
    policies: PolicyService
    # The premiums waiting for the insurance backend, and the check of a period's
    # premiums against it: None with the built-in one.
    premium_writes: PremiumWrites | None
    openimis_check: OpenimisPremiumCheck | None
    psps: PspService
    ledger: LedgerService
    settlement: Settlement
    channels: ChannelRegistry
    debits: DebitEngine
    psp_api: PspApiService
    rate_limiter: RateLimiter
    dashboard: Dashboard
    # The operators' desk: search, review items, insuree overview; a payment's details.
    desk: Desk
    payment_details: PaymentDetails
    # Beside allocation: the policies a payment could take; dismissals, honest replays.
    candidates: AllocationCandidates
    c2b_actions: OperatorActions
    # The accountants' streamed exports and the period close.
    exports: Exports
    close: CloseReport
    metrics: Metrics
    indexes: list[IndexSpec]
    # The payers' SMS receipts (the outbox and the send-notifications job's work), and
    # the SMS provider's delivery reports.
    sms: SmsOutbox
    sms_reports: DeliveryReports
    inflight: set = field(default_factory=set)
    # The work requests start and do not wait for; drained when the gateway stops.
    background: BackgroundTasks = field(default_factory=BackgroundTasks)


def validation_rules(settings: Settings) -> ValidationRules:
    c2b = settings.c2b
    return ValidationRules(
        account_pattern=re.compile(c2b.validation_account_pattern),
        min_amount=parse_amount(c2b.validation_min_amount, c2b.currency),
        max_amount=parse_amount(c2b.validation_max_amount, c2b.currency),
        currency=c2b.currency,
        shortcodes=frozenset(c2b.validation_shortcodes or (settings.daraja.shortcode,)),
    )


def channel_registry(
    settings: Settings,
    providers: ProviderClients | None,
    clock: Clock,
    metrics: Metrics | None = None,
) -> ChannelRegistry:
    """Every payment channel, in the order the dashboard lists them: the one place a
    channel is registered. A debit channel brings its adapter (server.debits.contract),
    built from its settings section and the shared outbound session (none in the
    command-line tasks, which call no provider)."""
    session, calls = (providers.session, providers.calls) if providers else (None, None)
    return ChannelRegistry(
        [
            Channel(C2B_CHANNEL, "M-Pesa paybill"),
            Channel(
                QmoneyDebits.channel,
                "Qmoney OTP debit",
                QmoneyDebits.configured(settings.qmoney, session, clock, calls),
            ),
            Channel(PSP_API_CHANNEL, "Payment provider API"),
            Channel(
                StkDebits.channel,
                StkDebits.label,
                StkDebits.configured(
                    settings.daraja,
                    settings.c2b.currency,
                    settings.server.public_url,
                    settings.c2b.callback_secret,
                    session,
                    clock,
                    calls,
                    metrics,
                ),
            ),
        ]
    )


def mpesa_reconciliation(
    settings: Settings,
    store: Store,
    providers: ProviderClients | None,
    clock: Clock,
    c2b: C2BService,
    replay: InboxReplay,
) -> tuple[InitiatorService, PullReconciler]:
    """Transaction Status and Account Balance (their results through the inbox), and
    the `mpesa-pull` job's work."""
    daraja = (
        DarajaClient(providers.session, settings.daraja, clock, providers.calls)
        if providers
        else None
    )
    try:
        result_url, timeout_url = result_urls(
            settings.server.public_url, settings.c2b.callback_secret
        )
    except CallbackUrlError:  # refused at start-up by the callback checks: never used
        result_url = timeout_url = ""
    checks = InitiatorService(
        daraja,
        initiator.RequestRepository(store),
        c2b.inbox,
        c2b.payments,
        clock,
        result_url=result_url,
        timeout_url=timeout_url,
        currency=settings.c2b.currency,
    )
    for kind in (initiator.RESULT, initiator.QUEUE_TIMEOUT):
        replay.register(initiator.SOURCE, kind, checks.process_entry, checks.mark_failed)

    async def check_receipt(trans_id: str, actor: str) -> None:
        try:
            await checks.check_payment(trans_id, actor)
        except ApiError as err:  # not configured, or M-Pesa refused: the review flag stays
            log.warning("receipt_check_not_sent trans_id=%s reason=%s", trans_id, err.message)

    pull = PullReconciler(
        daraja,
        c2b,
        c2b.payments,
        PullStateRepository(store),
        reconciliation_items.ItemRepository(store),
        settings.daraja,
        clock,
        check_receipt,
    )
    return checks, pull


def attempt_limit(openimis: OpenimisSettings) -> timedelta:
    """The longest one premium's attempt can take: its policy read, receipt check and
    createPremium, each within the timeout (a login before them), then the mutation's
    deadline, and a margin."""
    return timedelta(seconds=5 * openimis.timeout_seconds + openimis.mutation_deadline_seconds + 30)


def openimis_client(
    settings: Settings, providers: ProviderClients | None, clock: Clock
) -> OpenimisClient | None:
    """openIMIS's client when it is the insurance backend and calls can be made."""
    if settings.insurance.backend != OPENIMIS or providers is None:
        return None
    return OpenimisClient(providers.session, settings.openimis, clock, providers.calls)


def insurance_backend(
    settings: Settings,
    client: OpenimisClient | None,
    insurees: insurance_repository.InsureeRepository,
    policies: insurance_repository.PolicyRepository,
    clock: Clock,
) -> tuple[InsuranceBackend, PremiumDestination | None]:
    """The backend behind the insurees and policies (server.insurance.backend), and where
    premiums are written when it is not the gateway's own collections. The command-line
    tasks that open no provider session read the mirror as it is, and still leave every
    premium they settle for the write-premiums job."""
    if settings.insurance.backend != OPENIMIS:
        return BuiltInBackend(), None
    backend = OpenimisBackend(client, insurees, policies, settings.openimis, clock)
    if client is None:
        return backend, None
    return backend, OpenimisPremiums(client, policies, settings.openimis, clock)


def auth_service(
    settings: Settings, store: Store, users: UserRepository, clock: Clock, metrics: Metrics
) -> AuthService:
    auth = settings.auth
    tokens = TokenIssuer(
        auth.jwt_secret,
        timedelta(minutes=auth.access_token_minutes),
        timedelta(hours=auth.refresh_token_hours),
    )
    throttle = LoginThrottle(
        login_attempts.LoginAttemptRepository(store),
        clock,
        per_user=auth.login_max_failures_per_user,
        per_address=auth.login_max_failures_per_address,
        window=timedelta(minutes=auth.login_failure_window_minutes),
    )
    sessions = RefreshSessions(refresh_tokens.RefreshTokenRepository(store), tokens, clock)
    return AuthService(
        users,
        tokens,
        sessions,
        PasswordHashing(auth.password_hash_threads),
        throttle,
        clock,
        metrics,
    )


def build_services(
    settings: Settings,
    store: Store,
    providers: ProviderClients | None,
    notifier: Notifier,
    clock: Clock,
    metrics: Metrics | None = None,
    background: BackgroundTasks | None = None,
) -> Services:
    metrics = metrics or Metrics()
    background = BackgroundTasks() if background is None else background  # empty is falsy
    users = UserRepository(store)
    insuree_repository = insurance_repository.InsureeRepository(store)
    policy_repository = insurance_repository.PolicyRepository(store)
    client = openimis_client(settings, providers, clock)
    backend, destination = insurance_backend(
        settings, client, insuree_repository, policy_repository, clock
    )
    insurees = InsureeService(insuree_repository, clock, backend)
    products = ProductService(insurance_repository.ProductRepository(store), clock)
    policies = PolicyService(policy_repository, insurees, products, clock)
    psp_documents = psp_repository.PspRepository(store)
    psps = PspService(psp_documents, users, PinCipher(settings.security.pin_key), clock)
    transactions = ledger_repository.TransactionRepository(store)
    channels = channel_registry(settings, providers, clock, metrics)
    ledger = LedgerService(transactions, channels.names, channels.shown)
    session, calls = (providers.session, providers.calls) if providers else (None, None)
    sms, sms_delivery_reports = sms_receipts(
        settings.notifications,
        store,
        inbox_repository.InboxRepository(store),
        insurees,
        make_sender(settings.notifications, notifier, session, calls),
        clock,
        metrics,
        phone_channels=(C2B_CHANNEL, StkDebits.channel),
        notice_sources=NOTICE_SOURCES,
    )
    premium_documents = ledger_repository.PremiumRepository(store)
    settlement = Settlement(
        transactions,
        premium_documents,
        policy_repository,
        clock,
        notice=sms.premium_notice,
        backend=backend,
    )
    premium_writes = (
        None
        if destination is None
        else PremiumWrites(
            premium_documents,
            transactions,
            destination,
            Backoff(
                timedelta(seconds=settings.openimis.retry_first_seconds),
                timedelta(seconds=settings.openimis.retry_max_seconds),
            ),
            clock,
            attempt_limit(settings.openimis),
        )
    )
    incoming = IncomingPayments(transactions, policy_repository, settlement, clock)
    c2b_payments = c2b_repository.C2BPaymentRepository(store)
    inbox = inbox_repository.InboxRepository(store)
    debits = DebitEngine(
        channels,
        transactions,
        ledger,
        policies,
        psps,
        settlement,
        clock,
        background,
        metrics=metrics,
    )
    stk_receipts = StkReceipts(transactions, c2b_payments, debits, clock)
    c2b = C2BService(
        inbox,
        c2b_payments,
        validation_rules(settings),
        Allocation(c2b_payments, insuree_repository, policies, incoming, clock),
        sms,
        clock,
        validation_deadline=settings.c2b.validation_deadline_seconds,
        validation_fallback=settings.c2b.validation_fallback,
        validation_matches_policy=settings.c2b.validation_match_policy,
        metrics=metrics,
        background=background,
        stk_receipts=stk_receipts,
    )
    stk = StkService(inbox, debits, stk_receipts, clock, settings.c2b.currency, metrics)
    replay = InboxReplay(inbox, clock)
    replay.register(C2B_SOURCE, "confirmation", c2b.process_entry, c2b.mark_failed)
    replay.register(STK_SOURCE, STK_KIND, stk.process_entry, stk.mark_failed)
    replay.register(
        sms_reports.SOURCE,
        sms_reports.KIND,
        sms_delivery_reports.process_entry,
        sms_delivery_reports.mark_failed,
    )
    for source in (recovered.PULL_SOURCE, recovered.STATEMENT_SOURCE):
        replay.register(source, recovered.RECORD_KIND, c2b.process_recovered_entry, c2b.mark_failed)
    checks, pull = mpesa_reconciliation(settings, store, providers, clock, c2b, replay)
    reconciliation = ReconciliationView(
        store,
        clock,
        checks,
        channels.channels,
        shortcode=settings.daraja.shortcode,
        pull_enabled=settings.daraja.pull_enabled,
    )
    metrics.refresh_on_scrape("reconciliation", reconciliation.refresh_metrics)
    if premium_writes is not None:
        metrics.refresh_on_scrape("premium_writes", premium_writes.refresh_metrics)
    psp_api = PspApiService(
        insurees,
        policies,
        psp_documents,
        transactions,
        incoming,
        psp_api_repository.AuditRepository(store),
        clock,
    )
    statements = StatementImport(
        c2b,
        c2b_payments,
        transactions,
        psps,
        reconciliation_items.ItemRepository(store),
        statement_store.StatementRepository(store),
        statement_store.StatementRowRepository(store),
        clock,
        shortcode=settings.daraja.shortcode,
        check_receipt=pull.check_receipt,
    )
    auth = auth_service(settings, store, users, clock, metrics)
    return Services(
        store=store,
        notifier=notifier,
        auth=auth,
        inbox=replay,
        incoming=incoming,
        c2b=c2b,
        stk=stk,
        initiator=checks,
        pull=pull,
        reconciliation=reconciliation,
        statements=statements,
        insurees=insurees,
        products=products,
        policies=policies,
        premium_writes=premium_writes,
        openimis_check=(
            None
            if client is None
            else OpenimisPremiumCheck(
                store, client, settings.openimis.pay_type, settings.openimis.zone()
            )
        ),
        psps=psps,
        ledger=ledger,
        settlement=settlement,
        channels=channels,
        debits=debits,
        psp_api=psp_api,
        rate_limiter=RateLimiter(settings.psp_api.rate_limit_per_minute, clock),
        dashboard=Dashboard(store, clock, channels.channels, backend.name),
        desk=Desk.on(store, channels.channels),
        payment_details=PaymentDetails(
            c2b_payments,
            inbox,
            transactions,
            ledger_repository.PremiumRepository(store),
            c2b.allocation,
        ),
        candidates=AllocationCandidates(c2b_payments, c2b.allocation, insurees),
        c2b_actions=OperatorActions(c2b_payments, replay, InboxDismissal(inbox, clock), clock),
        exports=Exports(store, channels.names, reconciliation.accounts),
        close=CloseReport(store, clock, reconciliation),
        metrics=metrics,
        indexes=indexes(settings),
        sms=sms,
        sms_reports=sms_delivery_reports,
        background=background,
    )
