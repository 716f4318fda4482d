"""The in-memory store's hash indexes (server.kernel.memory_store) answer as MongoDB
does: every test here also runs on the MongoDB lane, which is the oracle. A property
test then shows, on the memory lane, that the indexed store answers exactly as plain
mongomock's full scans over the same operations: the index never misses a document."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any
from unittest.mock import patch

import mongomock
import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import ASCENDING, DESCENDING, ReturnDocument, WriteConcern
from pymongo.errors import DuplicateKeyError

from server.kernel.memory_documents import stored_form
from server.kernel.memory_store import EXPIRY_INTERVAL, IndexedCollection, memory_client
from server.kernel.store import Store

# A collection of these tests' own, with indexes each test creates.
THINGS = "memory_store_things"


async def names(store: Store, query: dict[str, Any], **options: Any) -> list[str]:
    """The `name` of each document `query` finds, in the order found."""
    found = await store.collection(THINGS).find(query, **options).to_list(None)
    return [document["name"] for document in found]


async def insert(store: Store, *documents: dict[str, Any]) -> None:
    for document in documents:  # one by one: the order they are stored in is the test's
        await store.collection(THINGS).insert_one(document)


@pytest.mark.asyncio
async def test_found_by_id_and_by_an_indexed_field_after_inserts(store) -> None:
    things = store.collection(THINGS)
    await things.create_index("ref")
    await insert(store, {"_id": "a", "name": "A", "ref": "R1"}, {"name": "B", "ref": "R2"})
    [b] = await things.find({"name": "B"}).to_list(None)
    assert await names(store, {"_id": "a"}) == ["A"]
    assert await names(store, {"_id": b["_id"]}) == ["B"]
    assert await names(store, {"ref": "R2"}) == ["B"]
    assert await names(store, {"ref": "R3"}) == []
    assert await things.count_documents({"ref": "R1"}) == 1


@pytest.mark.asyncio
async def test_an_update_of_an_indexed_field_moves_the_document_to_its_new_value(store) -> None:
    things = store.collection(THINGS)
    await things.create_index("ref")
    await insert(store, {"name": "A", "ref": "R1"}, {"name": "B", "ref": "R1"})
    result = await things.update_one({"name": "A"}, {"$set": {"ref": "R2"}})
    assert (result.matched_count, result.modified_count) == (1, 1)
    assert await names(store, {"ref": "R1"}) == ["B"]
    assert await names(store, {"ref": "R2"}) == ["A"]
    await things.replace_one({"ref": "R2"}, {"name": "A", "ref": 7})
    assert await names(store, {"ref": "R2"}) == []
    assert await names(store, {"ref": 7}) == ["A"]
    await things.update_one({"name": "A"}, {"$unset": {"ref": ""}})
    assert await names(store, {"ref": 7}) == []


@pytest.mark.asyncio
async def test_update_many_moves_every_document_it_matches(store) -> None:
    things = store.collection(THINGS)
    await things.create_index("status")
    await insert(
        store,
        {"name": "A", "status": "new"},
        {"name": "B", "status": "done"},
        {"name": "C", "status": "new"},
    )
    result = await things.update_many({"status": "new"}, {"$set": {"status": "done"}})
    assert (result.matched_count, result.modified_count) == (2, 2)
    assert await names(store, {"status": "new"}) == []
    assert await names(store, {"status": "done"}) == ["A", "B", "C"]


@pytest.mark.asyncio
async def test_a_deleted_document_is_found_no_more(store) -> None:
    things = store.collection(THINGS)
    await things.create_index("ref")
    await insert(store, {"_id": 1, "name": "A", "ref": "R1"}, {"_id": 2, "name": "B", "ref": "R1"})
    assert (await things.delete_one({"ref": "R1"})).deleted_count == 1
    assert await names(store, {"ref": "R1"}) == ["B"]
    assert await names(store, {"_id": 1}) == []
    assert (await things.delete_many({"ref": "R1"})).deleted_count == 1
    assert await things.count_documents({}) == 0
    await insert(store, {"_id": 1, "name": "A again", "ref": "R1"})  # its _id is free again
    assert await names(store, {"_id": 1}) == ["A again"]


@pytest.mark.asyncio
async def test_an_upsert_inserts_once_then_updates(store) -> None:
    things = store.collection(THINGS)
    await things.create_index("ref", unique=True)
    first = await things.update_one(
        {"ref": "R1"}, {"$set": {"name": "A"}, "$setOnInsert": {"count": 0}}, upsert=True
    )
    second = await things.update_one({"ref": "R1"}, {"$inc": {"count": 1}}, upsert=True)
    assert first.upserted_id is not None and second.upserted_id is None
    [stored] = await things.find({"ref": "R1"}).to_list(None)
    assert (stored["_id"], stored["name"], stored["count"]) == (first.upserted_id, "A", 1)


@pytest.mark.asyncio
async def test_find_one_and_update_with_a_sort_takes_the_first_in_that_order(store) -> None:
    things = store.collection(THINGS)
    await things.create_index([("status", ASCENDING), ("at", DESCENDING)])
    await insert(
        store,
        {"name": "A", "status": "waiting", "at": 2},
        {"name": "B", "status": "waiting", "at": 3},
        {"name": "C", "status": "taken", "at": 9},
        {"name": "D", "status": "waiting", "at": 1},
    )
    taken = await things.find_one_and_update(
        {"status": "waiting"},
        {"$set": {"status": "taken"}},
        sort=[("at", DESCENDING)],
        return_document=ReturnDocument.AFTER,
    )
    assert (taken["name"], taken["status"]) == ("B", "taken")
    assert await names(store, {"status": "waiting"}) == ["A", "D"]
    assert await names(store, {"status": "taken"}, sort=[("at", ASCENDING)]) == ["B", "C"]


@pytest.mark.asyncio
async def test_in_and_and_find_what_they_name(store) -> None:
    things = store.collection(THINGS)
    await things.create_index("ref")
    await things.create_index("kind")
    await insert(
        store,
        {"name": "A", "ref": "R1", "kind": "x"},
        {"name": "B", "ref": "R2", "kind": "y"},
        {"name": "C", "ref": "R3", "kind": "x"},
    )
    assert await names(store, {"ref": {"$in": ["R3", "R1", "R9"]}}) == ["A", "C"]
    assert await names(store, {"ref": {"$in": []}}) == []
    assert await names(store, {"$and": [{"kind": "x"}, {"ref": {"$ne": "R1"}}]}) == ["C"]
    assert await names(store, {"$and": [{"ref": "R2"}], "kind": "y"}) == ["B"]
    assert await names(store, {"$and": [{"ref": "R2"}], "kind": "x"}) == []
    assert await names(store, {"ref": {"$eq": "R2"}}) == ["B"]


@pytest.mark.asyncio
async def test_an_array_field_and_a_dotted_path_are_found_by_their_elements(store) -> None:
    things = store.collection(THINGS)
    await things.create_index("tags")
    await things.create_index("meta.ref")
    await insert(
        store,
        {"name": "A", "tags": ["red", "blue"], "meta": {"ref": "R1"}},
        {"name": "B", "tags": "red", "meta": [{"ref": "R1"}, {"ref": "R2"}]},
        {"name": "C", "tags": [["red"]], "meta": {"ref": ["R2", "R3"]}},
        {"name": "D", "meta": "R1"},
    )
    assert await names(store, {"tags": "red"}) == ["A", "B"]
    assert await names(store, {"tags": "blue"}) == ["A"]
    assert await names(store, {"tags": {"$in": ["blue", "green"]}}) == ["A"]
    assert await names(store, {"meta.ref": "R1"}) == ["A", "B"]
    assert await names(store, {"meta.ref": "R2"}) == ["B", "C"]
    assert await names(store, {"meta.ref": "R3"}) == ["C"]
    await things.update_one({"name": "B"}, {"$set": {"meta": {"ref": "R9"}}})
    assert await names(store, {"meta.ref": "R1"}) == ["A"]
    assert await names(store, {"meta.ref": "R9"}) == ["B"]


@pytest.mark.asyncio
async def test_none_finds_null_and_missing_values(store) -> None:
    things = store.collection(THINGS)
    await things.create_index("ref")
    await insert(store, {"name": "A", "ref": None}, {"name": "B"}, {"name": "C", "ref": "R1"})
    assert await names(store, {"ref": None}) == ["A", "B"]
    assert await names(store, {"ref": {"$exists": False}}) == ["B"]
    assert await names(store, {"ref": {"$ne": None}}) == ["C"]


@pytest.mark.asyncio
async def test_a_number_does_not_find_a_boolean(store) -> None:
    things = store.collection(THINGS)
    await things.create_index("flag")
    await insert(
        store,
        {"name": "true", "flag": True},
        {"name": "one", "flag": 1},
        {"name": "one as float", "flag": 1.0},
        {"name": "false", "flag": False},
        {"name": "zero", "flag": 0},
    )
    assert await names(store, {"flag": 1}) == ["one", "one as float"]
    assert await names(store, {"flag": {"$in": [0, 1]}}) == ["one", "one as float", "zero"]
    assert await names(store, {"flag": True}) == ["true"]
    assert await names(store, {"flag": 0}) == ["zero"]
    # Also when another indexed equality gives the candidates.
    await things.create_index("name")
    assert await names(store, {"name": "true", "flag": 1}) == []
    assert await names(store, {"name": "one", "flag": 1}) == ["one"]


@pytest.mark.asyncio
async def test_a_duplicate_insert_is_refused_and_changes_nothing(store) -> None:
    things = store.collection(THINGS)
    await things.create_index("ref", unique=True)
    await insert(store, {"_id": 1, "name": "A", "ref": "R1"})
    with pytest.raises(DuplicateKeyError) as refused:
        await things.insert_one({"_id": 2, "name": "B", "ref": "R1"})
    assert refused.value.code == 11000
    with pytest.raises(DuplicateKeyError) as same_id:
        await things.insert_one({"_id": 1, "name": "C", "ref": "R2"})
    assert same_id.value.code == 11000
    assert await names(store, {}) == ["A"]
    assert await names(store, {"ref": "R1"}) == ["A"]
    assert await names(store, {"ref": "R2"}) == []
    assert await names(store, {"_id": 2}) == []


@pytest.mark.asyncio
async def test_an_update_to_a_taken_value_is_refused_and_changes_nothing(store) -> None:
    things = store.collection(THINGS)
    await things.create_index("ref", unique=True)
    await insert(store, {"name": "A", "ref": "R1"}, {"name": "B", "ref": "R2", "n": 1})
    with pytest.raises(DuplicateKeyError) as refused:
        await things.update_one({"ref": "R2"}, {"$set": {"ref": "R1"}, "$inc": {"n": 1}})
    assert refused.value.code == 11000
    with pytest.raises(DuplicateKeyError):
        await things.find_one_and_update({"name": "B"}, {"$set": {"ref": "R1"}})
    assert await names(store, {"ref": "R1"}) == ["A"]
    assert await names(store, {"ref": "R2"}) == ["B"]
    [b] = await things.find({"name": "B"}, {"_id": 0}).to_list(None)
    assert b == {"name": "B", "ref": "R2", "n": 1}


@pytest.mark.asyncio
async def test_a_compound_unique_index_refuses_only_the_same_pair(store) -> None:
    things = store.collection(THINGS)
    await things.create_index([("kind", 1), ("ref", 1)], unique=True)
    await insert(
        store,
        {"name": "A", "kind": "x", "ref": "R1"},
        {"name": "B", "kind": "y", "ref": "R1"},
        {"name": "C", "kind": "x", "ref": "R2"},
    )
    with pytest.raises(DuplicateKeyError):
        await things.insert_one({"name": "D", "kind": "x", "ref": "R1"})
    with pytest.raises(DuplicateKeyError):
        await things.update_one({"name": "C"}, {"$set": {"ref": "R1"}})
    assert await names(store, {"kind": "x"}) == ["A", "C"]
    assert await names(store, {"ref": "R1"}) == ["A", "B"]


@pytest.mark.asyncio
async def test_a_sparse_unique_index_holds_only_documents_with_the_field(store) -> None:
    things = store.collection(THINGS)
    await things.create_index("ref", unique=True, sparse=True)
    await insert(store, {"name": "A"}, {"name": "B"}, {"name": "C", "ref": "R1"})
    with pytest.raises(DuplicateKeyError):
        await things.insert_one({"name": "D", "ref": "R1"})
    with pytest.raises(DuplicateKeyError):
        await things.update_one({"name": "A"}, {"$set": {"ref": "R1"}})
    assert await names(store, {"ref": "R1"}) == ["C"]
    assert await names(store, {}) == ["A", "B", "C"]


@pytest.mark.asyncio
async def test_a_partial_unique_index_holds_only_the_documents_its_filter_matches(store) -> None:
    things = store.collection(THINGS)
    await things.create_index(
        "token", unique=True, partialFilterExpression={"token": {"$type": "string"}}
    )
    await insert(
        store,
        {"name": "A", "token": None},
        {"name": "B", "token": None},
        {"name": "C"},
        {"name": "D", "token": "T1"},
        {"name": "E", "token": 5},
        {"name": "F", "token": 5},
    )
    with pytest.raises(DuplicateKeyError):
        await things.insert_one({"name": "G", "token": "T1"})
    with pytest.raises(DuplicateKeyError):
        await things.update_one({"name": "A"}, {"$set": {"token": "T1"}})
    await things.update_one({"name": "A"}, {"$set": {"token": "T2"}})
    assert await names(store, {"token": "T1"}) == ["D"]
    assert await names(store, {"token": "T2"}) == ["A"]
    assert await names(store, {"token": 5}) == ["E", "F"]


@pytest.mark.asyncio
async def test_a_dropped_unique_index_refuses_nothing_more(store) -> None:
    things = store.collection(THINGS)
    name = await things.create_index("ref", unique=True)
    await insert(store, {"name": "A", "ref": "R1"})
    await things.drop_index(name)
    await insert(store, {"name": "B", "ref": "R1"})
    assert await names(store, {"ref": "R1"}) == ["A", "B"]
    await things.delete_many({})
    await things.create_index([("kind", 1), ("ref", 1)], unique=True)
    await things.drop_indexes()
    await insert(store, {"name": "C", "kind": "x", "ref": "R1"})
    await insert(store, {"name": "D", "kind": "x", "ref": "R1"})
    assert await names(store, {"kind": "x", "ref": "R1"}) == ["C", "D"]


@pytest.mark.asyncio
async def test_results_come_in_the_order_the_documents_were_stored(store) -> None:
    things = store.collection(THINGS)
    await things.create_index("ref")
    await insert(
        store,
        {"_id": 1, "name": "A", "ref": "R1"},
        {"_id": 2, "name": "B", "ref": "R2"},
        {"_id": 3, "name": "C", "ref": "R1"},
        {"_id": 4, "name": "D", "ref": "R2"},
    )
    await things.update_one({"name": "D"}, {"$set": {"ref": "R1"}})
    await things.update_one({"name": "B"}, {"$set": {"ref": "R1"}})
    await things.delete_one({"name": "A"})
    await insert(store, {"_id": 1, "name": "A2", "ref": "R1"})
    assert await names(store, {"ref": "R1"}) == ["B", "C", "D", "A2"]
    assert await names(store, {"ref": {"$in": ["R1", "R2"]}}) == ["B", "C", "D", "A2"]
    assert await names(store, {}) == ["B", "C", "D", "A2"]


@pytest.mark.asyncio
async def test_a_window_grouped_by_hour_and_day_counts_and_sums_as_mongodb(store) -> None:
    """The dashboard's shapes: a date window, `$dateToString` buckets, sums of a field
    and of a `$cond`. On the memory lane the compiled matcher and group answer."""
    noon = datetime(2026, 5, 1, 12, tzinfo=UTC)
    await insert(
        store,
        {"name": "A", "kind": "x", "at": noon - timedelta(minutes=130), "outcome": "ok", "n": 2},
        {"name": "B", "kind": "x", "at": noon - timedelta(minutes=170), "outcome": "late", "n": 3},
        {"name": "C", "kind": "y", "at": noon - timedelta(hours=13), "outcome": "ok", "n": 5},
        {"name": "D", "kind": "x", "at": noon - timedelta(hours=25), "outcome": "ok", "n": 7},
        {"name": "E", "kind": "x", "at": noon, "outcome": "error", "n": 11},
    )
    hour = {"$dateToString": {"date": "$at", "format": "%Y-%m-%dT%H:00:00+00:00"}}
    rows = await store.aggregate(
        THINGS,
        [
            {"$match": {"at": {"$gte": noon - timedelta(days=1), "$lt": noon}}},
            {
                "$group": {
                    "_id": {
                        "hour": hour,
                        "day": {"$dateToString": {"date": "$at", "format": "%Y-%m-%d"}},
                        "kind": "$kind",
                    },
                    "count": {"$sum": 1},
                    "n": {"$sum": "$n"},
                    "errors": {"$sum": {"$cond": [{"$eq": ["$outcome", "ok"]}, 0, 1]}},
                }
            },
        ],
    )
    assert sorted(rows, key=lambda row: row["_id"]["hour"]) == [
        {
            "_id": {"hour": "2026-04-30T23:00:00+00:00", "day": "2026-04-30", "kind": "y"},
            "count": 1,
            "n": 5,
            "errors": 0,
        },
        {
            "_id": {"hour": "2026-05-01T09:00:00+00:00", "day": "2026-05-01", "kind": "x"},
            "count": 2,
            "n": 5,
            "errors": 1,
        },
    ]


# --- the memory lane only ---


@pytest.mark.asyncio
async def test_an_aggregate_that_starts_with_a_match_sees_what_a_find_sees(store) -> None:
    """The leading `$match` takes its documents through the index; the rest of the
    pipeline (a join, a group) works on them as on any."""
    await store.collection(THINGS).create_index("key")
    await store.collection("memory_store_others").create_index("key")
    await insert(
        store,
        {"_id": 1, "name": "a", "key": "k1", "n": 2},
        {"_id": 2, "name": "b", "key": "k2", "n": 3},
        {"_id": 3, "name": "c", "key": "k1", "n": 5},
    )
    others = store.collection("memory_store_others")
    await others.insert_one({"_id": 10, "key": "k1", "what": "joined"})
    await store.collection(THINGS).update_one({"_id": 2}, {"$set": {"key": "k1"}})
    joined = await store.aggregate(
        THINGS,
        [
            {"$match": {"key": "k1", "n": {"$gte": 3}}},
            {
                "$lookup": {
                    "from": "memory_store_others",
                    "localField": "key",
                    "foreignField": "key",
                    "as": "others",
                }
            },
            {"$sort": {"_id": 1}},
        ],
    )
    assert [(row["name"], [o["what"] for o in row["others"]]) for row in joined] == [
        ("b", ["joined"]),
        ("c", ["joined"]),
    ]
    total = await store.aggregate(
        THINGS, [{"$match": {"key": "k1"}}, {"$group": {"_id": "$key", "n": {"$sum": "$n"}}}]
    )
    assert total == [{"_id": "k1", "n": 10}]
    assert await store.aggregate(THINGS, [{"$match": {"key": "k9"}}]) == []


@pytest.mark.asyncio
async def test_a_limit_keeps_the_first_of_the_sorted_matches_after_the_skip(store) -> None:
    """The in-memory cursor copies only what the limit keeps: the same documents."""
    await store.collection(THINGS).create_index("key")
    await insert(store, *({"name": f"n{i}", "key": "k", "rank": (i * 7) % 10} for i in range(10)))
    await insert(store, {"name": "other", "key": "x", "rank": 0})
    things = store.collection(THINGS)
    ranked = await things.find({"key": "k"}).sort("rank", DESCENDING).skip(2).limit(3).to_list(None)
    assert [thing["rank"] for thing in ranked] == [7, 6, 5]
    first = await things.find_one({"key": "k"}, sort=[("rank", ASCENDING)])
    assert (first["name"], first["rank"]) == ("n0", 0)
    assert await things.count_documents({"key": "k"}) == 10


def test_expired_documents_are_removed_at_most_once_an_interval() -> None:
    """MongoDB's TTL monitor runs every 60 s; the in-memory store expires every few
    seconds, not on every access as mongomock does (a scan of the collection each)."""
    things = memory_client(tz_aware=True)["ttl"]["things"]
    things.create_index("at", expireAfterSeconds=0)
    past = datetime.now(UTC) - timedelta(minutes=1)
    for name in ("A", "B"):
        things.insert_one({"name": name, "at": past})
        assert [thing["name"] for thing in things.find()] == [name]  # not expired so soon
        things._store._expired_at -= EXPIRY_INTERVAL  # the interval has passed
        assert things.count_documents({}) == 0


def test_a_collection_with_other_options_keeps_the_index() -> None:
    database = memory_client()["options"]
    database["things"].create_index("ref", unique=True)
    majority = database.get_collection("things", write_concern=WriteConcern("majority"))
    assert isinstance(majority, IndexedCollection)
    majority.insert_one({"ref": "R1"})
    with pytest.raises(DuplicateKeyError):
        database["things"].insert_one({"ref": "R1"})
    assert database["things"].find_one({"ref": "R1"}) is not None


# --- the index never misses: the indexed store against plain mongomock's full scans ---

# Values that collide often, of the kinds the index treats differently: indexed scalars,
# None, always-a-candidate ones (float, list, subdocument, a str Enum member), and the
# kinds the compiled matcher decides on or not (datetimes: stored and queried to the
# millisecond, naive UTC; one with microseconds, one aware). No bool on an indexed field:
# there the indexed store follows MongoDB (`1` does not find `true`), mongomock does not.


class Letter(StrEnum):
    A = "a"


OID = ObjectId("65a000000000000000000001")
D1, D2 = datetime(2026, 5, 1, 9), datetime(2026, 5, 1, 9, 0, 0, 5000)
D3 = datetime(2026, 5, 2, 23, 59, 58, 999000)
DATES = [D1, D2, D3, datetime(2026, 5, 1, 9, 0, 0, 4321), datetime(2026, 5, 1, 12, tzinfo=UTC)]
POOL = ["a", "b", 0, 1, 2, None, 1.0, 2.5, OID, ["a", 1], {"x": "a"}, Letter.A, *DATES]
VALUES = st.sampled_from(POOL)
FIELDS = ("k", "s", "u", "n.x", "t")  # t has no index
IDS = st.integers(0, 6)
# The fields groups read: mostly values the compiled group is sure of, then others.
ABSENT = object()
GROUPED = {
    "g": ["a", "b", Letter.A, 1, 2, None] * 3 + [ABSENT, 2.5, True, ["a"]],
    "m": [0, 1, 5, -3, 10**12] * 3 + [ABSENT, None, 1.5, True, "5"],
    "d": DATES[:3] * 3 + [ABSENT, None, "2026-05-01", DATES[4]],
}
FORMATS = ["%Y-%m-%dT%H:00:00+00:00", "%Y-%m-%d", "%H:%M:%S", "%d/%m %Hh", "%j", "%L"]


def nested(value: Any) -> Any:
    """A value of `n`, whose `x` is indexed: a subdocument, a list of them, or a scalar."""
    return st.sampled_from([{"x": value}, [{"x": value}, {"x": "b"}], value])


def documents() -> st.SearchStrategy[dict[str, Any]]:
    grouped = {field: st.sampled_from(values) for field, values in GROUPED.items()}
    return st.fixed_dictionaries(
        {"_id": IDS, **grouped},
        optional={
            "k": VALUES,
            "s": VALUES,
            "u": VALUES,
            "t": st.sampled_from([*POOL, True, False]),
            "n": VALUES.flatmap(nested),
        },
    ).map(lambda document: {key: value for key, value in document.items() if value is not ABSENT})


def conditions() -> st.SearchStrategy[Any]:
    """A condition on one field, of the shapes the compiled matcher takes (and others
    it leaves to mongomock: lists, subdocuments, floats, bools...)."""
    return st.one_of(
        VALUES,
        st.dictionaries(
            st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]),
            VALUES,
            min_size=1,
            max_size=2,
        ),
        st.builds(lambda values: {"$in": values}, st.lists(VALUES, max_size=3)),
        st.builds(lambda values: {"$nin": values}, st.lists(VALUES, max_size=3)),
        st.builds(lambda flag: {"$exists": flag}, st.booleans()),
    )


def filters() -> st.SearchStrategy[dict[str, Any]]:
    equality = st.builds(lambda field, value: {field: value}, st.sampled_from(FIELDS), VALUES)
    simple = st.dictionaries(
        st.sampled_from(("k", "s", "t", "g", "m", "d")), conditions(), min_size=1, max_size=3
    )
    return st.one_of(
        equality,
        st.builds(lambda value: {"_id": value}, IDS),
        st.builds(
            lambda field, values: {field: {"$in": values}},
            st.sampled_from(FIELDS),
            st.lists(VALUES, max_size=3),
        ),
        st.builds(lambda a, b: {"$and": [a, b]}, equality, equality),
        st.builds(lambda a, b: {**a, **b}, equality, equality),
        st.builds(lambda a: {**a, "t": {"$ne": "a"}}, equality),
        simple,
        st.builds(lambda a, b: {"$and": [a, b]}, simple, simple),
        st.builds(lambda a, b: {**a, **b}, equality, simple),
        st.builds(lambda a, b: {"$or": [a, b]}, simple, simple),
        st.builds(lambda a, b: {**a, "$or": [b, {"t": True}]}, simple, equality),
        # true and false on `t` only: an indexed field follows MongoDB there (see POOL)
        st.builds(
            lambda a, flag: {**a, "t": flag},
            simple,
            st.sampled_from([True, False, {"$eq": True}, {"$eq": False}]),
        ),
        st.just({}),
    )


def groups() -> st.SearchStrategy[dict[str, Any]]:
    """A `$group` of the shapes the compiled group takes (and a few it does not)."""
    field = st.sampled_from(["$g", "$m", "$d", "$s", "$n"])
    date = st.builds(
        lambda path, form: {"$dateToString": {"date": path, "format": form}},
        st.sampled_from(["$d", "$g"]),
        st.sampled_from(FORMATS),
    )
    key = st.one_of(
        st.just(None),
        field,
        date,
        st.dictionaries(st.sampled_from(["a", "b", "c"]), st.one_of(field, date), min_size=1),
    )
    total = st.sampled_from(
        [
            {"$sum": 1},
            {"$sum": 0},
            {"$sum": "$m"},
            {"$sum": "$g"},
            {"$sum": {"$cond": [{"$eq": ["$g", "a"]}, 0, 1]}},
            {"$sum": {"$cond": [{"$eq": ["$m", 5]}, 10, -1]}},
            {"$avg": "$m"},
        ]
    )
    return st.builds(
        lambda key, totals: {"_id": key, **totals},
        key,
        st.dictionaries(st.sampled_from(["count", "amount", "errors"]), total, max_size=3),
    )


def pipelines() -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.one_of(
        st.builds(lambda group: [{"$group": group}], groups()),
        st.builds(lambda match, group: [{"$match": match}, {"$group": group}], filters(), groups()),
        st.builds(
            lambda match, group: [{"$match": match}, {"$group": group}, {"$limit": 2}],
            filters(),
            groups(),
        ),
    )


def updates() -> st.SearchStrategy[dict[str, Any]]:
    field = st.sampled_from(("k", "s", "u", "t", "n", "n.x", "g", "d"))
    return st.one_of(
        st.builds(lambda f, v: {"$set": {f: v}}, field, VALUES),
        st.builds(lambda f: {"$unset": {f: ""}}, field),
        # $inc fails on a non-number after the $set changed the document in place
        st.builds(lambda f, v: {"$set": {f: v}, "$inc": {"t": 1}}, field, VALUES),
    )


OPERATIONS = st.one_of(
    st.tuples(st.just("insert_one"), documents()),
    st.tuples(st.sampled_from(["update_one", "update_many", "upsert"]), filters(), updates()),
    st.tuples(st.just("replace_one"), filters(), documents()),
    st.tuples(st.sampled_from(["delete_one", "delete_many", "find", "count"]), filters()),
    st.tuples(
        st.just("find_sorted"),
        filters(),
        st.lists(
            st.tuples(st.sampled_from(["g", "m", "d", "s", "k", "n.x"]), st.sampled_from([1, -1])),
            min_size=1,
            max_size=2,
            unique_by=lambda key: key[0],
        ),
        st.integers(0, 3),
    ),
    st.tuples(st.just("find_one_and_update"), filters(), updates(), st.sampled_from([1, -1])),
    st.tuples(st.sampled_from(["drop_index", "create_index"])),
    st.tuples(st.just("aggregate"), pipelines()),
)


def plain(value: Any) -> Any:
    """An operation's answer with the upserted ObjectIds (random on each side) hidden."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return "<new id>" if isinstance(value, ObjectId) and value != OID else value


