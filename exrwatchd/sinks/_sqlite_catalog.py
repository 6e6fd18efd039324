"""The catalog in SQLite, for exrwatchd/sinks/local.py: DDL derived from the Arrow schemas,
the value mapping between row dicts and SQLite rows, and the statements that store one file.

No locking, transactions or error handling here: the caller (LocalSink) owns the connection.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from exrwatchd.catalog import CHILD_TABLES, TABLES, FileValues
from exrwatchd.catalog.plan import AUDIT_COLUMNS, Action, plan, replaced_files_row

#: Unique keys of the child tables; their leading file_id column also serves lookups by file.
CHILD_KEYS: dict[str, tuple[str, ...]] = {
    "parts": ("file_id", "part_index"),
    "channels": ("file_id", "part_index", "channel_index"),
    "attributes": ("file_id", "part_index", "attribute_name"),
}

# --------------------------------------------------------------------------- DDL from Arrow


def sql_type(type_: pa.DataType) -> str:
    """The SQLite column type of an Arrow type of the catalog (TypeError for any other)."""
    if pa.types.is_string(type_):
        return "TEXT"
    if pa.types.is_integer(type_) or pa.types.is_boolean(type_):
        return "INTEGER"
    if pa.types.is_floating(type_):
        return "REAL"
    if pa.types.is_timestamp(type_):
        return "TEXT"
    if pa.types.is_fixed_size_list(type_) and pa.types.is_float32(type_.value_type):
        return "BLOB"
    if pa.types.is_binary(type_):
        return "BLOB"
    raise TypeError(f"no SQLite mapping for Arrow type {type_}")


_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def _columns(schema: pa.Schema) -> str:
    cols = []
    for field in schema:
        if not _IDENT.match(field.name):
            raise ValueError(f"not a plain identifier: {field.name!r}")
        cols.append(f"{field.name} {sql_type(field.type)}{'' if field.nullable else ' NOT NULL'}")
    return ",\n    ".join(cols)


#: Primary keys. The four tables of files are rowid tables, their rows appended in the order
#: they are written, each with its key as a unique index. Clustered on the key instead
#: (WITHOUT ROWID, until 2026-12), every file's rows went to a random place in each table:
#: ~9 pages dirtied per file, 38 KB of WAL for ~6 KB of rows, mostly B-tree rebalancing
#: of the attributes and channels pages. Appended, the rows share pages and only the
#: small index entries land at random: 24 KB (docs/benchmarks.md, "Sink process").
#: Deleting a file's rows is still a range scan of the index on its file_id prefix.
KEYS: dict[str, tuple[str, ...]] = {"files": ("file_id",), **CHILD_KEYS,
                                    "sequences": ("sequence_id",)}  # fmt: skip
ROWID_TABLES = frozenset(("files", *CHILD_TABLES))


def create_table(name: str, *, as_name: str | None = None) -> str:
    """The CREATE TABLE statement of catalog table `name` (called `as_name` if given)."""
    layout = "" if name in ROWID_TABLES else " WITHOUT ROWID"
    return (f"CREATE TABLE IF NOT EXISTS {as_name or name} (\n    {_columns(TABLES[name])},\n"
            f"    PRIMARY KEY ({', '.join(KEYS[name])})\n){layout}")  # fmt: skip


#: Not unique: the text form of a non-UTF-8 name can equal a real name (file_id, the key,
#: hashes the bytes and keeps them apart); for queries by path and ORDER BY path.
PATH_INDEX = "CREATE INDEX IF NOT EXISTS files_by_path ON files (file_path_normalized)"


def ddl() -> list[str]:
    """CREATE statements for the catalog, derived from `TABLES`."""
    return [*(create_table(name) for name in TABLES), PATH_INDEX]


# --------------------------------------------------------------------------- value mapping


def _time_to_sql(value: datetime) -> str:
    # isoformat pads the year to four digits (strftime %Y does not below 1000); in UTC it
    # ends with "+00:00".
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def _time_from_sql(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _vector_to_sql(value: Any) -> bytes:
    return np.asarray(value, dtype="<f4").tobytes()


def _vector_from_sql(value: bytes) -> np.ndarray:
    return np.frombuffer(value, dtype="<f4").astype(np.float32)


Convert = Callable[[Any], Any]


def _converters(schema: pa.Schema) -> tuple[list[Convert | None], list[Convert | None]]:
    to_sql: list[Convert | None] = []
    from_sql: list[Convert | None] = []
    for field in schema:
        t = field.type
        if pa.types.is_timestamp(t):
            to_sql.append(_time_to_sql)
            from_sql.append(_time_from_sql)
        elif pa.types.is_fixed_size_list(t):
            to_sql.append(_vector_to_sql)
            from_sql.append(_vector_from_sql)
        elif pa.types.is_boolean(t):
            to_sql.append(int)
            from_sql.append(bool)
        else:
            to_sql.append(None)
            from_sql.append(None)
    return to_sql, from_sql


_TO_SQL: dict[str, list[Convert | None]] = {}
_FROM_SQL: dict[str, list[Convert | None]] = {}
_INSERT: dict[str, str] = {}
for _name, _schema in TABLES.items():
    _TO_SQL[_name], _FROM_SQL[_name] = _converters(_schema)
    _INSERT[_name] = (f"INSERT INTO {_name} ({', '.join(_schema.names)}) "
                     f"VALUES ({', '.join('?' * len(_schema.names))})")  # fmt: skip


def _convert(values: Iterable[Any], converters: Sequence[Convert | None]) -> list[Any]:
    return [
        v if conv is None or v is None else conv(v)
        for v, conv in zip(values, converters, strict=True)
    ]


_NAMES = {name: list(schema.names) for name, schema in TABLES.items()}
#: Per table, the (index, converter) pairs of the columns that need converting.
_CONVERTED = {
    name: tuple((i, c) for i, c in enumerate(_TO_SQL[name]) if c is not None) for name in TABLES
}


def sql_row(table: str, row: dict[str, Any]) -> tuple[Any, ...]:
    """The SQLite values of a row dict of `table`, in column order.

    Rows are built in column order (catalog/rows.py), so the values are taken as they
    are and only the few timestamp/vector/bool columns are converted.
    """
    names = _NAMES[table]
    values = list(row.values()) if list(row) == names else [row[n] for n in names]
    for i, convert in _CONVERTED[table]:
        if values[i] is not None:
            values[i] = convert(values[i])
    return tuple(values)


def py_row(table: str, values: Sequence[Any]) -> dict[str, Any]:
    """The row dict (Python values) of SQLite values of `table` in column order."""
    return dict(zip(TABLES[table].names, _convert(values, _FROM_SQL[table]), strict=True))


# --------------------------------------------------------------------------- statements

_AUDIT_UPDATE = (
    "UPDATE files SET "
    + ", ".join(f"{c} = ?" for c in AUDIT_COLUMNS)
    + ", inspection_count = inspection_count + 1 WHERE file_id = ?"
)


def delete_file(conn: sqlite3.Connection, file_id: str) -> None:
    """Delete the file's rows from every table."""
    for table in ("files", *CHILD_TABLES):
        conn.execute(f"DELETE FROM {table} WHERE file_id = ?", (file_id,))


