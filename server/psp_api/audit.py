"""What the payment-provider API's audit keeps of a request: bounded, whoever sent it.

A request accepted from an identified provider keeps the request as the API
validated it and the answer (both bounded by the API's schemas). Any other request
(no or a bad token, refused, rate-limited, invalid) keeps a summary: its size and
SHA-256, the reason it was refused and at most EXCERPT_BYTES of its body."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

EXCERPT_BYTES = 1024
# Method and path come from the request line, which may be as long as the header limit.
METHOD_CHARS, PATH_CHARS = 16, 512


@dataclass(frozen=True)
class AuditedRequest:
    """One request to the provider API and its answer, as the handler saw them."""

    method: str
    path: str
    source: str
    status: int
    body: bytes
    answer: Any
    request_id: str | None = None
    psp_uuid: str | None = None  # set once the caller is an identified provider
    user: str | None = None
    request: Any = None  # the body as the API validated it, if it did


def audit_entry(audited: AuditedRequest) -> dict[str, Any]:
    """The document stored for a request (without its id and time)."""
    entry = {
        "request_id": audited.request_id,
        "psp_uuid": audited.psp_uuid,
        "user": audited.user,
        "method": audited.method[:METHOD_CHARS],
        "path": audited.path[:PATH_CHARS],
        "source": audited.source,
        "status": audited.status,
        "body_bytes": len(audited.body),
        "body_sha256": hashlib.sha256(audited.body).hexdigest(),
    }
    if audited.psp_uuid is not None and audited.status < 400:
        return {**entry, "request": audited.request, "answer": audited.answer}
    return {
        **entry,
        "reason": refusal_reason(audited.answer),
        "body_excerpt": excerpt(audited.body),
    }


def refusal_reason(answer: Any) -> str | None:
    """The error code of an error answer."""
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        return answer["error"].get("code")
    return None


def excerpt(body: bytes) -> str:
    """The start of a body as text (invalid UTF-8 replaced), at most EXCERPT_BYTES bytes
    once encoded again."""
    text = body[:EXCERPT_BYTES].decode("utf-8", errors="replace")
    return text.encode()[:EXCERPT_BYTES].decode("utf-8", errors="ignore")