def run(collection: Any, operation: tuple[Any, ...]) -> Any:
    """Apply one operation; its answer (or the error's type) as something comparable."""
    kind, *args = copy.deepcopy(operation)  # mongomock stores some values it is given
    calls: dict[str, Callable[[], Any]] = {
        "insert_one": lambda: collection.insert_one(dict(args[0])).inserted_id,
        "update_one": lambda: collection.update_one(*args).raw_result,
        "update_many": lambda: collection.update_many(*args).raw_result,
        "upsert": lambda: collection.update_one(*args, upsert=True).raw_result,
        "replace_one": lambda: collection.replace_one(args[0], dict(args[1])).raw_result,
        "delete_one": lambda: collection.delete_one(*args).deleted_count,
        "delete_many": lambda: collection.delete_many(*args).deleted_count,
        "find": lambda: list(collection.find(*args)),
        "count": lambda: collection.count_documents(*args),
        "find_sorted": lambda: list(collection.find(args[0]).sort(args[1]).limit(args[2])),
        "aggregate": lambda: list(collection.aggregate(*args)),
        "find_one_and_update": lambda: collection.find_one_and_update(
            args[0], args[1], sort=[("s", args[2])], return_document=ReturnDocument.AFTER
        ),
        "drop_index": lambda: collection.drop_index("s_1_n.x_1"),
        "create_index": lambda: collection.create_index([("s", 1), ("n.x", 1)]),
    }
    try:
        answer = calls[kind]()
    except Exception as err:  # both sides must fail alike
        return err.__class__.__name__
    if isinstance(answer, dict):
        answer = {key: value for key, value in answer.items() if key != "connectionId"}
    return plain(answer)


