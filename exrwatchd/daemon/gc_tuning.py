"""Garbage-collector settings for the long-running processes (the daemon and its sink).

Measured (docs/benchmarks.md): with CPython's default thresholds (700, 10, 10), the cyclic
collector took a quarter of the sink process's CPU in a burst. Every file makes a few
hundred short-lived dicts, tuples and lists that reference counting frees at once; the
collector still walks them, and every tenth young collection walks the whole heap (caches,
config, imported modules). Almost nothing we allocate forms cycles, so collecting rarely
costs only a little memory held a little longer.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Callable

#: Young collections every 10,000 net container allocations instead of 700 (measured: sink
#: 565 -> 476 us per file); the older generations keep their default ratios.
THRESHOLDS = (10_000, 10, 10)


def tune_for_throughput() -> None:
    """Call once, after start-up (imports, config, caches) and before the work begins."""
    gc.collect()
    # What exists now lives as long as the process: keep it out of every later collection.
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


#: Between batches, a full collection once in this many (the others collect the young
#: generations only).
FULL_EVERY = 100


def tune_for_batches() -> Callable[[], None]:
    """For a process whose work comes in batches, the sink process: no automatic collection
    at all; the returned function, called between batches (and on idle turns), collects.

    Measured (docs/benchmarks.md): even with THRESHOLDS, reading a batch of 500 records back
    from the journal cost ~50 us per record, ~23 of them without the collector. The batch is
    alive until it is shipped, so every young collection during it walked the records
    already read (~150 containers each) and promoted them. Between batches the records are
    freed by reference counting, the young generations hold only what outlived a batch, and
    collecting them costs little. Cycles made during a batch wait for its end.
    """
    tune_for_throughput()
    gc.disable()
    turns = itertools.count(1)

    def between_batches() -> None:
        gc.collect(2 if next(turns) % FULL_EVERY == 0 else 1)

    return between_batches
