"""Compiled filters and groups for the in-memory store (server.kernel.memory_store).

mongomock's matcher (`filter_applies`) costs some 7 µs a document, and its aggregate
copies every document, then sorts them by their group key through its BSON comparison
before it groups them: one of the dashboard's pipelines over 110,000 transactions took a
minute. The common shapes are compiled here into plain Python that reads the stored
documents in place (some 0.1 s for that pipeline).

`compile_filter` compiles a filter of top-level fields (and `$and` and `$or` of such
filters) whose conditions are values or `$eq $ne $gt $gte $lt $lte $in $nin $exists`. Its predicate
decides a document only where MongoDB and mongomock agree on the answer: the field is
missing, or its value is of a plain kind (a str, a non-bool int, None, or a naive
datetime to the millisecond, as mongomock stores them) and the query's values are too.
Values of different plain kinds are never equal nor ordered (MongoDB's type
bracketing; mongomock's `bson_compare` the same), except that None equals a missing
field. Anything else (a list, whose elements MongoDB matches one by one, a subdocument,
a float, a bool, which plain mongomock takes for 1 or 0...) is undecided (an equality to
true or false is decided only where the field is missing), and
mongomock's matcher answers for that document. The conditions are checked in the
filter's order, as mongomock does, and the first one not met or undecided answers: a
document on which mongomock would raise is never decided.

`compile_group` compiles a `$group` whose `_id` is None, a field, or a subdocument of
fields and `$dateToString`s, with `$sum`s of an int, a field or an `$eq` `$cond`. Its
grouper gives mongomock's rows, in mongomock's order (a StrEnum member in an `_id` comes
as its str, equal to it), or None when a document has a value it is not sure of (a
missing field, a list, a bool, a float, a datetime as a key...): mongomock then
aggregates the documents itself.
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from mongomock.filtering import filter_applies

Document = Mapping[str, Any]
Predicate = Callable[[Document], bool | None]
Grouper = Callable[[Iterable[Document]], list[dict[str, Any]] | None]

MISSING = object()
WHOLE = "$"  # in place of a field: the condition tests the whole document (`$or`)
RANGES = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
# Comparison methods a str or int subclass (a StrEnum, bson's Int64) must not override
# for its values to compare, hash and match as the plain values they are stored as.
COMPARISONS = ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__")
# mongomock's BSON order of the kinds of values a group key holds.
BSON_ORDER: dict[type | None, int] = {type(None): 5, int: 10, str: 15}
# A `$dateToString` format made of these directives and literal text (mongomock has no %L).
DATE_FORMAT = re.compile(r"(?:[^%]|%[YmdHMS])*")


class Kinds(dict[type, "type | None"]):
    """The plain kind values of each type compare as, if any: str, int, datetime or
    NoneType; a str or int subclass only if it keeps their comparisons (a StrEnum)."""

    def __missing__(self, cls: type) -> type | None:
        self[cls] = next(
            (
                kind
                for kind in (str, int)
                if issubclass(cls, kind)
                and all(getattr(cls, name) is getattr(kind, name) for name in COMPARISONS)
            ),
            None,
        )
        return self[cls]


KINDS = Kinds({str: str, int: int, bool: None, type(None): type(None), datetime: datetime})


def kind_of(value: Any) -> type | None:
    """The plain kind of `value`, or None; a datetime only naive and to the millisecond
    (mongomock stores them so; one with microseconds would compare unlike MongoDB's)."""
    kind = KINDS[type(value)]
    if kind is datetime and (value.tzinfo is not None or value.microsecond % 1000):
        return None
    return kind


# A comparison of a present plain value with a query value, made only when the value
# is of the given kind (None: of any; the answer is False when it is not).
Check = tuple[Callable[[Any, Any], bool], Any, "type | None"]


def _is_in(value: Any, values: frozenset[Any]) -> bool:
    return value in values


def _is_not_in(value: Any, values: frozenset[Any]) -> bool:
    return value not in values


def _exists(value: Any, wanted: bool) -> bool:
    return wanted


def _check(op: str, query: Any) -> tuple[Check, bool] | None:
    """One operator's check of a present plain value, and its answer for a missing
    field; None if the operator or its value is not simple. Plain values of different
    kinds are never equal (nor ordered: checked only on the query's kind)."""
    if op == "$exists" and type(query) in (bool, int):
        return (_exists, bool(query), None), not query
    if op in ("$in", "$nin") and isinstance(query, (list, tuple)):
        if not all(kind_of(value) is not None for value in query):
            return None
        if op == "$nin":
            return (_is_not_in, frozenset(query), None), None not in query
        return (_is_in, frozenset(query), None), None in query
    query_kind = kind_of(query)
    if query_kind is None:
        return None
    if op == "$eq":
        return (operator.eq, query, None), query is None
    if op == "$ne":
        return (operator.ne, query, None), query is not None
    if op not in RANGES or query is None:
        return None  # mongomock orders None with None, MongoDB with missing fields too
    return (RANGES[op], query, query_kind), False


def _condition(condition: Any) -> Callable[[Any], bool | None] | None:
    """A test of one field's value (MISSING when absent) under `condition`."""
    if type(condition) is bool or (
        isinstance(condition, dict) and set(condition) == {"$eq"} and type(condition["$eq"]) is bool
    ):
        return _bool_equality
    if isinstance(condition, dict):
        if not condition or not all(isinstance(op, str) and op[:1] == "$" for op in condition):
            return None  # a literal subdocument
        ops = list(condition.items())
    else:
        ops = [("$eq", condition)]
    checks: list[Check] = []
    on_missing = True
    for op, query in ops:
        compiled = _check(op, query)
        if compiled is None:
            return None
        checks.append(compiled[0])
        on_missing = on_missing and compiled[1]

    def test(value: Any) -> bool | None:
        if value is MISSING:
            return on_missing
        kind = kind_of(value)
        if kind is None:
            return None
        for compare, query, query_kind in checks:  # noqa: SIM110 (all() of a generator: slower)
            if query_kind is not None and kind is not query_kind or not compare(value, query):
                return False
        return True

    return test


def _bool_equality(value: Any) -> bool | None:
    """An equality to true or false: not met where the field is missing; otherwise
    undecided (MongoDB never takes 1 for true, mongomock does)."""
    return False if value is MISSING else None


def _any_of(branches: list[Predicate]) -> Callable[[Any], bool | None]:
    """`$or`: met by the first branch met, unless an earlier one is undecided (mongomock
    tries them in order, and may raise on it); not met when none is."""

    def test(document: Any) -> bool | None:
        for branch in branches:
            decided = branch(document)
            if decided is not False:
                return decided
        return False

    return test


def _conditions(spec: Any) -> list[tuple[str, Callable[[Any], bool | None]]] | None:
    """(field, test) of each condition of `spec`, in mongomock's order of checking."""
    if not isinstance(spec, dict):
        return None
    tests: list[tuple[str, Callable[[Any], bool | None]]] = []
    for field, condition in spec.items():
        if field == "$and" and isinstance(condition, list) and condition:
            for part in condition:
                part_tests = _conditions(part)
                if part_tests is None:
                    return None
                tests.extend(part_tests)
            continue
        if field == "$or" and isinstance(condition, list) and condition:
            branches = [compile_filter(part) for part in condition]
            if not all(branches):
                return None
            tests.append((WHOLE, _any_of(cast(list[Predicate], branches))))
            continue
        if not isinstance(field, str) or not field or field[0] == "$" or "." in field:
            return None
        test = _condition(condition)
        if test is None:
            return None
        tests.append((field, test))
    return tests


def compile_filter(spec: Mapping[str, Any]) -> Predicate | None:
    """A predicate `document -> True | False | None` (None: undecided, ask mongomock's
    matcher) for a simple `spec` (see the module's docstring), or None if it is not."""
    tests = _conditions(spec)
    if tests is None:
        return None

    def predicate(document: Document) -> bool | None:
        for field, test in tests:
            decided = test(document if field is WHOLE else document.get(field, MISSING))
            if decided is not True:
                return decided
        return True

    return predicate


def matcher(spec: Mapping[str, Any]) -> Callable[[Document], bool]:
    """mongomock's matcher for `spec`, asked only what its compiled predicate leaves
    undecided."""
    predicate = compile_filter(spec)
    if predicate is None:
        return functools.partial(filter_applies, spec)

    def matches(document: Document) -> bool:
        decided = predicate(document)
        return filter_applies(spec, document) if decided is None else decided

    return matches


class Unsure(Exception):
    """A document has a value the compiled group is not sure of."""


Key = tuple[Any, ...]
# The documents -> a value of each (a part of its group key, or of a sum).
Column = Callable[[list[Document]], list[Any]]
# The documents, the number of each one's group, and the size of each group -> a `$sum`
# for each group.
Sum = Callable[[list[Document], list[int], list[int]], list[int]]
KEY_KINDS = frozenset({str, int, type(None)})  # not datetime: mongomock's copies are aware
# The plain value of a value of each plain kind (a StrEnum member's str).
PLAIN: dict[type | None, Callable[[Any], Any]] = {
    str: str.__str__,
    int: int.__index__,
    type(None): lambda value: value,
}
HOURLY = ("year", "month", "day", "hour")
TZINFO = operator.attrgetter("tzinfo")


def _field(path: Any) -> str | None:
    """The top-level field a `"$field"` path names, if it is one."""
    if isinstance(path, str) and path[:1] == "$" and path[1:2] not in ("", "$") and "." not in path:
        return path[1:]
    return None


def _values(field: str, kinds: frozenset[type]) -> Column:
    """The documents' values at `field`, which must all be of these plain kinds, as
    plain str and int: a StrEnum member's str, equal to it. (A tuple of a group key
    holding an Enum member is tracked by the garbage collector, one of str and int not:
    100,000 of the former make it walk every stored document once they are made.)"""
    value_of = operator.itemgetter(field)  # a missing field: KeyError, unsure

    def column(documents: list[Document]) -> list[Any]:
        values = list(map(value_of, documents))
        types = set(map(type, values))
        if not {KINDS[cls] for cls in types} <= kinds:
            raise Unsure
        if types <= KEY_KINDS:
            return values
        plain = {value: PLAIN[KINDS[type(value)]](value) for value in set(values)}
        return list(map(plain.__getitem__, values))

    return column


def _date_texts(field: str, form: str) -> Column:
    """mongomock's `$dateToString` (strftime) of the documents' naive datetimes at
    `field`, formatted once for each distinct hour (or second) among them."""
    value_of = operator.itemgetter(field)
    fields = (*HOURLY, "minute", "second") if "%M" in form or "%S" in form else HOURLY
    stamp_of = operator.attrgetter(*fields)

    def column(documents: list[Document]) -> list[Any]:
        dates = list(map(value_of, documents))
        if set(map(type, dates)) - {datetime} or set(map(TZINFO, dates)) - {None}:
            raise Unsure
        stamps = list(map(stamp_of, dates))
        texts = {stamp: datetime(*stamp).strftime(form) for stamp in set(stamps)}
        return list(map(texts.__getitem__, stamps))

    return column


def _key_part(expression: Any) -> Column | None:
    """A part of a group key: a field's str, int or None, or the `$dateToString` of a
    field's datetime."""
    field = _field(expression)
    if field is not None:
        return _values(field, KEY_KINDS)
    match expression:
        case {"$dateToString": {"date": date, "format": str() as form, **more}} if (
            len(expression) == 1 and not more and form[:1] != "$" and DATE_FORMAT.fullmatch(form)
        ):
            field = _field(date)
            return None if field is None else _date_texts(field, form)
    return None


def _field_sum(numbers: Column) -> Sum:
    def total(documents: list[Document], groups: list[int], sizes: list[int]) -> list[int]:
        sums = [0] * len(sizes)
        for group, number in zip(groups, numbers(documents), strict=True):
            sums[group] += number
        return sums

    return total


def _cond_sum(values: Column, constant: Any, then: int, otherwise: int) -> Sum:
    def total(documents: list[Document], groups: list[int], sizes: list[int]) -> list[int]:
        equal = map(operator.eq, values(documents), itertools.repeat(constant))  # as mongomock
        hits = Counter(itertools.compress(groups, equal))
        return [
            hits[group] * then + (size - hits[group]) * otherwise
            for group, size in enumerate(sizes)
        ]

    return total


def _sum(expression: Any) -> Sum | None:
    """A `$sum` of an int constant, of a field's ints, or of one of two ints by a
    `$cond` on a field's equality to a str or int constant."""
    if type(expression) is int:
        return lambda documents, groups, sizes: [size * expression for size in sizes]
    field = _field(expression)
    if field is not None:
        return _field_sum(_values(field, frozenset({int})))
    match expression:
        case {"$cond": [{"$eq": [path, constant], **more}, int() as then, int() as otherwise]} if (
            len(expression) == 1
            and not more
            and type(then) is int
            and type(otherwise) is int
            and kind_of(constant) in (str, int)
            and not (isinstance(constant, str) and constant[:1] == "$")
        ):
            field = _field(path)
            if field is None:
                return None
            return _cond_sum(_values(field, frozenset({str, int})), constant, then, otherwise)
    return None


def _key(spec: Any) -> tuple[list[Column], Callable[[Key], Any]] | None:
    """The parts of the group key of `_id: spec`, and a group's `_id` from its key."""
    if spec is None:
        return [], lambda key: None
    if (
        isinstance(spec, dict)
        and spec
        and all(isinstance(name, str) and name[:1] != "$" and "." not in name for name in spec)
    ):
        parts = []
        for expression in spec.values():
            part = _key_part(expression)
            if part is None:
                return None
            parts.append(part)
        names = list(spec)
        return parts, lambda key: dict(zip(names, key, strict=True))
    part = _key_part(spec)
    return None if part is None else ([part], lambda key: key[0])


def _bson_order(key: Key) -> tuple[tuple[int, Any], ...]:
    """A sort key of group keys (of str, int or None values) in mongomock's BSON order
    (filtering.bson_compare, which orders subdocuments by their values in turn)."""
    return tuple((BSON_ORDER[KINDS[type(value)]], value) for value in key)


def compile_group(spec: Mapping[str, Any]) -> Grouper | None:
    """A grouper `documents -> rows | None` for a simple `$group` stage (see the module's
    docstring), or None if it is not. Its rows are mongomock's, in mongomock's order
    (by `_id`, in BSON order); it answers None when a document has a value it is not
    sure of. It works a column at a time, mostly in C: a field's values of all the
    documents, in their order, cost far less than each document's values in turn."""
    if not isinstance(spec, dict) or "_id" not in spec:
        return None
    sums: list[tuple[str, Sum]] = []
    for name, accumulator in spec.items():
        if name == "_id":
            continue
        total = None
        match accumulator:
            case {"$sum": expression} if len(accumulator) == 1:
                total = _sum(expression)
        if total is None or not isinstance(name, str) or name[:1] == "$" or "." in name:
            return None
        sums.append((name, total))
    key = _key(spec["_id"])
    if key is None:
        return None
    parts, make_id = key

    def grouper(found: Iterable[Document]) -> list[dict[str, Any]] | None:
        documents = list(found)
        try:
            columns = [part(documents) for part in parts]
            keys = list(zip(*columns, strict=True)) if parts else [()] * len(documents)
            # mongomock groups all documents under a None `_id` in one row, even none.
            counts = Counter(keys) if parts else Counter({(): len(documents)})
            numbers = {key: number for number, key in enumerate(counts)}
            groups = list(map(numbers.__getitem__, keys))
            sizes = list(counts.values())
            totals = [(name, total(documents, groups, sizes)) for name, total in sums]
        except (KeyError, Unsure):  # KeyError: a missing field
            return None
        rows = {
            key: {**{name: by_group[number] for name, by_group in totals}, "_id": make_id(key)}
            for key, number in numbers.items()
        }
        return [rows[key] for key in sorted(rows, key=_bson_order)]

    return grouper


def sort_documents(found: Iterable[Document], sort: Any) -> list[Document] | None:
    """The documents in the order of `sort` ((field, direction) pairs) as mongomock
    orders them (a stable sort by each key, the last first), or None unless every key
    is a top-level field whose values are all present and of one plain kind: a str, an
    int or a naive datetime (then Python's order is MongoDB's, and mongomock's)."""
    keys = list(sort.items() if isinstance(sort, Mapping) else sort)
    if not keys or not all(isinstance(name, str) and _field(f"${name}") for name, _ in keys):
        return None
    documents = list(found)
    for name, direction in reversed(keys):
        try:
            values = [document[name] for document in documents]
        except KeyError:  # mongomock orders a missing field as null
            return None
        kinds = {kind_of(value) for value in values}
        if len(kinds) > 1 or kinds & {None, type(None)}:
            return None
        documents.sort(key=operator.itemgetter(name), reverse=direction < 0)
    return documents