def fresh(client: Any) -> Any:
    collection = client["property"]["things"]
    collection.create_index("k", unique=True, sparse=True)
    collection.create_index("u", unique=True, partialFilterExpression={"u": {"$type": "string"}})
    collection.create_index([("s", 1), ("n.x", 1)])
    return collection


# Filters and pipelines of the dashboard's shapes, asked after every sequence.
SIMPLE_PROBES: list[dict[str, Any]] = [
    {"d": {"$gte": D1, "$lt": D3}},
    {"d": {"$gt": D2}},
    {"d": {"$lte": D2}, "g": {"$ne": None}},
    {"m": {"$gt": 1}},
    {"m": {"$gte": 1, "$lt": 5}},
    {"g": {"$in": ["a", 1, None]}},
    {"g": {"$ne": "a"}},
    {"g": None},
    {"g": {"$gte": "a"}, "m": {"$exists": False}},
    {"$and": [{"g": {"$lt": "b"}}, {"m": {"$lte": 5}}]},
]
GROUP_PROBES: list[dict[str, Any]] = [
    {"_id": {"g": "$g", "s": "$s"}, "amount": {"$sum": "$m"}, "count": {"$sum": 1}},
    {
        "_id": {"start": {"$dateToString": {"date": "$d", "format": FORMATS[0]}}, "g": "$g"},
        "amount": {"$sum": "$m"},
        "count": {"$sum": 1},
    },
    {"_id": {"day": {"$dateToString": {"date": "$d", "format": "%Y-%m-%d"}}}, "n": {"$sum": 1}},
    {"_id": {"$dateToString": {"date": "$d", "format": "%H:%M:%S"}}, "n": {"$sum": 1}},
    {"_id": "$g", "errors": {"$sum": {"$cond": [{"$eq": ["$g", "a"]}, 0, 1]}}},
    {"_id": None, "amount": {"$sum": "$m"}},
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stored=st.lists(documents(), max_size=8), operations=st.lists(OPERATIONS, max_size=30))
def test_the_indexed_store_answers_as_plain_mongomock_scans(stored, operations) -> None:
    """Also the compiled matcher and group (server.kernel.memory_query): their answers
    are mongomock's, rows in the same order."""
    indexed, scanned = fresh(memory_client()), fresh(mongomock.MongoClient())
    operations = [("insert_one", document) for document in stored] + operations
    for done, operation in enumerate(operations):
        after = f"{operation} after {operations[:done]}"
        assert run(indexed, operation) == run(scanned, operation), after
    for probe in [{field: value} for field in (*FIELDS, "_id") for value in POOL] + SIMPLE_PROBES:
        after = f"{probe} after {operations}"
        assert plain(list(indexed.find(probe))) == plain(list(scanned.find(probe))), after
    for match in [{}, *SIMPLE_PROBES[:3]]:
        for group in GROUP_PROBES:
            grouped = ("aggregate", [{"$match": match}, {"$group": group}])
            assert run(indexed, grouped) == run(scanned, grouped), f"{grouped} after {operations}"
    assert plain(list(indexed.find())) == plain(list(scanned.find())), operations


