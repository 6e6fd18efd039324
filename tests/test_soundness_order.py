"""Issue 12, cases 1 and 8: per-path order in the outbox, and due times across clock steps.

Case 1: every operation that puts an outbox entry back (a release after a sink outage, a
retry, the reset at start, `journal retry`) must never let it ship after a newer entry for the
same path: a deleted file would come back in the catalog for good. Case 8: a wall-clock step
must not stall delivery: due times run on monotonic time, and a stored due time further ahead
than the longest backoff counts as due at start.

Journal-level tests use real journal files; the end-to-end ones the real daemon, with the
VAST emulator and the real `vastdb` SDK for the outage. Clocks are injected, never changed.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from crash_support import stopped_on_exit, vast_config, vast_env, vast_view
from exrgen import write_scanline
from harness import ROOT, DaemonEnv, DaemonProcess, wait_for, write_config
from vast_emulator import VastEmulator

from exrwatchd.filesig import FileSig
from exrwatchd.journal import (
    Delete,
    Journal,
    Persist,
    RefreshSequences,
)
from exrwatchd.journal import _sequences as _journal_sequences
from exrwatchd.pipeline import inspect_settled
from exrwatchd.watch import SettledFile

T0 = 1_700_000_000.0
P = "/renders/sh010/plate.exr"
HOUR = 3600.0


class Clock:
    """A clock that moves only when a test says so (wall or monotonic alike)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def persist(path: str, version: int = 1) -> Persist:
    record: dict[str, Any] = {"path": path, "version": version, "error": None}
    return Persist(path, FileSig(size=100 + version, mtime_ns=version, inode=42), "h",
                   "complete", record)  # fmt: skip


def drain(journal: Journal) -> list[tuple[str, str]]:
    """Deliver everything due, as a sink would see it: (path, op) in delivery order."""
    shipped: list[tuple[str, str]] = []
    while batch := journal.claim(100):
        shipped += [(e.path, e.op) for e in batch]
        journal.ack([e.id for e in batch])
    return shipped


