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

#: Unique keys of the child tables (stored with FILE_REF in file_id's place, which also
#: serves lookups by file).
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


#: The layout (catalog version 5). The tables of files are rowid tables, their rows appended
#: in the order they are written. Clustered on their keys instead (WITHOUT ROWID, until
#: 2026-12), every file's rows went to a random place in each table (docs/benchmarks.md,
#: "Sink process"). The child tables' rows are stored in `<table>_rows`, tied to their files
#: row by FILE_REF, an integer, without the file_id and file_path that each of a file's ~37
#: child rows repeated: with those, SQLite spent 216-269 us per file on the inserts, most of
#: it on the unique index of a 32-character text key; keyed by an integer, 133-152 us, and
#: the file 38% smaller. Views of the child tables' names and columns put file_id and
#: file_path back, so queries read the tables they always did (docs/catalog.md).
FILE_REF = "file_ref"
KEYS: dict[str, tuple[str, ...]] = {"files": ("file_id",), **CHILD_KEYS,
                                    "sequences": ("sequence_id",)}  # fmt: skip
#: The columns every child row takes from its files row, through the views; first in each
#: child table, so a child row tuple (catalog/rows.py) is (file_id, file_path, *stored).
FROM_FILES = ("file_id", "file_path")
for _child in CHILD_TABLES:
    if tuple(TABLES[_child].names[:2]) != FROM_FILES:
        raise ValueError(f"table {_child} does not start with {FROM_FILES}")


def rows_table(name: str) -> str:
    """Where the rows of child table `name` are stored (`name` itself is their view)."""
    return f"{name}_rows"


def stored_columns(name: str) -> list[str]:
    """The columns of child table `name` its `_rows` table stores (FILE_REF first)."""
    return [FILE_REF, *TABLES[name].names[len(FROM_FILES) :]]


def create_table(name: str, *, as_name: str | None = None) -> str:
    """The CREATE TABLE statement of catalog table `name` (called `as_name` if given); for
    a child table, of the table its rows are stored in (rows_table)."""
    schema = TABLES[name]
    if name == "files":
        # An explicit INTEGER PRIMARY KEY: VACUUM may renumber an implicit rowid, which
        # would cut every child row from its file. Last, so `SELECT *` starts as it did.
        return (f"CREATE TABLE IF NOT EXISTS {as_name or name} (\n    {_columns(schema)},\n"
                f"    {FILE_REF} INTEGER PRIMARY KEY,\n    UNIQUE (file_id)\n)")  # fmt: skip
    if name in CHILD_TABLES:
        stored = pa.schema([f for f in schema if f.name not in FROM_FILES])
        key = (FILE_REF, *KEYS[name][1:])
        return (f"CREATE TABLE IF NOT EXISTS {as_name or rows_table(name)} (\n"
                f"    {FILE_REF} INTEGER NOT NULL,\n    {_columns(stored)},\n"
                f"    PRIMARY KEY ({', '.join(key)})\n)")  # fmt: skip
    return (f"CREATE TABLE IF NOT EXISTS {as_name or name} (\n    {_columns(schema)},\n"
            f"    PRIMARY KEY ({', '.join(KEYS[name])})\n) WITHOUT ROWID")  # fmt: skip


def create_view(name: str) -> str:
    """The view of child table `name`: its columns, in order, file_id and file_path from
    the files row its stored rows refer to."""
    columns = ", ".join(f"{'f' if c in FROM_FILES else 'r'}.{c} AS {c}" for c in TABLES[name].names)
    return (f"CREATE VIEW IF NOT EXISTS {name} AS SELECT {columns} FROM {rows_table(name)} AS r "
            f"JOIN files AS f ON f.{FILE_REF} = r.{FILE_REF}")  # fmt: skip


#: Not unique: the text form of a non-UTF-8 name can equal a real name (file_id, the key,
#: hashes the bytes and keeps them apart); for queries by path and ORDER BY path.
PATH_INDEX = "CREATE INDEX IF NOT EXISTS files_by_path ON files (file_path_normalized)"


