"""The garbage collector's settings for a serving process.

CPython's cyclic collector runs after every 700 net allocations and walks every
tracked object of the generations it collects. A request allocates a few hundred
objects, so the defaults run a collection about every request or two; and the older
generations hold what the process keeps for its whole life (modules, schemas, routes,
the in-memory store's documents), walked again at each full collection. Measured on
the C2B validation path, that is about a tenth of the process's CPU.

Once a process is ready to serve, what it has built so far is moved out of the
collector's sight (`gc.freeze`: it lives as long as the process anyway), and the
collector runs less often. Reference counting still frees almost everything at once;
only objects in reference cycles wait longer for a collection, a bounded number of
them (at most `YOUNG_ALLOCATIONS` between collections of the youngest generation).
"""

from __future__ import annotations

import gc

YOUNG_ALLOCATIONS = 20_000  # the default is 700
OLDER_COLLECTIONS = (20, 20)  # the defaults are (10, 10)


def settle_for_serving() -> None:
    """Call once the process has started and is about to serve."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_ALLOCATIONS, *OLDER_COLLECTIONS)
