"""The in-memory store's engine: mongomock with hash indexes, so that its cost stays
flat as collections grow.

Plain mongomock answers every find, update, delete and count, and checks every unique
index on every write, by running its matcher (`filter_applies`) over every document of
the collection. Here each collection keeps a hash index on `_id` and on each key field
of its indexes, and `_iter_documents` takes its candidates from the most selective
equality of the filter on such a field; each candidate is then still checked, in the
collection's insertion order, by mongomock's matcher or one that answers as it does
(below), so the answers are mongomock's. Anything the index is not sure of falls back
to mongomock's full scan.

The index may give extra candidates (the matcher drops them) but must never miss one: a
missed candidate is a payment not found. So only a few scalar types are indexed, by
their exact type (a `str` subclass such as a str Enum member may hash and compare
unlike a `str`); a document whose value at a field is anything else (a list, a
subdocument, a Decimal128, a path that crosses a list...) is "always a candidate" for
that field. A value no indexed query value can equal (None, a datetime, a missing
field) is not indexed at all. Numbers are indexed by value (1 and 1.0 are one key, as
in MongoDB), bools apart from them: MongoDB never matches `true` with `1`, while plain
mongomock does (`True == 1` in Python); an equality on an indexed field follows MongoDB
there, whichever equality of the filter gave the candidates.

Where the filter is simple the candidates are matched by a compiled matcher, which asks
mongomock's only about the documents it is not sure of; a leading `$group` of the common
shapes reads the stored documents in place instead of mongomock's copies of them
(server.kernel.memory_query).

The classes are installed only in the client `memory_client` returns: nothing of
mongomock is patched. Not thread-safe beyond mongomock's own locking: mongomock-motor
calls it from the event loop's thread only.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any

from bson import ObjectId
from bson.int64 import Int64
from mongomock import aggregate, helpers
from mongomock.collection import Collection, Cursor
from mongomock.database import Database
from mongomock.filtering import filter_applies
from mongomock.mongo_client import MongoClient
from mongomock.store import CollectionStore, DatabaseStore, ServerStore
from pymongo.errors import DuplicateKeyError

from server.kernel.memory_documents import (
    PlainUpdate,
    plain_update,
    stored_form,
)
from server.kernel.memory_query import compile_group, matcher, sort_documents

# Query and document values indexed by value (exact types only), bools apart (hash_key).
INDEXED_TYPES = frozenset({str, int, Int64, float, bool, ObjectId, uuid.UUID})
# Document values equal to no indexed query value: not indexed.
NEVER_EQUAL_TYPES = frozenset({type(None), datetime})
# A document's key in a field's index when it must always be a candidate.
ALWAYS = object()
# Expired documents (TTL indexes) are removed at most this often, in seconds of wall
# time, instead of on every access; MongoDB's own TTL monitor runs every 60 s.
EXPIRY_INTERVAL = 5.0


def hash_key(value: Any) -> Any:
    """The key an indexed value is filed and looked up under: a bool apart from the
    numbers it equals in Python."""
    return (bool, value) if type(value) is bool else value


def index_key(document: Mapping[str, Any], path: str) -> Any:
    """The key `document` is indexed under for the field `path`: its value, ALWAYS, or
    None (not indexed)."""
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict):  # a list, or a scalar where a subdocument was
            return ALWAYS
        if part not in value:
            return None
        value = value[part]
    if type(value) in INDEXED_TYPES:
        return hash_key(value)
    return None if type(value) in NEVER_EQUAL_TYPES else ALWAYS


def _equal_values(condition: Any) -> list[Any] | None:
    """The keys of the values a field must equal one of under `condition`, if the index
    can use them: a plain value, `$eq`, or `$in` with only indexed values."""
    if type(condition) in INDEXED_TYPES:
        return [hash_key(condition)]
    if not isinstance(condition, dict) or not all(str(op).startswith("$") for op in condition):
        return None  # an empty or literal subdocument, a regex, None...
    if "$eq" in condition and type(condition["$eq"]) in INDEXED_TYPES:
        return [hash_key(condition["$eq"])]
    values = condition.get("$in")
    if isinstance(values, (list, tuple)) and all(type(v) in INDEXED_TYPES for v in values):
        return [hash_key(value) for value in values]
    return None


def equalities(spec: Mapping[str, Any]) -> Iterator[tuple[str, list[Any]]]:
    """(field, value keys) pairs a document must satisfy to match `spec`: its top-level
    equalities, also those inside a top-level `$and`."""
    for path, condition in spec.items():
        if path == "$and" and isinstance(condition, list):
            for part in condition:
                if isinstance(part, dict):
                    yield from equalities(part)
        elif isinstance(path, str) and not path.startswith("$"):
            values = _equal_values(condition)
            if values is not None:
                yield path, values


# Candidates making more than 1/LARGE_SHARE of a collection are put in order by walking
# the collection (already in insertion order) rather than by sorting them.
LARGE_SHARE = 8


class FieldIndex:
    """One field's hash index: document keys by value, and those always a candidate.

    Each value's keys are kept in the order they were filed. While that is also the
    collection's insertion order (keys filed with rising insertion numbers, as inserts
    and the first indexing file them) the keys can be handed out as they are, in the
    order every answer must have; a key filed out of that order (a document that took
    the value in an update) marks the value `out_of_order` until it has no key left."""

    def __init__(self) -> None:
        self.postings: dict[Any, dict[Any, None]] = {}
        self.always: set[Any] = set()
        self.out_of_order: set[Any] = set()
        self._last: dict[Any, int] = {}  # value -> the highest insertion number filed

    def add(self, entry: Any, key: Any, number: int) -> None:
        """File `key` (the document inserted `number`th) under `entry`."""
        if entry is ALWAYS:
            self.always.add(key)
            return
        keys = self.postings.setdefault(entry, {})
        if keys and number < self._last[entry]:
            self.out_of_order.add(entry)
        keys[key] = None
        self._last[entry] = max(number, self._last.get(entry, number))

    def discard(self, entry: Any, key: Any) -> None:
        if entry is ALWAYS:
            self.always.discard(key)
            return
        keys = self.postings.get(entry)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self.postings[entry]
                del self._last[entry]
                self.out_of_order.discard(entry)

    def in_order(self, entry: Any) -> dict[Any, None] | None:
        """The keys filed under `entry` when they are in insertion order and no document
        is always a candidate; else None."""
        if self.always or entry in self.out_of_order:
            return None
        return self.postings.get(entry, {})


class IndexedCollectionStore(CollectionStore):
    """A collection's documents, with a hash index per indexed field kept true on every
    change: insert, replace and rollback (`__setitem__`), delete, drop, index changes,
    and the in-place updates IndexedCollection reports through `reindex`."""

    def __init__(self, name: str) -> None:
        self._fields: dict[str, FieldIndex] = {}
        self._entries: dict[Any, dict[str, Any]] = {}  # document key -> field -> entry
        self._order: dict[Any, int] = {}  # document key -> insertion number
        self._key_of: dict[int, Any] = {}  # id() of a stored document -> its key
        self._inserted = itertools.count()
        self._expired_at = float("-inf")
        self._indexes: dict[str, dict[str, Any]] = {}
        super().__init__(name)
        # The documents in a dict, not mongomock's OrderedDict, whose iteration looks
        # each key up again (25 ms instead of 2 for 110,000 documents). Both keep the
        # insertion order, and mongomock uses no other feature of an OrderedDict.
        self._documents = {}  # type: ignore[assignment]

    @property
    def indexes(self) -> dict[str, dict[str, Any]]:
        return self._indexes

    @indexes.setter
    def indexes(self, indexes: dict[str, dict[str, Any]]) -> None:
        """Set by mongomock on creation, drop and `drop_indexes`: the indexed fields and
        the TTL indexes (which `drop_indexes` leaves behind in mongomock) follow."""
        self._indexes = indexes
        self._ttl_indexes = {
            name: index
            for name, index in indexes.items()
            if index.get("expireAfterSeconds") is not None
        }
        self._follow_indexes()

    def create_index(self, index_name: str, index_dict: dict[str, Any]) -> None:
        super().create_index(index_name, index_dict)
        self._follow_indexes()

    def drop_index(self, index_name: str) -> None:
        super().drop_index(index_name)
        self._follow_indexes()

    def drop(self) -> None:
        self._fields, self._entries, self._order, self._key_of = {}, {}, {}, {}
        super().drop()
        self._documents = {}  # type: ignore[assignment]

    def _follow_indexes(self) -> None:
        """Index `_id` and every key field of the collection's indexes; no other."""
        wanted = {"_id", *(path for index in self._indexes.values() for path, _ in index["key"])}
        for path in set(self._fields) - wanted:
            del self._fields[path]
            for entries in self._entries.values():
                entries.pop(path, None)
        for path in wanted - set(self._fields):
            field = self._fields[path] = FieldIndex()
            for key, document in self._documents.items():
                entry = index_key(document, path)
                if entry is not None:
                    field.add(entry, key, self._order[key])
                    self._entries.setdefault(key, {})[path] = entry

    def __setitem__(self, key: Any, document: dict[str, Any]) -> None:
        if key in self._documents:
            self._unindex(key)
        else:
            self._order[key] = next(self._inserted)
        super().__setitem__(key, document)
        self._index(key, document)

    def __delitem__(self, key: Any) -> None:
        self._unindex(key)
        super().__delitem__(key)
        del self._order[key]

    def _index(self, key: Any, document: dict[str, Any]) -> None:
        self._key_of[id(document)] = key
        entries = {}
        number = self._order[key]
        for path, field in self._fields.items():
            entry = index_key(document, path)
            if entry is not None:
                field.add(entry, key, number)
                entries[path] = entry
        self._entries[key] = entries

    def _unindex(self, key: Any) -> None:
        """Remove the document from the keys it was indexed under (not those its current
        content gives: it may have been changed in place)."""
        self._key_of.pop(id(self._documents.get(key)), None)
        for path, entry in self._entries.pop(key, {}).items():
            self._fields[path].discard(entry, key)

    def reindex(self, document: dict[str, Any]) -> None:
        """Index again a stored document changed in place. It is found by identity: an
        update that failed may have changed its `_id` (mongomock does not undo that)."""
        key = self._key_of.get(id(document))
        if key is None or self._documents.get(key) is not document:
            return
        entries, number = self._entries[key], self._order[key]
        for path, field in self._fields.items():
            before, entry = entries.get(path), index_key(document, path)
            if entry == before:
                continue  # filed where it was, in its place
            if before is not None:
                field.discard(before, key)
                del entries[path]
            if entry is not None:
                field.add(entry, key, number)
                entries[path] = entry

    def candidates(self, spec: Mapping[str, Any]) -> tuple[int, Iterable[dict[str, Any]]] | None:
        """How many documents may match `spec`, and those documents in insertion order
        (see `_admitted`); all of them when no equality can be used. None when there
        are none: mongomock scans. Keys already in order are looked up as they are
        read, so a find with a limit reads no further than it needs."""
        self._remove_expired_documents()
        if not self._documents:
            return None  # mongomock's scan also validates the filter then
        ordered = self._in_order(spec)
        if ordered is not None:
            documents = self._documents
            keys = list(ordered)  # as they are now: the reader may change them
            return len(keys), (documents[key] for key in keys if key in documents)
        pool = self._admitted(spec)
        if pool is None:
            return len(self._documents), list(self._documents.values())
        if len(pool) * LARGE_SHARE > len(self._documents):
            keys = [key for key in self._documents if key in pool]  # in order: no sort
        else:
            keys = sorted(pool, key=self._order.__getitem__)
        return len(keys), [self._documents[key] for key in keys]

    def _in_order(self, spec: Mapping[str, Any]) -> dict[Any, None] | None:
        """When `spec` has one equality the index can use, to one value whose keys are
        in insertion order: those keys (see FieldIndex). Else None."""
        usable = [(path, values) for path, values in equalities(spec) if path in self._fields]
        if len(usable) != 1 or len(usable[0][1]) != 1:
            return None
        path, [value] = usable[0]
        return self._fields[path].in_order(value)

    def _admitted(self, spec: Mapping[str, Any]) -> set[Any] | None:
        """The keys of the documents the most selective equality on an indexed field
        gives that every other such equality admits too (so the answer does not depend
        on which one was chosen). Without one, a top-level `$or` whose every branch has
        one admits the union of the branches'. None when no equality can be used."""
        usable = [
            (path, self._fields[path], values)
            for path, values in equalities(spec)
            if path in self._fields
        ]
        if not usable:
            branches = spec.get("$or")
            if not isinstance(branches, list) or not branches:
                return None
            pools: list[set[Any]] = []
            for part in branches:
                admitted = self._admitted(part) if isinstance(part, dict) else None
                if admitted is None:
                    return None
                pools.append(admitted)
            return set().union(*pools)

        def found(field: FieldIndex, values: list[Any]) -> list[AbstractSet[Any] | dict[Any, None]]:
            return [field.always, *(field.postings.get(value, {}) for value in values)]

        chosen = min(range(len(usable)), key=lambda at: sum(map(len, found(*usable[at][1:]))))
        _, best, values = usable[chosen]
        pool: set[Any] = set().union(*found(best, values))
        # The chosen equality admits all of its own candidates; the others are checked.
        allowed = [
            (path, {ALWAYS, *admitted})
            for at, (path, _, admitted) in enumerate(usable)
            if at != chosen
        ]
        if allowed:
            pool = {
                key
                for key in pool
                if all(self._entries[key].get(path) in admits for path, admits in allowed)
            }
        return pool

    def _remove_expired_documents(self) -> None:
        """mongomock's TTL expiry scans the whole collection; here at most once per
        EXPIRY_INTERVAL, not on every access."""
        if not self._ttl_indexes:
            return
        now = time.monotonic()
        if now - self._expired_at >= EXPIRY_INTERVAL:
            self._expired_at = now
            super()._remove_expired_documents()


