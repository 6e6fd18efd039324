"""Whose journal is this, and files that kill the inspector (issue 12, cases 7 and 11),
through the real daemon process.

Case 7: a journal.db emptied (0 bytes) or deleted while the daemon was stopped used to open
as a fresh journal: deletions it held were lost and their rows stayed in the catalog. The
journal now has an identity that the catalog and status.json record; an empty journal found
beside a catalog written from another one is rebuilt from the catalog and reconciled
against the disk (`journal.rebuilt`); a journal with records of its own that the catalog
does not recognise is refused (exit 78).

Case 11: a file whose pixel read kills the process was inspected again at every start. The
pixel lane (OpenImageIO, native code) now journals an "inspecting" mark before it reads;
a mark found at start counts a death against the file, and at the second death (the first
may be a kill -9 that was no fault of the file) it becomes a `crashed_inspector` error
record, not read again until the file changes. The crash is a SIGKILL delivered while a lane
thread is provably inside OpenImageIO: fanotify permission events (FAN_OPEN_PERM, root
only) make every open of the file wait for this test's answer, and the daemon's second open
of the file (the first is the pure-Python header reader) is never answered, so the kill
lands at that exact point with no sleep.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import sqlite3
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_support import BUCKET, kill_9, vast_config, vast_env, vast_view
from exrgen import write_scanline
from harness import Catalog, DaemonEnv, DaemonProcess, wait_for
from vast_emulator import VastEmulator

# --------------------------------------------------------------------------- case 7


def _journal_id(state: Path) -> str | None:
    """The journal's identity, read as an operator would (None: a journal without one)."""
    con = sqlite3.connect(f"file:{state / 'journal.db'}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT journal_id FROM identity").fetchone()[0]
    except sqlite3.OperationalError:
        return None  # no such table: the unfixed daemon
    finally:
        con.close()


def _status_journal_id(state: Path) -> str | None:
    try:
        return json.loads((state / "status.json").read_text()).get("journal_id")
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize("damage", ["emptied", "deleted"])
def test_journal_lost_while_stopped_is_rebuilt(tmp_path: Path, damage: str) -> None:
    # issue 12, case 7: a journal.db truncated to 0 bytes (or deleted) while the daemon was
    # stopped must not pass for a new journal: the file deleted meanwhile leaves the catalog.
    env = DaemonEnv(tmp_path)
    keep, gone = env.watch / "keep.exr", env.watch / "gone.exr"
    write_scanline(keep)
    write_scanline(gone)
    daemon = env.start()
    env.catalog.wait_paths({str(keep), str(gone)})
    old_id = _journal_id(env.state)
    wait_for(lambda: _status_journal_id(env.state) == old_id, 10,
             lambda: f"status.json to record journal {old_id}")  # fmt: skip
    assert daemon.stop() == 0
    gone.unlink()  # only the journal could have told the catalog
    journal = env.state / "journal.db"
    if damage == "emptied":
        os.truncate(journal, 0)
    else:
        journal.unlink()

    daemon = env.start()
    env.catalog.wait_paths({str(keep)})
    event = daemon.wait_event("journal.rebuilt")
    new_id = _journal_id(env.state)
    assert new_id != old_id
    assert event["path"] == str(journal) and event["replaces"] == old_id
    assert event["journal_id"] == new_id and event["paths"] == 2
    wait_for(lambda: _status_journal_id(env.state) == new_id, 10,
             lambda: f"status.json to record the rebuilt journal {new_id}")  # fmt: skip
    assert daemon.stop() == 0

    # The catalog now belongs to the rebuilt journal: the next start is an ordinary one.
    daemon = env.start()
    assert daemon.stop() == 0
    assert not daemon.seen("journal.rebuilt")
    assert set(env.catalog.paths()) == {str(keep)}


