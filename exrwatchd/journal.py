"""The local SQLite journal: per-path state and the outbox of records waiting for the sink.

A record is committed here (WAL, synchronous=FULL) before any sink sees it and leaves only
when the sink acknowledges it: at-least-once delivery, in order per path. Schema, SQL and
the opening checks live in exrwatchd/_journal_sql.py.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from exrwatchd import _journal_sql as sql
from exrwatchd.errors import ExrwatchdError

Op = Literal["upsert", "delete"]
PathStatus = Literal["complete", "incomplete", "failed", "deleted"]


@dataclass(frozen=True, slots=True)
class FileSig:
    """What a stat says about a file: enough to tell whether it changed."""

    size: int
    mtime_ns: int
    inode: int


@dataclass(frozen=True, slots=True)
class Persist:
    """A finished inspection of `path`, to be recorded and shipped."""

    path: str
    sig: FileSig | None
    header_hash: str | None
    status: PathStatus
    record: dict[str, Any]  # the JSON record (docs/architecture.md)


@dataclass(frozen=True, slots=True)
class Delete:
    """`path` is gone (deleted or moved out of the tree)."""

    path: str


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    path: str
    op: Op
    record: dict[str, Any] | None  # None for deletions
    attempts: int
    created_at: float  # unix seconds


@dataclass(frozen=True, slots=True)
class PathState:
    path: str
    sig: FileSig | None
    header_hash: str | None
    status: PathStatus
    error: str | None
    updated_at: float


class JournalError(ExrwatchdError):
    """The journal cannot be opened or written; the message names the file and what to do."""


@dataclass(frozen=True, slots=True)
class JournalStats:
    """A consistent snapshot of the journal, for `exrwatchd status` and metrics."""

    ready: int
    inflight: int
    dead: int
    outbox_total: int
    paths_by_status: dict[PathStatus, int]  # every PathStatus is a key, zero included
    oldest_ready_age: float | None  # seconds since the oldest ready entry was written
    last_error: str | None  # most recent delivery error still on an outbox entry
    last_error_path: str | None
    last_error_at: float | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An outbox entry that will not be retried until someone requeues it."""

    id: int
    path: str
    op: Op
    attempts: int
    last_error: str | None
    updated_at: float


_LIVE_STATUSES = frozenset({"complete", "incomplete", "failed"})
_ALL_STATUSES: tuple[PathStatus, ...] = ("complete", "incomplete", "failed", "deleted")
_KNOWN_DIRS_PAGE = 1000


