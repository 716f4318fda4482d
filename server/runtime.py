"""Starting and stopping the gateway: store, indexes, services, HTTP server."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from server.app import make_app
from server.clock import Clock
from server.config import Settings
from server.notifications import Notifier, make_notifier
from server.services import INDEXES, Services, build_services
from server.store import Store, open_store

log = logging.getLogger("gateway")

# Bodies above server.max_body_bytes are still read up to this ceiling so the
# caller gets a clear JSON 413; past it Tornado closes the connection.
HARD_BODY_CEILING = 4 * 1024 * 1024


@dataclass
class Gateway:
    settings: Settings
    services: Services
    http: HTTPServer
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.settings.server.host}:{self.port}"

    async def stop(self) -> None:
        self.http.stop()
        await self.http.close_all_connections()
        await self.services.store.close()


async def start_gateway(settings: Settings, *, store: Store | None = None,
                        notifier: Notifier | None = None, clock: Clock | None = None,
                        port: int | None = None) -> Gateway:
    """Open the store, create indexes, listen. `port=0` picks a free port."""
    store = store or open_store(settings.store.uri, settings.store.database)
    await store.ensure_indexes(INDEXES)
    services = build_services(settings, store, notifier or make_notifier(
        settings.notifications.kind), clock or Clock())
    http = HTTPServer(make_app(settings, services),
                      max_body_size=max(HARD_BODY_CEILING, settings.server.max_body_bytes))
    sockets = bind_sockets(settings.server.port if port is None else port, settings.server.host)
    http.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    log.info("gateway_listening host=%s port=%s store=%s", settings.server.host, bound,
             "memory" if store.in_memory else "mongodb")
    return Gateway(settings, services, http, bound)