# Sort keys of one plain kind each, with ties, so that the in-place sort is taken.
SORTED_KINDS = {
    "i": st.integers(-2, 2),
    "w": st.sampled_from(["a", "b", "B", "ab", ""]),
    "d": st.sampled_from([D1, D3, datetime(2026, 5, 1, 9, 0, 0, 5000)]),
}


@settings(max_examples=200, deadline=None)
@given(
    stored=st.lists(st.fixed_dictionaries({"_id": IDS, **SORTED_KINDS}), max_size=12),
    keys=st.lists(
        st.tuples(st.sampled_from([*SORTED_KINDS, "x"]), st.sampled_from([1, -1])),
        min_size=1,
        max_size=3,
        unique_by=lambda key: key[0],
    ),
    skip=st.integers(0, 2),
    limit=st.integers(0, 4),
    match=st.sampled_from([{}, {"i": {"$gte": 0}}, {"$or": [{"w": "a"}, {"i": 2}]}]),
)
def test_a_sort_of_plain_values_orders_as_plain_mongomock(stored, keys, skip, limit, match) -> None:
    """The in-place sort (server.kernel.memory_query.sort_documents), ties and several
    keys included; a missing key ("x") is left to mongomock."""
    indexed, scanned = fresh(memory_client()), fresh(mongomock.MongoClient())
    for document in stored:
        assert run(indexed, ("insert_one", document)) == run(scanned, ("insert_one", document))

    def found(collection: Any) -> list[Any]:
        return list(collection.find(match).sort(keys).skip(skip).limit(limit))

    assert found(indexed) == found(scanned)


