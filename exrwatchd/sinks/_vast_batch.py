"""One outbox batch applied to VAST in ONE transaction: select, decide, delete, update, insert.

VAST has no primary keys, unique constraints or MERGE, so uniqueness is ours: inside the
transaction we select the batch's file_ids from `files` (with `$row_id`), decide per path with
catalog.plan (skip a replay, touch audit columns, or replace every row of the file), then
delete stale rows of all four tables and insert the new ones, one Arrow table per table. A
concurrent writer of the same table makes the commit fail with a conflict; the retry selects
again and sees its rows, so there is never more than one files row per path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

from exrwatchd.catalog import (
    CHILD_TABLES,
    FILES,
    SEQUENCES,
    FileRows,
    file_id_for,
    table_of,
    to_arrow,
)
from exrwatchd.catalog.plan import (
    AUDIT_COLUMNS,
    PLAN_COLUMNS,
    Action,
    audited_files_values,
    plan,
    replaced_files_row,
)
from exrwatchd.catalog.sequence_rows import sequence_id_for
from exrwatchd.journal import OutboxEntry

ROW_ID = "$row_id"
#: Values per `isin` request: far under the ~100k that raises TooLargeRequest.
ISIN_CHUNK = 5_000


def _chunks(values: Sequence[str], size: int = ISIN_CHUNK) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def _select(table: Any, column: str, values: Sequence[str], columns: list[str]) -> pa.Table:
    """Rows whose `column` is in `values`, with their $row_id, chunked under request limits."""
    parts = []
    for chunk in _chunks(sorted(set(values))):
        # The SDK appends "$row_id" to the list it is given: pass a fresh copy each time.
        reader = table.select(columns=list(columns), predicate=table[column].isin(chunk),
                              internal_row_id=True)  # fmt: skip
        parts.append(reader.read_all())
    if not parts:
        return pa.table({})
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def _row_ids(table: pa.Table) -> pa.Table:
    return pa.table({ROW_ID: table.column(ROW_ID).cast(pa.uint64())})


def apply_batch(
    tables: dict[str, Any],
    batch: Sequence[OutboxEntry],
    rows: dict[int, FileRows],
    sequence_rows: dict[int, dict[str, Any] | None] | None = None,
) -> None:
    """Apply `batch` through the open transaction's tables. `rows[entry.id]` holds the built
    rows of every upsert (built before the transaction, so bad records never get here), and
    `sequence_rows[entry.id]` those of every sequence entry (None: the sequence is gone)."""
    sequence_work = [(e, (sequence_rows or {}).get(e.id)) for e in batch if e.op == "sequence"]
    if sequence_work:
        _apply_sequences(tables["sequences"], sequence_work)
        batch = [e for e in batch if e.op != "sequence"]
    files = tables["files"]
    # By file_id, the key both sinks store: a path's text form can hold escapes (and the
    # SDK cannot encode the lone surrogates of a raw non-UTF-8 path), its id cannot.
    ids = [file_id_for(e.path) for e in batch]
    found = _select(files, "file_id", ids, list(PLAN_COLUMNS))
    stored: dict[str, list[dict[str, Any]]] = {}
    for row in found.to_pylist():
        stored.setdefault(row["file_id"], []).append(row)

    delete_files: list[int] = []  # $row_ids
    delete_children: list[str] = []  # file_ids whose parts/channels/attributes go
    audits: list[dict[str, Any]] = []
    inserts: list[FileRows] = []
    for entry, file_id in zip(batch, ids, strict=True):
        existing = stored.get(file_id, [])
        if entry.op == "delete":
            delete_files += [r[ROW_ID] for r in existing]
            delete_children += [r["file_id"] for r in existing]
            continue
        new = rows[entry.id]
        # More than one row for a path can only come from an outside writer: replace them all.
        current = existing[0] if len(existing) == 1 else None
        action = plan(current, new.files) if len(existing) <= 1 else Action.REPLACE
        if action is Action.SKIP:
            continue
        if action is Action.AUDIT:
            assert current is not None
            audits.append({ROW_ID: current[ROW_ID], **audited_files_values(current, new.files)})
            continue
        delete_files += [r[ROW_ID] for r in existing]
        delete_children += [r["file_id"] for r in existing]
        files_row = replaced_files_row(current if len(existing) == 1 else None, new.files)
        inserts.append(FileRows(new.file_id, files_row, new.parts, new.channels, new.attributes))

    if delete_children:
        for name in CHILD_TABLES:
            child = tables[name]
            stale = _select(child, "file_id", delete_children, ["file_id"])
            if stale.num_rows:
                child.delete(_row_ids(stale))
    if delete_files:
        files.delete(pa.table({ROW_ID: pa.array(delete_files, pa.uint64())}))
    if audits:
        columns = [*AUDIT_COLUMNS, "inspection_count"]
        update_schema = pa.schema([pa.field(ROW_ID, pa.uint64()),
                                   *(FILES.field(c) for c in columns)],
                                  metadata=FILES.metadata)  # fmt: skip
        files.update(table_of(update_schema, audits), columns=columns)
    if inserts:
        for name, table in to_arrow(inserts).items():
            if table.num_rows:
                tables[name].insert(table)


def _apply_sequences(table: Any, work: Sequence[tuple[OutboxEntry, dict[str, Any] | None]]) -> None:
    """Replace the rows of the sequences in `work` (a record holds a sequence's whole state,
    so delete-then-insert is both the update and an idempotent replay)."""
    ids = [sequence_id_for(entry.path) for entry, _ in work]
    stale = _select(table, "sequence_id", ids, ["sequence_id"])
    if stale.num_rows:
        table.delete(_row_ids(stale))
    fresh = [row for _, row in work if row is not None]
    if fresh:
        table.insert(table_of(SEQUENCES, fresh))
