"""The in-memory store's compiled filters and groups (server.kernel.memory_query): what
they decide and what they leave to mongomock, and that the dashboard's aggregates take
the fast path. That their answers are mongomock's over random operations is shown by
the property test in test_memory_store.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import mongomock
import pytest
from mongomock import aggregate
from mongomock.filtering import filter_applies

from server.kernel import memory_query, memory_store
from server.kernel.memory_query import compile_filter, compile_group
from server.kernel.memory_store import IndexedCollection, memory_client
from server.ledger import states

NOON = datetime(2026, 5, 1, 12)  # as mongomock stores datetimes: naive UTC, to the ms
WINDOW = {"created_at": {"$gte": NOON - timedelta(hours=24), "$lt": NOON}}

DECISIONS = [
    # (filter, document, what the compiled predicate answers: None is undecided)
    ({"s": "a"}, {"s": "a"}, True),
    ({"s": "a"}, {"s": "b"}, False),
    ({"s": "a"}, {}, False),
    ({"s": "a"}, {"s": None}, False),
    ({"s": "a"}, {"s": 1}, False),  # kinds apart: never equal
    ({"s": "succeeded"}, {"s": states.SUCCEEDED}, True),  # a StrEnum is its str
    ({"s": states.SUCCEEDED}, {"s": "succeeded"}, True),
    ({"s": "a"}, {"s": ["a"]}, None),  # MongoDB matches an array's elements
    ({"s": "a"}, {"s": {"a": 1}}, None),
    ({"n": 1}, {"n": True}, None),  # mongomock: True == 1; MongoDB: no
    ({"n": 1}, {"n": 1.0}, None),
    ({"n": {"$gt": 1}}, {"n": 2}, True),
    ({"n": {"$gt": 1}}, {"n": 1}, False),
    ({"n": {"$gt": 1}}, {"n": "2"}, False),  # type bracketing
    ({"n": {"$gt": 1}}, {"n": None}, False),
    ({"n": {"$gt": 1}}, {}, False),
    ({"n": {"$gte": 1, "$lt": 5}}, {"n": 5}, False),
    ({"n": {"$gte": 1, "$lt": 5}}, {"n": 1}, True),
    (WINDOW, {"created_at": NOON - timedelta(hours=1)}, True),
    (WINDOW, {"created_at": NOON}, False),
    (WINDOW, {"created_at": NOON - timedelta(days=2)}, False),
    (WINDOW, {"created_at": "2026-05-01"}, False),
    (WINDOW, {}, False),
    (WINDOW, {"created_at": NOON - timedelta(microseconds=1)}, None),  # not to the ms
    (WINDOW, {"created_at": NOON.replace(tzinfo=UTC)}, None),  # mongomock stores naive
    (WINDOW, {"created_at": [NOON - timedelta(hours=1)]}, None),
    ({"p": None}, {}, True),  # null equals a missing field
    ({"p": None}, {"p": None}, True),
    ({"p": None}, {"p": "x"}, False),
    ({"p": {"$ne": None}}, {"p": "x"}, True),
    ({"p": {"$ne": None}}, {"p": None}, False),
    ({"p": {"$ne": None}}, {}, False),
    ({"p": {"$ne": "x"}}, {}, True),
    ({"p": {"$ne": "x"}}, {"p": [None]}, None),
    ({"s": {"$in": ["a", 1]}}, {"s": 1}, True),
    ({"s": {"$in": ["a", 1]}}, {"s": "b"}, False),
    ({"s": {"$in": ["a", 1]}}, {}, False),
    ({"s": {"$in": ["a", None]}}, {}, True),
    ({"s": {"$in": []}}, {"s": "a"}, False),
    ({"s": {"$exists": False}}, {}, True),
    ({"s": {"$exists": True}}, {"s": None}, True),
    ({"s": {"$exists": False}}, {"s": "a"}, False),
    ({"s": {"$eq": "a"}, "n": 1}, {"s": "a", "n": 2}, False),
    ({"$and": [{"s": "a"}, {"n": {"$lt": 2}}]}, {"s": "a", "n": 1}, True),
    # mongomock checks the conditions in order: the first undecided one leaves the rest
    # of the document to mongomock (it might raise there), even if a later one is false.
    ({"n": {"$gt": 1}, "s": "a"}, {"n": [2], "s": "b"}, None),
    ({"s": "a", "n": {"$gt": 1}}, {"n": [2], "s": "b"}, False),
]


@pytest.mark.parametrize(("spec", "document", "decided"), DECISIONS)
def test_the_compiled_predicate_decides_as_mongomock_or_not_at_all(spec, document, decided):
    predicate = compile_filter(spec)
    assert predicate is not None
    assert predicate(document) is decided
    if decided is not None:
        assert filter_applies(spec, document) is decided


@pytest.mark.parametrize(
    "spec",
    [
        {"a.b": 1},
        {"$and": []},
        {"$comment": "x", "a": 1},
        {"a": {"$regex": "x"}},
        {"a": {"$not": {"$gt": 1}}},
        {"a": {"x": 1}},  # a literal subdocument
        {"a": {}},
        {"a": [1]},
        {"a": 1.5},
        {"a": {"$gt": None}},  # mongomock orders None with None
        {"a": {"$in": [[1]]}},
        {"a": {"$in": "a"}},  # mongomock refuses it
        {"a": {"$exists": "yes"}},
        {"a": NOON.replace(tzinfo=UTC)},  # mongomock makes them naive first
        {"a": NOON + timedelta(microseconds=1)},
    ],
)
def test_a_filter_that_is_not_simple_is_left_to_mongomock(spec) -> None:
    assert compile_filter(spec) is None


def test_or_nin_and_an_equality_to_true_are_decided_where_mongomock_agrees() -> None:
    spec = {"$or": [{"a": {"$nin": [1, "x"]}, "b": True}, {"c": "y"}]}
    predicate = compile_filter(spec)
    assert predicate is not None
    assert predicate({"b": True, "c": "y"}) is None  # the first branch is undecided
    assert predicate({"c": "y"}) is True  # the first branch is not met: b is missing
    assert predicate({"a": 1, "b": True, "c": "y"}) is True  # nor here: a is 1
    assert predicate({"a": 2, "c": "z"}) is False  # b missing, c another value
    assert predicate({"a": "x", "b": True}) is False


@pytest.mark.parametrize(
    "group",
    [
        {"count": {"$sum": 1}},  # no _id
        {"_id": 0, "count": {"$sum": 1}},  # mongomock: one row with a None _id
        {"_id": {}, "count": {"$sum": 1}},
        {"_id": "$a.b", "count": {"$sum": 1}},
        {"_id": "$$ROOT", "count": {"$sum": 1}},
        {"_id": "constant", "count": {"$sum": 1}},
        {"_id": {"$toUpper": "$a"}, "count": {"$sum": 1}},
        {"_id": {"a.b": "$a"}, "count": {"$sum": 1}},
        {"_id": {"d": {"$dateToString": {"date": "$d", "format": "%Y-%m-%d%z"}}}},
        {"_id": {"d": {"$dateToString": {"date": "$d", "format": "%H:%M:%S.%L"}}}},
        {"_id": {"d": {"$dateToString": {"date": "$d", "format": "%j"}}}},
        {"_id": {"d": {"$dateToString": {"date": "$d", "format": "%Y", "timezone": "+03"}}}},
        {"_id": {"d": {"$dateToString": {"date": "$d.e", "format": "%Y"}}}},
        {"_id": "$a", "count": {"$sum": 1.5}},
        {"_id": "$a", "count": {"$sum": True}},
        {"_id": "$a", "count": {"$sum": "$b.c"}},
        {"_id": "$a", "count": {"$avg": "$b"}},
        {"_id": "$a", "count": {"$sum": 1, "$max": "$b"}},
        {"_id": "$a", "a.b": {"$sum": 1}},
        {"_id": "$a", "n": {"$sum": {"$cond": [{"$ne": ["$b", "x"]}, 0, 1]}}},
        {"_id": "$a", "n": {"$sum": {"$cond": [{"$eq": ["$b", "$c"]}, 0, 1]}}},
        {"_id": "$a", "n": {"$sum": {"$cond": [{"$eq": ["$b", 1.5]}, 0, 1]}}},
        {"_id": "$a", "n": {"$sum": {"$cond": [{"$eq": ["$b", "x"]}, 0, "$c"]}}},
        {"_id": "$a", "n": {"$sum": {"$cond": {"if": {"$eq": ["$b", "x"]}, "then": 0, "else": 1}}}},
    ],
)
def test_a_group_that_is_not_simple_is_left_to_mongomock(group) -> None:
    assert compile_group(group) is None


# --- the dashboard's aggregates take the fast path ---

BY_CHANNEL = {
    "_id": {"channel": "$channel", "currency": "$currency", "status": "$status"},
    "amount": {"$sum": "$amount"},
    "count": {"$sum": 1},
}
HOURLY = {
    "_id": {
        "start": {"$dateToString": {"date": "$created_at", "format": "%Y-%m-%dT%H:00:00+00:00"}},
        "currency": "$currency",
    },
    "amount": {"$sum": "$amount"},
    "count": {"$sum": 1},
}
DAILY = {
    "_id": {
        "day": {"$dateToString": {"date": "$created_at", "format": "%Y-%m-%d"}},
        "status": "$status",
    },
    "count": {"$sum": 1},
}
ERRORS = {
    "_id": {"provider": "$channel", "endpoint": "$currency"},
    "count": {"$sum": 1},
    "errors": {"$sum": {"$cond": [{"$eq": ["$outcome", "ok"]}, 0, 1]}},
}
DAILY_GROUP = {"$group": DAILY}
SUM_ONE = {"$sum": 1}
PIPELINES = {
    "by channel": [{"$match": WINDOW}, {"$group": BY_CHANNEL}],
    "totals": [
        {"$match": {**WINDOW, "status": states.SUCCEEDED}},
        {"$group": {"_id": "$currency", "amount": {"$sum": "$amount"}, "count": {"$sum": 1}}},
    ],
    "by psp": [
        {"$match": {**WINDOW, "status": states.SUCCEEDED, "psp_uuid": {"$ne": None}}},
        {"$group": {"_id": {"psp": "$psp_uuid"}, "count": {"$sum": 1}}},
    ],
    "hourly series": [{"$match": WINDOW}, {"$group": HOURLY}],
    "daily counts": [
        {"$match": {"created_at": {"$gte": NOON - timedelta(days=2)}}},
        {"$group": DAILY},
    ],
    "errors": [{"$match": WINDOW}, {"$group": ERRORS}],
    "no match": [
        {"$group": {"_id": {"channel": "$channel", "status": "$status"}, "n": {"$sum": 1}}}
    ],
    "then sorted": [{"$match": WINDOW}, {"$group": BY_CHANNEL}, {"$sort": {"count": -1}}],
}


def transaction(number: int) -> dict[str, Any]:
    """A transaction as the gateway stores it in memory (a StrEnum status as it is)."""
    return {
        "_id": f"tx-{number}",
        "status": [states.SUCCEEDED, states.FAILED, states.OTP_SENT][number % 3],
        "channel": ["mpesa_express", "qmoney"][number % 2],
        "currency": ["KES", "GMD"][number % 5 // 4],
        "amount": 100 * number,
        "created_at": NOON - timedelta(minutes=37 * number, milliseconds=number),
        "psp_uuid": None if number % 4 else f"psp-{number % 8}",
        "outcome": "ok" if number % 7 else "timeout",
        "history": [{"status": "initiated", "at": NOON}],
    }


def both(*documents: dict[str, Any]) -> tuple[Any, Any]:
    """The documents in the indexed store and in plain mongomock, as the gateway opens it."""
    indexed = memory_client(tz_aware=True)["query"]["transactions"]
    plain = mongomock.MongoClient(tz_aware=True)["query"]["transactions"]
    indexed.create_index([("status", 1), ("updated_at", 1)])
    for document in documents:
        indexed.insert_one(dict(document))
        plain.insert_one(dict(document))
    return indexed, plain


@pytest.fixture
def mongomock_groups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many documents each `$group` mongomock ran had."""
    grouped: list[int] = []
    handler = aggregate._PIPELINE_HANDLERS["$group"]

    def counted(documents: list[Any], *args: Any) -> Any:
        grouped.append(len(documents))
        return handler(documents, *args)

    monkeypatch.setitem(aggregate._PIPELINE_HANDLERS, "$group", counted)
    return grouped


