"""The journal's SQL statements (exrwatchd/journal/store.py is the API; the tables are built
by the migrations in _schema.py, the file is opened in _conn.py).

Paths are BLOBs (`os.fsencode`): TEXT cannot hold the lone surrogates that stand for bytes
of non-UTF-8 file names, and BLOBs compare bytewise, which the directory range scans rely on.
Every dir value must therefore be a BLOB too: SQLite orders all TEXT before all BLOB.
"""

from __future__ import annotations

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

# Per-path order (Journal.claim states the invariant): an entry is superseded, and must
# never be delivered, when its path has a newer one, whatever the state of either. Ids grow
# and are never reused (AUTOINCREMENT), so "newer" is "higher id". Spelled once, for
# statements whose outer table is `outbox` itself.
SUPERSEDED = "EXISTS (SELECT 1 FROM outbox AS n WHERE n.path = outbox.path AND n.id > outbox.id)"

# The last column flags superseded rows (left by an earlier version): claim drops them.
SELECT_CLAIMABLE = f"""
    SELECT id, path, op, record, attempts, created_at, {SUPERSEDED} FROM outbox
    WHERE state = 'ready' AND next_attempt_at <= ?
      AND NOT EXISTS (
          SELECT 1 FROM outbox AS i WHERE i.path = outbox.path AND i.state = 'inflight')
    ORDER BY next_attempt_at, id
    LIMIT ?
"""

MARK_INFLIGHT = "UPDATE outbox SET state = 'inflight', updated_at = ? WHERE id = ?"

DELETE_ENTRY = "DELETE FROM outbox WHERE id = ?"

SELECT_INFLIGHT = "SELECT path, attempts FROM outbox WHERE id = ? AND state = 'inflight'"

# An entry back from the sink (released, retried, rejected) is dropped, not put back, once
# its path has a newer entry.
DROP_IF_SUPERSEDED = f"DELETE FROM outbox WHERE id = ? AND state = 'inflight' AND {SUPERSEDED}"

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

DROP_SUPERSEDED_INFLIGHT = f"DELETE FROM outbox WHERE state = 'inflight' AND {SUPERSEDED}"

RESET_INFLIGHT = """
    UPDATE outbox SET state = 'ready', next_attempt_at = ?, updated_at = ? WHERE state = 'inflight'
"""

# At start: a due time further ahead than the longest backoff was not set by this boot's
# monotonic clock (a reboot restarted it, or an earlier version stored wall-clock times).
DUE_NOW_IF_FAR = (
    "UPDATE outbox SET next_attempt_at = ? WHERE state = 'ready' AND next_attempt_at > ?"
)

DEFER_READY = """
    UPDATE outbox SET next_attempt_at = ?, updated_at = ?
    WHERE state = 'ready' AND next_attempt_at < ?
"""

# `:path IS NULL OR path = :path` keeps one statement for "all" and "one path".
DROP_SUPERSEDED_DEAD = f"""
    DELETE FROM outbox WHERE state = 'dead' AND (:path IS NULL OR path = :path) AND {SUPERSEDED}
"""

REQUEUE_DEAD = """
    UPDATE outbox SET state = 'ready', attempts = 0, next_attempt_at = :due, updated_at = :now
    WHERE state = 'dead' AND (:path IS NULL OR path = :path)
"""

# Tombstones that may go: deleted before :cutoff, with nothing left in the outbox for the path.
PURGEABLE = """
    status = 'deleted' AND updated_at < :cutoff
    AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.path = paths.path)
"""
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
# The third column: live paths marked to be read again (size -1: a rebuilt journal's seeds, a
# lost catalog's resend, `exrwatchd reembed`), which the next reconciliation inspects.
COUNT_PATHS = "SELECT status, count(*), sum(size = -1) FROM paths GROUP BY status"
# A scan of `frames` (no index on status), so only where COUNT_PATHS runs too (Journal.stats).
COUNT_FRAMES_IN_PROGRESS = "SELECT count(*) FROM frames WHERE status = 'in_progress'"
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
    SELECT path, 'delete', 'ready', 0, :due, :now, :now, NULL FROM paths
    WHERE status = 'deleted' AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.path = paths.path)
"""
_SLICE, _REST = " AND path > :low AND path <= :high", " AND path > :low"
RESEND_PATHS = {"slice": _RESEND_PATHS + _SLICE, "rest": _RESEND_PATHS + _REST}
# `exrwatchd reembed`: the same mark, for every live path or those at or under a directory
# (path bytes: `dir` itself, or from `dir/` up to, not including, `dir0`, '0' following '/').
MARK_ALL = _RESEND_PATHS
MARK_UNDER = _RESEND_PATHS + " AND (path = :exact OR (path >= :low AND path < :high))"
RESEND_DELETES = {"slice": _RESEND_DELETES + _SLICE, "rest": _RESEND_DELETES + _REST}
# Sequence summaries are kept whole, so they are queued again as they are.
RESEND_SEQUENCES = """
    INSERT INTO outbox (path, op, state, attempts, next_attempt_at, created_at, updated_at, record)
    SELECT seq, 'sequence', 'ready', 0, :due, :now, :now, summary FROM sequences AS s
    WHERE NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.path = s.seq AND outbox.state = 'ready')
"""