class IndexedDatabaseStore(DatabaseStore):
    def __getitem__(self, name: str) -> IndexedCollectionStore:
        if name not in self._collections:
            self._collections[name] = IndexedCollectionStore(name)
        collection: IndexedCollectionStore = self._collections[name]
        return collection

    def rename(self, name: str, new_name: str) -> None:
        self[name]  # mongomock would make a plain CollectionStore for a missing one
        super().rename(name, new_name)


class IndexedServerStore(ServerStore):
    def __getitem__(self, name: str) -> IndexedDatabaseStore:
        if name not in self._databases:
            self._databases[name] = IndexedDatabaseStore()
        database: IndexedDatabaseStore = self._databases[name]
        return database


class LimitedCursor(Cursor):
    """mongomock's cursor copies every result before it applies its limit (a claim's
    `find_one_and_update` with a sort copied every due message); with a limit, only
    the first `skip + limit` results are copied."""

    def _compute_results(self, with_limit_and_skip: bool = False) -> list[dict[str, Any]]:
        if not (with_limit_and_skip and self._limit) or self._results:
            results: list[dict[str, Any]] = super()._compute_results(with_limit_and_skip)
            return results
        if getattr(self, "_limited_factory", None) is not self._factory:
            first = list(itertools.islice(self._factory(), self._skip + abs(self._limit)))
            if self.collection.codec_options.tz_aware:
                first = [helpers.make_datetime_timezone_aware_in_document(x) for x in first]
            self._limited = first[self._skip :]
            self._limited_factory = self._factory
        return self._limited