def test_journal_lost_while_stopped_is_rebuilt_vast(tmp_path: Path) -> None:
    # issue 12, case 7, with the VAST sink, which keeps no record of the journal: status.json
    # tells the lost journal, and the rebuild reads the paths back from VAST's files table.
    renders = tmp_path / "renders"
    renders.mkdir()
    keep, gone = renders / "keep.exr", renders / "gone.exr"
    write_scanline(keep)
    write_scanline(gone)
    with VastEmulator(buckets={BUCKET}) as emu:
        config, state = vast_config(tmp_path, renders, emu.endpoint)
        daemon = DaemonProcess(config, state, env=vast_env(emu))
        wait_for(lambda: vast_view(emu).paths == {str(keep), str(gone)}, 60,
                 lambda: f"both files in VAST; last lines:\n{daemon.tail()}")  # fmt: skip
        wait_for(lambda: _status_journal_id(state) == _journal_id(state), 10,
                 "status.json to record the journal")  # fmt: skip
        assert daemon.stop() == 0
        gone.unlink()
        (state / "journal.db").unlink()

        daemon = DaemonProcess(config, state, env=vast_env(emu))
        wait_for(lambda: vast_view(emu).paths == {str(keep)}, 60,
                 lambda: f"{gone} deleted from VAST; have {sorted(vast_view(emu).paths)}; "
                 f"last lines:\n{daemon.tail()}")  # fmt: skip
        event = daemon.wait_event("journal.rebuilt")
        assert event["recorded_by"] == [str(state / "status.json")] and event["paths"] == 2
        assert daemon.stop() == 0


def test_journal_of_another_catalog_is_refused(tmp_path: Path) -> None:
    # issue 12, case 7: a journal with records of its own (another gateway's, or swapped
    # with another state directory) beside a catalog it did not write: exit 78, naming the
    # file and the fix, and nothing changed in either.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = DaemonEnv(tmp_path / "a"), DaemonEnv(tmp_path / "b")
    for env in (first, second):
        write_scanline(env.watch / "frame.exr")
        env.start()
        env.catalog.wait_paths({str(env.watch / "frame.exr")})
        assert env.daemon is not None and env.daemon.stop() == 0
    other = first.state / "journal.db"
    for suffix in ("-wal", "-shm"):  # left by nobody after a clean stop; made sure of
        Path(f"{other}{suffix}").unlink(missing_ok=True)
    other.write_bytes((second.state / "journal.db").read_bytes())

    daemon = DaemonProcess(first.config, first.state)
    wait_for(lambda: daemon.proc.poll() is not None or daemon.seen("daemon.ready"), 60,
             lambda: f"the daemon to exit or be ready:\n{daemon.tail()}")  # fmt: skip
    code = daemon.proc.poll()
    daemon.stop()
    assert code == 78, daemon.tail()
    assert f"cannot start: {other} is journal" in daemon.tail()
    assert "Put the right journal.db back" in daemon.tail()
    assert set(first.catalog.paths()) == {str(first.watch / "frame.exr")}


# --------------------------------------------------------------------------- case 11

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int,
                                ctypes.c_char_p]  # fmt: skip
FAN_CLOEXEC, FAN_NONBLOCK, FAN_CLASS_CONTENT = 0x1, 0x2, 0x4
FAN_OPEN_PERM, FAN_MARK_ADD, FAN_ALLOW = 0x10000, 0x1, 0x1
AT_FDCWD = -100
_EVENT = struct.Struct("IBBHQii")  # struct fanotify_event_metadata


class OpenGate:
    """Every open of one file waits for this gate (fanotify permission events). Opens are
    counted per process; each process's `hold_at`-th open (this test's own excepted) is
    held: never answered, so that process stays blocked inside that open() until killed."""

    def __init__(self, path: Path) -> None:
        self.fd = _libc.fanotify_init(FAN_CLOEXEC | FAN_NONBLOCK | FAN_CLASS_CONTENT, os.O_RDONLY)
        if self.fd < 0:
            why = os.strerror(ctypes.get_errno())
            pytest.skip(f"fanotify permission events unavailable: {why}")
        if _libc.fanotify_mark(self.fd, FAN_MARK_ADD, FAN_OPEN_PERM, AT_FDCWD,
                               os.fsencode(path)) < 0:  # fmt: skip
            os.close(self.fd)
            pytest.skip(f"fanotify_mark: {os.strerror(ctypes.get_errno())}")
        self.opens: Counter[int] = Counter()
        self.hold_at = 0
        self.held: int | None = None  # the pid held
        self._held_fds: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="open-gate", daemon=True)
        self._thread.start()

    def hold(self, at: int) -> None:
        with self._lock:
            self.hold_at, self.held = at, None

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if not ready:
                continue
            with contextlib.suppress(BlockingIOError):
                data = os.read(self.fd, 4096)
                for offset in range(0, len(data), _EVENT.size):
                    _, _, _, _, _, event_fd, pid = _EVENT.unpack_from(data, offset)
                    self._answer(event_fd, pid)

    def _answer(self, event_fd: int, pid: int) -> None:
        with self._lock:
            self.opens[pid] += 1
            if pid != os.getpid() and self.opens[pid] == self.hold_at:
                self._held_fds.append(event_fd)
                self.held = pid
                return
        self._allow(event_fd)

    def _allow(self, event_fd: int) -> None:
        with contextlib.suppress(OSError):  # the opener may be dead by now
            os.write(self.fd, struct.pack("iI", event_fd, FAN_ALLOW))
        os.close(event_fd)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for event_fd in self._held_fds:
            self._allow(event_fd)
        os.close(self.fd)  # answers whatever is left: allowed


