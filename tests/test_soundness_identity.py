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

import json
import os
import sqlite3
from pathlib import Path

import pytest
from crash_support import BUCKET, vast_config, vast_env, vast_view
from exrgen import write_scanline
from harness import DaemonEnv, DaemonProcess, wait_for
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
