"""Prometheus metrics. One registry per gateway (tests run several in one process).

Counters and histograms are updated as things happen; figures that live in the
store (payments by channel and status, inbox backlog, each job's last success)
are read at scrape time, so every gateway process reports the same shared truth."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from server.kernel.store import Store

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# From seconds (a late callback) to a day (an operator's resolution).
RESOLUTION_BUCKETS = (5.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "gateway_http_requests_total",
            "HTTP requests answered",
            ["route", "method", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "gateway_http_request_seconds",
            "HTTP request latency",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.callbacks = Counter(
            "gateway_c2b_callbacks_total",
            "Daraja callbacks by outcome",
            ["kind", "outcome"],
            registry=registry,
        )
        self.stk_results = Counter(
            "gateway_stk_results_total",
            "M-Pesa Express results by source (callback, query) and Daraja's result code",
            ["source", "result_code"],
            registry=registry,
        )
        self.provider_calls = Counter(
            "gateway_provider_calls_total",
            "Outbound provider calls by outcome",
            ["provider", "endpoint", "outcome"],
            registry=registry,
        )
        self.provider_seconds = Histogram(
            "gateway_provider_call_seconds",
            "Outbound provider call latency",
            ["provider", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.token_refreshes = Counter(
            "gateway_provider_token_refreshes_total",
            "Provider tokens fetched",
            ["provider"],
            registry=registry,
        )
        self.login_refusals = Counter(
            "gateway_login_refusals_total",
            "Logins refused: invalid_credentials, throttled_user, throttled_address",
            ["reason"],
            registry=registry,
        )
        self.payments = Gauge(
            "gateway_payments",
            "Transactions in the store by channel and status",
            ["channel", "status"],
            registry=registry,
        )
        self.inbox_backlog = Gauge(
            "gateway_c2b_inbox_backlog",
            "Callbacks received but not processed, or failed",
            registry=registry,
        )
        self.job_runs = Counter(
            "gateway_job_runs_total",
            "Job runs by this process, by outcome (ok, failed, skipped)",
            ["job", "outcome"],
            registry=registry,
        )
        self.debit_unknown_resolution_seconds = Histogram(
            "gateway_debit_unknown_resolution_seconds",
            "Time from a debit becoming unknown to its resolution (janitor, callback, "
            "status check or operator), by channel",
            ["channel"],
            buckets=RESOLUTION_BUCKETS,
            registry=registry,
        )
        self.job_last_success = Gauge(
            "gateway_job_last_success_timestamp_seconds",
            "When each job last ended without error, in any process",
            ["job"],
            registry=registry,
        )
        self.mpesa_pull_overdue = Gauge(
            "gateway_mpesa_pull_overdue",
            "1 when the M-Pesa pull of a shortcode has not succeeded for longer than Pull "
            "Transactions reaches back (48 hours): that gap is only closed from a statement",
            ["shortcode"],
            registry=registry,
        )
        self.mpesa_pull_last_success = Gauge(
            "gateway_mpesa_pull_last_success_timestamp_seconds",
            "When the M-Pesa pull of a shortcode last succeeded, in any process",
            ["shortcode"],
            registry=registry,
        )
        self.sms_messages = Counter(
            "gateway_sms_messages_total",
            "Payer SMS receipts by event and the status they moved to (pending when "
            "copied into the outbox or to be tried again)",
            ["event", "status"],
            registry=registry,
        )
        self.premiums_waiting = Gauge(
            "gateway_premiums_waiting",
            "Premiums settled here and not yet written into the insurance backend "
            "(openIMIS), and refused by it",
            ["state"],
            registry=registry,
        )
        self.premiums_waiting_oldest = Gauge(
            "gateway_premiums_waiting_oldest_seconds",
            "Age of the oldest premium waiting for the insurance backend (0: none waits)",
            registry=registry,
        )
        # Store-backed figures a higher layer computes (it knows the rules and the
        # clock), refreshed at every scrape: name -> refresh(metrics).
        self.refreshers: dict[str, Callable[[Metrics], Awaitable[None]]] = {}

    def refresh_on_scrape(self, name: str, refresh: Callable[[Metrics], Awaitable[None]]) -> None:
        """Run `refresh(self)` before every scrape (one per name: a later one replaces it)."""
        self.refreshers[name] = refresh

    async def render(self, store: Store) -> bytes:
        """Refresh the store-backed gauges, then the text exposition format."""
        rows = await store.aggregate(
            "transactions",
            [
                {
                    "$group": {
                        "_id": {"channel": "$channel", "status": "$status"},
                        "count": {"$sum": 1},
                    }
                }
            ],
        )
        self.payments.clear()
        for row in rows:
            self.payments.labels(row["_id"]["channel"], row["_id"]["status"]).set(row["count"])
        backlog = await store.collection("c2b_inbox").count_documents(
            {"status": {"$in": ["received", "failed"]}}
        )
        self.inbox_backlog.set(backlog)
        leases = (
            await store.collection("jobs")
            .find({"last_success_at": {"$ne": None}}, {"last_success_at": 1})
            .to_list(None)
        )
        for lease in leases:
            self.job_last_success.labels(lease["_id"]).set(lease["last_success_at"].timestamp())
        for refresh in list(self.refreshers.values()):
            await refresh(self)
        return generate_latest(self.registry)
