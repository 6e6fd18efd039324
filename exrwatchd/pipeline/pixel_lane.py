"""The pixel lane: pixel health for complete records, on threads of its own.

Reading every pixel of a 2K frame costs ~120 ms of a core where its header costs a tenth of
a millisecond (docs/benchmarks.md, "Pixel health"). Run on the header workers, a burst of frames
would hold every worker on pixel reads while incomplete files, re-checks and failures waited
behind them. So the header workers only inspect headers; a complete record then passes
through this lane, whose `[inspect] pixel_workers` threads add ``pixel_stats`` and hand the
verdict back to the settle loop, which journals it as it journals every other verdict.

Ownership follows pipeline.py: the settle loop (main thread) owns `held` and `waiting`; the
lane's threads only take from `queue` and call `done`. The settle loop never blocks on the
lane: what the bounded queue cannot take waits in `waiting`, and while anything waits there
no new header work is handed out (Pipeline.dispatch), so nothing is dropped and memory stays
bounded by about twice `pixel_queue_size` records.

A record in the lane is not in the journal yet. A crash or a shutdown that gives up on it
loses nothing: the start-up reconciliation finds the file new (or changed) and inspects it
again, pixels included.

Except the file whose read killed the process (issue 12, case 11): OpenImageIO is native
code, where a bad file can crash the process or make the OOM killer end it, and inspecting
it again at every start would crash the daemon at every start. So each read is marked in
the journal first (Journal.mark_inspecting, durable) and unmarked when it returns; a mark
found at start (`start`) counts a death against the file, and at the second (FATAL_DEATHS:
a kill -9 of the daemon is no fault of the file it was reading) the file gets a
`crashed_inspector` error record with the signature it had, which the reconciliation
leaves alone until the file changes. The header reader is pure Python (its errors are
exceptions, recorded as failures), so only this lane marks: a durable commit per file
would cost the header workers far more than their ~0.1 ms read, and costs the lane ~1% of
a ~150 ms pixel read. A clean stop drops the marks of reads in progress: a read given up
on at shutdown did not crash.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from exrwatchd._cpus import unpin_this_thread
from exrwatchd.exr import InspectError, Inspection
from exrwatchd.exr.report import pixel_stats_to_dict
from exrwatchd.filesig import FileSig, sig_of
from exrwatchd.journal import Journal, JournalError, Persist
from exrwatchd.logs import get_logger
from exrwatchd.pipeline.inspector import Verdict, make_record
from exrwatchd.telemetry import NullMetrics

log = get_logger("exrwatchd.pixel_lane")

_GONE = (errno.ENOENT, errno.ENOTDIR)


class PixelLane:
    """`workers` threads computing pixel health of verdicts from a queue of `queue_size`."""

    def __init__(
        self,
        workers: int,
        queue_size: int,
        done: Callable[[Verdict], None],
        metrics: NullMetrics | None = None,
        max_decoded_bytes: int | None = None,
        journal: Journal | None = None,  # for the inspecting marks; None: none (tests)
    ) -> None:
        self.workers = workers
        self.max_decoded_bytes = max_decoded_bytes  # a read's budget (None: exr.pixels')
        self._journal = journal
        self.queue: queue.Queue[Verdict | None] = queue.Queue(maxsize=queue_size)
        self.waiting: deque[Verdict] = deque()  # settle loop only: the queue was full
        self.held: set[str] = set()  # settle loop only: paths queued, waiting or being read
        self._done = done
        self._metrics = metrics or NullMetrics()
        self._threads: list[threading.Thread] = []

    # ---- settle loop ------------------------------------------------------------------

    @staticmethod
    def wants(v: Verdict) -> bool:
        """Only whole files are worth reading: an incomplete or unreadable one has no
        pixels to speak of, and a record that went through the lane already has its stats."""
        return (
            v.kind == "record" and v.status == "complete"
            and v.record is not None and v.record.get("pixel_stats") is None
        )  # fmt: skip

    def submit(self, v: Verdict) -> None:
        """Take `v` into the lane; never blocks (see the module docstring)."""
        self.held.add(v.settled.path)
        self.waiting.append(v)
        self.flush()

    def flush(self) -> None:
        """Move waiting verdicts into the queue, as far as it has room."""
        while self.waiting:
            try:
                self.queue.put_nowait(self.waiting[0])
            except queue.Full:
                return
            self.waiting.popleft()

    def returned(self, path: str) -> bool:
        """Whether a verdict of `path` reaching the settle loop comes out of the lane."""
        if path in self.held:
            self.held.discard(path)
            return True
        return False

    def room(self) -> int:
        """Verdicts the lane can still take without anything waiting (<= 0: full)."""
        return self.queue.maxsize - self.queue.qsize() - len(self.waiting)

    def depth(self) -> int:
        """Verdicts waiting for a lane thread (queued or held back); for the gauge."""
        return self.queue.qsize() + len(self.waiting)

    # ---- threads ------------------------------------------------------------------------

    def start(self) -> list[threading.Thread]:
        """Record the files whose read killed the last process, then start the threads."""
        if self._journal is not None:
            record_crashed(self._journal)
        self._threads = [threading.Thread(target=self._loop, name=f"pixels-{i}", daemon=True)
                         for i in range(self.workers)]  # fmt: skip
        for thread in self._threads:
            thread.start()
        return self._threads

    def stop(self, timeout: float) -> int:
        """Drop what is queued and wait up to `timeout` for the file each thread is reading;
        the number of threads still reading. Dropped files were not journaled, so the next
        start-up scan inspects them again.

        Waiting is not optional: a thread still inside OpenImageIO when the interpreter
        finalises makes the process abort (SIGABRT or SIGSEGV instead of exit 0, seen in
        tests/test_pixel_lane.py before this wait)."""
        self.waiting.clear()
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        end = time.monotonic() + timeout
        for _ in self._threads:  # one None each; a small queue frees room as threads exit
            try:
                self.queue.put(None, timeout=max(0.0, end - time.monotonic()))
            except queue.Full:
                break
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        if self._journal is not None:
            try:
                self._journal.clear_inspecting()
            except JournalError as exc:  # the next start takes them for crashes: say so
                log.error("pixels.marks_left", error=str(exc))
        return sum(t.is_alive() for t in self._threads)

    def _loop(self) -> None:
        unpin_this_thread()  # it decodes outside the interpreter lock: every CPU helps
        while True:
            v = self.queue.get()
            if v is None:
                return
            started = time.perf_counter()
            try:
                out = measure(v, self.max_decoded_bytes, self._journal)
            except Exception as exc:  # a bug here must not kill the lane or lose the record
                log.exception("file.pixel_stats_failed", path=v.settled.path, error=str(exc),
                              error_type=type(exc).__name__)  # fmt: skip
                out = _with_stats(v, {"unavailable": f"internal error: {type(exc).__name__}"})
            self._metrics.pixel_seconds(time.perf_counter() - started)
            self._done(out)


# ---- one file ---------------------------------------------------------------------------


def measure(
    v: Verdict, max_decoded_bytes: int | None = None, journal: Journal | None = None
) -> Verdict:
    """`v` with the pixel stats of its file in the record; or, when the file is not the one
    the header verdict saw any more, a "changed" or "vanished" verdict, as the header
    workers give (the settle loop looks again, or records the deletion). A read decodes at
    most `max_decoded_bytes` at once (None: exr.pixels' default). With `journal`, the native
    read is marked there while it runs (see the module docstring)."""
    # Imported here, not at module level: importing it loads OpenImageIO and sets its thread
    # count for the whole process, which a daemon without pixel stats must not pay for.
    from exrwatchd.exr.pixels import pixel_health

    path = v.settled.path
    before = _sig(path, v.sig)
    if before != v.sig:
        return _moved(v, before)
    _mark(journal, path, v.sig)
    try:
        health = pixel_health(path, max_decoded_bytes)
    finally:
        _unmark(journal, path)
    # Stat again: the pixels must be those of the file whose header was recorded, and a
    # writer that started over in place (same inode) shows up in size or mtime.
    after = _sig(path, v.sig)
    if after != v.sig:
        return _moved(v, after)
    return _with_stats(v, pixel_stats_to_dict(health))


def _mark(journal: Journal | None, path: str, sig: FileSig | None) -> None:
    if journal is None:
        return
    try:
        journal.mark_inspecting(path, sig)
    except JournalError as exc:  # a full disk: read anyway; a crash now would go unmarked
        log.warning("pixels.unmarked", path=path, error=str(exc))


def _unmark(journal: Journal | None, path: str) -> None:
    if journal is None:
        return
    try:
        journal.unmark_inspecting(path)
    except JournalError as exc:  # cleared at a clean stop; a crash first blames this file
        log.error("pixels.mark_left", path=path, error=str(exc))


#: Deaths of the process during reads of one file (one signature) before it is given up on.
#: Not one: a kill -9 of the daemon, or an OOM kill set off by another allocation, is no
#: fault of the file being read then; it is read again once, and only a second death during
#: its read makes it a crashed_inspector record.
FATAL_DEATHS = 2


def record_crashed(journal: Journal) -> int:
    """At start: count a death against each file being read when the process died; those
    with FATAL_DEATHS get a crashed_inspector record with the signature they had, so the
    reconciliation leaves them alone until they change. Returns how many."""
    fatal = journal.count_deaths(FATAL_DEATHS)
    if not fatal:
        return 0
    message = (f"the process died {FATAL_DEATHS} times while OpenImageIO read this file; "
               "not read again until it changes")  # fmt: skip
    items = []
    for path, sig in fatal:
        log.error("file.failed", path=path, stage="pixels", error_type="crashed_inspector",
                  error=message)  # fmt: skip
        error = InspectError("crashed_inspector", message)
        record = make_record(Inspection(path, None, None, False, None, None, error, ()))
        items.append(Persist(path, sig, None, "failed", record))
    journal.write(items)  # durable before the marks go: a crash between writes it again
    journal.forget_inspecting(path for path, _ in fatal)
    return len(fatal)


def _with_stats(v: Verdict, stats: dict[str, Any]) -> Verdict:
    assert v.record is not None
    return dataclasses.replace(v, record={**v.record, "pixel_stats": stats})


def _sig(path: str, current: FileSig | None) -> FileSig | None:
    """The file's signature; None when it is gone. Other stat errors (permissions) keep
    `current`: pixel_health then says why it cannot read the file."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return None if exc.errno in _GONE else current
    return sig_of(st)


def _moved(v: Verdict, sig: FileSig | None) -> Verdict:
    if sig is None:
        return Verdict(v.settled, "vanished", "deleted", None, None, "vanished", None)
    return Verdict(v.settled, "changed", v.status, sig, None, "changed", None)


def report(path: str, record: dict[str, Any], metrics: NullMetrics) -> None:
    """Log and count what the pixel stats of a journaled record say (settle loop)."""
    stats = record.get("pixel_stats")
    if stats is None:
        return
    if stats.get("unavailable") is not None:
        metrics.pixel_stats_unavailable()
        log.info("file.pixel_stats_unavailable", path=path,
                 reason=f"pixel stats unavailable: {stats['unavailable']}")  # fmt: skip
        return
    reasons = stats.get("unhealthy") or []
    for reason in reasons:
        metrics.unhealthy(reason)
    if reasons:
        log.warning("file.unhealthy", path=path, reasons=reasons)
