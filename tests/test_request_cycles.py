"""A finished request leaves no reference cycle behind: its handler, request and
connection objects are freed as the request ends, as a bare Tornado server's are, not
kept until the garbage collector's next walk (server.web.body_limit)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from support import callback_body, deliver_callback, request_json

REQUESTS = 20


@pytest.fixture
def garbage() -> Iterator[list[object]]:
    """What the collector finds unreachable while the test runs (kept, not freed)."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def serving_objects(found: list[object]) -> list[str]:
    """The types of the HTTP server's and the gateway's own objects among `found`."""
    return sorted(
        {
            type(item).__qualname__
            for item in found
            if type(item).__module__.startswith(("tornado.", "server."))
        }
    )


@pytest.mark.asyncio
async def test_callbacks_leave_no_cycle(http, gateway, garbage) -> None:
    for number in range(REQUESTS):
        body = callback_body(TransID=f"RCYC{number:06d}")
        for kind in ("validation", "confirmation"):
            status, _ = await deliver_callback(http, gateway, kind, body)
            assert status == 200
    gc.collect()
    assert serving_objects(garbage) == []


@pytest.mark.asyncio
async def test_refused_requests_leave_no_cycle(http, gateway, garbage) -> None:
    for _ in range(REQUESTS):
        status, _ = await request_json(http, "GET", f"{gateway.url}/api/v1/no-such-thing")
        assert status == 404
        status, _ = await request_json(http, "GET", f"{gateway.url}/api/v1/c2b/payments")
        assert status == 401
    gc.collect()
    assert serving_objects(garbage) == []