#: The columns of a stored files row that catalog.plan needs (file_id first).
_STORED = ("file_id", "header_hash", "last_inspection_id", "inspection_count",
           "embedding_version", "inspection_timestamp", "pixel_stats_digest")  # fmt: skip


def _stored(found: Sequence[Any]) -> dict[str, Any]:
    stored = dict(zip(_STORED, found, strict=True))
    # replaced_files_row may carry it over into a new row: a datetime, as rows hold it.
    if stored["inspection_timestamp"] is not None:
        stored["inspection_timestamp"] = _time_from_sql(stored["inspection_timestamp"])
    return stored


def upsert(conn: sqlite3.Connection, rows: FileValues) -> None:
    """Store one file's rows: skip a replay, touch the audit columns, or replace them all."""
    new = rows.files
    found = conn.execute(
        f"SELECT {', '.join(_STORED)} FROM files WHERE file_id = ?", (rows.file_id,)
    ).fetchone()
    stored = None if found is None else _stored(found)
    action = plan(stored, new)
    if action is Action.SKIP:
        return
    if action is Action.AUDIT:
        values = sql_row("files", new)
        index = {n: i for i, n in enumerate(TABLES["files"].names)}
        conn.execute(_AUDIT_UPDATE,
                     (*(values[index[c]] for c in AUDIT_COLUMNS), rows.file_id))  # fmt: skip
        return
    if stored is not None:
        delete_file(conn, rows.file_id)
    files_row = replaced_files_row(stored, new)
    conn.execute(_INSERT["files"], sql_row("files", files_row))
    # Child rows are tuples of SQLite values already (their bools bind as 0 and 1).
    for table, children in (("parts", rows.parts), ("channels", rows.channels),
                            ("attributes", rows.attributes)):  # fmt: skip
        if children:
            conn.executemany(_INSERT[table], children)


