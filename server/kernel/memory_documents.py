"""The in-memory store's copy of a document it is given to insert, made in one walk.

mongomock checks a document in three walks (its keys for NUL characters, an encoding
to BSON to prove it can be stored, and a copy that turns datetimes into MongoDB's
naive-UTC milliseconds) and then indexes it. For the documents the gateway writes
(strings, numbers, datetimes, subdocuments and lists of them) `stored_form` does all
three in one walk. For anything else (a value of another type, a key that is not a
plain string or holds a NUL character, a string BSON cannot encode, an integer out of
BSON's range) it answers None, and mongomock's own insert stores the document or
refuses it in its own words."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SCALARS = (bool, float, type(None), ObjectId)


class _NotPlain(Exception):
    """The document holds something only mongomock's insert knows what to do with."""


def _text(value: str) -> str:
    if not value.isascii():
        try:
            value.encode("utf-8")  # a lone surrogate cannot be stored as BSON
        except UnicodeEncodeError:
            raise _NotPlain from None
    return value


def _copy(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return _text(value)
    if kind is dict:
        copied = {}
        for key, item in value.items():
            if type(key) is not str or "\x00" in _text(key):
                raise _NotPlain
            copied[key] = _copy(item)
        return copied
    if kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise _NotPlain
        return value
    if kind is datetime:
        milliseconds = value.microsecond // 1000 * 1000
        if value.tzinfo is None:
            return value.replace(microsecond=milliseconds)
        offset = value.utcoffset()
        if offset is None:
            raise _NotPlain
        return (value - offset).replace(tzinfo=None, microsecond=milliseconds)
    if kind is list or kind is tuple:
        return [_copy(item) for item in value]
    if kind in _SCALARS:
        return value
    raise _NotPlain


def stored_form(document: dict[str, Any]) -> dict[str, Any] | None:
    """The document as mongomock would store it, or None when it is not plain (see
    the module's docstring). A top-level key starting with `$` is not plain either."""
    if type(document) is not dict:
        return None
    try:
        copied: dict[str, Any] = _copy(document)
    except _NotPlain:
        return None
    return None if any(key.startswith("$") for key in copied) else copied
