"""What the openIMIS simulator's control API arms and records: faults on GraphQL root
fields, and the log of GraphQL calls."""

from __future__ import annotations

import asyncio
import contextlib

from simulators.common import ControlError, Fault, FaultBook, JsonObject, now_iso
from simulators.openimis_schema import OPERATIONS

FAULT_KINDS = {
    name: ("latency", "http500", "drop", "drop_after")
    + (("mutation_error",) if name == "createPremium" else ())
    for name in OPERATIONS
}
DEFAULT_FAULT_MESSAGE = "simulated mutation error"


class Traffic:
    """Armed faults, the GraphQL request log, and the stop signal for sleeping faults."""

    def __init__(self) -> None:
        self.faults = FaultBook(FAULT_KINDS, ())
        self.messages: dict[int, str] = {}  # fault id -> mutation_error message
        self.requests: list[JsonObject] = []
        self._next_id = 1
        self.closing = asyncio.Event()

    def clear(self) -> None:
        self.faults.clear()
        self.messages.clear()
        self.requests.clear()

    def arm(self, payload: JsonObject) -> JsonObject:
        allowed = {"operation", "fault", "times", "seconds", "message"}
        if unknown := sorted(set(payload) - allowed):
            raise ControlError(f"unknown fields {unknown}; known: {sorted(allowed)}")
        operation, kind = payload.get("operation"), payload.get("fault")
        if not isinstance(operation, str) or operation not in FAULT_KINDS:
            raise ControlError(f"operation must be one of {sorted(FAULT_KINDS)}")
        if not isinstance(kind, str) or kind not in FAULT_KINDS[operation]:
            kinds = list(FAULT_KINDS[operation])
            raise ControlError(f"fault for {operation} must be one of {kinds}")
        message = payload.get("message", DEFAULT_FAULT_MESSAGE)
        if not isinstance(message, str) or not message:
            raise ControlError("message must be a non-empty string")
        shared = {key: payload[key] for key in ("times", "seconds") if key in payload}
        fault = self.faults.add({"target": operation, "kind": kind, **shared})
        self.messages[fault.id] = message
        return self.fault_json(fault.as_json())

    def fault_json(self, fault: JsonObject) -> JsonObject:
        return {
            "id": fault["id"],
            "operation": fault["target"],
            "fault": fault["kind"],
            "seconds": fault["seconds"],
            "times": fault["times"],
            "message": self.messages.get(fault["id"]),
        }

    def take(self, fields: list[JsonObject]) -> tuple[Fault, str] | None:
        """The fault armed on the first of these root fields that has one, and its message."""
        for field in fields:
            fault = self.faults.take(field["name"])
            if fault is not None:
                return fault, self.messages.get(fault.id, DEFAULT_FAULT_MESSAGE)
        return None

    def record(self) -> JsonObject:
        record: JsonObject = {
            "id": self._next_id,
            "at": now_iso(),
            "operation": None,
            "operation_name": None,
            "fields": [],
            "fault": None,
            "status": None,
            "answer": None,
        }
        self._next_id += 1
        self.requests.append(record)
        return record

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), seconds)
