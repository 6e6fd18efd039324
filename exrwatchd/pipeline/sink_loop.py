"""The sink loop: the thread between the journal's outbox and the catalog.

It claims due outbox entries, hands them to the sink, and acknowledges per entry: delivered
entries leave the outbox, retried ones back off, rejected ones are dead-lettered. A sink that
is down as a whole (SinkUnavailable) is retried with backoff while journaling goes on (the
journal writer, journal_writer.py, wakes this loop after each commit).

A full disk under the journal (diskfull.py) does not stop it: it waits to claim or
acknowledge. A catalog
that was deleted or replaced under the sink (LocalSink.lost) makes the journal send every
live path again (`resend_if_lost`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from exrwatchd.journal import ClaimedEntry, Journal, OutboxEntry
from exrwatchd.logs import get_logger
from exrwatchd.pipeline.diskfull import STOPPED, DiskFull, durably
from exrwatchd.sinks import Delivery, Outcome, Sink, SinkUnavailable
from exrwatchd.telemetry import NullMetrics, ProgressLine

log = get_logger("exrwatchd.sink_loop")

T = TypeVar("T")

#: The `sink.progress` count each delivered entry adds to, by its op.
_SHIPPED = {"upsert": "persisted", "delete": "deleted", "sequence": "sequences"}


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


class SinkLoop:
    """One thread that moves outbox entries to the sink, acknowledging each."""

    LOUD_INTERVAL = 60.0  # seconds between repeated sink.unavailable errors

    def __init__(
        self, journal: Journal, sink: Sink, *, batch_size: int, batch_wait: float,
        unavailable_backoff: tuple[float, float] = (1.0, 60.0),
        on_batch: Callable[[BatchReport], None] | None = None,
        between_batches: Callable[[], None] = lambda: None,
    ) -> None:  # fmt: skip
        self._journal = journal
        self._sink = sink
        self._batch_size = batch_size
        self._batch_wait = batch_wait
        self._backoff = unavailable_backoff
        self._on_batch = on_batch
        # Called at every turn, once the previous batch is gone (daemon/gc_tuning.py).
        self._between_batches = between_batches
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sink", daemon=True)
        self.error: BaseException | None = None
        self.unhealthy_since: float | None = None
        self.last_error: str | None = None
        self._last_loud = 0.0
        self._full = DiskFull(journal.path, writer="sink")
        self.delivered = 0
        # Per-file `sink.persisted` lines are at debug; `sink.progress` sums them up at info.
        self.shipped: dict[str, int] = {"persisted": 0, "deleted": 0, "sequences": 0,
                                        "retried": 0, "dead_lettered": 0}  # fmt: skip
        self._progress = ProgressLine("sink.progress", lambda: self.shipped,
                                      logger_name="exrwatchd.sink_loop")
        self.catalog_resets = 0  # the catalog was lost and everything resent: the daemon rescans

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
                try:
                    # Every turn (a stat): a catalog deleted while idle is noticed within
                    # a second, not at the next file.
                    resent = self._durably(lambda: resend_if_lost(self._sink, self._journal))
                except SinkUnavailable as exc:  # the new catalog cannot be opened (yet)
                    self._unavailable(exc, 0)
                    failures += 1
                    self._back_off(failures)
                    continue
                if resent is None:
                    break
                if resent:
                    self.catalog_resets += 1
                # Claimed as stored, decoded here: off the journal's write lock, and a record
                # damaged on disk is one dead letter (_decoded), not a stopped loop.
                batch = self._durably(lambda: self._journal.claim_stored(self._batch_size))
                if batch is None:
                    break
                self._progress.tick(time.monotonic())
                if not batch:
                    self._between_batches()
                    self._wake.wait(timeout=1.0)
                    self._wake.clear()
                    if self._batch_wait and not self._stop.is_set():
                        # Let a burst fill the batch: one transaction per batch, not per file.
                        self._stop.wait(self._batch_wait)
                    continue
                shipped = self._ship(batch)
                del batch  # its records are garbage now, before the collection
                self._between_batches()
                if shipped:
                    failures = 0
                    continue
                failures += 1
                self._back_off(failures)
            self._progress.flush(time.monotonic())
        except BaseException as exc:
            self.error = exc
            log.critical("sink.loop_failed", error=str(exc), error_type=type(exc).__name__)
            raise

    def _back_off(self, failures: int) -> None:
        low, high = self._backoff
        self._stop.wait(min(high, low * 2 ** min(failures - 1, 16)))

    def _durably(self, call: Callable[[], T]) -> T | None:
        """`call()` (journal writes), waiting out a full disk or a journal locked by another
        connection; None if stopped meanwhile. Entries claimed but not acknowledged then
        stay in flight until the next start and go again (the sinks make that harmless)."""
        result = durably(call, self._full, self._stop, on_full=self._journal_full)
        if result is STOPPED:
            return None
        if self._full.recovered():
            self.unhealthy_since = self.last_error = None
        return result  # type: ignore[return-value]

    def _journal_full(self) -> None:
        self.unhealthy_since = self.unhealthy_since or time.monotonic()
        self.last_error = self._full.describe()

    def _unavailable(self, exc: SinkUnavailable, entries: int) -> None:
        now = time.monotonic()
        # Loud, but once per interval: an outage of hours must not flood the logs.
        if (self.unhealthy_since is None or self.last_error != str(exc)
                or now - self._last_loud >= self.LOUD_INTERVAL):  # fmt: skip
            self._last_loud = now
            down_for = round(now - (self.unhealthy_since or now), 1)
            log.error("sink.unavailable", sink=self._sink.name, error=str(exc),
                      error_type=type(exc).__name__, entries=entries,
                      down_for_seconds=down_for)  # fmt: skip
        self.unhealthy_since = self.unhealthy_since or now
        self.last_error = str(exc)

    def _ship(self, claimed: Sequence[ClaimedEntry]) -> bool:
        """Deliver one batch. False when the sink as a whole is unavailable."""
        started = time.perf_counter()
        batch, unreadable = _decoded(claimed)
        try:
            deliveries = [*self._sink.write(batch), *unreadable] if batch else unreadable
        except SinkUnavailable as exc:
            # Not the entries' fault: released without counting an attempt (the loop itself
            # backs off), so a long outage ends in delivery, not in dead letters.
            ids, error = [e.id for e in claimed], str(exc)
            if self._durably(lambda: self._journal.release(ids, error)) is None:
                return False
            if self._on_batch:
                self._on_batch(BatchReport(time.perf_counter() - started, len(ids), (), 0, 0,
                                           0, unavailable=True))  # fmt: skip
            self._unavailable(exc, len(ids))
            return False
        by_id = {e.id: e for e in claimed}
        delivered = [d.entry_id for d in deliveries if d.outcome is Outcome.DELIVERED]
        retry = [(d.entry_id, d.error or "retry") for d in deliveries if d.outcome is Outcome.RETRY]
        reject = [(d.entry_id, d.error or "rejected") for d in deliveries
                  if d.outcome is Outcome.REJECT]  # fmt: skip

        def acknowledge() -> list[int]:
            # Repeatable as a whole: a second ack of an id is a no-op, and retry and reject
            # ignore entries no longer in flight.
            self._journal.ack(delivered)
            dead = self._journal.retry(retry) if retry else []
            if reject:
                self._journal.reject(reject)
            return dead

        dead = self._durably(acknowledge)
        if dead is None:
            return True  # stopping
        for entry_id, error in retry:
            log.warning("sink.retry", path=by_id[entry_id].path, error=error, stage="sink")
        for entry_id, error in [*reject, *((i, "too many attempts") for i in dead)]:
            log.error("sink.dead_letter", path=by_id[entry_id].path, error=error, stage="sink")
        for entry_id in delivered:
            entry = by_id[entry_id]
            self.shipped[_SHIPPED[entry.op]] += 1
            log.debug("sink.persisted", path=entry.path, op=entry.op, sink=self._sink.name)
        self.delivered += len(delivered)
        self.shipped["retried"] += len(retry) - len(dead)
        self.shipped["dead_lettered"] += len(reject) + len(dead)
        if self.unhealthy_since is not None:
            log.info("sink.recovered", sink=self._sink.name)
            self.unhealthy_since = None
        if self._on_batch:
            self._on_batch(BatchReport(
                time.perf_counter() - started, len(claimed),
                tuple(by_id[i].path for i in delivered), len(retry), len(reject), len(dead),
                unavailable=False,
            ))  # fmt: skip
        return True

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=timeout)

    def discard(self) -> None:
        """Let go of a loop that was never started (a reload's, after shutdown began)."""
        self._sink.close()


def _decoded(claimed: Sequence[ClaimedEntry]) -> tuple[list[OutboxEntry], list[Delivery]]:
    """The claimed entries decoded; a record that cannot be (damaged on disk) is rejected,
    a dead letter with the reason, instead of stopping the loop."""
    entries: list[OutboxEntry] = []
    unreadable: list[Delivery] = []
    for entry in claimed:
        try:
            entries.append(entry.entry())
        except ValueError as exc:
            unreadable.append(Delivery(entry.id, Outcome.REJECT, str(exc)))
    return entries, unreadable


def resend_if_lost(sink: Sink, journal: Journal) -> bool:
    """If the sink's catalog was deleted or replaced (or, before it is opened, is missing),
    have everything sent again and open the catalog now at its path. True if it did.

    The rows it lost left the outbox when they were delivered, so the journal marks every
    live path for the next reconciliation to inspect again (Journal.resend_all); the caller
    makes that reconciliation happen. Marking comes first: should it fail (a full disk),
    nothing changed and the next call tries again.
    """
    recover = getattr(sink, "recover_lost", None)
    if not callable(recover):
        return False  # only a local catalog can vanish under us

    def resend(reason: str) -> None:
        # A replaced file may be an old copy, holding rows of files deleted since.
        marked = journal.resend_all(deletes=reason == "replaced")
        if marked or reason != "missing":  # "missing" with nothing to resend: a first start
            log.error("catalog.lost", path=str(getattr(sink, "path", "")), reason=reason,
                      resend=marked, action="opening a new catalog; every live file is "
                      "inspected again and sent to it")  # fmt: skip

    return recover(resend) is not None