@pytest.mark.asyncio
async def test_an_or_of_indexed_equalities_finds_every_branch_in_stored_order(store) -> None:
    things = store.collection(THINGS)
    await things.create_index("status")
    await things.create_index("kind")
    await insert(
        store,
        {"name": "a", "status": "stuck", "kind": "debit"},
        {"name": "b", "status": "done", "kind": "credit"},
        {"name": "c", "status": "done", "kind": "debit"},
        {"name": "d", "status": "stuck", "kind": "credit"},
    )
    query = {"$or": [{"status": "stuck", "kind": "credit"}, {"kind": "debit"}]}
    assert await names(store, query) == ["a", "c", "d"]
    assert await names(store, {**query, "name": {"$ne": "c"}}) == ["a", "d"]
    assert await things.count_documents({"$or": [{"status": "done"}, {"name": "a"}]}) == 3


# --- an insert stores what mongomock's own insert stores (server.kernel.memory_documents) ---

KEYS = st.one_of(
    st.text(max_size=3), st.sampled_from(["$a", "a.b", "a\x00", "\ud800"]), st.integers()
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False),
    st.text(max_size=4),
    st.sampled_from(["\ud800", "é\udc80", "ok", b"bytes", Letter.A, OID, 2**63, -(2**63) - 1]),
    st.datetimes(timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=3))])),
    st.dates(),
)
NESTED = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner),
        st.dictionaries(KEYS, inner, max_size=3),
    ),
    max_leaves=8,
)