def upsert_batch(
    conn: sqlite3.Connection, batch: Sequence[tuple[str, FileValues | None]]
) -> None:
    """Apply a whole batch at once: one lookup, then one executemany per table.

    `batch` holds (file_id, rows) per entry, rows None for a deletion, at most one entry
    per file. Same decisions as `upsert`, an order of magnitude fewer statements; the caller
    falls back to per-entry upserts when this raises for one bad entry.
    """
    ids = [file_id for file_id, _ in batch]
    stored: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):  # SQLite's default limit of host parameters
        chunk = ids[start : start + 500]
        query = (f"SELECT {', '.join(_STORED)} FROM files "
                 f"WHERE file_id IN ({', '.join('?' * len(chunk))})")  # fmt: skip
        for found in conn.execute(query, chunk):
            stored[found[0]] = _stored(found)
    delete: list[tuple[str]] = []
    audits: list[tuple[Any, ...]] = []
    inserts: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
    index = {n: i for i, n in enumerate(TABLES["files"].names)}
    for file_id, rows in batch:
        old = stored.get(file_id)
        if rows is None:
            if old is not None:
                delete.append((file_id,))
            continue
        action = plan(old, rows.files)
        if action is Action.SKIP:
            continue
        if action is Action.AUDIT:
            values = sql_row("files", rows.files)
            audits.append((*(values[index[c]] for c in AUDIT_COLUMNS), file_id))
            continue
        if old is not None:
            delete.append((file_id,))
        inserts["files"].append(sql_row("files", replaced_files_row(old, rows.files)))
        inserts["parts"].extend(rows.parts)
        inserts["channels"].extend(rows.channels)
        inserts["attributes"].extend(rows.attributes)
    for table in ("files", *CHILD_TABLES):
        if delete:
            conn.executemany(f"DELETE FROM {table} WHERE file_id = ?", delete)
    if audits:
        conn.executemany(_AUDIT_UPDATE, audits)
    for table, values in inserts.items():
        if values:
            conn.executemany(_INSERT[table], values)


def apply_sequences(
    conn: sqlite3.Connection, work: Sequence[tuple[str, dict[str, Any] | None]]
) -> None:
    """Store or delete `sequences` rows: (sequence_id, row) pairs, row None to delete.

    A sequence record carries the whole state of its sequence, so replacing the row is both
    the update and an idempotent replay.
    """
    gone = [(sequence_id,) for sequence_id, row in work if row is None]
    if gone:
        conn.executemany("DELETE FROM sequences WHERE sequence_id = ?", gone)
    rows = [sql_row("sequences", row) for _, row in work if row is not None]
    if rows:
        conn.executemany(_INSERT["sequences"].replace("INSERT", "INSERT OR REPLACE", 1), rows)
