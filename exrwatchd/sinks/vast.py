"""The VAST DataBase sink: batched, idempotent upserts through the `vastdb` SDK.

Guarantee: at-least-once from the journal, made exactly-once per path by idempotent batches
(see _vast_batch.py): replaying a batch after an ambiguous commit leaves the same rows.

One SDK session for the sink, created lazily, always with timeouts (the SDK's default is
none), pinned to the configured endpoint unless discovery is asked for, and rebuilt after a
connection failure. Table metadata is loaded once and reused by every transaction, so a
batch costs a handful of requests, not three per table.

Every failure is classified (classify()):
- transient (connection, timeout, 503/SlowDown, 500, 507, 408, 429/502/504, commit
  conflicts): the whole batch is retried with backoff;
- a bad entry (BadRequest, TooWideRow, an invalid record): the batch is split until the
  offending entries stand alone, and only those are rejected (dead-lettered);
- the sink as a whole (Forbidden, missing bucket/schema/table, schema mismatch):
  SinkUnavailable; the daemon keeps journaling and tries again later;
- anything else (unknown): split like a bad entry, since one entry may be the cause, but the
  entries left standing alone are retried, not rejected: their attempts run out into the
  dead letters only if the error persists.
Credentials live only in the SDK session; messages are scrubbed of them regardless.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import requests
import vastdb
from vastdb import errors as vast_errors
from vastdb.config import BackoffConfig, SessionConfig

from exrwatchd.catalog import (
    FileRows,
    RecordError,
    build_rows,
    file_id_for,
)
from exrwatchd.catalog.sequence_rows import sequence_row
from exrwatchd.config import VastConfig
from exrwatchd.journal import OutboxEntry
from exrwatchd.logs import get_logger
from exrwatchd.sinks._vast_batch import apply_batch
from exrwatchd.sinks.base import Delivery, Outcome, SinkUnavailable
from exrwatchd.sinks.vast_schema import SchemaMismatch, ensure_catalog

log = get_logger("exrwatchd.sinks.vast")


class _PinnedEndpointNoise(logging.Filter):
    # With data endpoints pinned (the default) the SDK still warns on every select that
    # discovery found no VIPs; that is expected here, and would flood stderr.
    def filter(self, record: logging.LogRecord) -> bool:
        return "No vips returned" not in str(record.msg)


logging.getLogger("vastdb").addFilter(_PinnedEndpointNoise())
logging.getLogger("vastdb._session_context").addFilter(_PinnedEndpointNoise())

Kind = Literal["transient", "entry", "sink", "unknown"]

_TRANSIENT = (
    vast_errors.ConnectionError, vast_errors.ServiceUnavailable, vast_errors.RequestTimeout,
    vast_errors.InternalServerError, vast_errors.InsufficientCapacity,
    vast_errors.MissingTransaction, vast_errors.Conflict, requests.exceptions.RequestException,
    ConnectionError, TimeoutError,
)  # fmt: skip
_ENTRY = (vast_errors.BadRequest, vast_errors.InvalidArgument, RecordError)
_SINK = (
    vast_errors.Forbidden, vast_errors.MissingBucket, vast_errors.MissingSchema,
    vast_errors.MissingTable, vast_errors.NotSupported, vast_errors.NotFound, SchemaMismatch,
)  # fmt: skip


# Transient failures where the cluster did not answer: sink-wide, so they count no attempts.
_UNREACHABLE = (
    vast_errors.ConnectionError, requests.exceptions.ConnectionError,
    requests.exceptions.Timeout, ConnectionError, TimeoutError,
)  # fmt: skip


def classify(exc: BaseException) -> Kind:
    """transient (retry the batch), entry (isolate and reject), sink (the sink is down), or
    unknown (isolate, then retry)."""
    if isinstance(exc, _SINK):
        return "sink"
    if isinstance(exc, _ENTRY):
        return "entry"
    if isinstance(exc, _TRANSIENT):
        return "transient"
    if isinstance(exc, ValueError) and "is not a valid HttpStatus" in str(exc):
        return "transient"  # 429/502/504 surface as a plain ValueError in the SDK
    # Retrying the whole batch would sink every entry with the one that may cause this.
    return "unknown"


class VastSink:
    name = "vast"

    def __init__(self, cfg: VastConfig) -> None:
        if not (cfg.endpoint and cfg.bucket and cfg.access_key and cfg.secret_key):
            raise SinkUnavailable("vast: endpoint, bucket and credentials are required")
        self._cfg = cfg
        self._secrets = (cfg.access_key.reveal(), cfg.secret_key.reveal())
        self._lock = threading.Lock()
        self._session: Any = None
        self._metadata: dict[str, Any] | None = None
        self.requests_made = 0

    # ---- connection -------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "********")
        return text

    def describe(self, exc: BaseException) -> str:
        return self._scrub(f"{type(exc).__name__}: {exc}")

    def _connect(self) -> Any:
        cfg = self._cfg
        config = SessionConfig() if cfg.discover_endpoints else SessionConfig(
            data_endpoints=[cfg.endpoint]  # type: ignore[list-item]
        )  # fmt: skip
        # The SDK retries GETs and SlowDown on its own, for up to a minute by default; keep
        # that short, since the sink loop has its own backoff and must stay responsive.
        backoff = BackoffConfig(max_tries=3, max_time=min(30.0, cfg.read_timeout))
        return vastdb.connect(
            endpoint=cfg.endpoint, access=self._secrets[0], secret=self._secrets[1],
            ssl_verify=cfg.ssl_verify, timeout=(cfg.connect_timeout, cfg.read_timeout),
            backoff_config=backoff, config=config,
        )  # fmt: skip

    def _ready(self) -> tuple[Any, dict[str, Any]]:
        """The session and cached table metadata, (re)built when missing."""
        if self._session is None:
            self._session = self._connect()
            self._metadata = None
        if self._metadata is None:
            with self._session.transaction() as tx:
                tables = ensure_catalog(tx, self._cfg.bucket, self._cfg.schema,  # type: ignore[arg-type]
                                        create=self._cfg.create_tables)  # fmt: skip
                self._metadata = {name: t._metadata for name, t in tables.items()}
        return self._session, self._metadata

    def _forget_connection(self) -> None:
        self._session = None
        self._metadata = None

    def open(self) -> None:
        """Connect and check the tables now, so a bad config fails at start-up."""
        with self._lock:
            try:
                self._ready()
            except Exception as exc:
                kind = classify(exc)
                self._forget_connection()
                if kind == "sink":
                    raise SinkUnavailable(f"vast: {self.describe(exc)}") from None
                # A cluster that is briefly unreachable must not stop the daemon: it
                # journals, and the sink loop keeps trying.
                log.warning("sink.unavailable", sink=self.name, error=self.describe(exc))

    def health(self) -> str | None:
        return None if self._session is not None else "not connected"

    def close(self) -> None:
        with self._lock:
            self._forget_connection()

    # ---- the journal it is written from (issue 12, case 7) ----------------------------

    # No record in VAST: the tables are shared by gateways and have no place for one without
    # a schema change that `vast init` would have to roll out; status.json beside the
    # journal records the journal's id instead (daemon/components.py).
    def recorded_journal(self) -> str | None:
        return None

    def record_journal(self, journal_id: str) -> None:
        pass

    def catalog_paths(self) -> Iterator[str]:
        """Every path of the files table: one read of two columns (a journal rebuild)."""
        with self._lock:
            try:
                session, metadata = self._ready()
                with session.transaction() as tx:
                    files = tx.table_from_metadata(metadata["files"])
                    rows = files.select(columns=["file_path", "file_path_bytes"]).read_all()
            except Exception as exc:
                self._forget_connection()
                raise SinkUnavailable(f"vast: {self.describe(exc)}") from None
        for text, raw in zip(rows.column("file_path").to_pylist(),
                             rows.column("file_path_bytes").to_pylist(), strict=True):  # fmt: skip
            yield os.fsdecode(raw) if raw is not None else text

    # ---- writing ----------------------------------------------------------------------

    def write(self, batch: Sequence[OutboxEntry]) -> list[Delivery]:
        with self._lock:
            outcome: dict[int, Delivery] = {}
            rows: dict[int, FileRows] = {}
            sequences: dict[int, dict[str, Any] | None] = {}
            good: list[OutboxEntry] = []
            for entry in batch:
                try:
                    if entry.op == "upsert":
                        rows[entry.id] = _rows_for(entry)
                    elif entry.op == "sequence" and entry.record is not None:
                        sequences[entry.id] = sequence_row(entry.path, entry.record)
                    good.append(entry)
                except RecordError as exc:
                    outcome[entry.id] = Delivery(entry.id, Outcome.REJECT, str(exc))
            for delivery in self._write(good, rows, sequences):
                outcome[delivery.entry_id] = delivery
            return [outcome[e.id] for e in batch]

    def _write(
        self, batch: Sequence[OutboxEntry], rows: dict[int, FileRows],
        sequences: dict[int, dict[str, Any] | None],
    ) -> list[Delivery]:  # fmt: skip
        if not batch:
            return []
        try:
            session, metadata = self._ready()
            with session.transaction() as tx:
                tables = {name: tx.table_from_metadata(m) for name, m in metadata.items()}
                apply_batch(tables, batch, rows, sequences)
        except Exception as exc:
            kind = classify(exc)
            message = self.describe(exc)
            if kind == "sink":
                self._forget_connection()
                raise SinkUnavailable(f"vast: {message}") from None
            if kind in ("entry", "unknown"):
                if len(batch) == 1:
                    outcome = Outcome.REJECT if kind == "entry" else Outcome.RETRY
                    return [Delivery(batch[0].id, outcome, message)]
                # Split until the offending entries stand alone; their batch-mates land.
                middle = len(batch) // 2
                return (self._write(batch[:middle], rows, sequences)
                        + self._write(batch[middle:], rows, sequences))  # fmt: skip
            if isinstance(exc, vast_errors.ConnectionError | requests.exceptions.RequestException):
                self._forget_connection()  # rebuild the session before the next attempt
            if isinstance(exc, _UNREACHABLE):
                # No answer at all (refused, reset, timed out): the cluster is down or cut
                # off, not these entries at fault, so no attempt is counted against them.
                raise SinkUnavailable(f"vast: unreachable: {message}") from None
            return [Delivery(e.id, Outcome.RETRY, message) for e in batch]
        return [Delivery(e.id, Outcome.DELIVERED) for e in batch]


def _rows_for(entry: OutboxEntry) -> FileRows:
    if entry.record is None:
        raise RecordError("upsert entry without a record")
    rows = build_rows(entry.record)
    if rows.file_id != file_id_for(entry.path):
        raise RecordError(f"entry path {entry.path!r} differs from the record's path")
    return rows


def init_catalog(cfg: VastConfig, attempts: int = 5) -> dict[str, int]:
    """`exrwatchd vast init`: create schema, tables and missing columns. Returns row counts.

    Retried on commit conflicts, so two gateways can run it at the same moment.
    """
    sink = VastSink(cfg)
    last: BaseException | None = None
    for _ in range(attempts):
        try:
            session = sink._connect()
            with session.transaction() as tx:
                tables = ensure_catalog(tx, cfg.bucket, cfg.schema, create=True)  # type: ignore[arg-type]
                counts = {name: int(getattr(t.stats, "num_rows", 0) or 0)
                          for name, t in tables.items()}  # fmt: skip
            return counts
        except Exception as exc:
            if classify(exc) != "transient":
                raise SinkUnavailable(f"vast: {sink.describe(exc)}") from None
            last = exc
    raise SinkUnavailable(f"vast: {sink.describe(last)}" if last else "vast: init failed")
