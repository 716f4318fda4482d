"""Set-up commands run as a user runs them: `python run.py COMMAND` in a subprocess."""

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from pathlib import Path

import pytest

from server.auth.passwords import verify_password
from server.kernel.store import open_store

from support import INBOX, PAYMENTS, PSPS, TEST_ENV, USERS, callback_body, run_py

ROOT = Path(__file__).resolve().parent.parent
MONGODB_URI = os.environ.get("TEST_MONGODB_URI")


@pytest.mark.asyncio
async def test_register_urls_registers_the_configured_urls_with_daraja(http, daraja_sim) -> None:
    env = {
        **TEST_ENV,
        "GATEWAY_DARAJA_BASE_URL": daraja_sim.base_url,
        "GATEWAY_SERVER_PUBLIC_URL": "http://127.0.0.1:8443",
        "GATEWAY_DARAJA_RESPONSE_TYPE": "Cancelled",
    }
    code, out, err = await run_py("register-urls", env=env)
    assert code == 0, err
    assert out.startswith("registered shortcode 600984")
    async with http.get(f"{daraja_sim.base_url}/_sim/state") as answer:
        registration = (await answer.json())["registrations"]["600984"]
    assert registration["ConfirmationURL"] == (
        "http://127.0.0.1:8443/api/v1/c2b/confirmation/test-callback"
    )
    assert registration["ResponseType"] == "Cancelled"


@pytest.mark.asyncio
async def test_register_urls_reports_a_refusal_in_one_line(daraja_sim) -> None:
    env = {
        **TEST_ENV,
        "GATEWAY_DARAJA_BASE_URL": daraja_sim.base_url,
        "GATEWAY_DARAJA_CONSUMER_SECRET": "wrong",
    }
    code, out, err = await run_py("register-urls", env=env)
    assert code == 1
    assert err.strip() == "registration failed: daraja: 400.008.01 Invalid Authentication passed"


@pytest.mark.asyncio
async def test_register_pull_registers_once_and_says_so_the_second_time(http, daraja_sim) -> None:
    env = {
        **TEST_ENV,
        "GATEWAY_DARAJA_BASE_URL": daraja_sim.base_url,
        "GATEWAY_DARAJA_PULL_NOMINATED_NUMBER": "254722000000",
    }
    code, out, err = await run_py("register-pull", env=env)
    assert code == 0, err
    assert out.startswith("shortcode 600984 is now registered for Pull Transactions (1000")
    code, out, err = await run_py("register-pull", env=env)
    assert code == 0, err
    assert out.startswith("shortcode 600984 was already registered for Pull Transactions (1001")
    async with http.get(f"{daraja_sim.base_url}/_sim/pull") as answer:
        registrations = await answer.json()
    assert "254722000000" in json.dumps(registrations)


@pytest.mark.asyncio
async def test_register_pull_without_a_nominated_number_names_the_setting() -> None:
    code, _, err = await run_py("register-pull", env=dict(TEST_ENV))
    assert code == 2
    assert "daraja.pull_nominated_number" in err and "Traceback" not in err


@pytest.mark.asyncio
async def test_register_urls_without_daraja_credentials_names_them() -> None:
    env = {**TEST_ENV, "GATEWAY_DARAJA_CONSUMER_KEY": ""}
    code, _, err = await run_py("register-urls", env=env)
    assert code == 2
    assert "GATEWAY_DARAJA_CONSUMER_KEY" in err and "Traceback" not in err


@pytest.mark.asyncio
async def test_create_user_refuses_the_in_memory_store() -> None:
    code, _, err = await run_py(
        "create-user",
        "alice",
        "--role",
        "operator",
        "--password-stdin",
        env=TEST_ENV,
        stdin="alice-password\n",
    )
    assert code == 2
    assert "create-user needs a persistent MongoDB store" in err


def mongodb_env() -> dict[str, str]:
    return {
        **TEST_ENV,
        "GATEWAY_STORE_URI": MONGODB_URI,
        "GATEWAY_STORE_DATABASE": f"cli_{uuid.uuid4().hex[:12]}",
    }


