"""`exrwatchd inspect` over many files: one process per core, output in the walk's order.

Reading a header is Python work under the GIL, so threads would not help; processes do: on a
2-core gateway two of them inspect nearly twice the frames per second (bench/inspect_cli_bench.py).
A short list is inspected in this process, since starting the others costs more than it saves.

Each worker writes its own output to the shared stdout, taking turns by batch number, and only
counts come back. Sending the lines back to this process to be written cost it ~15 us per file
(a 2.4 KB record pickled, piped and read back), which on two cores took most of what the second
worker gave. The workers are forked while this process has no thread of its own yet
(with "fork", concurrent.futures starts every worker before its manager thread) and nothing
buffered on stdout.
"""

from __future__ import annotations

import functools
import itertools
import mmap
import os
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # multiprocessing is loaded only for a long list: ~6 ms of a short one's start
    from concurrent.futures import Future
    from multiprocessing.synchronize import Condition

__all__ = ["CHUNK", "SERIAL_LIMIT", "WorkerDied", "batches", "default_jobs", "write_in_order"]

A = TypeVar("A")
T = TypeVar("T")

#: Up to this many files, no worker processes: forking and feeding them costs more (~20 ms).
SERIAL_LIMIT = 200
#: Files handed to a worker at a time: large enough that the hand-off is cheap per file,
#: small enough that the first lines come out at once.
CHUNK = 128
#: Batches handed out ahead per worker, waiting for one.
IN_FLIGHT = 2


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
    yield from _in_processes(work, everything, jobs, fd)


def _in_processes(
    work: Callable[[list[A]], tuple[bytes, T]], everything: Iterable[list[A]], jobs: int, fd: int
) -> Iterator[T]:
    """write_in_order's `jobs` forked workers, each writing its batches' output to `fd`."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("fork")
    # The number of the batch to be written next, in memory the forked workers share (an
    # anonymous shared mapping: multiprocessing.Value would load ctypes, ~12 ms).
    turn = mmap.mmap(-1, _TURN.size)
    condition = context.Condition()
    task = functools.partial(_write_batch, work)
    # concurrent.futures, not multiprocessing.Pool: a Pool replaces a worker that died (the
    # kernel's OOM killer) and waits for ever for the batch it held; the executor says so.
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_share,
                               initargs=(turn, condition, fd))  # fmt: skip
    waiting: deque[tuple[int, list[A], Future[T]]] = deque()
    number, batch = -1, []

    def oldest() -> T:  # taken off `waiting` only once its batch is written
        counts = waiting[0][2].result()
        waiting.popleft()
        return counts

    try:
        # Workers take batches from one queue in order, so batch k waits only for batches
        # taken before it, which are being worked on: the turns cannot deadlock. At most
        # IN_FLIGHT batches per worker are handed out ahead, so memory does not follow the list.
        for number, batch in enumerate(everything):
            waiting.append((number, batch, pool.submit(task, (number, batch))))
            while len(waiting) >= IN_FLIGHT * jobs or (waiting and waiting[0][2].done()):
                yield oldest()
        while waiting:
            yield oldest()
    except BrokenProcessPool:
        pool.shutdown(wait=True, cancel_futures=True)
        # Every batch before the one whose turn it is was written whole. That one was being
        # worked on or written (cut short when the executor ended every worker), or it is the
        # one being handed out (a worker died idle).
        whole = _TURN.unpack_from(turn)[0]
        unwritten = [*((n, b) for n, b, _ in waiting), (number, batch)]
        raise WorkerDied(next(b[0] for n, b in unwritten if n == whole)) from None
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


class WorkerDied(Exception):
    """A worker process ended without finishing its batch (killed by a signal, for instance
    by the kernel's out-of-memory killer), and the pool with it. The output is whole up to
    `first`, the first item whose output is missing (or cut short: its batch may have been
    being written when the pool ended)."""

    def __init__(self, first: object) -> None:
        super().__init__(first)
        self.first = first


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
    try:
        output, counts = work(batch)
    except BaseException:
        with _turn_of(number):  # passed on unused: the batches after this one go on
            raise
    # Only the worker whose turn it is writes: no lock needed. Should the write fail (the
    # reader went away: `| head`), the turn is still passed on, so the workers of the
    # later batches find the pipe broken too instead of waiting, and the parent ends.
    with _turn_of(number):
        write_all(_fd, output)
    return counts


@contextmanager
def _turn_of(number: int) -> Iterator[None]:
    """Wait for batch `number`'s turn to write; pass it to the next one on leaving."""
    with _condition:
        _condition.wait_for(functools.partial(_turn_is, number))
    try:
        yield
    finally:
        with _condition:
            _TURN.pack_into(_turn, 0, number + 1)
            _condition.notify_all()
