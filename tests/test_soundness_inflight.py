"""Issue 12, cases 3 and 6: what a path's verdict may overwrite, and when re-checks stop.

Case 3 runs the real settle loop (Pipeline, Settler, a worker thread, JournalWriter, Journal)
on real files; the worker is held after reading a header through the Pipeline's `inspect`
hook, so the deletion lands at a chosen moment. Case 6 runs the real `exrwatchd scan`.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from exrgen import truncated_copies, truncation_points, write_scanline
from harness import ROOT, wait_for, write_config

from exrwatchd.journal import Journal, Persist
from exrwatchd.pipeline import JournalWriter, Pipeline, Verdict, inspect_settled
from exrwatchd.watch import Inbox, SettledFile, Settler

DAY = 86_400.0


class HeldWorker:
    """The Pipeline's `inspect` hook: the real inspection, then the worker waits until the
    test releases it, so the test decides what happens between the read and the verdict."""

    def __init__(self) -> None:
        self.read = threading.Event()
        self.release = threading.Event()

    def __call__(self, item: SettledFile) -> Verdict:
        verdict = inspect_settled(item)
        self.read.set()
        self.release.wait(timeout=30)
        return verdict


def pipeline(
    journal: Journal, hook: Callable[[SettledFile], Verdict], *, queue_size: int = 8,
    workers: int = 1,
) -> tuple[Pipeline, JournalWriter]:
    """The real settle loop on `journal`, its workers running `hook` (none started: 0)."""
    writer = JournalWriter(journal, on_commit=lambda _count: None)
    writer.start()
    settler = Settler(quiet_seconds=0.0, max_wait_seconds=60.0, recheck_initial=0.1,
                      recheck_max=1.0, clock=time.monotonic)  # fmt: skip
    p = Pipeline(settler, Inbox(), writer, queue_size, rescan=lambda _path: None,
                 settled=lambda _path: None, inspect=hook)  # fmt: skip
    if workers:
        p.start_workers(workers)
    return p, writer


def turn_until(p: Pipeline, condition: Callable[[], bool], what: str) -> None:
    """Run the settle loop's turns until `condition` holds (the loop's own wakeups pace it)."""
    deadline = time.monotonic() + 20.0
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        p.step(time.monotonic, max_wait=0.05)


def test_a_deletion_during_the_header_read_is_not_overwritten_by_its_verdict(
    tmp_path: Path, journal: Journal
) -> None:
    # issue 12, case 3: a Vanished for a path in flight was journaled at once and the
    # worker's verdict, read before the deletion, journaled a Persist after it.
    frame = str(write_scanline(tmp_path / "renders" / "beauty.0001.exr"))
    hook = HeldWorker()
    p, writer = pipeline(journal, hook)
    try:
        p.inbox.put(frame, "closed")
        turn_until(p, hook.read.is_set, "the worker read the header of the live file")
        os.unlink(frame)
        p.inbox.put(frame, "gone")
        # The settler stats the path and finds it gone while the worker still holds it.
        turn_until(p, lambda: len(p.inbox) == 0 and frame not in p.settler,
                   "the deletion observed by the settle loop")  # fmt: skip
        hook.release.set()
        turn_until(p, p.idle, "the verdict handled and everything handed to the writer")
    finally:
        hook.release.set()
        p.stop_workers(1)
        assert writer.stop(timeout=10), "the journal writer did not finish"
    # Not live in the journal (a tombstone, or no row: the deletion was journaled alone),
    # and the sink is told to delete it, not to upsert it.
    state = journal.path_state(frame)
    assert state is None or state.status == "deleted", state
    assert [e.op for e in journal.claim(10) if e.path == frame] == ["delete"]


def run_scan(config: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "exrwatchd", "scan", "--config", str(config)],
            capture_output=True, text=True, cwd=ROOT, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        tail = "\n".join(out.splitlines()[-10:])
        raise AssertionError(f"scan still running after {timeout} s; last lines:\n{tail}") from None


def test_scan_finishes_on_frames_cut_short_days_ago(tmp_path: Path) -> None:
    # issue 12, case 6: a frame cut short and untouched for days was re-checked until
    # max_wait_seconds, and the one-shot scan waited for it.
    shots = tmp_path / "shots"
    whole = write_scanline(shots / "beauty.0001.exr")
    points = truncation_points(whole)
    cut_data, cut_header = truncated_copies(
        whole, shots, {"mid_data": points["mid_data"], "header": points["header"]}
    )
    three_days_ago = int((time.time() - 3 * DAY) * 1e9)
    for path in (whole, cut_data, cut_header):
        os.utime(path, ns=(three_days_ago, three_days_ago))
    state = tmp_path / "state"
    config = write_config(tmp_path / "c.toml", state, [{"path": str(shots)}],
                          settle={"max_wait_seconds": 3600.0})  # fmt: skip
    started = time.monotonic()
    proc = run_scan(config, timeout=60.0)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert time.monotonic() - started < 60.0
    con = sqlite3.connect(state / "catalog.db")
    try:
        rows = {
            Path(r[0]).name: r[1:]
            for r in con.execute(
                "SELECT file_path, is_complete, incomplete_reason, error_kind FROM files"
            )
        }
    finally:
        con.close()
    assert set(rows) == {whole.name, cut_data.name, cut_header.name}, rows
    assert rows[whole.name] == (1, None, None)
    complete, reason, error = rows[cut_data.name]
    assert complete == 0 and reason and error is None, rows[cut_data.name]
    assert rows[cut_header.name][0] == 0 and rows[cut_header.name][2] == "truncated_header"


class TestGiveUpAge:
    """The Settler's rule behind case 6, with a scripted clock and wall clock."""

    def settler(self, wall: float) -> Settler:
        return Settler(quiet_seconds=1.0, max_wait_seconds=3600.0, recheck_initial=1.0,
                       recheck_max=8.0, clock=lambda: 100.0, stat=lambda _p: None,
                       wall_clock=lambda: wall)  # fmt: skip

    def test_untouched_longer_than_max_wait_is_given_up_at_once(self) -> None:
        # issue 12, case 6: the file's mtime, not our first sighting, says how long its
        # writer has been silent.
        wall = 1_800_000_000.0
        s = self.settler(wall)
        old = int((wall - 3 * DAY) * 1e9)
        assert s.recheck("/a.exr", first_seen=100.0, attempt=0, mtime_ns=old) is False
        assert len(s) == 0

    def test_a_recent_mtime_is_rechecked(self) -> None:
        wall = 1_800_000_000.0
        s = self.settler(wall)
        recent = int((wall - 60.0) * 1e9)
        assert s.recheck("/a.exr", first_seen=100.0, attempt=0, mtime_ns=recent) is True
        future = int((wall + DAY) * 1e9)  # a clock stepped back: not evidence of silence
        assert s.recheck("/b.exr", first_seen=100.0, attempt=0, mtime_ns=future) is True
        assert len(s) == 2


def test_a_batch_being_written_is_still_pending(tmp_path: Path) -> None:
    # Found with case 6's one-shot scan: `scan` ends once nothing is pending, and the
    # writer's pending() counted only its queue, not the batch it had taken off the queue and
    # was still committing; a scan could exit before its last files reached the journal.
    journal = Journal.open(tmp_path)
    blocker = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer's commit waits behind this lock
    writer = JournalWriter(journal, on_commit=lambda _n: None, max_delay=0.0)
    writer.start()
    try:
        assert writer.offer(Persist("/r/a.exr", None, None, "failed", {}))
        wait_for(lambda: writer._queue.empty(), 10, "the writer to take the verdict")
        assert writer.pending() == 1  # in hand, not in the journal yet
        blocker.execute("ROLLBACK")
        wait_for(lambda: journal.path_state("/r/a.exr") is not None, 20, "the commit")
        wait_for(lambda: writer.pending() == 0, 10, "nothing pending once committed")
    finally:
        blocker.close()
        writer.stop(timeout=10)
        journal.close()