def _alone(stage: Any, name: str) -> bool:
    """Whether a pipeline's `stage` is a `name` stage (and no other in the same dict)."""
    return isinstance(stage, dict) and set(stage) == {name}


def _same(stored: Any, given: Any) -> bool:
    """Equal as mongomock's comparison of whole documents finds it (identity first)."""
    return stored is given or bool(stored == given)


def _added(document: dict[str, Any], increments: dict[str, int]) -> dict[str, int] | None:
    """The fields' values after `$inc`, when each is an integer (or missing)."""
    added = {}
    for name, step in increments.items():
        current = document.get(name, 0)
        if type(current) is not int:
            return None
        added[name] = current + step
    return added


class IndexedCollection(Collection):
    """A mongomock collection that finds candidates through its store's index."""

    def find(self, *args: Any, **kwargs: Any) -> Cursor:
        cursor = super().find(*args, **kwargs)
        cursor.__class__ = LimitedCursor
        return cursor

    def find_one(self, filter: Any = None, *args: Any, **kwargs: Any) -> Any:  # noqa: A002
        """As mongomock's, with a limit of one (as PyMongo's): one document copied."""
        if filter is None:
            filter = {}  # noqa: A001
        if not isinstance(filter, Mapping):
            filter = {"_id": filter}  # noqa: A001
        return next(self.find(filter, *args, **kwargs).limit(-1), None)

    def _iter_documents(self, filter: Any) -> Iterator[dict[str, Any]]:  # noqa: A002
        """The documents that match `filter`, of the index's candidates. A compiled
        matcher costs as much to build as mongomock's match of a document or two: not
        for a single candidate."""
        found = self._store.candidates(filter) if isinstance(filter, dict) else None
        if found is None:
            documents: Iterator[dict[str, Any]] = super()._iter_documents(filter)
            return documents
        count, candidates = found
        if count > 1:
            matches = matcher(filter)
            return (document for document in candidates if matches(document))
        return (document for document in candidates if filter_applies(filter, document))

    def _get_dataset(self, spec: Any, sort: Any, fields: Any, as_class: Any) -> Iterator[Any]:
        """As mongomock's; a sort that sort_documents knows orders the matches in place
        (mongomock compares each pair through its BSON comparison)."""
        if sort:
            ordered = sort_documents(self._iter_documents(spec), sort)
            if ordered is not None:
                return (self._copy_only_fields(item, fields, as_class) for item in ordered)
        dataset: Iterator[Any] = super()._get_dataset(spec, sort, fields, as_class)
        return dataset

    def _insert(self, data: Any, session: Any = None, ordered: bool = True) -> Any:
        """As mongomock's, for one plain document (server.kernel.memory_documents) in
        one walk instead of three; anything else is mongomock's to store or refuse."""
        stored = stored_form(data) if session is None and isinstance(data, dict) else None
        if stored is not None:
            if "_id" not in data:  # filled in the caller's dict, as mongomock does
                data["_id"] = stored["_id"] = ObjectId()
            key = stored["_id"]
            if key in self._store:
                raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)
            self._store[key] = stored
            try:
                self._ensure_uniques(stored)
            except DuplicateKeyError:
                del self._store[key]
                raise
            return key
        return super()._insert(data, session, ordered)

    def _update(
        self, spec: Any, document: Any, upsert: bool = False, *args: Any, **kwargs: Any
    ) -> Any:
        """As mongomock's, for a plain update (server.kernel.memory_documents) of the
        first document `spec` matches, or of every one (`multi`), with no upsert and no
        other option: applied to the fields it names, which alone are kept for a
        rollback, where mongomock deep-copies each whole document and runs its general
        updaters. Anything else is mongomock's."""
        options = any(value for name, value in kwargs.items() if name != "multi")
        update = None if upsert or args or options else plain_update(document)
        if update is None or not isinstance(spec, Mapping):
            return super()._update(spec, document, upsert, *args, **kwargs)
        spec = helpers.patch_datetime_awareness_in_document(spec)
        if not kwargs.get("multi"):
            existing = next(iter(self._iter_documents(spec)), None)
            if existing is None:
                return self._update_result(matched=0, modified=0)
            added = _added(existing, update.increments)
            if added is None:  # a step on a value not an integer
                return super()._update(spec, document, upsert, *args, **kwargs)
            changed = self._apply_plain(existing, update, update.values(added))
            return self._update_result(matched=1, modified=int(changed))
        if update.increments:  # one document's step may be refused after others took theirs
            return super()._update(spec, document, upsert, *args, **kwargs)
        matched = modified = 0
        for existing in self._iter_documents(spec):  # one at a time, as mongomock
            matched += 1
            modified += self._apply_plain(existing, update, update.values({}))
        return self._update_result(matched=matched, modified=modified)

    def _apply_plain(
        self, existing: dict[str, Any], update: PlainUpdate, new: dict[str, Any]
    ) -> bool:
        """`new`: the values the update gives its fields. Whether the document changed;
        a change a unique index refuses is undone, and raised."""
        before = {name: existing[name] for name in update.fields() if name in existing}
        removed = [name for name in update.unsets if name in existing]
        modified = bool(removed) or any(
            name not in before or not _same(before[name], value) for name, value in new.items()
        )
        keys = list(existing)
        existing.update(new)  # an equal value replaces the stored one, as in mongomock
        for name in removed:
            del existing[name]
        self._store.reindex(existing)
        if not modified:
            return False
        try:
            self._ensure_uniques(existing)
        except DuplicateKeyError:
            restored = {key: before.get(key, existing.get(key)) for key in keys}
            existing.clear()
            existing.update(restored)
            self._store.reindex(existing)
            raise
        return True

    def _update_result(self, *, matched: int, modified: int) -> dict[str, Any]:
        return {
            "connectionId": self.database.client._id,
            "err": None,
            "n": matched,
            "nModified": modified,
            "ok": 1,
            "upserted": None,
            "updatedExisting": bool(matched),
        }

    def _apply_update_document(self, existing_document: dict[str, Any], *args: Any) -> Any:
        """mongomock updates the stored document in place: index it again, even when
        the update failed halfway (mongomock does not roll that back)."""
        try:
            return super()._apply_update_document(existing_document, *args)
        finally:
            self._store.reindex(existing_document)

    def _apply_update_pipeline(self, existing_document: dict[str, Any], *args: Any) -> Any:
        try:
            return super()._apply_update_pipeline(existing_document, *args)
        finally:
            self._store.reindex(existing_document)

    def _ensure_uniques(self, new_data: dict[str, Any]) -> None:
        """mongomock's check (the document is already stored), its queries answered
        through the index. A partial index whose filter the document does not match
        does not hold the document (MongoDB's rule), so it cannot be violated by it."""
        for index in self._store.indexes.values():
            if not index.get("unique"):
                continue
            partial = index.get("partialFilterExpression")
            if partial is not None and not filter_applies(partial, new_data):
                continue
            values: dict[str, Any] = {}
            for path, _ in index["key"]:
                try:
                    values[path] = helpers.get_value_by_dot(new_data, path)
                except KeyError:
                    values[path] = None
            if index.get("sparse") and set(values.values()) == {None}:  # as mongomock
                continue
            query = values if partial is None else {"$and": [partial, values]}
            if len(list(self._iter_documents(query))) > 1:
                raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)

    def aggregate(self, pipeline: list[dict[str, Any]], session: Any = None, **kwargs: Any) -> Any:
        """mongomock copies the whole collection before the first stage; a leading
        `$match` (the same matcher as a find's) takes its documents through the index.
        A leading `$group` (after such a `$match` or not) of the shapes compile_group
        knows reads the stored documents in place, unless one of them has a value it is
        not sure of; the stages after it run on its rows."""
        leading_match = bool(pipeline) and _alone(pipeline[0], "$match")
        match = pipeline[0]["$match"] if leading_match else {}
        rest = pipeline[1:] if leading_match else pipeline
        grouper = compile_group(rest[0]["$group"]) if rest and _alone(rest[0], "$group") else None
        if grouper is not None and isinstance(match, dict):
            spec = helpers.patch_datetime_awareness_in_document(match)  # as a find's
            rows = grouper(self._iter_documents(spec))
            if rows is not None:
                return aggregate.process_pipeline(rows, self.database, rest[1:], session)
        if leading_match:
            matched = list(self.find(match))
            return aggregate.process_pipeline(matched, self.database, rest, session)
        return super().aggregate(pipeline, session=session, **kwargs)

    def with_options(self, *args: Any, **kwargs: Any) -> IndexedCollection:
        plain = super().with_options(*args, **kwargs)
        if plain is self:
            return self
        return IndexedCollection(
            self.database,
            self.name,
            self._db_store,
            write_concern=plain.write_concern,
            read_concern=plain.read_concern,
            read_preference=plain.read_preference,
            codec_options=plain.codec_options,
        )


