"""`python run.py run-job NAME`: one job, now, through its lease."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from server.kernel.store import open_store

from support import TEST_ENV, run_py

MONGODB_URI = os.environ.get("TEST_MONGODB_URI")


@pytest.mark.asyncio
async def test_an_unknown_job_is_refused_with_the_names_of_the_known_ones() -> None:
    code, _, err = await run_py("run-job", "tidy-up", env=TEST_ENV)
    assert code == 2
    assert "invalid choice: 'tidy-up'" in err
    assert "'expire-debits', 'finish-settlements', 'replay-inbox'" in err


@pytest.mark.asyncio
async def test_run_job_refuses_the_in_memory_store() -> None:
    code, _, err = await run_py("run-job", "expire-debits", env=TEST_ENV)
    assert code == 2
    assert "run-job needs a persistent MongoDB store" in err and "Traceback" not in err


@pytest.mark.asyncio
@pytest.mark.skipif(not MONGODB_URI, reason="needs a MongoDB server: set TEST_MONGODB_URI")
async def test_run_job_runs_the_job_once_unless_another_process_holds_its_lease() -> None:
    database = f"cli_{uuid.uuid4().hex[:12]}"
    env = {**TEST_ENV, "GATEWAY_STORE_URI": MONGODB_URI, "GATEWAY_STORE_DATABASE": database}
    store = open_store(MONGODB_URI, database)
    try:
        code, out, err = await run_py("run-job", "replay-inbox", env=env)
        assert code == 0, err
        assert out.startswith("job replay-inbox ok in ") and out.endswith(" ms: replayed=0\n")
        [run] = await store.collection("job_runs").find({}).to_list(None)
        assert (run["name"], run["outcome"], run["summary"]) == (
            "replay-inbox",
            "ok",
            {"replayed": 0},
        )

        now = datetime.now(UTC)
        await store.collection("jobs").insert_one(
            {
                "_id": "expire-debits",
                "next_due_at": now,
                "holder": "other-host:4242:abcdef",
                "lease_id": "x",
                "lease_expires_at": now + timedelta(minutes=5),
            }
        )
        code, out, err = await run_py("run-job", "expire-debits", env=env)
        assert code == 1 and out == ""
        assert err.strip() == (
            "job expire-debits not run: other-host:4242:abcdef holds its "
            "lease (a run is in progress)"
        )
    finally:
        await store.client.drop_database(database)
        await store.close()
