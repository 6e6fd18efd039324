"""The journal's operator and recovery operations: dead letters, tombstone purges, and
sending everything again when the catalog lost rows.

A mixin of Journal (store.py), kept apart because the daemon's hot path never
calls it; every operation runs in short transactions, safe next to a running daemon.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from exrwatchd.journal import _sql as sql
from exrwatchd.journal import types as conv
from exrwatchd.journal._conn import SharedConnection
from exrwatchd.journal.types import DeadLetter

# Tombstones are purged a slice of the path key space at a time, each slice in its own short
# transaction, so that the daemon's writer never waits long behind an operator's purge.
PURGE_STEP = 5000


class JournalMaintenance(SharedConnection):
    _clock: Callable[[], float]
    _monotonic: Callable[[], float]  # due times (Journal)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Dead entries, most recently failed first."""
        with self._reading("dead_letters") as conn:
            rows = conn.execute(sql.SELECT_DEAD, (limit,)).fetchall()
        return [conv.dead_letter(row) for row in rows]

    def requeue_dead(self, path: str | None = None) -> int:
        """Dead entries (all, or `path`'s) go back to 'ready', due now with attempts 0.

        Returns how many were requeued. A dead entry whose path has a newer entry is dropped:
        delivering it after the newer one would put old data back in the sink (Journal.claim).
        """
        params = {"now": self._clock(), "due": self._monotonic(),
                  "path": None if path is None else os.fsencode(path)}  # fmt: skip
        with self._transaction("requeue_dead") as conn:
            conn.execute(sql.DROP_SUPERSEDED_DEAD, {"path": params["path"]})
            return conn.execute(sql.REQUEUE_DEAD, params).rowcount

    def purge_tombstones(self, older_than_seconds: float, *, step: int = PURGE_STEP) -> int:
        """Delete tombstones older than that whose path has nothing left in the outbox.

        In many short transactions instead of one long one: walks the paths in key order,
        `step` at a time, each slice in its own transaction, releasing the lock in between:
        safe next to a running daemon on any journal size.
        The cutoff is fixed at the start. Returns how many tombstones were deleted.
        """
        if step < 1:
            raise ValueError(f"step must be at least 1, not {step}")
        params: dict[str, Any] = {
            "cutoff": self._clock() - older_than_seconds, "low": b"", "skip": step - 1,
        }  # fmt: skip
        purged = 0
        while True:
            with self._transaction("purge_tombstones") as conn:
                row = conn.execute(sql.SLICE_END, params).fetchone()
                if row is None:  # the last slice: everything after `low`
                    return purged + conn.execute(sql.PURGE_REST, params).rowcount
                params["high"] = row[0]
                purged += conn.execute(sql.PURGE_SLICE, params).rowcount
            params["low"] = params.pop("high")

    def count_purgeable_tombstones(self, older_than_seconds: float) -> int:
        """How many tombstones purge_tombstones(older_than_seconds) would delete now."""
        cutoff = self._clock() - older_than_seconds
        with self._reading("count_purgeable_tombstones") as conn:
            return int(conn.execute(sql.COUNT_PURGEABLE, {"cutoff": cutoff}).fetchone()[0])

    # -- inspecting again ----------------------------------------------------------------

    def mark_for_inspection(self, directories: Sequence[str] = ()) -> int:
        """Have the next reconciliation inspect these live files again, as if they had
        changed: every one, or those at or under `directories` (absolute paths). Returns how
        many were marked. For `exrwatchd reembed`: a file inspected again gets the current
        embeddings, and the sinks replace its rows. One transaction per directory; a daemon
        writing meanwhile waits for it as for any lock on the journal."""
        with self._transaction("mark_for_inspection") as conn:
            if not directories:
                return int(conn.execute(sql.MARK_ALL).rowcount)
            marked = 0
            for directory in directories:
                key = os.fsencode(directory).rstrip(b"/")
                if not key:  # the root: everything
                    return int(conn.execute(sql.MARK_ALL).rowcount)
                marked += conn.execute(sql.MARK_UNDER, {
                    "exact": key, "low": key + b"/", "high": key + b"0"
                }).rowcount  # fmt: skip
            return marked

    # -- a lost catalog ------------------------------------------------------------------

    def resend_all(self, *, deletes: bool = False, step: int = PURGE_STEP) -> int:
        """The catalog lost rows this journal counts as delivered: send everything again.

        Every live path is marked so that the next reconciliation (the caller requests it)
        inspects it again; every sequence summary is queued again; with `deletes` (a catalog
        replaced, maybe by an old copy) so is the deletion of every tombstone. Returns how
        many paths were marked. In short transactions, like purge_tombstones, and
        durable (synchronous=FULL) even on an acknowledgements_only connection.
        """
        params: dict[str, Any] = {"now": self._clock(), "due": self._monotonic(), "low": b"",
                                  "skip": step - 1}  # fmt: skip
        with self._locked("resend_all") as conn:
            sync = int(conn.execute("PRAGMA synchronous").fetchone()[0])
            conn.execute("PRAGMA synchronous = FULL")
        marked = 0
        try:
            while True:
                with self._transaction("resend_all") as conn:
                    row = conn.execute(sql.SLICE_END, params).fetchone()
                    part = "rest" if row is None else "slice"
                    params["high"] = None if row is None else row[0]
                    marked += conn.execute(sql.RESEND_PATHS[part], params).rowcount
                    if deletes:
                        conn.execute(sql.RESEND_DELETES[part], params)
                    if row is None:
                        conn.execute(sql.RESEND_SEQUENCES, params)
                        return marked
                params["low"] = params["high"]
        finally:
            with self._locked("resend_all") as conn:
                conn.execute(f"PRAGMA synchronous = {sync}")
