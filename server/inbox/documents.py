"""The stored shape of an inbox entry: one callback as it arrived, and what became
of it (server.inbox.repository writes it).

An entry stored before entries named their `source`, or before a failure was kept,
lacks those fields; the outcome's fields come once the entry is processed."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NotRequired, TypedDict


class EncodedBody(TypedDict):
    body: str  # the raw body as text, or its base64
    body_encoding: str  # utf-8 | base64


class InboxFailure(TypedDict):
    """What failed while processing the entry."""

    type: str  # the error's class name
    message: str


class Replay(TypedDict):
    """An operator's request to process the entry again."""

    by: str
    reason: str
    at: datetime


class Dismissal(TypedDict):
    """An operator's decision that an entry needs nothing more: who, when, why, and
    the status it had."""

    by: str
    reason: str
    at: datetime
    from_status: str


class InboxOutcome(TypedDict):
    """What processing an entry decided, as set on it."""

    status: str
    processed_at: datetime
    errors: Any  # why the body could not be read (the schema's messages)
    trans_id: NotRequired[str]
    answer: NotRequired[dict[str, Any]]  # the answer the provider was given


class InboxEntry(TypedDict):
    _id: str
    source: NotRequired[str]  # absent: server.inbox.repository.LEGACY_SOURCE_KIND
    kind: str
    body: str
    body_encoding: str
    source_ip: str
    headers: dict[str, str]
    received_at: datetime
    status: str  # server.inbox.repository's inbox states
    attempts: int
    processed_at: NotRequired[datetime]
    errors: NotRequired[Any]
    trans_id: NotRequired[str]
    answer: NotRequired[dict[str, Any]]
    failure: NotRequired[InboxFailure | None]
    replays: NotRequired[list[Replay]]
    dismissal: NotRequired[Dismissal]
