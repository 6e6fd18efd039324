"""The local catalog's file: noticing that it was deleted or replaced under an open sink.

SQLite keeps writing to the inode it opened, so a catalog.db unlinked (or renamed over)
while the daemon runs would swallow every later row where nobody can read it. LocalSink
remembers the (st_dev, st_ino) of the file it opened and compares the path's with it (one
stat, once per sink-loop turn and in health()); pipeline.resend_if_lost acts on it.

It also records which journal the file is written from (JournalRecord; issue 12, case 7), in
a one-row table of its own beside the catalog tables, made on first use: a journal.db lost
while the daemon was stopped is then told apart from the one that wrote the catalog.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from exrwatchd.sinks.base import SinkUnavailable

Identity = tuple[int, int]


def identity_of(fd: int) -> Identity:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def lost_reason(path: Path, opened: Identity | None) -> str | None:
    """Why `path` is no longer the file `opened`: "deleted" or "replaced"; "missing" when
    nothing was opened and there is no file; None otherwise, or when the stat fails (the
    next write reports that problem itself)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing" if opened is None else "deleted"
    except OSError:
        return None
    if opened is None or (st.st_dev, st.st_ino) == opened:
        return None
    return "replaced"


class LostCatalog:
    """LocalSink's part that notices a lost catalog file and opens a new one."""

    path: Path
    _conn: sqlite3.Connection | None
    _identity: Identity | None
    _lost: str | None  # lost, `resend` done, the new file not opened yet

    def open(self) -> None: ...  # LocalSink's

    def close(self) -> None: ...  # LocalSink's

    def lost(self) -> str | None:
        """Why the catalog file is no longer the one this sink has open: "deleted" or
        "replaced"; "missing" when it is not open and there is none; else None."""
        return lost_reason(self.path, self._identity if self._conn is not None else None)

    def recover_lost(self, resend: Callable[[str], None]) -> str | None:
        """If the catalog was lost (see `lost`): call `resend(reason)`, which must see to it
        that everything is sent again, then open the file now at the path (creating it).
        Returns the reason, or None when nothing was lost. When the open fails
        (SinkUnavailable), the next call tries it again without another `resend`."""
        reason = self._lost or self.lost()
        if reason is None:
            return None
        if self._lost is None:
            resend(reason)
            self._lost = reason
        # A -wal the old file left behind is no danger: SQLite deletes the -wal of a
        # database of zero pages rather than replay it (test_local_sink checks).
        self.close()
        self.open()
        self._lost = None
        return reason


JOURNAL_TABLE = "exrwatchd_journal"
_PAGE = 10_000


def _now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # as the catalog's times


class JournalRecord:
    """LocalSink's part that records the journal the catalog is written from."""

    path: Path
    _conn: sqlite3.Connection | None
    _lock: threading.Lock

    def _require(self) -> sqlite3.Connection: ...  # LocalSink's

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise SinkUnavailable(f"catalog {self.path}: {exc}") from exc

    def recorded_journal(self) -> str | None:
        with self._lock, self._sqlite_errors():
            conn = self._require()
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?",
                            (JOURNAL_TABLE,)).fetchone():  # fmt: skip
                row = conn.execute(f"SELECT journal_id FROM {JOURNAL_TABLE}").fetchone()
                if row is not None:
                    return str(row[0])
            # Rows but no record: written before journals had ids, by a journal unknown.
            return "" if conn.execute("SELECT 1 FROM files LIMIT 1").fetchone() else None

    def record_journal(self, journal_id: str) -> None:
        with self._lock, self._sqlite_errors():
            conn = self._require()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {JOURNAL_TABLE} "
                             "(journal_id TEXT NOT NULL, recorded_at TEXT NOT NULL)")  # fmt: skip
                conn.execute(f"DELETE FROM {JOURNAL_TABLE}")
                conn.execute(f"INSERT INTO {JOURNAL_TABLE} VALUES (?, ?)", (journal_id, _now()))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def catalog_paths(self) -> Iterator[str]:
        # By pages of the key, so a catalog of millions of files is never in memory at once.
        last = ""
        while True:
            with self._lock, self._sqlite_errors():
                page = self._require().execute(
                    "SELECT file_id, file_path, file_path_bytes FROM files WHERE file_id > ? "
                    "ORDER BY file_id LIMIT ?", (last, _PAGE)).fetchall()  # fmt: skip
            for _, text, raw in page:
                yield os.fsdecode(raw) if raw is not None else text
            if len(page) < _PAGE:
                return
            last = page[-1][0]
