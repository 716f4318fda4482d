"""The MongoDB lane of the benches: a server the gateway reaches over the wire protocol.

Either a running MongoDB (--mongodb-uri), a running wire-protocol server (--wire-uri),
or one started for the run: scripts/mongo_wire_server.py (mongoeco's engine behind a
real socket; Python >= 3.13, so it runs with its own Python, --wire-python)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from pymongo import AsyncMongoClient

from bench.harness import output_of

ROOT = Path(__file__).resolve().parent.parent
WIRE_SERVER = ROOT / "scripts" / "mongo_wire_server.py"
DEFAULT_WIRE_PYTHON = "/tmp/wire-venv/bin/python"


def default_wire_python() -> str:
    return os.environ.get("WIRE_PYTHON", DEFAULT_WIRE_PYTHON)


@dataclass(frozen=True)
class Lane:
    """A MongoDB server for a run: its URI, its process when the run started it (so
    its CPU can be read), and how the report names it."""

    uri: str
    pid: int | None
    label: str


@asynccontextmanager
async def started_wire_server(wire_python: str) -> AsyncIterator[Lane]:
    """A MongoDB wire-protocol server in its own process, stopped after."""
    process = await asyncio.create_subprocess_exec(
        wire_python, str(WIRE_SERVER), cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        line = await asyncio.wait_for(output_of(process).readline(), 60)
        if not line.startswith(b"mongodb://"):
            raise RuntimeError(f"the wire server printed {line!r}, not a URI")
        label = "the wire-protocol server (mongoeco, one Python process) started for the run"
        yield Lane(line.decode().strip(), process.pid, label)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


@asynccontextmanager
async def wire_server(wire_python: str) -> AsyncIterator[str]:
    """A MongoDB wire-protocol server in its own process; yields its URI."""
    async with started_wire_server(wire_python) as lane:
        yield lane.uri


@asynccontextmanager
async def mongodb_lane(
    mongodb_uri: str | None, wire_uri: str | None, wire_python: str | None
) -> AsyncIterator[Lane | None]:
    """The MongoDB server the options name, else a wire server started for the run with
    `wire_python` (None: there is none), else None (the MongoDB figures are left out)."""
    if mongodb_uri:
        yield Lane(mongodb_uri, None, "MongoDB (--mongodb-uri)")
    elif wire_uri:
        yield Lane(wire_uri, None, "the wire-protocol server at --wire-uri")
    elif wire_python:
        async with started_wire_server(wire_python) as lane:
            yield lane
    else:
        yield None


async def drop_database(uri: str, database: str) -> None:
    client: AsyncMongoClient = AsyncMongoClient(uri)
    try:
        await client.drop_database(database)
    finally:
        await client.close()
