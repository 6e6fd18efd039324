"""`exrwatchd inspect` over many files: one process per core, output in the walk's order.

Reading a header is Python work under the GIL, so threads would not help; processes do: on a
2-core gateway two of them inspect nearly twice the frames per second (bench/inspect_cli_bench.py).
A short list is inspected in this process, since starting the others costs more than it saves.
The workers are forked while this process has no thread of its own yet (multiprocessing's pool
threads start after the fork), and `imap` hands results back in the order the paths went in.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

__all__ = ["CHUNK", "SERIAL_LIMIT", "batches", "default_jobs", "in_order"]

A = TypeVar("A")
T = TypeVar("T")

#: Up to this many files, no worker processes: forking and feeding them costs more (~20 ms).
SERIAL_LIMIT = 200
#: Files handed to a worker at a time: large enough that the hand-off is cheap per file,
#: small enough that the first lines come out at once.
CHUNK = 128


def default_jobs() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def batches(items: Iterable[A], size: int) -> Iterator[list[A]]:
    """`items` in lists of `size` (the last one shorter); itertools.batched from 3.12 on."""
    rest = iter(items)
    while batch := list(itertools.islice(rest, size)):
        yield batch


def in_order(work: Callable[[list[A]], T], items: Iterable[A], jobs: int) -> Iterator[T]:
    """`work(batch)` for each batch of up to CHUNK items, in order; in `jobs` forked processes
    when there are more than SERIAL_LIMIT items. Batches, not items, travel between the
    processes, so the hand-off costs little per file. `work` must be a module-level function
    (or a partial of one), and batches and results must pickle."""
    rest = iter(items)
    head = list(itertools.islice(rest, SERIAL_LIMIT + 1))
    everything = batches(itertools.chain(head, rest), CHUNK)
    if jobs <= 1 or len(head) <= SERIAL_LIMIT:
        yield from map(work, everything)
        return
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        yield from pool.imap(work, everything)
