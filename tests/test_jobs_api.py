"""The jobs API over HTTP: GET /api/v1/jobs and POST /api/v1/jobs/<name>/run, on the
real gateway with its job loops off (the API runs jobs without them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from test_openapi import answer_schema, check_against, template_for

from server.api.app import openapi_spec
from server.jobs.history import RUNS
from server.jobs.leases import LEASES, LeaseRepository
from server.startup.jobs import (
    CHECK_DEBITS,
    EXPIRE_DEBITS,
    FINISH_SETTLEMENTS,
    REPLAY_INBOX,
)

from support import make_settings, request_json, stored_debit, stored_policy

OTHER_HOLDER = "other-host:4242:abcdef"


@pytest_asyncio.fixture
async def gateway(start_gateway_with):
    return await start_gateway_with(make_settings(jobs={"enabled": False}))


@pytest_asyncio.fixture
async def admin_headers(headers_for) -> dict[str, str]:
    return await headers_for("root", "admin")


async def call(http, gateway, method: str, path: str, status: int, headers=None):
    """The answer's body, once its status is `status` and it matches the document."""
    answered, body = await request_json(http, method, gateway.url + path, headers=headers)
    assert answered == status, body
    spec = openapi_spec()
    schema = answer_schema(spec, template_for(path, spec), method.lower(), status)
    check_against(spec, schema, body)
    return body


async def listed(http, gateway, headers) -> dict[str, dict]:
    body = await call(http, gateway, "GET", "/api/v1/jobs", 200, headers)
    return {item["name"]: item for item in body["items"]}


def failing(message: str):
    async def work() -> int:
        raise RuntimeError(message)

    return work


@pytest.mark.asyncio
async def test_operators_list_every_job_sorted_by_name(http, gateway, operator_headers) -> None:
    body = await call(http, gateway, "GET", "/api/v1/jobs", 200, operator_headers)
    names = [item["name"] for item in body["items"]]
    assert names == sorted(gateway.jobs.jobs)
    assert {EXPIRE_DEBITS, CHECK_DEBITS, FINISH_SETTLEMENTS, REPLAY_INBOX} <= set(names)
    [expire] = [item for item in body["items"] if item["name"] == EXPIRE_DEBITS]
    assert expire == {
        "name": EXPIRE_DEBITS,
        "interval_seconds": gateway.settings.jobs.expire_debits_interval_seconds,
        "next_due_at": None,  # no process has scheduled it: the loops are off
        "holder": None,
        "lease_expires_at": None,
        "last_run": None,
    }


@pytest.mark.asyncio
async def test_the_jobs_api_needs_a_token_and_running_a_job_an_admin(
    http, gateway, operator_headers
) -> None:
    await call(http, gateway, "GET", "/api/v1/jobs", 401)
    await call(http, gateway, "POST", f"/api/v1/jobs/{EXPIRE_DEBITS}/run", 401)
    refused = await call(
        http, gateway, "POST", f"/api/v1/jobs/{EXPIRE_DEBITS}/run", 403, operator_headers
    )
    assert refused["error"]["code"] == "forbidden"
    assert await gateway.services.store.collection(RUNS).count_documents({}) == 0


@pytest.mark.asyncio
async def test_running_a_job_answers_its_summary_and_the_list_shows_the_run(
    http, gateway, admin_headers, operator_headers
) -> None:
    store = gateway.services.store
    policy = await stored_policy(store)  # paid, but its settlement was cut off
    await stored_debit(store, policy, paid_at=datetime(2026, 1, 2, tzinfo=UTC))
    before = datetime.now(UTC)

    ran = await call(
        http, gateway, "POST", f"/api/v1/jobs/{FINISH_SETTLEMENTS}/run", 200, admin_headers
    )
    assert ran.pop("duration_ms") >= 0
    assert ran == {
        "job": FINISH_SETTLEMENTS,
        "outcome": "ok",
        "error": None,
        "payments_finished": 0,
        "settlements_finished": 1,
    }

    job = (await listed(http, gateway, operator_headers))[FINISH_SETTLEMENTS]
    last = job["last_run"]
    assert (last["outcome"], last["summary"], last["error"]) == (
        "ok",
        {"payments_finished": 0, "settlements_finished": 1},
        None,
    )
    assert last["holder"] == gateway.jobs.holder and job["holder"] is None
    interval = timedelta(seconds=gateway.settings.jobs.finish_settlements_interval_seconds)
    assert datetime.fromisoformat(job["next_due_at"]) >= before + interval
    [run] = await store.collection(RUNS).find({"name": FINISH_SETTLEMENTS}).to_list(None)
    assert run["summary"] == {"payments_finished": 0, "settlements_finished": 1}