@pytest.fixture
def mongomock_matches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The documents mongomock's matcher was asked about by the indexed store."""
    asked: list[Any] = []

    def counted(spec: Any, document: Any) -> bool:
        asked.append(document)
        answer: bool = filter_applies(spec, document)
        return answer

    monkeypatch.setattr(memory_query, "filter_applies", counted)
    monkeypatch.setattr(memory_store, "filter_applies", counted)
    yield asked


def no_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """A find (which copies the documents it answers) is an error from now on."""

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the fast path copied documents")

    monkeypatch.setattr(IndexedCollection, "find", refused)


@pytest.mark.parametrize("name", PIPELINES)
def test_the_dashboards_aggregates_read_the_stored_documents_in_place(
    name: str, monkeypatch: pytest.MonkeyPatch, mongomock_groups, mongomock_matches
) -> None:
    indexed, plain = both(*map(transaction, range(60)))
    expected = list(plain.aggregate(PIPELINES[name]))
    mongomock_groups.clear()
    no_copies(monkeypatch)
    assert list(indexed.aggregate(PIPELINES[name])) == expected  # in mongomock's order too
    assert mongomock_groups == []
    assert mongomock_matches == []


def test_a_count_over_a_date_range_asks_mongomock_about_no_document(mongomock_matches) -> None:
    indexed, plain = both(*map(transaction, range(60)))
    assert indexed.count_documents(WINDOW) == plain.count_documents(WINDOW) == 38
    assert mongomock_matches == []


