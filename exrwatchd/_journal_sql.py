"""Statements and opening of the journal file (exrwatchd/journal.py is the API; the tables
are built by the migrations in _journal_schema.py).

Paths are BLOBs (`os.fsencode`): TEXT cannot hold the lone surrogates that stand for bytes
of non-UTF-8 file names, and BLOBs compare bytewise, which the directory range scans rely on.
Every dir value must therefore be a BLOB too: SQLite orders all TEXT before all BLOB.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from exrwatchd import _json
from exrwatchd._journal_schema import MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_MS = 10_000
# After a checkpoint the WAL is truncated to this size, so one burst of writes (a rescan of a
# large tree with the sink down) does not leave a huge -wal file behind for good.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024

PATH_COLUMNS = "path, size, mtime_ns, inode, header_hash, status, error, updated_at"

UPSERT_PATH = """
    INSERT INTO paths (path, dir, size, mtime_ns, inode, header_hash, status, error, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (path) DO UPDATE SET
        size = excluded.size, mtime_ns = excluded.mtime_ns, inode = excluded.inode,
        header_hash = excluded.header_hash, status = excluded.status, error = excluded.error,
        updated_at = excluded.updated_at
"""

# The last known signature stays on the tombstone: it is what a later rescan compares with.
TOMBSTONE_PATH = "UPDATE paths SET status = 'deleted', error = NULL, updated_at = ? WHERE path = ?"

# A new write supersedes the path's waiting entry and its dead letter; records carry the
# whole state of a path, so the newest one alone brings the sink up to date.
DROP_SUPERSEDED = "DELETE FROM outbox WHERE path = ? AND state IN ('ready', 'dead')"

INSERT_OUTBOX = """
    INSERT INTO outbox (path, op, state, attempts, next_attempt_at, created_at, updated_at, record)
    VALUES (?, ?, 'ready', 0, ?, ?, ?, ?)
"""

SELECT_CLAIMABLE = """
    SELECT id, path, op, record, attempts, created_at FROM outbox AS o
    WHERE state = 'ready' AND next_attempt_at <= ?
      AND NOT EXISTS (
          SELECT 1 FROM outbox AS i WHERE i.path = o.path AND i.state = 'inflight')
    ORDER BY next_attempt_at, id
    LIMIT ?
"""

MARK_INFLIGHT = "UPDATE outbox SET state = 'inflight', updated_at = ? WHERE id = ?"

DELETE_ENTRY = "DELETE FROM outbox WHERE id = ?"

SELECT_INFLIGHT = "SELECT path, attempts FROM outbox WHERE id = ? AND state = 'inflight'"

HAS_READY = "SELECT 1 FROM outbox WHERE path = ? AND state = 'ready' LIMIT 1"

SET_READY_LATER = """
    UPDATE outbox SET state = 'ready', attempts = ?, last_error = ?, next_attempt_at = ?,
        updated_at = ?
    WHERE id = ?
"""

# A sink-wide outage is not the entry's fault: back to 'ready', attempts unchanged.
RELEASE_INFLIGHT = """
    UPDATE outbox SET state = 'ready', last_error = ?, next_attempt_at = ?, updated_at = ?
    WHERE id = ? AND state = 'inflight'
"""

SET_DEAD = """
    UPDATE outbox SET state = 'dead', attempts = ?, last_error = ?, updated_at = ? WHERE id = ?
"""

DROP_SUPERSEDED_INFLIGHT = """
    DELETE FROM outbox WHERE state = 'inflight' AND EXISTS (
        SELECT 1 FROM outbox AS r WHERE r.path = outbox.path AND r.state = 'ready')
"""

RESET_INFLIGHT = """
    UPDATE outbox SET state = 'ready', next_attempt_at = ?, updated_at = ? WHERE state = 'inflight'
"""

DEFER_READY = """
    UPDATE outbox SET next_attempt_at = ?, updated_at = ?
    WHERE state = 'ready' AND next_attempt_at < ?
"""

# `:path IS NULL OR path = :path` keeps one statement for "all" and "one path".
DROP_SUPERSEDED_DEAD = """
    DELETE FROM outbox
    WHERE state = 'dead' AND (:path IS NULL OR path = :path) AND EXISTS (
        SELECT 1 FROM outbox AS r
        WHERE r.path = outbox.path AND r.state IN ('ready', 'inflight'))
"""

REQUEUE_DEAD = """
    UPDATE outbox SET state = 'ready', attempts = 0, next_attempt_at = :now, updated_at = :now
    WHERE state = 'dead' AND (:path IS NULL OR path = :path)
"""

# Tombstones that may go: deleted before :cutoff, with nothing left in the outbox for the path.
PURGEABLE = """
    status = 'deleted' AND updated_at < :cutoff
    AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.path = paths.path)