def outbox_rows(db: Path, path: str) -> list[tuple[str, str]]:
    """(op, state) of `path`'s outbox entries, oldest first, read as an operator would."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute("SELECT op, state FROM outbox WHERE path = ? ORDER BY id",
                           (os.fsencode(path),)).fetchall()  # fmt: skip
    finally:
        con.close()
    return [(op, state) for op, state in rows]


# =========================================================================== case 1

PUT_BACK: dict[str, Callable[[Journal, int], object]] = {
    # the sink as a whole was unavailable (VAST timed out, refused, reset)
    "release": lambda j, id_: j.release([id_], "vast: unreachable: Read timed out"),
    # a transient failure of the batch
    "retry": lambda j, id_: j.retry([(id_, "503 SlowDown")]),
    # a dead letter, requeued by the operator
    "reject, requeue": lambda j, id_: (j.reject([(id_, "400 BadRequest")]), j.requeue_dead()),
}


@pytest.mark.parametrize("put_back", list(PUT_BACK))
def test_an_entry_put_back_never_ships_after_a_newer_one(tmp_path: Path, put_back: str) -> None:
    # issue 12, case 1: an upsert in flight when the sink fails; meanwhile the file is
    # deleted and its Delete journaled. Putting the upsert back must not let it ship after
    # the delete (the file would be back in the catalog for good).
    clock = Clock(T0)
    with Journal.open(tmp_path, clock=clock) as j:
        j.write([persist(P)])
        (upsert,) = j.claim(10)
        j.write([Delete(P)])
        clock.now += 3.0  # the failure comes later: a read timeout
        PUT_BACK[put_back](j, upsert.id)
        clock.now += HOUR  # past any backoff
        assert drain(j) == [(P, "delete")]
        assert j.stats().outbox_total == 0


def test_an_entry_left_in_flight_by_a_crash_never_ships_after_a_newer_one(tmp_path: Path) -> None:
    # issue 12, case 1: the reset at start puts entries left in flight back.
    clock = Clock(T0)
    j = Journal.open(tmp_path, clock=clock)
    j.write([persist(P)])
    j.claim(10)
    j.write([Delete(P)])
    j.close()  # the process dies with the upsert in flight
    with Journal.open(tmp_path, clock=clock) as again:
        again.reset_inflight()
        assert drain(again) == [(P, "delete")]


def _stale_upsert_behind_delete(tmp_path: Path, clock: Clock, state: str) -> None:
    """The journal an earlier exrwatchd left after a sink outage: the released upsert back in
    `state` beside the newer delete of its path (made with SQL: no operation makes it now)."""
    with Journal.open(tmp_path, clock=clock) as j:
        j.write([persist(P)])
        (upsert,) = j.claim(10)
        j.write([Delete(P)])
    con = sqlite3.connect(tmp_path / "journal.db")
    with con:
        con.execute("UPDATE outbox SET state = ?, next_attempt_at = ? WHERE id = ?",
                    (state, clock.now + 1, upsert.id))  # fmt: skip
    con.close()


def test_a_stale_entry_from_an_earlier_version_is_never_claimed(tmp_path: Path) -> None:
    # issue 12, case 1: claiming keeps per-path order even on a journal an earlier version
    # left with the stale upsert 'ready' beside the delete: it must never ship.
    clock = Clock(T0)
    _stale_upsert_behind_delete(tmp_path, clock, "ready")
    with Journal.open(tmp_path, clock=clock) as j:
        j.reset_inflight()
        clock.now += HOUR
        assert drain(j) == [(P, "delete")]
        assert j.stats().outbox_total == 0


def test_journal_retry_requeues_no_superseded_dead_letter(tmp_path: Path) -> None:
    # issue 12, case 1: `exrwatchd journal retry --all` (the real command) on a journal whose
    # path has an old dead upsert and a newer dead delete: only the delete may go again.
    clock = Clock(time.time())
    state = tmp_path / "state"
    _stale_upsert_behind_delete(state, clock, "dead")
    con = sqlite3.connect(state / "journal.db")
    with con:
        con.execute("UPDATE outbox SET state = 'dead' WHERE op = 'delete'")
    con.close()
    config = write_config(tmp_path / "c.toml", state, [{"path": str(tmp_path)}])
    done = subprocess.run(
        [sys.executable, "-m", "exrwatchd", "journal", "--config", str(config), "retry", "--all"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with Journal(state / "journal.db", clock=clock) as j:
        clock.now += HOUR
        assert drain(j) == [(P, "delete")]


@pytest.fixture
def emu() -> Iterator[VastEmulator]:
    from crash_support import BUCKET

    with VastEmulator(buckets={BUCKET}) as emulator:
        yield emulator


def test_a_file_deleted_during_a_vast_outage_stays_deleted(
    tmp_path: Path, emu: VastEmulator
) -> None:
    # issue 12, case 1, end to end: the daemon's insert is held by VAST; meanwhile the file
    # is deleted and its Delete journaled; then VAST resets the held connection (an outage).
    # After the outage the file must not be in VAST. The hold ends when the test says so,
    # never on a timer, so the Delete is journaled while the upsert is in flight every time.
    renders = tmp_path / "renders"
    renders.mkdir()
    config, state = vast_config(tmp_path, renders, emu.endpoint)
    daemon = DaemonProcess(config, state, env=vast_env(emu))
    with stopped_on_exit(daemon):
        daemon.wait_event("scan.finished")
        daemon.wait_event("sink.started")
        release = emu.hold(method="POST", command="rows")
        path = renders / "plate.exr"
        write_scanline(tmp_path / "plate.exr").rename(path)
        wait_for(lambda: not emu.faults.pending(), 30, "the daemon's insert held by VAST")
        path.unlink()
        db = state / "journal.db"
        both = [("upsert", "inflight"), ("delete", "ready")]
        wait_for(lambda: outbox_rows(db, str(path)) == both, 30,
                 lambda: "the Delete journaled while the upsert is in flight: outbox "
                 f"{outbox_rows(db, str(path))}")  # fmt: skip
        release.set()  # VAST drops the held request: the sink is unavailable
        daemon.wait_event("sink.unavailable", timeout=30)
        wait_for(
            lambda: (
                daemon.seen("sink.persisted", path=str(path), op="delete")
                and not outbox_rows(db, str(path))
            ),
            60,
            lambda: f"the delete shipped and the outbox empty: {outbox_rows(db, str(path))}",
        )
        assert str(path) not in vast_view(emu).paths
        assert daemon.stop() == 0


# =========================================================================== case 8


@pytest.fixture
def clocks() -> tuple[Clock, Clock]:
    """(wall, monotonic): the first steps, the second only goes forward."""
    return Clock(T0), Clock(5000.0)


def _journal(tmp_path: Path, clocks: tuple[Clock, Clock]) -> Journal:
    wall, mono = clocks
    return Journal.open(tmp_path, clock=wall, monotonic=mono, backoff_initial=1.0,
                        backoff_max=8.0)  # fmt: skip


def test_a_backward_wall_clock_step_does_not_stall_delivery(
    tmp_path: Path, clocks: tuple[Clock, Clock]
) -> None:
    # issue 12, case 8: NTP sets an RTC back by an hour after start: entries written, retried
    # or released before the step are due when their backoff has passed, not an hour later.
    wall, mono = clocks
    with _journal(tmp_path, clocks) as j:
        j.write([persist(p) for p in ("/r/a.exr", "/r/b.exr", "/r/c.exr")])
        a, b = j.claim(2)
        j.retry([(a.id, "503 SlowDown")])
        j.release([b.id], "vast: unreachable")
        wall.now -= HOUR
        mono.now += 8.0  # the longest backoff
        assert sorted(e.path for e in j.claim(10)) == ["/r/a.exr", "/r/b.exr", "/r/c.exr"]


def test_a_forward_wall_clock_step_does_not_cut_a_backoff_short(
    tmp_path: Path, clocks: tuple[Clock, Clock]
) -> None:
    # issue 12, case 8: the other way, a step forward must not make every backoff end at once.
    wall, mono = clocks
    with _journal(tmp_path, clocks) as j:
        j.write([persist("/r/a.exr")])
        (a,) = j.claim(10)
        j.retry([(a.id, "503 SlowDown")])  # backs off 0.5 to 1 s
        wall.now += HOUR
        assert j.claim(10) == []
        mono.now += 1.0
        assert [e.path for e in j.claim(10)] == ["/r/a.exr"]


def test_sequence_refresh_survives_a_backward_step(
    tmp_path: Path, clocks: tuple[Clock, Clock]
) -> None:
    # issue 12, case 8: the sequence refresh times are due times too.
    wall, mono = clocks
    with _journal(tmp_path, clocks) as j:
        j.write([persist(f"/r/s/f.{n:04d}.exr") for n in (1, 2)])
        wall.now -= HOUR
        mono.now += _journal_sequences.REFRESH_DELAY
        j.write([RefreshSequences()])
        assert [s["count"] for s in j.sequences()] == [2]
        assert j.sequences_pending() == 0


def test_due_times_far_ahead_are_due_at_start(tmp_path: Path, clocks: tuple[Clock, Clock]) -> None:
    # issue 12, case 8: a monotonic clock starts again at a reboot (and an earlier version
    # stored wall-clock due times): at start, any due time further ahead than the longest
    # backoff counts as due; nearer ones keep their backoff.
    wall, _ = clocks
    with _journal(tmp_path, clocks) as j:
        j.write([persist("/r/a.exr"), persist("/r/b.exr")])
        j.write([persist(f"/r/s/f.{n:04d}.exr") for n in (1, 2)])  # a refresh due in 2 s
        a, b, *_ = j.claim(2)
        j.retry([(a.id, "503 SlowDown")])  # due in 0.5 to 1 s
        j.release([b.id], "vast: unreachable", delay=3 * HOUR)
    rebooted = (wall, Clock(10.0))
    with _journal(tmp_path, rebooted) as j:
        j.reset_inflight()
        due = ["/r/a.exr", "/r/b.exr", "/r/s/f.0001.exr", "/r/s/f.0002.exr"]
        assert sorted(e.path for e in j.claim(10)) == due
        j.write([RefreshSequences()])
        assert [s["count"] for s in j.sequences()] == [2]
    near = (wall, Clock(10.0))
    with _journal(tmp_path / "near", near) as j:
        j.write([persist("/r/a.exr")])
        (a,) = j.claim(1)
        j.retry([(a.id, "503 SlowDown")])
        j.reset_inflight()
        assert j.claim(1) == []  # within the longest backoff: still backing off


def test_a_journal_written_an_hour_ahead_ships_at_once(tmp_path: Path) -> None:
    # issue 12, case 8, end to end: a daemon whose clock ran an hour ahead journaled a file
    # (an RTC that NTP then set back). The real daemon must ship it at start, not an hour on.
    env = DaemonEnv(tmp_path)  # debug: file.inspected would be logged
    assert env.start().stop() == 0  # the catalog exists: nothing is sent again for its sake
    path = write_scanline(env.watch / "plate.exr")
    st = os.stat(path)
    verdict = inspect_settled(SettledFile(str(path), FileSig(st.st_size, st.st_mtime_ns,
                                                              st.st_ino), 0.0, 0))  # fmt: skip
    assert verdict.record is not None
    with Journal.open(env.state, clock=lambda: time.time() + HOUR) as j:
        j.write([Persist(str(path), verdict.sig, verdict.header_hash, verdict.status,
                         verdict.record)])  # fmt: skip
    daemon = env.start()
    try:
        env.catalog.wait_paths({str(path)}, timeout=30)
        assert not daemon.seen("file.inspected", path=str(path))  # shipped from the journal
    finally:
        assert daemon.stop() == 0


def test_the_unit_starts_after_the_clock_is_synchronised() -> None:
    # issue 12, case 8: time-sync.target orders the start after NTP has set the clock, when
    # the system has a service that provides it.
    unit = (ROOT / "systemd" / "exrwatchd.service").read_text()
    after = " ".join(re.findall(r"^After=(.*)$", unit, re.M)).split()
    assert "time-sync.target" in after