def test_a_document_the_matcher_is_not_sure_of_is_matched_by_mongomock(mongomock_matches):
    odd = {**transaction(1), "_id": "odd", "created_at": [NOON - timedelta(hours=1)]}
    indexed, plain = both(*map(transaction, range(10)), odd)
    assert indexed.count_documents(WINDOW) == plain.count_documents(WINDOW) == 10
    assert [document["_id"] for document in mongomock_matches] == ["odd"]


UNSURE: dict[str, Callable[[dict[str, Any]], None]] = {
    "a missing key field": lambda document: document.pop("currency"),
    "a list key": lambda document: document.update(channel=["mpesa_express"]),
    "a bool key": lambda document: document.update(status=True),
    "a float key": lambda document: document.update(currency=1.0),
    "a datetime key": lambda document: document.update(currency=NOON),
    "a subdocument key": lambda document: document.update(channel={"name": "x"}),
    "a str to sum": lambda document: document.update(amount="100"),
    "a float to sum": lambda document: document.update(amount=100.5),
    "a bool to sum": lambda document: document.update(amount=True),
    "None to sum": lambda document: document.update(amount=None),
    "a missing field to sum": lambda document: document.pop("amount"),
    "a list to compare": lambda document: document.update(outcome=["ok"]),
    "None to compare": lambda document: document.update(outcome=None),
    "a missing date": lambda document: document.pop("created_at"),
}