@pytest.mark.asyncio
@pytest.mark.skipif(not MONGODB_URI, reason="needs a MongoDB server: set TEST_MONGODB_URI")
async def test_create_user_and_replay_inbox_work_against_mongodb() -> None:
    env = mongodb_env()
    store = open_store(MONGODB_URI, env["GATEWAY_STORE_DATABASE"])
    try:
        code, out, err = await run_py(
            "create-user",
            "alice",
            "--role",
            "operator",
            "--password-stdin",
            env=env,
            stdin="alice-password\n",
        )
        assert code == 0, err
        user = await store.collection(USERS).find_one({"username": "alice"})
        assert user["role"] == "operator" and user["password_hash"].startswith("$argon2")
        assert verify_password(user["password_hash"], "alice-password")
        code, _, err = await run_py(
            "create-user",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
            env=env,
            stdin="other-password\n",
        )
        assert code == 1 and "already exists" in err

        body = json.dumps(callback_body()).encode()
        await store.collection(INBOX).insert_one(
            {
                "_id": "entry-1",
                "kind": "confirmation",
                "body": body.decode(),
                "body_encoding": "utf-8",
                "source_ip": "127.0.0.1",
                "headers": {},
                "received_at": user["created_at"].replace(year=2020),
                "status": "failed",
                "attempts": 1,
            }
        )
        code, out, err = await run_py("replay-inbox", env=env)
        assert code == 0, err
        assert "entry-1 processed" in out and "1/1 processed" in err
        assert await store.collection(PAYMENTS).count_documents({}) == 1
    finally:
        await store.client.drop_database(env["GATEWAY_STORE_DATABASE"])
        await store.close()


@pytest.mark.asyncio
@pytest.mark.skipif(not MONGODB_URI, reason="needs a MongoDB server: set TEST_MONGODB_URI")
async def test_create_psp_stores_an_encrypted_pin() -> None:
    env = mongodb_env()
    store = open_store(MONGODB_URI, env["GATEWAY_STORE_DATABASE"])
    try:
        code, out, err = await run_py(
            "create-psp",
            "Qmoney",
            "--kind",
            "qmoney",
            "--account",
            "14001502",
            "--currency",
            "GMD",
            "--pin-stdin",
            env=env,
            stdin="1234\n",
        )
        assert code == 0, err
        assert out.startswith("created PSP 'Qmoney' (qmoney) with uuid ")
        psp = await store.collection(PSPS).find_one({"name": "Qmoney"})
        assert psp["pin_encrypted"] and "1234" not in str(psp)
        code, _, err = await run_py(
            "create-psp", "Bad", "--kind", "qmoney", "--account", "1", "--currency", "GMD", env=env
        )
        assert code == 1 and "merchant PIN" in err
    finally:
        await store.client.drop_database(env["GATEWAY_STORE_DATABASE"])
        await store.close()


@pytest.mark.asyncio
async def test_several_processes_are_refused_on_the_in_memory_store() -> None:
    code, _, err = await run_py("serve", "--processes", "2", env=TEST_ENV)
    assert code == 2
    assert "--processes needs MongoDB" in err and "Traceback" not in err


@pytest.mark.asyncio
@pytest.mark.skipif(not MONGODB_URI, reason="needs a MongoDB server: set TEST_MONGODB_URI")
async def test_several_worker_processes_serve_one_port_and_stop_on_sigterm(http) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **mongodb_env(), "GATEWAY_SERVER_PORT": str(port)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "run.py",
        "serve",
        "--processes",
        "2",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        pids = set()
        async with asyncio.timeout(30):
            while len(pids) < 2:
                line = (await process.stdout.readline()).decode()
                assert line, (await process.stderr.read()).decode()
                if "gateway listening" in line:
                    pids.add(line.rsplit("pid ", 1)[1].rstrip(")\n"))
        for _ in range(6):
            async with http.get(f"http://127.0.0.1:{port}/healthz") as answer:
                assert answer.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0
    store = open_store(MONGODB_URI, env["GATEWAY_STORE_DATABASE"])
    await store.client.drop_database(env["GATEWAY_STORE_DATABASE"])
    await store.close()