class Journal:
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
    """

    def __init__(
        self,
        path: Path,
        *,
        max_attempts: int = 20,
        backoff_initial: float = 1.0,
        backoff_max: float = 300.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError(
                f"need 0 < backoff_initial <= backoff_max, got {backoff_initial}, {backoff_max}"
            )
        self.path = Path(path)
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = _connect(self.path)

    @classmethod
    def open(cls, state_dir: Path, **kw: Any) -> Journal:
        """Open ``<state_dir>/journal.db``, creating `state_dir` (mode 0700) if missing."""
        state_dir = Path(state_dir)
        try:
            state_dir.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            pass  # an existing directory keeps its mode: systemd's StateDirectory= owns it
        except OSError as e:
            raise JournalError(f"cannot create state directory {state_dir}: {e}") from e
        else:
            state_dir.chmod(0o700)  # mkdir's mode is filtered through the umask
        return cls(state_dir / "journal.db", **kw)

    def close(self) -> None:
        """Close the connection; further calls raise JournalError. Closing twice is fine."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    # -- writer thread -------------------------------------------------------------------

    def write(self, items: Sequence[Persist | Delete]) -> None:
        """Record a batch of inspections and deletions in ONE transaction, durable on return.

        Persist upserts the path's row and queues an 'upsert' entry with the record; Delete
        turns the row into a tombstone (if there is one) and queues a 'delete' entry (always:
        the sink may know the path from an earlier life). A new entry replaces the path's
        waiting 'ready' entry and its dead letter, never an 'inflight' one, which it waits
        behind. Within a batch the last item for a path wins.

        Records are encoded before the transaction starts, so an unencodable record (TypeError
        or ValueError) leaves the journal untouched.
        """
        latest: dict[str, Persist | Delete] = {}
        for item in items:
            latest.pop(item.path, None)  # re-inserting moves the path to its last position
            latest[item.path] = item
        if not latest:
            return
        now = self._clock()
        path_rows: list[tuple[object, ...]] = []
        tombstones: list[tuple[float, bytes]] = []
        keys: list[tuple[bytes]] = []
        entries: list[tuple[object, ...]] = []
        for path, item in latest.items():
            key = os.fsencode(path)
            keys.append((key,))
            if isinstance(item, Persist):
                if item.status not in _LIVE_STATUSES:
                    raise ValueError(f"Persist of {path!r} with status {item.status!r}")
                sig = item.sig
                path_rows.append((
                    key, os.path.dirname(key),
                    sig.size if sig else None, sig.mtime_ns if sig else None,
                    sig.inode if sig else None,
                    item.header_hash, item.status, _error_message(item.record), now,
                ))  # fmt: skip
                entries.append((key, "upsert", now, now, now, sql.encode_record(item.record)))
            elif isinstance(item, Delete):
                tombstones.append((now, key))
                entries.append((key, "delete", now, now, now, None))
            else:
                raise TypeError(f"cannot journal {type(item).__name__}")
        with self._transaction("write") as conn:
            conn.executemany(sql.UPSERT_PATH, path_rows)
            conn.executemany(sql.TOMBSTONE_PATH, tombstones)
            conn.executemany(sql.DROP_SUPERSEDED, keys)
            conn.executemany(sql.INSERT_OUTBOX, entries)

    # -- sink thread ---------------------------------------------------------------------

    def claim(self, limit: int) -> list[OutboxEntry]:
        """Mark up to `limit` due 'ready' entries 'inflight' and return them, oldest due first.

        At most one entry per path, and none for a path that already has one in flight.
        Every claimed entry must come back through ack, retry or reject (or reset_inflight
        at the next start).
        """
        if limit <= 0:
            return []
        now = self._clock()
        claimed: list[OutboxEntry] = []
        with self._transaction("claim") as conn:
            seen: set[bytes] = set()
            for id_, key, op, record, attempts, created_at in conn.execute(
                sql.SELECT_CLAIMABLE, (now, limit)
            ).fetchall():
                if key in seen:  # cannot happen while writes keep one ready entry per path
                    continue
                seen.add(key)
                claimed.append(OutboxEntry(
                    id=id_, path=os.fsdecode(key), op=op,
                    record=None if record is None else json.loads(record),
                    attempts=attempts, created_at=created_at,
                ))  # fmt: skip
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
        Entries not in flight are ignored; one whose path meanwhile got a newer 'ready' entry
        is dropped, as that entry supersedes it.
        """
        return self._fail(failures, permanent=False)

    def reject(self, failures: Sequence[tuple[int, str]]) -> list[int]:
        """Permanent failures: 'dead' now with the error. Returns the ids dead-lettered.

        Like retry, entries not in flight are ignored and superseded ones dropped.
        """
        return self._fail(failures, permanent=True)

    def _fail(self, failures: Sequence[tuple[int, str]], *, permanent: bool) -> list[int]:
        if not failures:
            return []
        now = self._clock()
        dead: list[int] = []
        with self._transaction("reject" if permanent else "retry") as conn:
            for id_, message in failures:
                row = conn.execute(sql.SELECT_INFLIGHT, (id_,)).fetchone()
                if row is None:
                    continue
                key, attempts = row
                if conn.execute(sql.HAS_READY, (key,)).fetchone() is not None:
                    conn.execute(sql.DELETE_ENTRY, (id_,))
                    continue
                attempts += 1
                error = sql.clean_text(message)
                if permanent or attempts >= self.max_attempts:
                    conn.execute(sql.SET_DEAD, (attempts, error, now, id_))
                    dead.append(id_)
                else:
                    due = now + self._backoff(attempts)
                    conn.execute(sql.SET_READY_LATER, (attempts, error, due, now, id_))
        return dead

    def _backoff(self, attempts: int) -> float:
        # The exponent is capped so huge max_attempts cannot overflow a float.
        ceiling = min(self.backoff_max, self.backoff_initial * 2.0 ** min(attempts - 1, 64))
        return ceiling * self._rng.uniform(0.5, 1.0)

    def reset_inflight(self) -> int:
        """At start: entries left in flight by a crash become due now. Returns how many.

        An entry whose path got a newer 'ready' entry is dropped instead of requeued.
        """
        now = self._clock()
        with self._transaction("reset_inflight") as conn:
            dropped = conn.execute(sql.DROP_SUPERSEDED_INFLIGHT).rowcount
            reset = conn.execute(sql.RESET_INFLIGHT, (now, now)).rowcount
        return dropped + reset

    def defer_all(self, seconds: float) -> int:
        """Make every 'ready' entry wait at least `seconds` (the sink is down as a whole).

        Returns how many entries were pushed back.
        """
        now = self._clock()
        until = now + seconds
        with self._transaction("defer_all") as conn:
            return conn.execute(sql.DEFER_READY, (until, now, until)).rowcount

    # -- operator (CLI) ------------------------------------------------------------------

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Dead entries, most recently failed first."""
        with self._reading("dead_letters") as conn:
            rows = conn.execute(sql.SELECT_DEAD, (limit,)).fetchall()
        return [
            DeadLetter(id=id_, path=os.fsdecode(key), op=op, attempts=attempts,
                       last_error=error, updated_at=updated_at)
            for id_, key, op, attempts, error, updated_at in rows
        ]  # fmt: skip

    def requeue_dead(self, path: str | None = None) -> int:
        """Dead entries (all, or `path`'s) go back to 'ready', due now with attempts 0.

        Returns how many were requeued. A dead entry whose path has a newer entry is dropped:
        delivering it after the newer one would put old data back in the sink.
        """
        now = self._clock()
        params = {"now": now, "path": None if path is None else os.fsencode(path)}
        with self._transaction("requeue_dead") as conn:
            conn.execute(sql.DROP_SUPERSEDED_DEAD, {"path": params["path"]})
            return conn.execute(sql.REQUEUE_DEAD, params).rowcount

    def purge_tombstones(self, older_than_seconds: float) -> int:
        """Delete tombstones older than that whose path has nothing left in the outbox."""
        cutoff = self._clock() - older_than_seconds
        with self._transaction("purge_tombstones") as conn:
            return conn.execute(sql.PURGE_TOMBSTONES, (cutoff,)).rowcount

    def stats(self) -> JournalStats:
        """Counts and ages, all read from one snapshot."""
        now = self._clock()
        with self._reading("stats", snapshot=True) as conn:
            by_state = dict(conn.execute(sql.COUNT_OUTBOX).fetchall())
            by_status = dict(conn.execute(sql.COUNT_PATHS).fetchall())
            oldest = conn.execute(sql.OLDEST_READY).fetchone()
            error = conn.execute(sql.LAST_ERROR).fetchone()
        return JournalStats(
            ready=by_state.get("ready", 0),
            inflight=by_state.get("inflight", 0),
            dead=by_state.get("dead", 0),
            outbox_total=sum(by_state.values()),
            paths_by_status={s: by_status.get(s, 0) for s in _ALL_STATUSES},
            oldest_ready_age=None if oldest is None else max(0.0, now - oldest[0]),
            last_error=None if error is None else error[1],
            last_error_path=None if error is None else os.fsdecode(error[0]),
            last_error_at=None if error is None else error[2],
        )

    # -- path state (scanner, reconciler) ------------------------------------------------

    def path_state(self, path: str) -> PathState | None:
        """What the journal knows of `path`, tombstones included; None if never seen."""
        with self._reading("path_state") as conn:
            row = conn.execute(sql.SELECT_PATH, (os.fsencode(path),)).fetchone()
        return None if row is None else _path_state(row)

    def paths_in_dir(self, directory: str) -> dict[str, PathState]:
        """Live (non-deleted) paths directly in `directory`, by base name. One indexed query."""
        with self._reading("paths_in_dir") as conn:
            rows = conn.execute(sql.SELECT_DIR, (sql.dir_key(directory),)).fetchall()
        return {os.fsdecode(os.path.basename(row[0])): _path_state(row) for row in rows}

    def known_dirs(self, root: str) -> Iterator[str]:
        """Directories at or under `root` that hold live paths: `root` first, then in byte order.

        Streamed in pages of 1000 (the lock is not held between pages), so a million-file
        tree costs bounded memory; "under" is a byte range, so ``/a/bc`` is not under ``/a/b``.
        """
        key = sql.dir_key(root).rstrip(b"/")  # "/" becomes b"", whose subtree is everything
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

    # -- plumbing ------------------------------------------------------------------------

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JournalError(f"{self.path}: the journal is closed")
        return self._conn

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads first
        # and then writes can fail at once with "database is locked" when another
        # connection wrote in between, since busy_timeout cannot help a stale snapshot.
        with self._lock:
            conn = self._live()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # SQLite may have rolled back on its own
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise JournalError(f"{self.path}: {what} failed: {e}") from e

    @contextmanager
    def _reading(self, what: str, *, snapshot: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._live()
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


def _connect(path: Path) -> sqlite3.Connection:
    try:
        return sql.connect(path)
    except sql.Unusable as e:
        raise JournalError(str(e)) from e.__cause__


def _error_message(record: dict[str, Any]) -> str | None:
    error = record.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return None if message is None else sql.clean_text(str(message))


def _path_state(row: tuple[Any, ...]) -> PathState:
    key, size, mtime_ns, inode, header_hash, status, error, updated_at = row
    sig = None if size is None else FileSig(size=size, mtime_ns=mtime_ns, inode=inode)
    return PathState(
        path=os.fsdecode(key), sig=sig, header_hash=header_hash, status=status,
        error=error, updated_at=updated_at,
    )  # fmt: skip
