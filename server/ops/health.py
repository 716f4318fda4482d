"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from server.kernel.store import IndexSpec, Store

READY_TIMEOUT_SECONDS = 2.0


async def readiness_problem(store: Store, indexes: list[IndexSpec]) -> str | None:
    """None when the store answers in time and every index exists; else the reason."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await store.ping()
            missing = await _missing_indexes(store, indexes)
    except TimeoutError:
        return f"store did not answer within {READY_TIMEOUT_SECONDS:g} s"
    except Exception as err:  # any driver error means "not ready", never a 500
        return f"store unreachable ({err.__class__.__name__})"
    if missing:
        return f"missing indexes: {', '.join(missing)}"
    return None


async def _missing_indexes(store: Store, indexes: list[IndexSpec]) -> list[str]:
    present: dict[str, list[list[tuple[str, int]]]] = {}
    missing = []
    for collection, keys, _ in indexes:
        if collection not in present:
            info = await store.collection(collection).index_information()
            present[collection] = [
                [(name, int(order)) for name, order in index["key"]] for index in info.values()
            ]
        if [(name, int(order)) for name, order in keys] not in present[collection]:
            missing.append(f"{collection}({', '.join(name for name, _ in keys)})")
    return missing
