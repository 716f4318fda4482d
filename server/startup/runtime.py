"""Starting and stopping the gateway: store, indexes, services, HTTP server."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

from server.api.app import INTERNAL_ROUTES, make_app, public_routes
from server.api.http_server import GatewayHTTPServer
from server.integrations.notifications import Notifier, make_notifier
from server.jobs.runner import JobRunner
from server.kernel.background import BackgroundTasks
from server.kernel.clock import Clock
from server.kernel.metrics import Metrics
from server.kernel.store import Store, open_store
from server.startup.config import Settings
from server.startup.jobs import job_runner
from server.startup.listen import listen
from server.startup.services import (
    MAJORITY_COLLECTIONS,
    ProviderClients,
    Services,
    build_services,
    call_log,
    indexes,
    open_provider_clients,
)

log = logging.getLogger("gateway")

# How long a stopping gateway waits for requests in flight.
SHUTDOWN_GRACE_SECONDS = 10.0
# How long a stopping gateway then waits for its background work and a job run in progress.
BACKGROUND_DEADLINE_SECONDS = 5.0


@dataclass
class Gateway:
    settings: Settings
    services: Services
    providers: ProviderClients
    http: GatewayHTTPServer
    port: int
    jobs: JobRunner
    owns_store: bool
    # The listener of /metrics and /readyz when they are not on the public port.
    internal: GatewayHTTPServer | None = None
    internal_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.server.host}:{self.port}"

    async def stop(self, grace_seconds: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop accepting, let requests in flight finish (up to the grace period), stop
        the jobs and let the background work and a job run in progress finish (up to
        their deadline), then close connections, the password-hashing threads, provider
        sessions and the store."""
        self.http.stop()
        if self.internal is not None:
            self.internal.stop()
        try:
            async with asyncio.timeout(grace_seconds):
                while True:
                    if not self.services.inflight:
                        break
                    await asyncio.sleep(0.05)
        except TimeoutError:
            log.warning("shutdown_cut_requests count=%s", len(self.services.inflight))
        await asyncio.gather(
            self.jobs.stop(BACKGROUND_DEADLINE_SECONDS),
            self.services.background.drain(BACKGROUND_DEADLINE_SECONDS),
        )
        await self.http.close_all_connections()
        if self.internal is not None:
            await self.internal.close_all_connections()
        self.services.auth.close()
        await self.providers.close()
        if self.owns_store:
            await self.services.store.close()


async def start_gateway(
    settings: Settings,
    *,
    store: Store | None = None,
    notifier: Notifier | None = None,
    clock: Clock | None = None,
    port: int | None = None,
    sockets: list[socket.socket] | None = None,
    internal_sockets: list[socket.socket] | None = None,
) -> Gateway:
    """Open the store (unless given one, which then stays the caller's to close), create
    indexes, mark the open review flags of payments stored before flags could be
    dismissed (a one-off: nothing is left to mark after the first start), finish
    interrupted settlements, listen. `port=0` picks a free port;
    `sockets` are already bound ones (worker processes share them). The internal
    listener (/metrics, /readyz) runs on `internal_sockets` when given, else on
    server.internal_port when that is set; the public port then answers those 404."""
    owns_store = store is None
    store = store or open_store(settings.store.uri, settings.store.database)
    await store.use_majority(MAJORITY_COLLECTIONS, enabled=settings.store.majority_writes)
    await store.ensure_indexes(indexes(settings))
    clock = clock or Clock()
    metrics = Metrics()
    background = BackgroundTasks()
    providers = open_provider_clients(call_log(store, clock, metrics, background))
    services = build_services(
        settings,
        store,
        providers,
        notifier or make_notifier(settings.notifications.kind),
        clock,
        metrics,
        background,
    )
    opened = await services.c2b.payments.mark_open_reviews()
    if opened:
        log.info("c2b_reviews_marked_open count=%s", opened)
    settled = await services.settlement.settle_pending()
    if settled:
        log.warning("settlements_completed_at_start count=%s", settled)
    if sockets is None:
        sockets = listen(settings.server.host, settings.server.port if port is None else port)
    if internal_sockets is None and settings.server.internal_port:
        internal_sockets = listen(
            settings.server.host, settings.server.internal_port, "the internal listener"
        )
    # Made whether or not its loops run here: the jobs API runs jobs through it.
    jobs = job_runner(settings.jobs, services, clock)
    internal = None
    if internal_sockets is not None:
        internal = GatewayHTTPServer(
            make_app(settings, services, INTERNAL_ROUTES, jobs=jobs), settings.server
        )
        internal.add_sockets(internal_sockets)
    http = GatewayHTTPServer(
        make_app(
            settings, services, public_routes(internal_listener=internal is not None), jobs=jobs
        ),
        settings.server,
    )
    http.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    log.info(
        "gateway_listening host=%s port=%s store=%s",
        settings.server.host,
        bound,
        "memory" if store.in_memory else "mongodb",
    )
    internal_port = internal_sockets[0].getsockname()[1] if internal_sockets else None
    if internal_port is not None:
        log.info(
            "internal_listening host=%s port=%s paths=/metrics,/readyz",
            settings.server.host,
            internal_port,
        )
    if settings.jobs.enabled:
        jobs.start()
    return Gateway(
        settings, services, providers, http, bound, jobs, owns_store, internal, internal_port
    )