def stored_or_refused(collection: Any, document: dict[str, Any]) -> str:
    """What the collection holds after the insert, or the refusal's type, exactly."""
    try:
        collection.insert_one(copy.deepcopy(document))
    except Exception as err:
        return type(err).__name__
    return repr(list(collection._store._documents.values()))


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(KEYS, NESTED, max_size=4), st.one_of(st.none(), st.text(max_size=2)))
def test_a_document_is_stored_as_mongomock_stores_it(document, given_id) -> None:
    if given_id is not None:
        document["_id"] = given_id
    else:
        document.pop("_id", None)
    ours, theirs = memory_client()["d"]["c"], mongomock.MongoClient()["d"]["c"]
    with patch("bson.ObjectId.__init__", _fixed_object_id):
        assert stored_or_refused(ours, document) == stored_or_refused(theirs, document)


def _fixed_object_id(self: ObjectId, oid: Any = None) -> None:
    """Both inserts give a document without `_id` the same new one."""
    self._ObjectId__id = OID.binary if oid is None else ObjectId(oid).binary  # type: ignore[attr-defined]


def test_the_documents_the_gateway_writes_take_the_one_walk() -> None:
    entry = {
        "_id": "7a9c",
        "headers": {"Content-Type": "application/json"},
        "received_at": datetime(2026, 5, 1, 9, 0, 0, 123456, tzinfo=UTC),
        "amounts": [100, 250],
        "answer": {"ResultCode": "0"},
        "errors": None,
        "flag": True,
    }
    stored = stored_form(entry)
    assert stored == {**entry, "received_at": datetime(2026, 5, 1, 9, 0, 0, 123000)}
    assert stored is not None and stored["headers"] is not entry["headers"]


