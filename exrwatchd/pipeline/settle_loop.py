"""The settle loop: events in, settled files out to the workers, verdicts into the journal.

One thread (the daemon's main thread) owns all of this state, so none of it needs locks: the
Settler, the paths being inspected, and the paths that changed while being inspected. The
workers only take from `work` and put into `verdicts`. With pixel stats on, a complete
verdict makes a second trip, through the pixel lane (pixel_lane.py), before it is journaled;
its path stays in `inflight` meanwhile, so a change during the pixel read is noticed.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from exrwatchd.exr import InspectError, Inspection
from exrwatchd.journal import Delete, Persist, Rechecking
from exrwatchd.logs import get_logger
from exrwatchd.pipeline.inspector import Verdict, inspect_settled, make_record
from exrwatchd.pipeline.journal_writer import JournalWriter
from exrwatchd.pipeline.pixel_lane import PixelLane
from exrwatchd.pipeline.pixel_lane import report as report_pixels
from exrwatchd.telemetry import NullMetrics, ProgressLine
from exrwatchd.watch import Inbox, SettledFile, Settler, Unreadable, Vanished

log = get_logger("exrwatchd.pipeline")

#: Most settled files a worker takes in one turn (work_loop).
WORKER_TURN = 32
#: A turn that has run this long wakes the settle loop for the verdicts it has so far.
WAKE_WITHIN_S = 0.01


@dataclass
class Counters:
    detected: int = 0
    settled: int = 0
    inspected: int = 0
    failed: int = 0
    incomplete: int = 0
    deleted: int = 0
    rechecked: int = 0  # incomplete for now: looked at again later


@dataclass
class Pipeline:
    settler: Settler
    inbox: Inbox
    writer: JournalWriter
    queue_size: int
    rescan: Callable[[str | None], None]  # a subtree, or None for every watch root
    settled: Callable[[str], None]  # the daemon is done with a path (poll watchers forget it)
    metrics: NullMetrics = field(default_factory=NullMetrics)
    clock: Callable[[], float] = time.monotonic
    counters: Counters = field(default_factory=Counters)
    work: queue.Queue[SettledFile | None] = field(init=False)
    verdicts: queue.Queue[Verdict] = field(default_factory=queue.Queue)
    inflight: set[str] = field(default_factory=set)
    dirty: set[str] = field(default_factory=set)
    # Journal writes the writer's bounded queue could not take yet, in order. While any wait
    # here, no new work is handed out: backpressure without blocking this loop.
    unwritten: deque[Persist | Delete | Rechecking] = field(default_factory=deque)
    # `[inspect] pixel_stats`: complete verdicts go through this lane first (None: off).
    pixel_workers: int = 0
    pixel_queue_size: int = 64
    # A directory the settler could not stat a file in (watchers.UnreadablePaths.report).
    unreadable: Callable[[str, OSError], None] | None = None
    pixel_max_decoded_bytes: int | None = None  # None: exr.pixels' default
    lane: PixelLane | None = field(init=False, default=None)
    progress: ProgressLine = field(init=False)
    # What a worker runs on a settled file: injected like the clock, so that the moment a
    # worker finishes can be chosen rather than raced.
    inspect: Callable[[SettledFile], Verdict] = inspect_settled
    _worker_count: int = field(init=False, default=1)  # how many share the queue (turns)

    def __post_init__(self) -> None:
        self.work = queue.Queue(maxsize=self.queue_size)
        # Per-file events are at debug; at info, this line says what the files amount to.
        self.progress = ProgressLine("progress", lambda: asdict(self.counters),
                                     gauges=self._gauges, logger_name="exrwatchd.pipeline")
        if self.pixel_workers:
            self.lane = PixelLane(self.pixel_workers, self.pixel_queue_size,
                                  self._lane_done, self.metrics,
                                  max_decoded_bytes=self.pixel_max_decoded_bytes,
                                  journal=self.writer.journal)  # fmt: skip

    def _gauges(self) -> dict[str, object]:
        return {"pending": len(self.settler), "inspecting": len(self.inflight)}

    def _lane_done(self, verdict: Verdict) -> None:
        """A pixel-lane thread finished with a verdict: back to the settle loop."""
        self.verdicts.put(verdict)
        self.inbox.wakeup.set()

    # ---- worker threads ---------------------------------------------------------------

    def work_loop(self) -> None:
        """A worker thread: inspect settled files, a turn at a time, until a None arrives.

        A turn is one file, plus this worker's share of what is queued behind it (at most
        WORKER_TURN files). The settle loop is woken once per turn rather than once per
        file, or sooner if the turn runs long: in a catch-up, each wake-up was a hand-off
        of the interpreter lock between threads on different cores (docs/benchmarks.md).
        """
        while True:
            turn, stop = self._next_turn()
            woken = time.perf_counter()
            for item in turn:
                self.verdicts.put(self._inspected(item))
                if time.perf_counter() - woken >= WAKE_WITHIN_S:  # a slow read: no waiting
                    self.inbox.wakeup.set()
                    woken = time.perf_counter()
            if turn:
                self.inbox.wakeup.set()
            if stop:
                return

    def _next_turn(self) -> tuple[list[SettledFile], bool]:
        """The next turn's files, and whether a None (stop) came with them."""
        first = self.work.get()
        if first is None:
            return [], True
        turn = [first]
        # A share, not all: the other workers keep files to read when one read is slow.
        share = min(WORKER_TURN - 1, self.work.qsize() // self._worker_count)
        for _ in range(share):
            try:
                item = self.work.get_nowait()
            except queue.Empty:
                break
            if item is None:  # this worker's stop: finish the turn first
                return turn, True
            turn.append(item)
        return turn, False

    def _inspected(self, item: SettledFile) -> Verdict:
        started = time.perf_counter()
        try:
            verdict = self.inspect(item)
        except Exception as exc:  # a reader bug must not kill the worker or lose the file
            log.exception("file.failed", path=item.path, error=str(exc), stage="inspect",
                          error_type=type(exc).__name__)  # fmt: skip
            verdict = Verdict(item, "record", "failed", item.sig, None, str(exc), None)
        self.metrics.inspection_seconds(time.perf_counter() - started)
        return verdict

    def stop_workers(self, count: int) -> None:
        for _ in range(count):
            try:
                self.work.put_nowait(None)
            except queue.Full:
                return

    # ---- the settle loop (main thread) --------------------------------------------------

    def drain_inbox(self) -> None:
        items, lost = self.inbox.drain()
        for reason in lost:
            log.warning("watch.events_lost", reason=reason)
            self.metrics.events_lost(reason)
        if lost:
            self.metrics.rescans("lost_events")
            self.rescan(None)
        for path, kind in items.items():
            self.metrics.event(kind)
            if kind == "subtree":
                self.metrics.rescans("subtree")
                self.rescan(path)
                continue
            if path not in self.settler:
                self.counters.detected += 1
                log.debug("file.detected", path=path, trigger=kind)
            self.settler.observe(path, kind)

    def flush(self) -> None:
        """Hand waiting journal writes to the writer, and waiting complete files to the pixel
        lane, as far as their queues take them."""
        while self.unwritten and self.writer.offer(self.unwritten[0]):
            self.unwritten.popleft()
        if self.lane is not None:
            self.lane.flush()

    def _journal(self, item: Persist | Delete | Rechecking) -> None:
        self.unwritten.append(item)
        self.flush()

    def dispatch(self) -> int:
        """Hand settled files to the workers, as many as there is room for; return that
        room (0 or less: the settler's due paths wait for the queues to drain)."""
        if self.writer.disk_full is not None:
            return 0  # the journal cannot take verdicts now: the settler keeps the paths
        # Nothing new while verdicts wait for the journal: the settler keeps the paths.
        free = 0 if self.unwritten else self.work.maxsize - self.work.qsize()
        if self.lane is not None:
            # Any header verdict may need the lane, so no more headers are out than the lane
            # can take: nothing new while files wait for it, and what waits stays bounded.
            headers = len(self.inflight) - len(self.lane.held)
            free = min(free, self.lane.room() - headers)
        now = self.clock()
        for item in self.settler.poll(limit=max(0, free)):
            # A deletion of a path in flight is newer than what its worker read: it makes
            # the path dirty like any change, so the verdict cannot be journaled after it.
            if isinstance(item, Vanished) and item.path not in self.inflight:
                self._gone(item.path)
                continue
            if isinstance(item, Unreadable):
                err = item.error  # ENODEV names the unmounted mount point, else the directory
                where = err.filename if err.errno == errno.ENODEV else os.path.dirname(item.path)
                if self.unreadable is not None:
                    self.unreadable(str(where), err)
                continue
            if item.path in self.inflight:
                self.dirty.add(item.path)  # inspect again once the current look finishes
                continue
            self.counters.settled += 1
            log.debug("file.settled", path=item.path, size=item.sig.size, attempt=item.attempt)
            if item.attempt == 0:
                self.metrics.settle_seconds(now - item.first_seen)
            self.inflight.add(item.path)
            self.work.put(item)
        return free

    def handle_verdicts(self) -> None:
        while True:
            try:
                v = self.verdicts.get_nowait()
            except queue.Empty:
                return
            path = v.settled.path
            if self._to_lane(v):
                continue  # still in flight: journaled when the lane hands it back
            self.inflight.discard(path)
            if path in self.dirty:
                self.dirty.discard(path)
                self.settler.observe(path)
            elif v.kind == "vanished":
                self._gone(path)
            elif v.kind == "changed":
                self.settler.observe(path)
            elif v.kind == "recheck" and self.settler.recheck(
                path, v.settled.first_seen, v.settled.attempt, v.settled.sig.mtime_ns
            ):
                self.counters.rechecked += 1
                if v.settled.attempt == 0:  # `exrwatchd sequences` shows it in progress
                    self._journal(Rechecking(path))
                log.debug("file.incomplete", path=path, reason=v.reason,
                          attempt=v.settled.attempt, will_recheck=True)  # fmt: skip
            else:
                self._persist(v)

    def _to_lane(self, v: Verdict) -> bool:
        """Send a complete verdict of the header workers through the pixel lane, unless the
        file changed meanwhile; True when sent. A verdict back from the lane goes on."""
        lane = self.lane
        if lane is None or lane.returned(v.settled.path):
            return False
        if v.settled.path in self.dirty or not lane.wants(v):
            return False
        lane.submit(v)
        return True

    def _gone(self, path: str) -> None:
        self.counters.deleted += 1
        log.debug("file.deleted", path=path)
        # Always through the writer: it is FIFO, so a Persist queued just before this
        # Delete is journaled first and cannot resurrect the path afterwards.
        self._journal(Delete(path))
        self.settled(path)

    def _persist(self, v: Verdict) -> None:
        path = v.settled.path
        record = v.record if v.record is not None else _crash_record(path, v.reason)
        self.metrics.inspected(v.status)
        if v.status == "complete":
            self.counters.inspected += 1
            log.debug("file.inspected", path=path, header_hash=v.header_hash,
                      parts=len(record["parts"]))  # fmt: skip
        elif v.status == "incomplete":
            self.counters.incomplete += 1
            log.warning("file.incomplete", path=path, reason=v.reason, will_recheck=False)
        else:
            self.counters.failed += 1
            error = record.get("error") or {}
            self.metrics.failed(str(error.get("kind") or "internal"))
            log.warning("file.failed", path=path, error=v.reason, stage="inspect",
                        error_type=error.get("kind"))  # fmt: skip
        report_pixels(path, record, self.metrics)
        self.metrics.journaled(path, v.settled.first_seen)
        self._journal(Persist(path, v.sig, v.header_hash, v.status, record))
        self.settled(path)

    def idle(self) -> bool:
        """Nothing pending in memory: no events, nothing settling, inspecting or queued."""
        return (
            len(self.inbox) == 0 and len(self.settler) == 0 and not self.inflight
            and self.verdicts.empty() and self.work.empty() and not self.unwritten
            and (self.lane is None or not self.lane.depth())
        )  # fmt: skip

    def step(self, clock: Callable[[], float], max_wait: float = 0.5) -> None:
        """One turn of the settle loop; sleeps until the next thing is due or an event."""
        self.drain_inbox()
        self.handle_verdicts()
        self.flush()
        room = self.dispatch()
        due = self.settler.next_due()
        wait = max_wait if due is None else min(max_wait, max(0.0, due - clock()))
        if room <= 0:
            # Due paths cannot go out until a queue drains; workers and the lane wake us when
            # they finish, the writer does not (below): never spin on work that cannot move.
            wait = max(wait, 0.05)
        if self.unwritten or (self.lane is not None and self.lane.waiting):
            wait = min(wait, 0.01)  # the writer and the lane free room without telling us
        if self.writer.disk_full is not None:
            wait = max_wait  # nothing goes out until the journal has room: do not spin
        self.progress.tick(clock())
        if wait > 0:
            self.inbox.wakeup.wait(wait)
        self.inbox.wakeup.clear()

    def finish(self, deadline: float, *, force: Callable[[], bool]) -> None:
        """At shutdown: let in-flight inspections (pixel lane included) finish and reach the
        journal, until `deadline` (monotonic) or `force()`. Nothing is dropped silently:
        whatever is still settling, or was given up on here, is not in the journal, so the
        start-up scan finds it again."""
        while self.inflight and time.monotonic() < deadline and not force():
            self.handle_verdicts()
            self.flush()
            self.inbox.wakeup.wait(0.05)
        self.handle_verdicts()
        self._drain_to_journal(deadline)
        self.progress.flush(self.clock())

    def _drain_to_journal(self, deadline: float) -> None:
        """At shutdown: hand every waiting write to the writer, waiting for room until
        `deadline` (monotonic). A dead writer takes nothing: those files are not in the
        journal, so the next start-up reconciliation inspects them again."""
        while (self.unwritten and self.writer.alive() and self.writer.disk_full is None
               and time.monotonic() < deadline):  # fmt: skip
            if not self.writer.offer(self.unwritten[0]):
                time.sleep(0.01)  # the writer is busy committing; shutdown only
                continue
            self.unwritten.popleft()

    def start_workers(self, count: int) -> list[threading.Thread]:
        self._worker_count = count
        threads = [threading.Thread(target=self.work_loop, name=f"worker-{i}", daemon=True)
                   for i in range(count)]  # fmt: skip
        for thread in threads:
            thread.start()
        return threads


def _crash_record(path: str, reason: str | None) -> dict[str, Any]:
    """A record for a file whose inspection crashed: recorded, not silently dropped."""
    error = InspectError("internal", reason or "inspection crashed")
    return make_record(Inspection(path, None, None, False, None, None, error, ()))
