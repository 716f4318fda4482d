"""Records taken a batch at a time: what a streamed answer writes between two flushes,
and what a cursor hands over between two round trips."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TypeVar

T = TypeVar("T")


async def in_batches(records: AsyncIterable[T] | Iterable[T], size: int) -> AsyncIterator[list[T]]:
    """`records` (a cursor, or any iterable) as lists of `size`, the last one shorter;
    nothing for no records. Only one batch is held at a time."""
    if size < 1:
        raise ValueError("a batch holds at least one record")
    batch: list[T] = []
    if isinstance(records, AsyncIterable):
        async for record in records:
            batch.append(record)
            if len(batch) == size:
                yield batch
                batch = []
    else:
        for record in records:
            batch.append(record)
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch
