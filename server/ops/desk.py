"""The operators' desk: search across channels, the review list and the insuree
overview, read from the store as the dashboard is (each read an indexed query)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from server.debits.registry import Channel
from server.kernel.store import Store
from server.ops.insuree_overview import InsureeOverview
from server.ops.review_items import ReviewItems
from server.ops.search import Search


@dataclass(frozen=True)
class Desk:
    search: Search
    review: ReviewItems
    insurees: InsureeOverview

    @classmethod
    def on(cls, store: Store, channels: Sequence[Channel]) -> Desk:
        """`channels`: the registered ones (their labels name transactions)."""
        return cls(Search(store, channels), ReviewItems(store), InsureeOverview(store))