"""
PURGE_TOMBSTONES = f"DELETE FROM paths WHERE {PURGEABLE}"
COUNT_PURGEABLE = f"SELECT count(*) FROM paths WHERE {PURGEABLE}"
# A stepwise purge deletes one slice of the path key space per transaction. SLICE_END finds
# the slice's last key: OFFSET :skip (step - 1) walks at most `step` primary-key entries.
SLICE_END = "SELECT path FROM paths WHERE path > :low ORDER BY path LIMIT 1 OFFSET :skip"
PURGE_SLICE = f"DELETE FROM paths WHERE path > :low AND path <= :high AND {PURGEABLE}"
PURGE_REST = f"DELETE FROM paths WHERE path > :low AND {PURGEABLE}"

SELECT_PATH = f"SELECT {PATH_COLUMNS} FROM paths WHERE path = ?"

# `status <> 'deleted'` is spelled exactly as in the partial index so the planner uses it.
SELECT_DIR = f"SELECT {PATH_COLUMNS} FROM paths WHERE dir = ? AND status <> 'deleted'"

HAS_LIVE_DIR = "SELECT 1 FROM paths WHERE dir = ? AND status <> 'deleted' LIMIT 1"

# A skip scan: one index seek per distinct directory, instead of DISTINCT walking every
# file's index entry (13 ms against 230 ms for 3,000 directories of 100 files each).
# Pages continue from `last + b"\x00"`, the smallest BLOB greater than `last`.
SUBDIRS = """
    WITH RECURSIVE d(dir) AS (
        SELECT (SELECT dir FROM paths WHERE status <> 'deleted' AND dir >= :low AND dir < :high
                ORDER BY dir LIMIT 1)
        UNION ALL
        SELECT (SELECT dir FROM paths WHERE status <> 'deleted' AND dir > d.dir AND dir < :high
                ORDER BY dir LIMIT 1)
        FROM d WHERE d.dir IS NOT NULL
        LIMIT :limit
    )
    SELECT dir FROM d WHERE dir IS NOT NULL
"""

COUNT_OUTBOX = "SELECT state, count(*) FROM outbox GROUP BY state"
COUNT_PATHS = "SELECT status, count(*) FROM paths GROUP BY status"
# Ids grow with time, so the lowest ready id is the oldest ready entry; walking the rowid
# order stops at the first ready row, where an index would visit every ready entry.
OLDEST_READY = "SELECT created_at FROM outbox NOT INDEXED WHERE state = 'ready' ORDER BY id LIMIT 1"
LAST_ERROR = """
    SELECT path, last_error, updated_at FROM outbox
    WHERE last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1
"""

SELECT_DEAD = """
    SELECT id, path, op, attempts, last_error, updated_at FROM outbox
    WHERE state = 'dead' ORDER BY updated_at DESC, id DESC LIMIT ?
"""

# A scan of `paths` by status reads the whole table (no index covers it), but only the
# operator asks, in a reader's snapshot, which never blocks the daemon in WAL mode.
SELECT_STATUS = f"""
    SELECT {PATH_COLUMNS} FROM paths WHERE status = ?
    ORDER BY updated_at DESC, path DESC LIMIT ?
"""


class Unusable(Exception):  # private: journal.py raises it again as JournalError
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
    """Create `state_dir` with mode 0700 if missing; an existing one keeps its mode."""
    try:
        state_dir.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass  # an existing directory keeps its mode: systemd's StateDirectory= owns it
    except OSError as e:
        raise Unusable(f"cannot create state directory {state_dir}: {e}") from e
    else:
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
            from exrwatchd._journal_sequences import backfill  # it builds on this module

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


def dir_key(directory: str) -> bytes:
    """The `dir` column value for a directory name: no trailing slash, except for "/"."""
    key = os.fsencode(directory)
    return key.rstrip(b"/") or key[:1]


def encode_record(record: dict[str, Any]) -> str:
    # Lone surrogates (undecodable file names) become \udcXX escapes: valid UTF-8, lossless.
    return _json.dumps(record)


# Sink errors can be whole response bodies; the journal keeps enough to diagnose.
MAX_ERROR_CHARS = 4000


def clean_text(text: str) -> str:
    """Fit an error message for a TEXT column, which must be valid UTF-8.

    Messages quote file names, and those may hold lone surrogates.
    """
    text = text[:MAX_ERROR_CHARS]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# Resending everything (Journal.resend_all), when the catalog was lost. Its rows left the outbox
# when they were delivered, so each live path is inspected again: size -1, which no file has,
# makes the next reconciliation see it changed (and a deleted file still gone). By slices of
# the key space, like the purge (SLICE_END), so the daemon's writer never waits long.
_RESEND_PATHS = (
    "UPDATE paths SET size = -1 WHERE status <> 'deleted' AND size IS NOT NULL AND size <> -1"
)
# A replaced catalog may be an old copy with rows of files deleted since: deletions again.
_RESEND_DELETES = """
    INSERT INTO outbox (path, op, state, attempts, next_attempt_at, created_at, updated_at, record)
    SELECT path, 'delete', 'ready', 0, :now, :now, :now, NULL FROM paths
    WHERE status = 'deleted' AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.path = paths.path)
"""
_SLICE, _REST = " AND path > :low AND path <= :high", " AND path > :low"
RESEND_PATHS = {"slice": _RESEND_PATHS + _SLICE, "rest": _RESEND_PATHS + _REST}
RESEND_DELETES = {"slice": _RESEND_DELETES + _SLICE, "rest": _RESEND_DELETES + _REST}
# Sequence summaries are kept whole, so they are queued again as they are.
RESEND_SEQUENCES = """
    INSERT INTO outbox (path, op, state, attempts, next_attempt_at, created_at, updated_at, record)
    SELECT seq, 'sequence', 'ready', 0, :now, :now, :now, summary FROM sequences AS s
    WHERE NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.path = s.seq AND outbox.state = 'ready')
"""
