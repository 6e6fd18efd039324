"""The journal's tables, as the migrations that build them (one tuple per version).

Kept apart from the statements (_sql.py): a migration is frozen once released, even
where it repeats DDL that a later version replaces (version 2 rebuilds the outbox).
Paths are BLOBs (`os.fsencode`); see _sql.py.
"""

from __future__ import annotations

SCHEMA_VERSION = 5

# One tuple of statements per version: MIGRATIONS[v] takes a journal from v - 1 to v.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE paths (
            path        BLOB PRIMARY KEY,
            dir         BLOB NOT NULL,
            size        INTEGER,
            mtime_ns    INTEGER,
            inode       INTEGER,
            header_hash TEXT,
            status      TEXT NOT NULL
                        CHECK (status IN ('complete', 'incomplete', 'failed', 'deleted')),
            error       TEXT,
            updated_at  REAL NOT NULL
        ) WITHOUT ROWID
        """,
        # Partial: scanners and reconciliation only ever ask for live paths, and tombstones
        # should not bloat the index they walk.
        "CREATE INDEX paths_dir ON paths (dir) WHERE status <> 'deleted'",
        # AUTOINCREMENT so an id is never reused: a late ack for a deleted entry can then
        # never remove a newer one. `record` comes last so that scans reading the small
        # columns do not pull in its overflow pages.
        """
        CREATE TABLE outbox (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            path            BLOB NOT NULL,
            op              TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
            state           TEXT NOT NULL CHECK (state IN ('ready', 'inflight', 'dead')),
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_error      TEXT,
            created_at      REAL NOT NULL,
            updated_at      REAL NOT NULL,
            record          TEXT
        )
        """,
        # Index order (state, next_attempt_at, rowid) is exactly the claim order, so a claim
        # reads `limit` index entries instead of sorting the whole backlog.
        "CREATE INDEX outbox_due ON outbox (state, next_attempt_at)",
        "CREATE INDEX outbox_path ON outbox (path, state)",
        "CREATE INDEX outbox_errors ON outbox (updated_at) WHERE last_error IS NOT NULL",
    ),
}

# Version 2: frame sequences. `frames` holds one row per journaled path that is a frame of
# a sequence (deleted with its path), `sequences` the last summary of each sequence, and the
# outbox learns the op 'sequence' (SQLite cannot alter a CHECK constraint, so the table is
# rebuilt, keeping its ids and its AUTOINCREMENT high-water mark).
MIGRATIONS[2] = (
    """
    CREATE TABLE frames (
        path    BLOB PRIMARY KEY,
        seq     BLOB NOT NULL,
        frame   INTEGER NOT NULL,
        status  TEXT NOT NULL,
        layout  TEXT
    ) WITHOUT ROWID
    """,
    "CREATE INDEX frames_seq ON frames (seq, frame)",
    """
    CREATE TABLE sequences (
        seq     BLOB PRIMARY KEY,
        summary TEXT NOT NULL
    ) WITHOUT ROWID
    """,
    # Sequences whose frames changed and whose summary is due for a refresh at due_at.
    """
    CREATE TABLE sequences_due (
        seq     BLOB PRIMARY KEY,
        due_at  REAL NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE outbox_v2 (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        path            BLOB NOT NULL,
        op              TEXT NOT NULL CHECK (op IN ('upsert', 'delete', 'sequence')),
        state           TEXT NOT NULL CHECK (state IN ('ready', 'inflight', 'dead')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error      TEXT,
        created_at      REAL NOT NULL,
        updated_at      REAL NOT NULL,
        record          TEXT
    )
    """,
    "INSERT INTO outbox_v2 SELECT * FROM outbox",
    "DELETE FROM sqlite_sequence WHERE name = 'outbox_v2'",
    "INSERT INTO sqlite_sequence (name, seq) "
    "SELECT 'outbox_v2', seq FROM sqlite_sequence WHERE name = 'outbox'",
    "DROP TABLE outbox",
    "ALTER TABLE outbox_v2 RENAME TO outbox",
    "CREATE INDEX outbox_due ON outbox (state, next_attempt_at)",
    "CREATE INDEX outbox_path ON outbox (path, state)",
    "CREATE INDEX outbox_errors ON outbox (updated_at) WHERE last_error IS NOT NULL",
)

# Version 3 (issue 12, cases 7 and 11). `identity`: one row, made with the journal, whose id
# the catalog and status.json record, so that a journal emptied or deleted while the daemon
# was stopped is not taken for the one they were written from; `replaces` names the journal
# a rebuilt one stands in for (Journal.rebuild). `inspecting`: the files a native reader
# (OpenImageIO, in the pixel lane) is reading (`reading` = 1), with their signature, and how
# many times the process died while reading them (Journal.mark_inspecting). An existing
# journal gets an id here, which the catalog then records as its own.
MIGRATIONS[3] = (
    """
    CREATE TABLE identity (
        one         INTEGER PRIMARY KEY CHECK (one = 1),
        journal_id  TEXT NOT NULL,
        created_at  REAL NOT NULL,
        replaces    TEXT
    )
    """,
    # julianday, not unixepoch(): EL8's SQLite 3.26 must be able to migrate the file too.
    "INSERT INTO identity (one, journal_id, created_at) "
    "VALUES (1, lower(hex(randomblob(16))), (julianday('now') - 2440587.5) * 86400.0)",
    """
    CREATE TABLE inspecting (
        path        BLOB PRIMARY KEY,
        size        INTEGER,
        mtime_ns    INTEGER,
        inode       INTEGER,
        started_at  REAL NOT NULL,
        reading     INTEGER NOT NULL DEFAULT 1,
        deaths      INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID
    """,
)

# Version 4 (issue 15, hooks): `hook_outbox`, one row per (hook, event), written in the same
# transaction as the path or sequence change that caused the event (Journal.write) and
# delivered by the hook loop. Apart from the outbox: events are not the state of a path,
# nothing supersedes them, and each must reach its hook. `hook` is the hook's name, `subject`
# the file path or sequence the event is about, `payload` the event as sent (JSON, with its
# id). Due times on the monotonic clock, like the outbox's.
MIGRATIONS[4] = (
    """
    CREATE TABLE hook_outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        hook            TEXT NOT NULL,
        event           TEXT NOT NULL,
        subject         BLOB NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('ready', 'inflight', 'dead')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error      TEXT,
        created_at      REAL NOT NULL,
        updated_at      REAL NOT NULL,
        payload         TEXT NOT NULL
    )
    """,
    "CREATE INDEX hook_outbox_due ON hook_outbox (state, next_attempt_at)",
)

# Version 5 (issue 13): the outbox's file records are stored zlib-compressed (BLOBs; see
# _rows.encode_record), sequence summaries still as JSON text, and rows written before stay
# as they are: _rows.decode_record reads both. Nothing to change in the file, but the number
# makes an older exrwatchd refuse the journal instead of failing on a record it cannot read.
MIGRATIONS[5] = ()
