"""The in-memory store's copy of a document it is given to insert, made in one walk;
and the plain updates it applies without mongomock's general machinery.

mongomock checks a document in three walks (its keys for NUL characters, an encoding
to BSON to prove it can be stored, and a copy that turns datetimes into MongoDB's
naive-UTC milliseconds) and then indexes it. For the documents the gateway writes
(strings, numbers, datetimes, subdocuments and lists of them) `stored_form` does all
three in one walk. For anything else (a value of another type, a key that is not a
plain string or holds a NUL character, a string BSON cannot encode, an integer out of
BSON's range) it answers None, and mongomock's own insert stores the document or
refuses it in its own words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SCALARS = (bool, float, type(None), ObjectId)


class NotPlain(Exception):
    """The document holds something only mongomock's insert knows what to do with."""


def _text(value: str) -> str:
    if not value.isascii():
        try:
            value.encode("utf-8")  # a lone surrogate cannot be stored as BSON
        except UnicodeEncodeError:
            raise NotPlain from None
    return value


# MongoDB refuses documents nested deeper than this; deeper ones are mongomock's.
MAX_DEPTH = 100
# The `_id` types a plain insert files as they are (mongomock keys on the given value).
PLAIN_IDS = frozenset({str, int, ObjectId})


def stored_value(value: Any, depth: int = 0) -> Any:
    """The value as mongomock stores it, containers copied; NotPlain when it is not
    plain."""
    kind = type(value)
    if kind is str:
        return _text(value)
    if depth > MAX_DEPTH:
        raise NotPlain
    if kind is dict:
        copied = {}
        for key, item in value.items():
            if type(key) is not str or "\x00" in _text(key):
                raise NotPlain
            copied[key] = stored_value(item, depth + 1)
        return copied
    if kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise NotPlain
        return value
    if kind is datetime:
        milliseconds = value.microsecond // 1000 * 1000
        if not value.tzinfo:  # as mongomock tests it
            return value.replace(microsecond=milliseconds)
        offset = value.utcoffset()
        if offset is None:
            raise NotPlain
        return (value - offset).replace(tzinfo=None, microsecond=milliseconds)
    if kind is list or kind is tuple:
        return [stored_value(item, depth + 1) for item in value]
    if kind in _SCALARS:
        return value
    raise NotPlain


def stored_form(document: dict[str, Any]) -> dict[str, Any] | None:
    """The document as mongomock would store it, or None when it is not plain (see
    the module's docstring): a top-level key starting with `$`, or an `_id` of a type
    not in PLAIN_IDS, is not plain either."""
    if type(document) is not dict:
        return None
    if "_id" in document and type(document["_id"]) not in PLAIN_IDS:
        return None
    try:
        copied: dict[str, Any] = stored_value(document)
    except NotPlain:
        return None
    return None if any(key.startswith("$") for key in copied) else copied


@dataclass(frozen=True)
class PlainUpdate:
    """An update of top-level fields only: `$set` values (as stored), `$inc` steps and
    `$unset` fields."""

    sets: dict[str, Any]
    increments: dict[str, int]
    unsets: tuple[str, ...]
    operators: tuple[str, ...]  # in the update's order, which new fields are added in

    def fields(self) -> list[str]:
        return [*self.sets, *self.increments, *self.unsets]

    def values(self, added: dict[str, int]) -> dict[str, Any]:
        """The values it gives its fields, `added` those of `$inc`, in its order."""
        given: dict[str, Any] = {}
        for operator in self.operators:
            if operator == "$set":  # a copy for each document: none shares a list
                given.update((name, stored_value(value)) for name, value in self.sets.items())
            elif operator == "$inc":
                given.update(added)
        return given


OPERATORS = frozenset({"$set", "$inc", "$unset"})


def _plain_field(name: Any) -> bool:
    return (
        type(name) is str
        and name != "_id"
        and not name.startswith("$")
        and "." not in name
        and "\x00" not in _text(name)
    )


def plain_update(update: Any) -> PlainUpdate | None:
    """The update when it is `$set`, `$inc` and/or `$unset` of distinct top-level
    fields (not `_id`), with plain values and integer steps; else None (mongomock
    applies it)."""
    if type(update) is not dict or not update or not set(update) <= OPERATORS:
        return None
    if not all(type(fields) is dict and fields for fields in update.values()):
        return None
    sets, increments = update.get("$set", {}), update.get("$inc", {})
    names = [name for fields in update.values() for name in fields]
    if len(set(names)) != len(names) or not all(_plain_field(name) for name in names):
        return None
    if not all(
        type(step) is int and INT64_MIN <= step <= INT64_MAX for step in increments.values()
    ):
        return None
    try:
        stored = {name: stored_value(value) for name, value in sets.items()}
    except NotPlain:
        return None
    return PlainUpdate(stored, dict(increments), tuple(update.get("$unset", {})), tuple(update))