@pytest.mark.asyncio
async def test_an_unknown_job_is_404_in_the_error_shape(http, gateway, admin_headers) -> None:
    body = await call(http, gateway, "POST", "/api/v1/jobs/tidy-up/run", 404, admin_headers)
    assert body["error"]["code"] == "unknown_job"
    assert body["error"]["details"]["jobs"] == sorted(gateway.jobs.jobs)


@pytest.mark.asyncio
async def test_a_job_another_process_is_running_is_409_naming_the_holder(
    http, gateway, admin_headers
) -> None:
    leases = LeaseRepository(gateway.services.store)
    now = datetime.now(UTC).replace(microsecond=0)  # as the store keeps it
    await leases.create(EXPIRE_DEBITS, now)
    taken = await leases.acquire(
        EXPIRE_DEBITS,
        OTHER_HOLDER,
        now,
        lease_for=timedelta(minutes=5),
        interval=timedelta(seconds=30),
        due_only=False,
    )
    assert taken is not None

    body = await call(
        http, gateway, "POST", f"/api/v1/jobs/{EXPIRE_DEBITS}/run", 409, admin_headers
    )
    assert body["error"]["code"] == "job_running"
    assert body["error"]["details"] == {"holder": OTHER_HOLDER}
    job = (await listed(http, gateway, admin_headers))[EXPIRE_DEBITS]
    assert job["holder"] == OTHER_HOLDER
    assert datetime.fromisoformat(job["lease_expires_at"]) == now + timedelta(minutes=5)
    assert await gateway.services.store.collection(RUNS).count_documents({}) == 0


@pytest.mark.asyncio
async def test_a_failing_job_answers_200_with_outcome_failed_and_its_error(
    http, gateway, admin_headers, monkeypatch
) -> None:
    monkeypatch.setattr(gateway.services.debits, "expire_stale", failing("the store is slow"))
    ran = await call(http, gateway, "POST", f"/api/v1/jobs/{EXPIRE_DEBITS}/run", 200, admin_headers)
    assert (ran["job"], ran["outcome"], ran["error"]) == (
        EXPIRE_DEBITS,
        "failed",
        "RuntimeError: the store is slow",
    )
    assert set(ran) == {"job", "outcome", "duration_ms", "error"}  # no counts
    last = (await listed(http, gateway, admin_headers))[EXPIRE_DEBITS]["last_run"]
    assert (last["outcome"], last["summary"], last["error"]) == (
        "failed",
        {},
        "RuntimeError: the store is slow",
    )


@pytest.mark.asyncio
async def test_runs_recorded_before_summaries_are_listed_with_their_one_count(
    http, gateway, operator_headers
) -> None:
    store = gateway.services.store
    # Within the history's retention (the store expires older runs), as the store keeps it.
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    old_run = {
        "holder": "old-host:1:aaaaaa",
        "started_at": at,
        "finished_at": at + timedelta(seconds=1),
        "outcome": "ok",
        "result": 5,
        "error": None,
    }
    await store.collection(LEASES).insert_one(
        {
            "_id": EXPIRE_DEBITS,
            "next_due_at": at + timedelta(seconds=30),
            "holder": None,
            "lease_id": None,
            "lease_expires_at": None,
            "last_run": old_run,
        }
    )
    # A run whose lease was lost before it was freed: only the history has it.
    await store.collection(RUNS).insert_one(
        {"_id": "r1", "name": REPLAY_INBOX, **old_run, "result": 3}
    )

    jobs = await listed(http, gateway, operator_headers)
    assert jobs[EXPIRE_DEBITS]["last_run"]["summary"] == {"handled": 5}
    assert jobs[EXPIRE_DEBITS]["next_due_at"] == (at + timedelta(seconds=30)).isoformat()
    assert jobs[REPLAY_INBOX]["last_run"] == {
        "holder": "old-host:1:aaaaaa",
        "started_at": at.isoformat(),
        "finished_at": (at + timedelta(seconds=1)).isoformat(),
        "outcome": "ok",
        "summary": {"handled": 3},
        "error": None,
    }
    assert jobs[CHECK_DEBITS]["last_run"] is None
