"""Start-up failures a user can fix, each told in one line: a port already taken, a
MongoDB out of reach. The line names what failed and where, never a credential."""

from __future__ import annotations

import os
import re
import socket
from urllib.parse import urlsplit

from pymongo.errors import ConfigurationError, ConnectionFailure, OperationFailure
from tornado.netutil import bind_sockets

from server.kernel.store import Store, open_store

# The parts of a server-selection message that say nothing to a user.
_DRIVER_DETAIL = re.compile(r" \(configured timeouts:[^)]*\)|, Topology Description: .*$")


class StartupError(Exception):
    """A part the process needs is not available; the message names it and where."""


def listen(host: str, port: int, what: str = "") -> list[socket.socket]:
    """Bound, listening sockets for host:port (0 = a free port)."""
    try:
        return bind_sockets(port, host)
    except OSError as err:
        raise listen_error(host, port, err, what) from None


def listen_error(host: str, port: int, err: OSError, what: str = "") -> StartupError:
    """`cannot listen on 127.0.0.1:8081 for the Daraja simulator: address already in use`."""
    # errno's own text: the library's may repeat the address or the errno.
    number = err.errno
    reason = (
        os.strerror(number) if number is not None and number > 0 else (err.strerror or str(err))
    )
    purpose = f" for {what}" if what else ""
    return StartupError(
        f"cannot listen on {host}:{port}{purpose}: {reason[:1].lower()}{reason[1:]}"
    )


def redacted_uri(uri: str) -> str:
    """Scheme and hosts of a MongoDB URI: no user, password, database or options."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


async def reachable_store(uri: str, database: str) -> Store:
    """The store, once its server has answered a ping; else StartupError."""
    where = redacted_uri(uri)
    password = urlsplit(uri).password

    def failure(err: Exception) -> StartupError:
        reason = _DRIVER_DETAIL.sub("", str(err)).strip()
        if password:
            reason = reason.replace(password, "***")
        return StartupError(f"cannot reach MongoDB at {where} ({reason})")

    try:
        store = open_store(uri, database)
    except ConfigurationError as err:
        raise failure(err) from None
    try:
        await store.ping()
    except (ConnectionFailure, OperationFailure) as err:
        await store.close()
        raise failure(err) from None
    return store