def ddl() -> list[str]:
    """CREATE statements for the catalog, derived from `TABLES`."""
    return [*(create_table(name) for name in TABLES),
            *(create_view(name) for name in CHILD_TABLES), PATH_INDEX]  # fmt: skip


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
    _cols = stored_columns(_name) if _name in CHILD_TABLES else list(_schema.names)
    _cols += [FILE_REF] if _name == "files" else []
    _INSERT[_name] = (f"INSERT INTO {rows_table(_name) if _name in CHILD_TABLES else _name} "
                      f"({', '.join(_cols)}) VALUES ({', '.join('?' * len(_cols))})")  # fmt: skip


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
    found = conn.execute(f"SELECT {FILE_REF} FROM files WHERE file_id = ?", (file_id,))
    _delete_refs(conn, [(row[0],) for row in found])


def _delete_refs(conn: sqlite3.Connection, refs: list[tuple[int]]) -> None:
    """Delete the files rows of these FILE_REFs and every child row of theirs."""
    if refs:
        for table in CHILD_TABLES:
            conn.executemany(f"DELETE FROM {rows_table(table)} WHERE {FILE_REF} = ?", refs)
        conn.executemany(f"DELETE FROM files WHERE {FILE_REF} = ?", refs)


#: The columns of a stored files row that catalog.plan needs (file_id first).
_STORED = ("file_id", "header_hash", "last_inspection_id", "inspection_count",
           "embedding_version", "inspection_timestamp", "pixel_stats_digest")  # fmt: skip
_SELECT_STORED = f"SELECT {FILE_REF}, {', '.join(_STORED)} FROM files"


def _stored(found: Sequence[Any]) -> dict[str, Any]:
    stored = dict(zip(_STORED, found, strict=True))
    # replaced_files_row may carry it over into a new row: a datetime, as rows hold it.
    if stored["inspection_timestamp"] is not None:
        stored["inspection_timestamp"] = _time_from_sql(stored["inspection_timestamp"])
    return stored


def _last_ref(conn: sqlite3.Connection) -> int:
    """The highest FILE_REF in use (0 if none): new files rows take the numbers after it,
    so their child rows can be written without reading the numbers back."""
    return int(conn.execute(f"SELECT coalesce(max({FILE_REF}), 0) FROM files").fetchone()[0])


def upsert(conn: sqlite3.Connection, rows: FileValues) -> None:
    """Store one file's rows: skip a replay, touch the audit columns, or replace them all
    (upsert_batch's decisions, for one file)."""
    upsert_batch(conn, [(rows.file_id, rows)])


def upsert_batch(
    conn: sqlite3.Connection, batch: Sequence[tuple[str, FileValues | None]]
) -> None:
    """Apply a whole batch at once: one lookup, then one executemany per table.

    `batch` holds (file_id, rows) per entry, rows None for a deletion, at most one entry
    per file. For each, catalog.plan decides: skip a replay, touch the audit columns, or
    replace every row of the file. The caller falls back to per-entry upserts when this
    raises for one bad entry.
    """
    ids = [file_id for file_id, _ in batch]
    stored: dict[str, dict[str, Any]] = {}
    refs: dict[str, int] = {}
    for start in range(0, len(ids), 500):  # SQLite's default limit of host parameters
        chunk = ids[start : start + 500]
        query = f"{_SELECT_STORED} WHERE file_id IN ({', '.join('?' * len(chunk))})"
        for found in conn.execute(query, chunk):
            refs[found[1]] = found[0]
            stored[found[1]] = _stored(found[1:])
    delete: list[tuple[int]] = []
    audits: list[tuple[Any, ...]] = []
    inserts: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
    index = {n: i for i, n in enumerate(TABLES["files"].names)}
    ref, skip = _last_ref(conn), len(FROM_FILES)
    for file_id, rows in batch:
        old = stored.get(file_id)
        if rows is None:
            if old is not None:
                delete.append((refs[file_id],))
            continue
        action = plan(old, rows.files)
        if action is Action.SKIP:
            continue
        if action is Action.AUDIT:
            values = sql_row("files", rows.files)
            audits.append((*(values[index[c]] for c in AUDIT_COLUMNS), file_id))
            continue
        if old is not None:
            delete.append((refs[file_id],))
        ref += 1
        inserts["files"].append((*sql_row("files", replaced_files_row(old, rows.files)), ref))
        inserts["parts"].extend([(ref, *child[skip:]) for child in rows.parts])
        inserts["channels"].extend([(ref, *child[skip:]) for child in rows.channels])
        inserts["attributes"].extend([(ref, *child[skip:]) for child in rows.attributes])
    _delete_refs(conn, delete)
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
