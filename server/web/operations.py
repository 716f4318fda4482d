"""What each method of a route takes and answers, declared on its handler class.

A handler says it with two class attributes:

- `operations`: HTTP method (lower case) -> Operation, one per method it implements;
- `path_parameters`: when its URL pattern has groups, their names in order, each with
  its description (the pattern `/api/v1/c2b/payments/([^/]+)` and
  `{"trans_id": "..."}` are documented as `/api/v1/c2b/payments/{trans_id}`).

server/ops/openapi.py builds the OpenAPI document from the routes' handlers and
refuses to build when a method a handler implements has no Operation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema

from server.web.answer_schemas import ErrorSchema

# Who may call an operation (its description names them; a token of the first is
# what the conformance tests call it with).
STAFF = ("operator", "admin")
ADMIN = ("admin",)
PSP = ("psp",)

# Error statuses most operations share: a bearer token with the right role, a JSON body.
AUTH = (401, 403)
BODY = (400, 413, 415)


@dataclass(frozen=True)
class Operation:
    """One method of one path: who may call it, what it takes and what it answers."""

    summary: str
    tag: str
    answer: type[Schema] | dict[str, Any] | None  # None: no body (HEAD)
    roles: tuple[str, ...] = ()
    body: type[Schema] | None = None
    example: dict[str, Any] | None = None
    query: type[Schema] | None = None
    success: dict[int, str] = field(default_factory=lambda: {200: "OK"})
    errors: tuple[int, ...] = ()
    # The Daraja callbacks answer errors in Daraja's format, not the API's error shape;
    # None for the browser pages, whose errors are Tornado's own HTML.
    error_answer: type[Schema] | None = ErrorSchema
    error_descriptions: dict[int, str] = field(default_factory=dict)
    media_type: str = "application/json"
    # Other forms of the same success answer, media type -> schema (a report as CSV, as
    # a page), chosen by a query parameter the description names.
    other_media: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""


Operations = dict[str, Operation]

# The path parameter of a directory of files.
FILE_PATH = {"path": "File name"}


def page_operations(summary: str) -> Operations:
    """GET of a page for browsers (HTML)."""
    return {"get": Operation(summary, "pages", {"type": "string"}, media_type="text/html")}


def static_file_operations(whose: str) -> Operations:
    """GET and HEAD of a directory of files (server.web.handler.StaticFiles)."""
    missing = {404: "No such file"}
    return {
        "get": Operation(
            f"A file of {whose}",
            "pages",
            {"type": "string", "format": "binary"},
            media_type="*/*",
            errors=(404,),
            error_answer=None,
            error_descriptions=missing,
        ),
        "head": Operation(
            f"The headers of a file of {whose}",
            "pages",
            None,
            errors=(404,),
            error_answer=None,
            error_descriptions=missing,
        ),
    }