@pytest.mark.parametrize(
    "stored, update",
    [
        ({"n": 2**63 - 1}, {"$inc": {"n": 1}}),
        ({"n": "a"}, {"$inc": {"n": 1}}),
        ({"n": 1.5}, {"$inc": {"n": 1}}),
        ({"n": True}, {"$inc": {"n": 1}}),
        ({}, {"$inc": {"n": 3}, "$set": {"m": D2}}),
        ({"m": 1}, {"$set": {"m": 1.0}}),  # equal: not modified, yet stored as given
        ({"m": [1]}, {"$set": {"m": (1,)}}),
        ({"k": "taken", "m": 1}, {"$set": {"k": "a"}, "$unset": {"m": ""}}),  # refused, undone
        ({"m": 1, "z": 2}, {"$unset": {"m": 1}}),
        ({}, {"$unset": {"m": 1}}),  # nothing to remove: not modified
        ({}, {"$set": {}}),
        ({}, {"$set": {"_id": 9}}),
    ],
)
@pytest.mark.parametrize("kind", ["update_one", "update_many"])
def test_a_plain_update_answers_as_mongomock(stored, update, kind) -> None:
    indexed, scanned = fresh(memory_client()), fresh(mongomock.MongoClient())
    operations = [
        ("insert_one", {"_id": 1, "k": "a", "g": "x"}),
        ("insert_one", {"_id": 2, "g": "x", **stored}),
        ("insert_one", {"_id": 3, "g": "x", **stored, "k": "b"}),
        (kind, {"g": "x", "_id": {"$gt": 1}}, update),
    ]
    answers = [[run(collection, op) for op in operations] for collection in (indexed, scanned)]
    assert answers[0] == answers[1]
    stored_now = [repr(list(c._store._documents.values())) for c in (indexed, scanned)]
    assert stored_now[0] == stored_now[1]


