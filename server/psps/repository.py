"""Payment service providers collection."""

from __future__ import annotations

from typing import Any

from server.kernel.documents import DocumentRepository
from server.kernel.store import IndexSpec

PSPS = "psps"
KINDS = ("qmoney", "mpesa", "external")

INDEXES: list[IndexSpec] = [
    (PSPS, [("name", 1)], {"unique": True}),
    (
        PSPS,
        [("username", 1)],
        {"unique": True, "partialFilterExpression": {"username": {"$type": "string"}}},
    ),
]


class PspRepository(DocumentRepository[dict[str, Any]]):
    collection_name = PSPS
