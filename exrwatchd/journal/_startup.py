"""What the journal settles at start, before anything else writes, and the marks that make
that possible: whose journal this is, and which files killed the process that read them.

Identity (issue 12, case 7): every journal gets a random id when it is made (migration 3 in
_schema.py); the catalog and status.json record it. A journal.db emptied or deleted while the
daemon was stopped opens as a new journal with a new id, which is how the daemon tells it
from the one the catalog was written from, and `rebuild` stands it in for the lost one.

Inspecting marks (issue 12, case 11): before a native reader (OpenImageIO) opens a file, the
pixel lane marks it here, durably, and unmarks it when the read returns. A mark found at
start means the process died during that read: a crash in native code, the OOM killer, or
a kill -9 that had nothing to do with the file; each counts one death against the file's
signature, and the lane gives up on a file at its second (pixel_lane.record_crashed).

A mixin of Journal (store.py), like _maintenance.py; its statements live here, beside it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from functools import cached_property

from exrwatchd.filesig import FileSig
from exrwatchd.journal._conn import SharedConnection

SELECT_IDENTITY = "SELECT journal_id, replaces FROM identity"
SET_REPLACES = "UPDATE identity SET replaces = ?"
HOLDS_ANYTHING = """
    SELECT EXISTS (SELECT 1 FROM paths) OR EXISTS (SELECT 1 FROM outbox)
        OR EXISTS (SELECT 1 FROM sequences)
"""
# Size -1, which no file has: the next reconciliation sees every seeded path as changed
# (inspected again) or gone (deleted from the catalog), like Journal.resend_all's marks.
SEED_PATH = """
    INSERT INTO paths (path, dir, size, mtime_ns, inode, header_hash, status, error, updated_at)
    VALUES (?, ?, -1, 0, 0, NULL, 'complete', NULL, ?)
    ON CONFLICT (path) DO NOTHING
"""
# A mark keeps the deaths counted against the same signature; a changed file starts over.
MARK = """
    INSERT INTO inspecting (path, size, mtime_ns, inode, started_at, reading, deaths)
    VALUES (?, ?, ?, ?, ?, 1, 0)
    ON CONFLICT (path) DO UPDATE SET
        deaths = CASE WHEN size IS excluded.size AND mtime_ns IS excluded.mtime_ns
                      AND inode IS excluded.inode THEN deaths ELSE 0 END,
        size = excluded.size, mtime_ns = excluded.mtime_ns, inode = excluded.inode,
        started_at = excluded.started_at, reading = 1
"""
UNMARK = "DELETE FROM inspecting WHERE path = ?"
COUNT_DEATHS = "UPDATE inspecting SET deaths = deaths + 1, reading = 0 WHERE reading = 1"
SELECT_FATAL = """
    SELECT path, size, mtime_ns, inode FROM inspecting WHERE deaths >= ? ORDER BY path
"""
CLEAR_READING = "DELETE FROM inspecting WHERE reading = 1"


class JournalStartup(SharedConnection):
    _clock: Callable[[], float]

    # -- identity --------------------------------------------------------------------------

    @cached_property
    def journal_id(self) -> str:
        """This journal's identity: 32 hex characters, fixed when the journal was made."""
        return self.identity()[0]

    def identity(self) -> tuple[str, str | None]:
        """(journal_id, replaces): replaces is the id of the lost journal this one was
        rebuilt in place of, whose id the catalog may still record; None if none."""
        with self._reading("identity") as conn:
            journal_id, replaces = conn.execute(SELECT_IDENTITY).fetchone()
        return journal_id, replaces

    def holds_nothing(self) -> bool:
        """No path, outbox entry or sequence: a journal just made, or emptied."""
        with self._reading("holds_nothing") as conn:
            return not conn.execute(HOLDS_ANYTHING).fetchone()[0]

    def rebuild(self, paths: Iterable[str], replaces: str | None) -> int:
        """Stand in for a lost journal: `paths` (what the catalog holds) become known paths,
        which the start-up reconciliation then compares with the disk by its usual rules:
        a file still there is inspected again, one gone (ENOENT, under a root that is
        mounted) is deleted from the catalog. Returns how many paths were seeded.

        One transaction, which also records `replaces`: a crash leaves either the empty
        journal (rebuilt again at the next start) or the whole rebuild, never half of it.
        """
        now = self._clock()
        seeded = 0
        with self._transaction("rebuild") as conn:
            for path in paths:
                key = os.fsencode(path)
                seeded += conn.execute(SEED_PATH, (key, os.path.dirname(key), now)).rowcount
            conn.execute(SET_REPLACES, (replaces,))
        return seeded

    # -- inspecting marks ------------------------------------------------------------------

    def mark_inspecting(self, path: str, sig: FileSig | None) -> None:
        """`path` (as `sig` says it is) is about to be read by native code; durable on
        return, so that a read that kills the process is known at the next start."""
        size, mtime_ns, inode = sig if sig is not None else (None, None, None)
        with self._transaction("mark_inspecting") as conn:
            conn.execute(MARK, (os.fsencode(path), size, mtime_ns, inode, self._clock()))

    def unmark_inspecting(self, path: str) -> None:
        """The native read of `path` returned: the process survived it (deaths forgotten)."""
        with self._transaction("unmark_inspecting") as conn:
            conn.execute(UNMARK, (os.fsencode(path),))

    def count_deaths(self, fatal: int) -> list[tuple[str, FileSig | None]]:
        """At start: every file marked as being read counts one death (the process died
        while reading it); returns the files with `fatal` deaths or more, against one
        signature. Repeatable: a file counts once per death, however often this is called."""
        with self._transaction("count_deaths") as conn:
            conn.execute(COUNT_DEATHS)
            rows = conn.execute(SELECT_FATAL, (fatal,)).fetchall()
        return [(os.fsdecode(key), None if size is None else FileSig(size, mtime_ns, inode))
                for key, size, mtime_ns, inode in rows]  # fmt: skip

    def forget_inspecting(self, paths: Iterable[str]) -> None:
        """Drop the marks of `paths` (their crashed_inspector records are journaled)."""
        with self._transaction("forget_inspecting") as conn:
            conn.executemany(UNMARK, [(os.fsencode(p),) for p in paths])

    def clear_inspecting(self) -> int:
        """At a clean stop: drop the marks of reads in progress, which did not crash (given
        up on at shutdown). Deaths counted before stay. Returns how many were dropped."""
        with self._transaction("clear_inspecting") as conn:
            return conn.execute(CLEAR_READING).rowcount
