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

#: Young collections every 10,000 net container allocations instead of 700 (measured: sink
#: 565 -> 476 us per file); the older generations keep their default ratios.
THRESHOLDS = (10_000, 10, 10)


def tune_for_throughput() -> None:
    """Call once, after start-up (imports, config, caches) and before the work begins."""
    gc.collect()
    # What exists now lives as long as the process: keep it out of every later collection.
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