NAN = float("nan")


@pytest.mark.parametrize(
    "operations",
    [
        [  # each document gets a list of its own
            ("insert_one", {"_id": 1}),
            ("insert_one", {"_id": 2}),
            ("update_many", {}, {"$set": {"tags": []}}),
            ("update_one", {"_id": 1}, {"$push": {"tags": "x"}}),
        ],
        [("insert_one", {"_id": 1}), ("update_one", {"_id": 1}, {"$set": {"a\x00b": 1}})],
        [("insert_one", {"_id": (1, 2)})],
        [
            ("insert_one", {"_id": datetime(2024, 1, 1, 0, 0, 0, 1000)}),
            ("insert_one", {"_id": datetime(2024, 1, 1, 0, 0, 0, 1500, tzinfo=UTC)}),
        ],
        [("insert_one", {"_id": 1, "a": NAN}), ("update_one", {"_id": 1}, {"$set": {"a": NAN}})],
        [  # the filter fails on the second document: the first keeps its change
            ("insert_one", {"_id": 1, "d": 1}),
            ("insert_one", {"_id": 2, "d": 0}),
            ("update_many", {"$expr": {"$eq": [{"$divide": [1, "$d"]}, 1]}}, {"$set": {"x": 1}}),
        ],
    ],
)
def test_what_the_one_walk_leaves_to_mongomock_ends_as_in_mongomock(operations) -> None:
    answers = []
    for collection in (memory_client()["d"]["c"], mongomock.MongoClient()["d"]["c"]):
        done = [repr(run(collection, operation)) for operation in operations]
        answers.append((done, repr(list(collection._store._documents.values()))))
    assert answers[0] == answers[1]
