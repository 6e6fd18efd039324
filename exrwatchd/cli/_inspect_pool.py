"""`exrwatchd inspect` over many files: one process per core, output in the walk's order.

Reading a header is Python work under the GIL, so threads would not help; processes do: on a
2-core gateway two of them inspect nearly twice the frames per second (bench/inspect_cli_bench.py).
A short list is inspected in this process, since starting the others costs more than it saves.

Each worker writes its own output to the shared stdout, taking turns by batch number, and only
counts come back. Sending the lines back to this process to be written cost it ~15 us per file
(a 2.4 KB record pickled, piped and read back), which on two cores took most of what the second
worker gave. The workers are forked while this process has no thread of its own yet
(multiprocessing's pool threads start after the fork) and nothing buffered on stdout.
"""

from __future__ import annotations

import functools
import itertools
import mmap
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # multiprocessing is loaded only for a long list: ~6 ms of a short one's start
    from multiprocessing.synchronize import Condition

__all__ = ["CHUNK", "SERIAL_LIMIT", "batches", "default_jobs", "write_in_order"]

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


def write_all(fd: int, data: bytes) -> None:
    """All of `data` to `fd`: a pipe may take less than asked in one write()."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_in_order(
    work: Callable[[list[A]], tuple[bytes, T]],
    items: Iterable[A],
    jobs: int,
    write: Callable[[bytes], None],
    fd: int,
) -> Iterator[T]:
    """For each batch of up to CHUNK items, in order: `work(batch)` gives (output, counts); the
    output is written in the batches' order, the counts yielded (in no particular order).

    Up to SERIAL_LIMIT items (or with `jobs` <= 1) in this process, each output through
    `write`; past it, `jobs` forked processes write straight to `fd` (flush anything buffered
    for it first). `work` must be a module-level function, or a partial of one, and batches
    and counts must pickle.
    """
    rest = iter(items)
    head = list(itertools.islice(rest, SERIAL_LIMIT + 1))
    everything = batches(itertools.chain(head, rest), CHUNK)
    if jobs <= 1 or len(head) <= SERIAL_LIMIT:
        for batch in everything:
            output, counts = work(batch)
            write(output)
            yield counts
        return
    import multiprocessing

    context = multiprocessing.get_context("fork")
    # The number of the batch to be written next, in memory the forked workers share (an
    # anonymous shared mapping: multiprocessing.Value would load ctypes, ~12 ms).
    turn = mmap.mmap(-1, _TURN.size)
    condition = context.Condition()
    task = functools.partial(_write_batch, work)
    with context.Pool(jobs, initializer=_share, initargs=(turn, condition, fd)) as pool:
        # Workers take batches from one queue in order, so batch k waits only for batches
        # taken before it, which are being worked on: the turns cannot deadlock.
        yield from pool.imap_unordered(task, enumerate(everything))


# What a worker shares with the others: whose turn it is to write (read and written under
# the condition's lock), and where (set once per worker process by _share, the pool's
# initializer).
_TURN = struct.Struct("=q")
_turn: mmap.mmap
_condition: Condition
_fd: int


def _share(turn: mmap.mmap, condition: Condition, fd: int) -> None:
    global _turn, _condition, _fd
    _turn, _condition, _fd = turn, condition, fd


def _turn_is(number: int) -> bool:
    return _TURN.unpack_from(_turn)[0] == number


def _write_batch(work: Callable[[list[A]], tuple[bytes, T]], numbered: tuple[int, list[A]]) -> T:
    number, batch = numbered
    output, counts = work(batch)
    with _condition:
        _condition.wait_for(functools.partial(_turn_is, number))
    # Only the worker whose turn it is writes: no lock needed. Should the write fail (the
    # reader went away: `| head`), the error reaches the parent, which ends the pool, so
    # nobody is left waiting for this turn.
    write_all(_fd, output)
    with _condition:
        _TURN.pack_into(_turn, 0, number + 1)
        _condition.notify_all()
    return counts
