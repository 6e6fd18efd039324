"""Journal writer and sink loop: the two threads between a verdict and a catalog row.

The writer batches journal writes (one SQLite transaction per batch: ~10x the rows/s of
committing each alone) and wakes the sink loop after each commit. The sink loop claims due
outbox entries, hands them to the sink, and acknowledges per entry: delivered entries leave
the outbox, retried ones back off, rejected ones are dead-lettered. A sink that is down as a
whole (SinkUnavailable) is retried with backoff while journaling goes on.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exrwatchd.journal import Delete, Journal, Persist
from exrwatchd.logs import get_logger
from exrwatchd.metrics import NullMetrics
from exrwatchd.sinks.base import Outcome, Sink, SinkUnavailable

log = get_logger("exrwatchd.shipper")


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What one sink batch did, for metrics (sent across processes when the sink runs in
    its own)."""

    seconds: float
    size: int
    delivered: tuple[str, ...]  # paths
    retried: int
    rejected: int
    exhausted: int  # dead-lettered after too many attempts
    unavailable: bool  # the sink as a whole was down: every entry retries


def report_to(metrics: NullMetrics, report: BatchReport) -> None:
    if report.unavailable:
        metrics.sink_retry(report.size)
        return
    metrics.sink_batch(report.seconds, report.size)
    metrics.persisted(len(report.delivered))
    metrics.delivered(report.delivered)
    metrics.sink_retry(report.retried)
    metrics.dead_lettered("rejected", report.rejected)
    metrics.dead_lettered("max_attempts", report.exhausted)

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
        self.error: BaseException | None = None
        self.written = 0

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
        return self._queue.qsize()

    def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is _STOP:
                    break
                batch = [first]
                deadline = time.monotonic() + self._max_delay
                while len(batch) < self._batch_size:
                    try:
                        item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    batch.append(item)
                self._write(batch)  # type: ignore[arg-type]
        except BaseException as exc:
            self.error = exc
            log.critical("journal.write_failed", error=str(exc), error_type=type(exc).__name__)
            raise

    def _write(self, batch: Sequence[Persist | Delete]) -> None:
        started = time.perf_counter()
        self._journal.write(batch)
        self._metrics.journal_commit(time.perf_counter() - started, len(batch))
        self.written += len(batch)
        self._on_commit(len(batch))

    def stop(self, timeout: float) -> bool:
        """Write everything queued so far, then stop. False if that took too long (or the
        writer was already dead: what it held is found again by the start-up rescan)."""
        deadline = time.monotonic() + timeout
        while self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() >= deadline:
                    return False
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()


class SinkLoop:
    """One thread that moves outbox entries to the sink, acknowledging each."""

    LOUD_INTERVAL = 60.0  # seconds between repeated sink.unavailable errors

    def __init__(
        self, journal: Journal, sink: Sink, *, batch_size: int, batch_wait: float,
        unavailable_backoff: tuple[float, float] = (1.0, 60.0),
        on_batch: Callable[[BatchReport], None] | None = None,
    ) -> None:  # fmt: skip
        self._journal = journal
        self._sink = sink
        self._batch_size = batch_size
        self._batch_wait = batch_wait
        self._backoff = unavailable_backoff
        self._on_batch = on_batch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sink", daemon=True)
        self.error: BaseException | None = None
        self.unhealthy_since: float | None = None
        self.last_error: str | None = None
        self._last_loud = 0.0
        self.delivered = 0

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def wake(self, _count: int = 0) -> None:
        self._wake.set()

    def _run(self) -> None:
        try:
            failures = 0
            while not self._stop.is_set():
                batch = self._journal.claim(self._batch_size)
                if not batch:
                    self._wake.wait(timeout=1.0)
                    self._wake.clear()
                    if self._batch_wait and not self._stop.is_set():
                        # Let a burst fill the batch: one transaction per batch, not per file.
                        self._stop.wait(self._batch_wait)
                    continue
                if self._ship(batch):
                    failures = 0
                    continue
                failures += 1
                low, high = self._backoff
                self._stop.wait(min(high, low * 2 ** min(failures - 1, 16)))
        except BaseException as exc:
            self.error = exc
            log.critical("sink.loop_failed", error=str(exc), error_type=type(exc).__name__)
            raise

    def _ship(self, batch: Sequence) -> bool:
        """Deliver one batch. False when the sink as a whole is unavailable."""
        started = time.perf_counter()
        try:
            deliveries = self._sink.write(batch)
        except SinkUnavailable as exc:
            self._journal.retry([(e.id, str(exc)) for e in batch])
            if self._on_batch:
                self._on_batch(BatchReport(time.perf_counter() - started, len(batch), (), 0, 0,
                                           0, unavailable=True))  # fmt: skip
            now = time.monotonic()
            # Loud, but once per interval: an outage of hours must not flood the logs.
            if (self.unhealthy_since is None or self.last_error != str(exc)
                    or now - self._last_loud >= self.LOUD_INTERVAL):  # fmt: skip
                self._last_loud = now
                down_for = round(now - (self.unhealthy_since or now), 1)
                log.error("sink.unavailable", sink=self._sink.name, error=str(exc),
                          error_type=type(exc).__name__, entries=len(batch),
                          down_for_seconds=down_for)  # fmt: skip
            self.unhealthy_since = self.unhealthy_since or now
            self.last_error = str(exc)
            return False
        by_id = {e.id: e for e in batch}
        delivered = [d.entry_id for d in deliveries if d.outcome is Outcome.DELIVERED]
        retry = [(d.entry_id, d.error or "retry") for d in deliveries if d.outcome is Outcome.RETRY]
        reject = [(d.entry_id, d.error or "rejected") for d in deliveries
                  if d.outcome is Outcome.REJECT]  # fmt: skip
        self._journal.ack(delivered)
        dead = self._journal.retry(retry) if retry else []
        if reject:
            self._journal.reject(reject)
        for entry_id, error in retry:
            log.warning("sink.retry", path=by_id[entry_id].path, error=error, stage="sink")
        for entry_id, error in [*reject, *((i, "too many attempts") for i in dead)]:
            log.error("sink.dead_letter", path=by_id[entry_id].path, error=error, stage="sink")
        for entry_id in delivered:
            entry = by_id[entry_id]
            log.info("sink.persisted", path=entry.path, op=entry.op, sink=self._sink.name)
        self.delivered += len(delivered)
        if self.unhealthy_since is not None:
            log.info("sink.recovered", sink=self._sink.name)
            self.unhealthy_since = None
        if self._on_batch:
            self._on_batch(BatchReport(
                time.perf_counter() - started, len(batch),
                tuple(by_id[i].path for i in delivered), len(retry), len(reject), len(dead),
                unavailable=False,
            ))  # fmt: skip
        return True

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=timeout)
