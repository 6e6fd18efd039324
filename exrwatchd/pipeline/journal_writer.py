"""The journal writer: the one thread that writes verdicts into the journal.

It batches journal writes (one SQLite transaction per batch: ~10x the rows/s of committing
each alone) and wakes the sink loop (sink_loop.py) after each commit. A full disk under the
journal (diskfull.py) does not stop it: it keeps its batch and writes it again once there is
space, while its bounded queue fills and the settle loop stops handing out work.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence

from exrwatchd.journal import Delete, Journal, Persist
from exrwatchd.logs import get_logger
from exrwatchd.pipeline.diskfull import STOPPED, DiskFull, durably
from exrwatchd.telemetry import NullMetrics

log = get_logger("exrwatchd.journal_writer")

_STOP = object()


class JournalWriter:
    """One thread, the only writer of verdicts into the journal."""

    def __init__(
        self, journal: Journal, *, on_commit: Callable[[int], None], batch_size: int = 500,
        max_delay: float = 0.05, capacity: int = 2_000, metrics: NullMetrics | None = None,
    ) -> None:  # fmt: skip
        self._journal = journal
        self._metrics = metrics or NullMetrics()
        self._on_commit = on_commit
        self._batch_size = batch_size
        self._max_delay = max_delay
        # Bounded: when the disk is slow, verdicts wait here (a few MB of records at most)
        # and the settle loop stops handing out work instead of piling up memory.
        self._queue: queue.Queue[Persist | Delete | object] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._stopping = threading.Event()
        self._full = DiskFull(journal.path, writer="journal-writer")
        self.error: BaseException | None = None
        self.written = 0
        self._in_hand = 0  # taken off the queue, not committed yet

    @property
    def journal(self) -> Journal:
        return self._journal

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def offer(self, item: Persist | Delete) -> bool:
        """Queue `item` unless the queue is full (the caller keeps it and tries later)."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    def pending(self) -> int:
        """Verdicts not in the journal yet: queued, or in the batch being written (a one-shot
        scan that looked at the queue alone could end before that batch was committed)."""
        return self._queue.qsize() + self._in_hand

    @property
    def disk_full(self) -> str | None:
        """Why the journal cannot be written now (its disk is full), for operators; or None."""
        return self._full.describe()

    @property
    def disk_full_since(self) -> float | None:
        """When (time.time()) the current disk-full episode began, or None."""
        return self._full.since_wall

    def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is _STOP:
                    break
                self._in_hand = 1
                if self._queue.qsize() < self._batch_size - 1:
                    # Let the batch gather, then take it whole. Waiting in get() for each
                    # verdict instead woke this thread once per file (docs/benchmarks.md).
                    self._stopping.wait(self._max_delay)
                batch = [first]
                while len(batch) < self._batch_size:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    batch.append(item)
                    self._in_hand += 1
                if not self._write_when_possible(batch):  # type: ignore[arg-type]
                    self._abandon(len(batch))
                    return
                self._in_hand = 0
        except BaseException as exc:
            self.error = exc
            log.critical("journal.write_failed", error=str(exc), error_type=type(exc).__name__)
            raise

    def _write_when_possible(self, batch: Sequence[Persist | Delete]) -> bool:
        """Write `batch`, waiting out a full disk; False if told to stop while it lasts.

        A failed write leaves nothing behind (SQLite rolls the transaction back), so the same
        batch is simply written again: nothing lost, nothing twice.
        """
        waiting = lambda: len(batch) + self._queue.qsize()  # noqa: E731
        if durably(lambda: self._write(batch), self._full, self._stopping,
                   waiting=waiting) is STOPPED:  # fmt: skip
            return False
        self._full.recovered(written=len(batch))
        return True

    def _abandon(self, held: int) -> None:
        # Stopping on a full disk: what is not journaled is not lost, since the next start's
        # reconciliation compares the disk with the journal and finds those files again.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            held += item is not _STOP
        log.warning("journal.abandoned", path=str(self._journal.path), verdicts=held,
                    reason="stopping while the journal's disk is full; the next start "
                    "finds these files again")  # fmt: skip

    def _write(self, batch: Sequence[Persist | Delete]) -> None:
        started = time.perf_counter()
        self._journal.write(batch)
        self._metrics.journal_commit(time.perf_counter() - started, len(batch))
        self.written += len(batch)
        self._on_commit(len(batch))

    def stop(self, timeout: float) -> bool:
        """Write everything queued so far, then stop. False if that took too long (or the
        writer was already dead: what it held is found again by the start-up rescan). On a
        full disk it stops without waiting for space (journal.abandoned)."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        while self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() >= deadline:
                    return False
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()
