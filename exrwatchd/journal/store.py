"""The local SQLite journal: per-path state and the outbox of records waiting for the sink.

A record is committed here (WAL, synchronous=FULL) before any sink sees it and leaves only
when the sink acknowledges it: at-least-once delivery, in order per path. In this package:
the tables are built by _schema.py; the statements live in _sql.py and the encoding of values
in _rows.py; opening, checking and migrating the file, the shared, locked connection and
JournalError in _conn.py; operator and recovery operations in _maintenance.py; identity
and inspecting marks, settled at start, in _startup.py; frame sequences in _sequences.py;
the value types and their mapping to rows in types.py.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from exrwatchd.journal import _hooks as hooks
from exrwatchd.journal import _sequences as frame_sequences
from exrwatchd.journal import _sql as sql
from exrwatchd.journal import types as conv
from exrwatchd.journal._conn import make_state_dir, unusable_as_journal_error
from exrwatchd.journal._hooks import JournalHooks
from exrwatchd.journal._maintenance import JournalMaintenance
from exrwatchd.journal._rows import clean_text, dir_key
from exrwatchd.journal._startup import JournalStartup
from exrwatchd.journal.types import (
    ClaimedEntry,
    Delete,
    JournalStats,
    OutboxEntry,
    PathState,
    PathStatus,
    Persist,
    Rechecking,
    RefreshSequences,
)
from exrwatchd.logs import get_logger

log = get_logger("exrwatchd.journal")

__all__ = ["Journal"]

_KNOWN_DIRS_PAGE = 1000

E = TypeVar("E", OutboxEntry, ClaimedEntry)


class Journal(JournalMaintenance, JournalStartup, JournalHooks):
    """The daemon's durable state: one SQLite file in WAL mode, safe to share between threads.

    Every public method takes one lock around one connection, so the writer, the sink and the
    reconciler threads may call it freely. Another process (the CLI) may open the same file
    at the same time: WAL lets it read while the daemon writes, and write transactions wait
    up to 10 s for each other. The journal must live on a local file system: WAL does not
    work over NFS or SMB.

    Outbox lifecycle: ``write`` adds 'ready' entries; ``claim`` makes them 'inflight';
    ``ack`` deletes them, ``retry`` makes them 'ready' again after a backoff (or 'dead' after
    `max_attempts`), ``reject`` makes them 'dead'. Per path there is at most one 'ready' and
    one 'inflight' entry, and a 'ready' entry is never claimed while its path has one in
    flight: per-path order holds and never two deliveries of one path run at once. Records
    carry the whole state of a path, so a newer entry supersedes older ones that have not
    gone out yet: a dead letter lasts until its path is written again or it is requeued.

    Two clocks: `clock` (wall time) for the times kept for people (created, updated, the
    age of tombstones), `monotonic` for due times (retries, sequence refreshes), so that a
    wall-clock step neither stalls delivery nor cuts backoffs short. A caller that injects
    `clock` alone (a test) drives both with it.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_attempts: int = 20,
        backoff_initial: float = 1.0,
        backoff_max: float = 300.0,
        clock: Callable[[], float] | None = None,
        monotonic: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError(
                f"need 0 < backoff_initial <= backoff_max, got {backoff_initial}, {backoff_max}"
            )
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._clock = clock or time.time
        # CLOCK_MONOTONIC is one clock for the whole host, so the daemon, its sink process
        # and the CLI agree on due times; a reboot restarts it (see reset_inflight).
        self._monotonic = monotonic or clock or time.monotonic
        self._rng = rng if rng is not None else random.Random()
        super().__init__(path)  # opens the file: SharedConnection in _conn.py

    @classmethod
    def open(cls, state_dir: Path, **kw: Any) -> Journal:
        """Open ``<state_dir>/journal.db``, creating `state_dir` (mode 0700) if missing."""
        state_dir = Path(state_dir)
        with unusable_as_journal_error():
            make_state_dir(state_dir)
        return cls(state_dir / "journal.db", **kw)

    # -- writer thread -------------------------------------------------------------------

    def write(self, items: Sequence[Persist | Delete | Rechecking | RefreshSequences]) -> None:
        """Record a batch of inspections and deletions in ONE transaction, durable on return.

        Persist upserts the path's row and queues an 'upsert' entry with the record; Delete
        turns the row into a tombstone (if there is one) and queues a 'delete' entry (always:
        the sink may know the path from an earlier life). A new entry replaces the path's
        waiting 'ready' entry and its dead letter, never an 'inflight' one, which it waits
        behind. Within a batch the last item for a path wins.

        Rechecking marks a frame in progress (only the frame: no path row, nothing queued).
        Frames of sequences are recorded in the same transaction, and sequences whose
        refresh is due (RefreshSequences(force=True): every changed one) are summarised and
        queued as 'sequence' entries; their events are logged after the commit. The events
        the [[hook]]s set by set_hooks want are queued for them in the same transaction.

        Records are encoded before the transaction starts, so an unencodable record (TypeError
        or ValueError) leaves the journal untouched.
        """
        latest: dict[str, Persist | Delete | Rechecking] = {}
        force = False
        for item in items:
            if isinstance(item, RefreshSequences):
                force = force or item.force
                continue
            latest.pop(item.path, None)  # re-inserting moves the path to its last position
            latest[item.path] = item
        now, due = self._clock(), self._monotonic()
        if not latest and not self._sequences_due(due, force=force):
            return  # the daemon's periodic refresh, with nothing due: no write transaction
        verdicts = [i for i in latest.values() if not isinstance(i, Rechecking)]
        params = conv.write_params(verdicts, now, due)
        with self._transaction("write") as conn:
            if verdicts:
                conn.executemany(sql.UPSERT_PATH, params.path_rows)
                conn.executemany(sql.TOMBSTONE_PATH, params.tombstones)
                conn.executemany(sql.DROP_SUPERSEDED, params.keys)
                conn.executemany(sql.INSERT_OUTBOX, params.entries)
            if latest:
                frame_sequences.track(conn, latest.values(), due)
            entries, events = frame_sequences.refresh(conn, now, due, force=force)
            conn.executemany(sql.DROP_SUPERSEDED, [(e[0],) for e in entries])
            conn.executemany(sql.INSERT_OUTBOX, entries)
            hooks.queue(conn, self._hooks, latest.values(), events, now, due)
        for event in events:  # after the commit: they describe what is now durable
            getattr(log, event.level)(event.event, **event.fields())

    def sequences_pending(self) -> int:
        """Sequences with changed frames whose summary has not been refreshed yet."""
        with self._reading("sequences pending") as conn:
            return frame_sequences.pending(conn)

    def _sequences_due(self, now: float, *, force: bool) -> bool:
        with self._reading("sequences due") as conn:
            return frame_sequences.due(conn, now, force=force)

    # -- sink thread ---------------------------------------------------------------------

    def claim(self, limit: int) -> list[OutboxEntry]:
        """Mark up to `limit` due 'ready' entries 'inflight' and return them, oldest due first.

        At most one entry per path, and none for a path that already has one in flight.
        Every claimed entry must come back through ack, retry or reject (or reset_inflight
        at the next start).

        The outbox's invariant, per-path order: only the newest entry of a path (the highest
        id) may ever be delivered. A newer entry supersedes every older one whatever its
        state: a waiting or dead one is deleted when the newer is written, one in flight when
        it comes back (release, retry, reject, reset_inflight, requeue_dead), instead of
        being put back behind the newer one. A superseded entry found here (a journal left
        by an earlier version) is deleted, never claimed.
        """
        return self._claim(limit, conv.outbox_entry)

    def claim_stored(self, limit: int) -> list[ClaimedEntry]:
        """As claim, with each record left as stored: `ClaimedEntry.entry()` decodes it, off
        the journal's write lock."""
        return self._claim(limit, conv.claimed_entry)

    def _claim(self, limit: int, convert: Callable[[tuple[Any, ...]], E]) -> list[E]:
        if limit <= 0:
            return []
        now, due = self._clock(), self._monotonic()
        claimed: list[E] = []
        with self._transaction("claim") as conn:
            seen: set[bytes] = set()
            superseded: list[tuple[int]] = []
            for row in conn.execute(sql.SELECT_CLAIMABLE, (due, limit)).fetchall():
                key = row[1]
                if row[-1]:
                    superseded.append((row[0],))
                    continue
                if key in seen:  # cannot happen while the invariant holds
                    continue
                seen.add(key)
                claimed.append(convert(row[:-1]))
            conn.executemany(sql.DELETE_ENTRY, superseded)
            conn.executemany(sql.MARK_INFLIGHT, [(now, e.id) for e in claimed])
        return claimed

    def ack(self, ids: Sequence[int]) -> None:
        """The sink has the entries: delete them from the outbox."""
        if not ids:
            return
        with self._transaction("ack") as conn:
            conn.executemany(sql.DELETE_ENTRY, [(i,) for i in ids])

    def retry(self, failures: Sequence[tuple[int, str]]) -> list[int]:
        """Transient failures: back to 'ready' after a jittered exponential backoff.

        The n-th failure waits ``min(backoff_max, backoff_initial * 2**(n-1))`` scaled by a
        random factor in [0.5, 1] (so a sink outage does not end in a thundering herd); the
        `max_attempts`-th makes the entry 'dead'. Returns the ids that were dead-lettered.
        Entries not in flight are ignored; one whose path meanwhile got a newer entry is
        dropped, as that entry supersedes it (see claim).
        """
        return self._fail(failures, permanent=False)

    def release(self, ids: Sequence[int], error: str, delay: float = 0.0) -> int:
        """The sink as a whole was unavailable: the entries go back to 'ready', due after
        `delay`, with `error` noted but no attempt counted. An outage of hours must not turn
        every waiting entry into a dead letter; the sink loop backs off on its own.
        Entries whose path meanwhile got a newer entry are dropped instead (see claim).
        Returns how many were in flight (and went back or were dropped)."""
        if not ids:
            return 0
        now, due = self._clock(), self._monotonic()
        params = [(clean_text(error), due + delay, now, i) for i in ids]
        with self._transaction("release") as conn:
            dropped = conn.executemany(sql.DROP_IF_SUPERSEDED, [(i,) for i in ids]).rowcount
            return dropped + conn.executemany(sql.RELEASE_INFLIGHT, params).rowcount

    def reject(self, failures: Sequence[tuple[int, str]]) -> list[int]:
        """Permanent failures: 'dead' now with the error. Returns the ids dead-lettered.

        Like retry, entries not in flight are ignored and superseded ones dropped.
        """
        return self._fail(failures, permanent=True)

    def _fail(self, failures: Sequence[tuple[int, str]], *, permanent: bool) -> list[int]:
        if not failures:
            return []
        now, due_now = self._clock(), self._monotonic()
        dead: list[int] = []
        with self._transaction("reject" if permanent else "retry") as conn:
            for id_, message in failures:
                row = conn.execute(sql.SELECT_INFLIGHT, (id_,)).fetchone()
                if row is None:
                    continue
                _, attempts = row
                if conn.execute(sql.DROP_IF_SUPERSEDED, (id_,)).rowcount:
                    continue
                attempts += 1
                error = clean_text(message)
                if permanent or attempts >= self.max_attempts:
                    conn.execute(sql.SET_DEAD, (attempts, error, now, id_))
                    dead.append(id_)
                else:
                    due = due_now + self._backoff(attempts)
                    conn.execute(sql.SET_READY_LATER, (attempts, error, due, now, id_))
        return dead

    def _backoff(self, attempts: int) -> float:
        # The exponent is capped so huge max_attempts cannot overflow a float.
        ceiling = min(self.backoff_max, self.backoff_initial * 2.0 ** min(attempts - 1, 64))
        return ceiling * self._rng.uniform(0.5, 1.0)

    def reset_inflight(self) -> int:
        """At start: entries left in flight by a crash become due now. Returns how many.

        An entry whose path got a newer entry is dropped instead of requeued (see claim).
        Due times further ahead than the longest backoff (or a sequence refresh delay)
        become now: they come from before a reboot, which restarts the monotonic clock, or
        from an earlier version, which used the wall clock.
        """
        now, due = self._clock(), self._monotonic()
        with self._transaction("reset_inflight") as conn:
            dropped = conn.execute(sql.DROP_SUPERSEDED_INFLIGHT).rowcount
            reset = conn.execute(sql.RESET_INFLIGHT, (due, now)).rowcount
            conn.execute(sql.DUE_NOW_IF_FAR, (due, due + self.backoff_max))
            frame_sequences.due_now_if_far(conn, due)
            hooks.reset(conn, now, due, due + self.backoff_max)
        return dropped + reset

    def defer_all(self, seconds: float) -> int:
        """Make every 'ready' entry wait at least `seconds` (the sink is down as a whole).

        Returns how many entries were pushed back.
        """
        now = self._clock()
        until = self._monotonic() + seconds
        with self._transaction("defer_all") as conn:
            return conn.execute(sql.DEFER_READY, (until, now, until)).rowcount

    # -- operator (CLI) ------------------------------------------------------------------

    def paths_with_status(self, status: PathStatus, limit: int = 100) -> list[PathState]:
        """Paths whose last recorded state is `status`, most recently updated first.

        For the operator: 'failed' lists the files that could not be read (recorded as
        such, not dead letters), 'incomplete' those that never became whole.
        """
        if status not in conv.ALL_STATUSES:
            raise ValueError(f"unknown path status {status!r}")
        with self._reading("paths_with_status") as conn:
            rows = conn.execute(sql.SELECT_STATUS, (status, limit)).fetchall()
        return [conv.path_state(row) for row in rows]

    def stats(self, *, paths: bool = True) -> JournalStats:
        """Counts and ages, all read from one snapshot.

        `paths=False` skips counting the paths and frames tables (full scans: ~0.3 s at a
        million files, holding the reading connection), for the daemon's own periodic
        status, which only needs the outbox and the hooks; its paths_by_status and
        frames_in_progress then read zero.
        """
        now = self._clock()
        with self._reading("stats", snapshot=True) as conn:
            by_state = dict(conn.execute(sql.COUNT_OUTBOX).fetchall())
            path_rows = conn.execute(sql.COUNT_PATHS).fetchall() if paths else []
            oldest = conn.execute(sql.OLDEST_READY).fetchone()
            error = conn.execute(sql.LAST_ERROR).fetchone()
            frames = conn.execute(sql.COUNT_FRAMES_IN_PROGRESS).fetchone()[0] if paths else 0
            hook_rows = hooks.counts(conn)
        return conv.journal_stats(now, by_state, path_rows, oldest, error, frames, hook_rows)

    def sequences(self) -> list[dict[str, Any]]:
        """The last summary of every frame sequence (sequence records), by directory."""
        with self._reading("sequences") as conn:
            return frame_sequences.summaries(conn)

    # -- path state (scanner, reconciler) ------------------------------------------------

    def path_state(self, path: str) -> PathState | None:
        """What the journal knows of `path`, tombstones included; None if never seen."""
        with self._reading("path_state") as conn:
            row = conn.execute(sql.SELECT_PATH, (os.fsencode(path),)).fetchone()
        return None if row is None else conv.path_state(row)

    def paths_in_dir(self, directory: str) -> dict[str, PathState]:
        """Live (non-deleted) paths directly in `directory`, by base name. One indexed query."""
        with self._reading("paths_in_dir") as conn:
            rows = conn.execute(sql.SELECT_DIR, (dir_key(directory),)).fetchall()
        return {os.fsdecode(os.path.basename(row[0])): conv.path_state(row) for row in rows}

    def known_dirs(self, root: str) -> Iterator[str]:
        """Directories at or under `root` that hold live paths: `root` first, then in byte order.

        Streamed in pages of 1000 (the lock is not held between pages), so a million-file
        tree costs bounded memory; "under" is a byte range, so ``/a/bc`` is not under ``/a/b``.
        """
        key = dir_key(root).rstrip(b"/")  # "/" becomes b"", whose subtree is everything
        with self._reading("known_dirs") as conn:
            at_root = bool(key) and conn.execute(sql.HAS_LIVE_DIR, (key,)).fetchone() is not None
        if at_root:
            yield os.fsdecode(key)
        # Everything that starts with key + "/" sorts in [key + "/", key + "0"): "0" follows "/".
        params = {"low": key + b"/", "high": key + b"0", "limit": _KNOWN_DIRS_PAGE}
        while True:
            with self._reading("known_dirs") as conn:
                page = [found for (found,) in conn.execute(sql.SUBDIRS, params)]
            yield from map(os.fsdecode, page)
            if len(page) < _KNOWN_DIRS_PAGE:
                return
            params["low"] = page[-1] + b"\x00"
