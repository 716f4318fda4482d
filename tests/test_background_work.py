"""One owner for the work requests start and do not wait for: a stopping gateway drains it
before the store closes."""

from __future__ import annotations

import asyncio
import json

import pytest

from server.integrations.transport import CallLog
from server.kernel.background import BackgroundTasks
from server.kernel.clock import Clock

from support import callback_body, make_settings


@pytest.mark.asyncio
async def test_a_background_write_started_just_before_stop_is_stored_after_stop(
    start_gateway_with, store
) -> None:
    gateway = await start_gateway_with()

    async def late_write() -> None:
        await asyncio.sleep(0.3)
        await store.collection("probe").insert_one({"_id": "late"})

    gateway.services.background.spawn(late_write(), "probe")
    await gateway.stop()
    assert await store.collection("probe").find_one({"_id": "late"}) == {"_id": "late"}


@pytest.mark.asyncio
async def test_a_late_validation_is_still_written_when_the_gateway_stops(
    http, start_gateway_with, store
) -> None:
    gateway = await start_gateway_with(make_settings(c2b={"validation_deadline_seconds": 0.1}))
    service = gateway.services.c2b
    assert service.background is gateway.services.background
    original_add = service.inbox.add

    async def slow_add(*args, **kwargs):
        await asyncio.sleep(0.5)
        return await original_add(*args, **kwargs)

    service.inbox.add = slow_add
    async with http.post(
        f"{gateway.url}/api/v1/c2b/validation/test-callback", data=json.dumps(callback_body())
    ) as answer:
        assert (await answer.json())["ResultCode"] == "0"  # the fallback, in time
    await gateway.stop()
    assert await store.collection("c2b_inbox").count_documents({"kind": "validation"}) == 1


@pytest.mark.asyncio
async def test_the_provider_call_log_writes_through_the_gateways_background_work(
    start_gateway_with, store
) -> None:
    gateway = await start_gateway_with()
    async with gateway.providers.calls.call("qmoney", "login"):
        pass
    assert len(gateway.services.background) == 1
    await gateway.stop()
    assert await store.collection("provider_calls").count_documents({"endpoint": "login"}) == 1


@pytest.mark.asyncio
async def test_a_call_log_made_alone_keeps_its_own_background_work(store) -> None:
    calls = CallLog(store.collection("provider_calls"), Clock())
    async with calls.call("daraja", "oauth"):
        pass
    await asyncio.sleep(0.1)
    assert await store.collection("provider_calls").count_documents({}) == 1


@pytest.mark.asyncio
async def test_draining_cuts_work_still_running_at_the_deadline() -> None:
    background = BackgroundTasks()
    background.spawn(asyncio.Event().wait(), "endless")
    assert await background.drain(0.05) == 1
    assert len(background) == 0
