"""The journal's connection: one SQLite connection behind one lock (exrwatchd/journal.py).

Journal builds on SharedConnection for its lifecycle (open, close, context manager) and for
the three ways its methods reach the database: locked, in a write transaction, or reading.
Every sqlite3.Error, and every reason the file cannot serve as a journal, leaves here as a
JournalError naming the file. exrwatchd.journal re-exports JournalError; import it from there.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from exrwatchd import _journal_sql as sql
from exrwatchd.errors import ExrwatchdError


class JournalError(ExrwatchdError):
    """The journal cannot be opened or written; the message names the file and what to do."""

    __module__ = "exrwatchd.journal"  # its public home, in tracebacks and pickles alike


@contextmanager
def unusable_as_journal_error() -> Iterator[None]:
    """Raise _journal_sql's Unusable again as JournalError, chained to its cause."""
    try:
        yield
    except sql.Unusable as e:
        raise JournalError(str(e)) from e.__cause__


class SharedConnection:
    """One SQLite file in WAL mode behind one lock around one connection, safe to share
    between threads. Closing it makes every further call raise JournalError."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        with unusable_as_journal_error():
            self._conn: sqlite3.Connection | None = sql.connect(self.path)

    def acknowledgements_only(self) -> None:
        """Mark this connection as one that only claims and acknowledges (the sink process).

        Its commits need not wait for the disk (synchronous=NORMAL): losing the last ones to
        a power cut only means entries are shipped again, which the sinks make harmless.
        The writer's commits, which hold the records themselves, stay synchronous=FULL.
        """
        with self._locked("set synchronous") as conn:
            conn.execute("PRAGMA synchronous = NORMAL")

    def close(self) -> None:
        """Close the connection; further calls raise JournalError. Closing twice is fine."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @contextmanager
    def _locked(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise JournalError(f"{self.path}: the journal is closed")
            try:
                yield self._conn
            except sqlite3.Error as e:
                raise JournalError(f"{self.path}: {what} failed: {e}") from e

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads first
        # and then writes can fail at once with "database is locked" when another
        # connection wrote in between, since busy_timeout cannot help a stale snapshot.
        with self._locked(what) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back on its own
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _reading(self, what: str, *, snapshot: bool = False) -> Iterator[sqlite3.Connection]:
        with self._locked(what) as conn:
            if not snapshot:
                yield conn
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
