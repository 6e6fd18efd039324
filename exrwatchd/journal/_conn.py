"""The journal's file and connection: opening, checking and migrating the file, and one SQLite
connection behind one lock (exrwatchd/journal/store.py is the API).

Journal builds on SharedConnection for its lifecycle (open, close, context manager) and for
the three ways its methods reach the database: locked, in a write transaction, or reading.
Every sqlite3.Error, and every reason the file cannot serve as a journal, leaves here as a
JournalError naming the file. exrwatchd.journal re-exports JournalError; import it from there.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from exrwatchd._wal import BACKSTOP_PAGES, Checkpointer
from exrwatchd.errors import ExrwatchdError
from exrwatchd.journal._schema import MIGRATIONS, SCHEMA_VERSION
from exrwatchd.journal._sequences import backfill

BUSY_TIMEOUT_MS = 10_000
# After a checkpoint the WAL is truncated to this size, so one burst of writes (a rescan of a
# large tree with the sink down) does not leave a huge -wal file behind for good.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024


class Unusable(Exception):  # private: raised again as JournalError
    """The file cannot serve as the journal; the message says why and what to do."""


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating with mode 0600) and check the file, bringing the schema up to date."""
    # The umask covers the -wal and -shm files SQLite creates beside the database. It is
    # process-wide, which is acceptable because the journal opens once, at start.
    old_umask = os.umask(0o077)
    try:
        _create_private(path)
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            _prepare(conn, path)
        except BaseException:
            conn.close()
            raise
        return conn
    except sqlite3.OperationalError as e:  # locked, unreadable, disk full: not corruption
        raise Unusable(f"cannot open journal {path}: {e}") from e
    except sqlite3.DatabaseError as e:
        raise Unusable(_corrupt_message(path, str(e))) from e
    except OSError as e:
        raise Unusable(f"cannot create journal {path}: {e}") from e
    finally:
        os.umask(old_umask)


def make_state_dir(state_dir: Path) -> None:
    """Create `state_dir` with mode 0700 if missing: the one place the state directory is
    made. An existing one keeps its mode (systemd's StateDirectory= owns it)."""
    try:
        state_dir.mkdir(mode=0o700, parents=True)
    except FileExistsError as e:
        if state_dir.is_dir():
            return
        raise Unusable(f"daemon.state_dir {state_dir}: {e.strerror}") from e
    except OSError as e:
        raise Unusable(f"daemon.state_dir {state_dir}: {e.strerror}") from e
    state_dir.chmod(0o700)  # mkdir's mode is filtered through the umask


def _create_private(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    # Make the new directory entry durable too: SQLite syncs the file's data, not its name.
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise Unusable(
            f"{path}: SQLite refused WAL mode (got {mode!r}); "
            "the journal must live on a local file system"
        )
    conn.execute("PRAGMA synchronous = FULL")  # NORMAL loses the last commits on power loss
    conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
    # SharedConnection's checkpoint thread copies the WAL into the file at 1,000 pages; the
    # commits themselves only at the backstop, should it fall behind (exrwatchd/_wal.py).
    conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)").fetchall()]
    if problems != ["ok"]:
        raise Unusable(_corrupt_message(path, "; ".join(map(str, problems))))
    _migrate(conn, path)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = _check_version(conn, path)
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have migrated meanwhile.
        version = _check_version(conn, path)
        if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise Unusable(
                f"{path} is an SQLite database but not an exrwatchd journal: move it aside"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target]:
                conn.execute(statement)
        if 1 <= version < 2:
            backfill(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _check_version(conn: sqlite3.Connection, path: Path) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise Unusable(
            f"{path} has journal schema version {version}, newer than this exrwatchd "
            f"understands ({SCHEMA_VERSION}): upgrade exrwatchd, or move the file aside "
            "and restart to rebuild state by rescanning"
        )
    return version


def _corrupt_message(path: Path, detail: str) -> str:
    return (
        f"{path} is not a valid SQLite database ({detail}): move it aside and restart; "
        "the daemon rebuilds state by rescanning"
    )


class JournalError(ExrwatchdError):
    """The journal cannot be opened or written; the message names the file and what to do."""

    __module__ = "exrwatchd.journal"  # its public home, in tracebacks and pickles alike


@contextmanager
def unusable_as_journal_error() -> Iterator[None]:
    """Raise Unusable again as JournalError, chained to its cause."""
    try:
        yield
    except Unusable as e:
        raise JournalError(str(e)) from e.__cause__


def _pause_for_write_lock() -> None:
    """Between two tries for the write lock, while another connection holds it."""
    time.sleep(0.001)


def _begin_immediate(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, trying again every millisecond for as long as the connection's
    busy_timeout (BUSY_TIMEOUT_MS unless set otherwise on it).

    SQLite's own busy handler (busy_timeout) sleeps 1, 2, 5, ... then 100 ms between tries,
    and the sqlite3 module offers no other. Behind the journal writer's steady stream of
    transactions (one per batch, a few ms apart in a catch-up) it kept waking up inside the
    next one: the sink process spent a third of a catch-up here, and shipped at a third of
    its speed until the writer was done (bench/catchup_bench.py). Trying every millisecond
    takes the lock in the first gap, for ~10 us a try.
    """
    timeout_ms = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if e.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
            _pause_for_write_lock()
    finally:
        conn.execute(f"PRAGMA busy_timeout = {timeout_ms}")


def _open_reader(path: Path) -> sqlite3.Connection:
    """A second connection to the journal `connect` opened, for reading only."""
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)  # fmt: skip
        conn.execute("PRAGMA query_only = 1")
    except sqlite3.Error as e:
        raise Unusable(f"cannot open journal {path} for reading: {e}") from e
    return conn


class SharedConnection:
    """One SQLite file in WAL mode, safe to share between threads: writes go through one
    connection behind one lock, reads through another behind another. Closing it makes
    every further call raise JournalError.

    Reads have their own connection because a write can wait up to the busy timeout for
    another connection's write lock (the sink process's, an operator's transaction), holding
    its connection all that time: with one connection, everything that read the journal
    meanwhile (status.json, the metrics, the reconciler) waited with it, the settle loop
    included, 10 s at a time. In WAL mode a reader never waits for a writer.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        with unusable_as_journal_error():
            self._conn: sqlite3.Connection | None = connect(self.path)
            try:
                self._reader: sqlite3.Connection | None = _open_reader(self.path)
            except BaseException:
                self._conn.close()
                raise
        self._checkpointer = Checkpointer(self.path, name="journal-checkpoint")

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
        self._checkpointer.close()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

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
            _begin_immediate(conn)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back on its own
                    conn.execute("ROLLBACK")
                raise
        self._checkpointer.nudge()

    @contextmanager
    def _reading(self, what: str, *, snapshot: bool = False) -> Iterator[sqlite3.Connection]:
        """The reading connection; with `snapshot`, in one read transaction (several
        statements that must agree)."""
        with self._read_lock:
            conn = self._reader
            if conn is None:
                raise JournalError(f"{self.path}: the journal is closed")
            try:
                if not snapshot:
                    yield conn
                    return
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as e:
                raise JournalError(f"{self.path}: {what} failed: {e}") from e
