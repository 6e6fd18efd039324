"""The embedded default catalog: `<state_dir>/catalog.db`, SQLite, readable with `sqlite3`.

Guarantee: an entry reported DELIVERED is committed and durable (WAL, ``synchronous=FULL``).
Writes are idempotent per path: the files row remembers the inspection_id it was written
from, so a replayed entry changes nothing, and a newer record for the same path updates or
replaces that path's rows, never adds a second row set. With the journal's at-least-once
delivery that gives exactly one current row set per path (docs/catalog.md).

The tables, columns and their order come from the Arrow schemas (`exrwatchd.catalog.schema`):
string -> TEXT, integers and bool -> INTEGER, floats -> REAL, timestamps -> TEXT
(``2026-01-31T12:00:00.000000Z``: sorts as time and reads as time), vectors -> BLOB of
little-endian float32. The DDL is derived from them in exrwatchd/sinks/_sqlite_catalog.py,
never written by hand, as are the value mapping and the statements. Tables are plain (not
STRICT) so that the sqlite3 3.26 shipped with EL8 can still read the file; types are checked
when the rows are built instead.

Per batch: one transaction (``BEGIN IMMEDIATE``), one SAVEPOINT per entry.

- a malformed entry (RecordError, a constraint violation, a value SQLite cannot store) is
  rolled back to its savepoint and REJECTED alone; the rest of the batch commits;
- a transient SQLite error (busy/locked, disk full, I/O error, out of memory) rolls the whole
  transaction back: every entry not already rejected is RETRIED;
- an error that means the catalog itself is broken (corrupt, read-only, a table missing)
  rolls back and raises SinkUnavailable;
- any other exception while applying an entry (a bug) rolls that entry back and RETRIES it,
  together with every later entry of the same path in the batch, so per-path order holds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exrwatchd._wal import Checkpointer
from exrwatchd.catalog import (
    CATALOG_VERSION,
    TABLES,
    FileValues,
    RecordError,
    build_values,
    file_id_for,
    normalize_path,
)
from exrwatchd.catalog.sequence_rows import sequence_id_for, sequence_row
from exrwatchd.journal import OutboxEntry
from exrwatchd.logs import get_logger
from exrwatchd.sinks._catalog_errors import classify, describe, is_transient
from exrwatchd.sinks._catalog_file import Identity, JournalRecord, LostCatalog, identity_of
from exrwatchd.sinks._catalog_open import prepare_catalog
from exrwatchd.sinks._sqlite_catalog import (
    apply_sequences,
    delete_file,
    py_row,
    upsert,
    upsert_batch,
)
from exrwatchd.sinks.base import Delivery, Outcome, SinkUnavailable

__all__ = ["CATALOG_FILENAME", "CATALOG_VERSION", "LocalSink", "is_transient"]

CATALOG_FILENAME = "catalog.db"

_log = get_logger("exrwatchd.sinks.local")

# --------------------------------------------------------------------------- the sink


#: Page cache of the catalog connection (measured at 20,000 files: 650 us per file with the
#: default 2 MB, 550 with 16 MB, 490 with 32 MB; 16 keeps a burst within the 300 MB RSS
#: budget, docs/benchmarks.md). It fills only as the catalog grows.
CACHE_KIB = 16 * 1024


class LocalSink(LostCatalog, JournalRecord):
    """The local SQLite catalog (see the module docstring for the guarantee).

    `path` is the database file, or a directory (the state dir) that gets `catalog.db`.
    `busy_timeout` is how long a write waits for another connection's lock (then RETRY);
    `min_free_bytes` is the free space below which `health` reports a problem.
    Thread-safe: one lock serializes the connection.
    """

    name = "local"

    def __init__(
        self, path: Path | str, *, busy_timeout: float = 5.0, min_free_bytes: int = 64 << 20
    ) -> None:
        p = Path(path)
        self.path = p / CATALOG_FILENAME if p.is_dir() else p
        self.busy_timeout = busy_timeout
        self.min_free_bytes = min_free_bytes
        self._conn: sqlite3.Connection | None = None
        self._identity: Identity | None = None  # of the file `_conn` has open (LostCatalog)
        self._lost: str | None = None
        self._lock = threading.Lock()
        self._checkpointer: Checkpointer | None = None

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Create or open the catalog (mode 0600, WAL, synchronous=FULL) and its tables."""
        with self._lock:
            if self._conn is not None:
                return
            try:
                identity = self._create_file()
                conn = sqlite3.connect(
                    self.path, timeout=self.busy_timeout, isolation_level=None,
                    check_same_thread=False,
                )  # fmt: skip
            except (OSError, sqlite3.Error) as exc:
                raise SinkUnavailable(f"cannot open catalog {self.path}: {exc}") from exc
            try:
                prepare_catalog(conn, self.path, CACHE_KIB)
            except BaseException:
                conn.close()
                raise
            self._conn, self._identity = conn, identity
            self._checkpointer = Checkpointer(self.path, name="catalog-checkpoint")

    def _create_file(self) -> Identity:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            # The -wal and -shm files take the database file's mode.
            os.fchmod(fd, 0o600)
            return identity_of(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.close()
        if conn is not None:
            conn.close()

    def __enter__(self) -> LocalSink:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def health(self) -> str | None:
        if self._conn is None:
            return "catalog is not open"
        lost = self.lost()
        if lost is not None:
            return f"catalog {self.path} was {lost} while open"
        try:
            with self._lock:
                conn = self._require()
                for table in TABLES:
                    conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchall()
        except (sqlite3.Error, SinkUnavailable) as exc:
            return f"catalog {self.path} unusable: {exc}"
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError as exc:
            return f"cannot stat {self.path.parent}: {exc.strerror}"
        if free < self.min_free_bytes:
            return f"{self.path.parent} has only {free} bytes free"
        return None

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise SinkUnavailable(f"catalog {self.path} is not open")
        return self._conn

    # ------------------------------------------------------------------ writing

    def write(self, batch: Sequence[OutboxEntry]) -> list[Delivery]:
        """Apply `batch` in one transaction; one Delivery per entry, in order.

        Fast path first: the whole batch with one statement per table. Should any entry
        make that fail for a reason other than a transient one, the batch is applied again
        entry by entry, each in its own savepoint, so only the bad entry is rejected.
        """
        if not batch:
            return []
        fast = self._write_fast(batch)
        if fast is not None:
            return fast
        return self._write_each(batch)

    def _write_fast(self, batch: Sequence[OutboxEntry]) -> list[Delivery] | None:
        outcome: dict[int, Delivery] = {}
        work: list[tuple[str, FileValues | None]] = []
        seen: set[str] = set()
        sequences: list[tuple[str, dict[str, Any] | None]] = []
        for entry in batch:
            if entry.op == "sequence":
                try:
                    sequences.append(_sequence_work(entry))
                except RecordError as exc:
                    outcome[entry.id] = Delivery(entry.id, Outcome.REJECT, str(exc))
                continue
            try:
                file_id, rows = _prepare(entry)
            except RecordError as exc:
                outcome[entry.id] = Delivery(entry.id, Outcome.REJECT, str(exc))
                continue
            except Exception:
                return None  # a bug: the per-entry path isolates and reports it
            if file_id in seen:
                return None  # two entries for one file: keep their order, one by one
            seen.add(file_id)
            work.append((file_id, rows))
        with self._lock:
            conn = self._require()
            try:
                conn.execute("BEGIN IMMEDIATE")
                upsert_batch(conn, work)
                apply_sequences(conn, sequences)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                if not is_transient(exc):
                    return None
                reason = f"transient: {describe(exc)}"
                return [outcome.get(e.id) or Delivery(e.id, Outcome.RETRY, reason)
                        for e in batch]  # fmt: skip
            except Exception:
                # Not SQLite's: a value it cannot bind (UnicodeEncodeError, OverflowError) or
                # a bug. Entry by entry, the culprit is found and isolated.
                _rollback(conn)
                return None
            except BaseException:
                _rollback(conn)
                raise
        self._committed()
        return [outcome.get(e.id) or Delivery(e.id, Outcome.DELIVERED) for e in batch]

    def _write_each(self, batch: Sequence[OutboxEntry]) -> list[Delivery]:
        with self._lock:
            conn = self._require()
            deliveries: list[Delivery] = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                held: set[str] = set()  # paths with an entry to retry: later ones wait
                for entry in batch:
                    deliveries.append(self._apply_one(conn, entry, held))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                if not is_transient(exc):
                    raise SinkUnavailable(f"catalog {self.path}: {describe(exc)}") from exc
                reason = f"transient: {describe(exc)}"
                rejected = {d.entry_id: d for d in deliveries if d.outcome is Outcome.REJECT}
                return [rejected.get(e.id) or Delivery(e.id, Outcome.RETRY, reason)
                        for e in batch]  # fmt: skip
            except BaseException:
                _rollback(conn)
                raise
        self._committed()
        return deliveries

    def _committed(self) -> None:
        checkpointer = self._checkpointer  # read once: close() may clear it meanwhile
        if checkpointer is not None:
            checkpointer.nudge()

    def _apply_one(self, conn: sqlite3.Connection, entry: OutboxEntry, held: set[str]) -> Delivery:
        key = normalize_path(entry.path)
        if key in held:
            return Delivery(entry.id, Outcome.RETRY, "an earlier entry for this path is retried")
        conn.execute("SAVEPOINT entry")
        try:
            self._apply(conn, entry)
        except Exception as exc:
            kind = classify(exc)
            if kind == "batch":
                raise
            _release(conn, rollback=True)
            if kind == "reject":
                return Delivery(entry.id, Outcome.REJECT, describe(exc))
            _log.error(
                "sink.entry_failed", sink=self.name, stage="sink", path=entry.path,
                entry_id=entry.id, error_type=type(exc).__name__, error=str(exc),
            )  # fmt: skip
            held.add(key)
            return Delivery(entry.id, Outcome.RETRY, f"unexpected {describe(exc)}")
        _release(conn, rollback=False)
        return Delivery(entry.id, Outcome.DELIVERED)

    def _apply(self, conn: sqlite3.Connection, entry: OutboxEntry) -> None:
        if entry.op == "sequence":
            apply_sequences(conn, [_sequence_work(entry)])
            return
        file_id, rows = _prepare(entry)
        if rows is None:
            delete_file(conn, file_id)
        else:
            upsert(conn, rows)

    # ------------------------------------------------------------------ reading

    def count(self, table: str) -> int:
        """Number of rows in one catalog table."""
        if table not in TABLES:
            raise ValueError(f"no catalog table {table!r} (have {', '.join(TABLES)})")
        with self._lock:
            return int(self._require().execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def file_row(self, path: str | os.PathLike[str]) -> dict[str, Any] | None:
        """The files row of `path` with Python values (datetime, bool, float32 arrays)."""
        names = ", ".join(TABLES["files"].names)
        with self._lock:
            found = (
                self._require()
                .execute(f"SELECT {names} FROM files WHERE file_id = ?", (file_id_for(path),))
                .fetchone()
            )
        return None if found is None else py_row("files", found)


# --------------------------------------------------------------------------- transactions


def _prepare(entry: OutboxEntry) -> tuple[str, FileValues | None]:
    """(file_id, rows) of an entry; rows None for a deletion. RecordError if malformed."""
    if entry.op == "delete":
        return file_id_for(entry.path), None
    if entry.op != "upsert":
        raise RecordError(f"unknown op {entry.op!r}")
    if entry.record is None:
        raise RecordError("upsert entry without a record")
    rows = build_values(entry.record)
    # The same text is the same id: hash the entry's path only when it differs.
    if entry.path != entry.record["path"] and rows.file_id != file_id_for(entry.path):
        raise RecordError(
            f"entry path {entry.path!r} differs from record path {entry.record.get('path')!r}"
        )
    return rows.file_id, rows


def _sequence_work(entry: OutboxEntry) -> tuple[str, dict[str, Any] | None]:
    """(sequence_id, row) of a sequence entry; row None when the sequence is gone."""
    if entry.record is None:
        return sequence_id_for(entry.path), None
    return sequence_id_for(entry.path), sequence_row(entry.path, entry.record)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back on its own
            conn.execute("ROLLBACK")


def _release(conn: sqlite3.Connection, *, rollback: bool) -> None:
    if rollback:
        conn.execute("ROLLBACK TO entry")
    conn.execute("RELEASE entry")