@contextlib.contextmanager
def gated(path: Path) -> Iterator[OpenGate]:
    gate = OpenGate(path)
    try:
        yield gate
    finally:
        gate.close()


def _marks(state: Path) -> list[tuple]:
    con = sqlite3.connect(f"file:{state / 'journal.db'}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT path, reading, deaths FROM inspecting").fetchall()
    except sqlite3.OperationalError:
        return []  # no such table: the unfixed daemon
    finally:
        con.close()


def _row(catalog: Catalog, path: Path) -> tuple | None:
    rows = catalog.query(
        "SELECT error_kind, is_complete, has_nan IS NOT NULL FROM files WHERE file_path = ?",
        str(path),
    )
    return rows[0] if rows else None


def _die_in_pixel_read(env: DaemonEnv, gate: OpenGate, target: Path, staged: Path | None) -> list:
    """Start the daemon, let it read `target`'s header (its first open), hold its second open
    (OpenImageIO's, in the pixel lane) and SIGKILL it there. `staged`: moved to `target`
    once the daemon runs. Returns the journal's inspecting marks at the moment of the kill."""
    gate.hold(at=2)  # 1: the header reader (pure Python); 2: OpenImageIO
    daemon = env.start()
    if staged is not None:
        os.rename(staged, target)  # same inode: the gate follows it into the watched tree
    wait_for(lambda: gate.held == daemon.proc.pid, 30, lambda: f"the pixel read to open "
             f"{target}; opens {dict(gate.opens)}; last lines:\n{daemon.tail()}")  # fmt: skip
    marks = _marks(env.state)
    kill_9(daemon)
    return marks


@pytest.mark.skipif(os.geteuid() != 0, reason="fanotify permission events need root")
def test_file_that_kills_the_pixel_reader_is_not_retried(tmp_path: Path) -> None:
    # issue 12, case 11: a file whose native read kills the process (SIGKILL while a pixel
    # lane thread is inside OpenImageIO's open of it), twice (once could be a kill -9 that
    # was no fault of the file, and is read again), gets a crashed_inspector record at the
    # next start and is not read again until it changes.
    env = DaemonEnv(tmp_path, inspect={"pixel_stats": True, "pixel_workers": 1},
                    daemon={"rescan_interval": 1.0})  # fmt: skip
    staging = tmp_path / "staging"
    staging.mkdir()
    staged = staging / "killer.exr"
    write_scanline(staged)
    target = env.watch / staged.name
    key = os.fsencode(target)
    with gated(staged) as gate:
        first = _die_in_pixel_read(env, gate, target, staged)
        second = _die_in_pixel_read(env, gate, target, None)  # read again after one death

        gate.hold(at=0)
        daemon = env.start()
        wait_for(lambda: (_row(env.catalog, target) or (None,))[0] == "crashed_inspector", 30,
                 lambda: f"{target} recorded as crashed_inspector; files row "
                 f"{_row(env.catalog, target)}; last lines:\n{daemon.tail()}")  # fmt: skip
        # Two more full reconciliations (rescan_interval 1 s): the file is left alone.
        scans = len(daemon.seen("scan.finished"))
        wait_for(lambda: len(daemon.seen("scan.finished")) >= scans + 2, 30,
                 lambda: "two more reconciliations")  # fmt: skip
        assert gate.opens[daemon.proc.pid] == 0, "the crashed file was read again"
        assert (first, second) == ([(key, 1, 0)], [(key, 1, 1)])
        assert not _marks(env.state)

        # It changed: it is inspected again (the header and the pixels), and cataloged whole.
        st = target.stat()
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        wait_for(lambda: _row(env.catalog, target) == (None, 1, 1), 30,
                 lambda: f"{target} cataloged whole with pixel stats; files row "
                 f"{_row(env.catalog, target)}; last lines:\n{daemon.tail()}")  # fmt: skip
        assert gate.opens[daemon.proc.pid] >= 2
        assert daemon.stop(signal.SIGTERM) == 0