@pytest.mark.parametrize("oddity", UNSURE)
def test_a_document_the_group_is_not_sure_of_leaves_the_pipeline_to_mongomock(
    oddity: str, mongomock_groups
) -> None:
    odd = transaction(1)
    UNSURE[oddity](odd)
    odd["_id"] = "odd"
    indexed, plain = both(*map(transaction, range(10)), odd)
    pipeline = [
        {"$match": {"status": {"$ne": "never"}}},
        {
            "$group": {
                "_id": {
                    "day": {"$dateToString": {"date": "$created_at", "format": "%Y-%m-%d"}},
                    "channel": "$channel",
                    "currency": "$currency",
                    "status": "$status",
                },
                "amount": {"$sum": "$amount"},
                "errors": {"$sum": {"$cond": [{"$eq": ["$outcome", "ok"]}, 0, 1]}},
            }
        },
    ]
    expected = list(plain.aggregate(pipeline))
    mongomock_groups.clear()
    assert list(indexed.aggregate(pipeline)) == expected
    assert mongomock_groups == [11]  # mongomock grouped all the matched documents


def test_a_date_that_is_not_one_leaves_the_pipeline_to_mongomock(mongomock_groups) -> None:
    """mongomock's `$dateToString` of a string fails: so does the indexed store's."""
    indexed, plain = both(transaction(1), {**transaction(2), "created_at": "2026-05-01"})
    pipeline = [{"$group": DAILY}]
    with pytest.raises(AttributeError):
        list(plain.aggregate(pipeline))
    with pytest.raises(AttributeError):
        list(indexed.aggregate(pipeline))
    assert mongomock_groups == [2, 2]


def test_a_group_of_no_documents_under_a_none_id_is_one_row_as_in_mongomock() -> None:
    """MongoDB answers no row at all; the in-memory store answers as mongomock."""
    indexed, plain = both(transaction(1))
    pipeline = [
        {"$match": {"status": "never"}},
        {"$group": {"_id": None, "n": {"$sum": "$amount"}}},
    ]
    assert list(indexed.aggregate(pipeline)) == list(plain.aggregate(pipeline))
    assert list(indexed.aggregate(pipeline)) == [{"n": 0, "_id": None}]