class IndexedDatabase(Database):
    """A mongomock database whose collections are IndexedCollections."""

    def get_collection(self, name: str, *args: Any, **kwargs: Any) -> IndexedCollection:
        if name not in self._collection_accesses:
            self._ensure_valid_collection_name(name)
            self._collection_accesses[name] = IndexedCollection(
                self,
                name,
                self._store,
                read_preference=self.read_preference,
                codec_options=self.codec_options,
            )
        collection: IndexedCollection = super().get_collection(name, *args, **kwargs)
        return collection

    def with_options(self, *args: Any, **kwargs: Any) -> IndexedDatabase:
        plain = super().with_options(*args, **kwargs)
        if plain is self:
            return self
        return IndexedDatabase(
            self.client,
            self.name,
            self._store,
            read_preference=plain.read_preference,
            codec_options=plain.codec_options,
            read_concern=plain.read_concern,
        )


class IndexedClient(MongoClient):
    """A mongomock client whose databases are IndexedDatabases."""

    def get_database(
        self,
        name: str | None = None,
        codec_options: Any = None,
        read_preference: Any = None,
        write_concern: Any = None,
        read_concern: Any = None,
    ) -> Database:
        if name is not None and name not in self._database_accesses:
            self._database_accesses[name] = IndexedDatabase(
                self,
                name,
                self._store[name],
                read_preference=read_preference or self.read_preference,
                codec_options=codec_options or self.codec_options,
                read_concern=read_concern,
            )
        return super().get_database(
            name, codec_options, read_preference, write_concern, read_concern
        )


def memory_client(**options: Any) -> MongoClient:
    """A mongomock client over indexed stores (options as mongomock's MongoClient);
    for mongomock-motor's `AsyncMongoMockClient(mock_mongo_client=...)`."""
    return IndexedClient(_store=IndexedServerStore(), **options)
