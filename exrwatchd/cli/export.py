"""`exrwatchd export`: a table of the local catalog as Parquet or CSV, for pandas or DuckDB.

The catalog is opened read-only (``mode=ro``): a running daemon keeps writing, and the
export reads one snapshot (one read transaction; WAL readers never block the writer).
Rows are fetched in batches, each becomes an Arrow record batch of the table's schema as
the format holds it (catalog/sql_arrow.py) and is written at once, so memory stays bounded
whatever the catalog's size. A file OUT is written beside itself under a temporary name and renamed
when complete: a failed export never leaves a truncated file that looks whole.

cli/main.py registers the command (`add_arguments`, then `export(cfg, args)`).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

from exrwatchd.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ExrwatchdError

if TYPE_CHECKING:
    import pyarrow as pa

    from exrwatchd.config import Config

__all__ = ["BATCH_ROWS", "TABLE_NAMES", "ExportError", "add_arguments", "export", "path_condition"]

#: exrwatchd.catalog.TABLES's names (a test checks): building the parser imports no pyarrow.
TABLE_NAMES = ("files", "parts", "channels", "attributes", "sequences")

#: Rows fetched, converted and written at a time (a Parquet row group each): ~8 MiB of
#: stored values. A files row holds 2 KiB of vectors; the other tables' rows ~100-300 bytes.
#: Memory holds about three batches (Python rows, Arrow arrays, the writer's pages).
BATCH_ROWS = {"files": 4_000, "parts": 32_000, "channels": 32_000, "attributes": 32_000,
              "sequences": 8_000}  # fmt: skip

DESCRIPTION = (
    "Write one table of the local catalog (<state_dir>/catalog.db) to a Parquet or CSV file, "
    "streamed in batches, read-only: safe while the daemon runs, and the file is one "
    "consistent snapshot. Parquet keeps the catalog's Arrow types (timestamps in UTC, vectors "
    "as lists of float32, column descriptions as field metadata); CSV leaves out "
    "the vector columns and writes file_path_bytes as base64. See docs/catalog.md, Exporting."
)


class ExportError(ExrwatchdError):
    """The catalog cannot be exported (missing, unreadable, damaged) or OUT not written."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", metavar="OUT",
                   help="the file to write (replaced when the export completes), or - for "
                   "stdout (parquet only when stdout is not a terminal)")  # fmt: skip
    p.add_argument("--format", required=True, choices=("parquet", "csv"),
                   help="parquet (Arrow types, vectors included) or csv (no vectors)")  # fmt: skip
    p.add_argument("--table", default="files", choices=TABLE_NAMES,
                   help="the catalog table to export (default: files)")  # fmt: skip
    p.add_argument("--where-path", metavar="PREFIX",
                   help="only rows of files at PREFIX or under the directory PREFIX "
                   "(/renders/sh01 does not take /renders/sh010); for sequences, those whose "
                   "directory is PREFIX or under it")  # fmt: skip


# --------------------------------------------------------------------------- the query


def path_condition(column: str, prefix: str) -> tuple[str, tuple[str, ...]]:
    """SQL for "`column` is the path `prefix` or below the directory `prefix`", and its
    parameters. One range on the column, so SQLite walks its index (files_by_path) from the
    first match to the last; no LIKE, so no character of the path is a wildcard.

    The prefix is made absolute and normalized, in the catalog's text form of paths
    (docs/catalog.md: bytes that are not UTF-8 as ``\\udcXX``), as file_path_normalized is.
    """
    from exrwatchd.catalog import display_text

    base = display_text(os.path.abspath(prefix)).rstrip("/")
    # The columns compare as bytes (BINARY collation), and '0' is the byte after '/':
    # [base, base + '0') holds base, base/... and also base-x, base.x (bytes below '/'),
    # which the second test drops.
    sql = f"({column} >= ? AND {column} < ? AND ({column} = ? OR {column} >= ?))"
    return sql, (base, base + "0", base, base + "/")


def _columns(conn: sqlite3.Connection, table: str, alias: str, where: Path) -> str:
    """The select list in the schema's order; a column an older catalog lacks (the daemon
    adds it when it next opens the file) is exported as nulls."""
    from exrwatchd.catalog import TABLES

    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    if not have:
        raise ExportError(f"{where}: no table {table} (written by an older exrwatchd; "
                          "starting the daemon upgrades it)")  # fmt: skip
    return ", ".join(f"{alias}.{name}" if name in have else f"NULL AS {name}"
                     for name in TABLES[table].names)  # fmt: skip


def _query(
    conn: sqlite3.Connection, table: str, prefix: str | None, where: Path
) -> tuple[str, tuple[str, ...]]:
    columns = _columns(conn, table, "t", where)
    if prefix is None:
        return f"SELECT {columns} FROM {table} AS t", ()
    if table == "files":
        cond, params = path_condition("t.file_path_normalized", prefix)
        return f"SELECT {columns} FROM files AS t WHERE {cond}", params
    if table == "sequences":
        cond, params = path_condition("t.directory", prefix)
        return f"SELECT {columns} FROM sequences AS t WHERE {cond}", params
    # Child rows by their file: the range on files' path index, then each file's rows by
    # the child key's file_id prefix. CROSS JOIN keeps SQLite to that order.
    cond, params = path_condition("f.file_path_normalized", prefix)
    return (f"SELECT {columns} FROM files AS f CROSS JOIN {table} AS t "
            f"ON t.file_id = f.file_id WHERE {cond}", params)  # fmt: skip


@contextmanager
def _snapshot(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection inside one read transaction."""
    if not path.is_file():
        raise ExportError(f"no catalog at {path} (the daemon creates it on its first start "
                          "with sink.kind = \"local\")")  # fmt: skip
    try:
        path.open("rb").close()  # SQLite would only say "unable to open database file"
    except OSError as exc:
        raise ExportError(f"cannot read the catalog {path}: {exc.strerror}") from None
    uri = f"file:{quote(os.fsencode(path.absolute()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN")
        yield conn
    finally:
        conn.close()


def _batches(
    conn: sqlite3.Connection, table: str, schema: pa.Schema, prefix: str | None, where: Path
) -> Iterator[pa.RecordBatch]:
    """The rows of `table` (under `prefix`) in batches of `schema`."""
    from exrwatchd.catalog import record_batch

    sql, params = _query(conn, table, prefix, where)
    cursor = conn.execute(sql, params)
    while True:
        rows = cursor.fetchmany(BATCH_ROWS[table])
        if not rows:
            return
        batch = record_batch(table, rows, schema)
        del rows  # before the next fetch: one batch of Python rows alive, not two
        yield batch


# --------------------------------------------------------------------------- the output


@contextmanager
def _destination(out: str) -> Iterator[IO[bytes]]:
    """stdout for "-"; else a temporary file beside OUT, renamed to OUT on success and
    removed on failure."""
    if out == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(out)
    temp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    # 0o666 through the umask, as any file a command writes (not 0600 like a temp file).
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _writer(fmt: str, table: str, sink: IO[bytes]) -> tuple[Any, pa.Schema]:
    """The pyarrow writer for `fmt` and the schema its batches take."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from exrwatchd.catalog import TABLES, csv_schema, parquet_schema

    if fmt == "csv":
        schema = csv_schema(TABLES[table])
        return pcsv.CSVWriter(sink, schema), schema
    schema = parquet_schema(TABLES[table])
    # No dictionary for the vectors: unit vectors' floats hardly repeat, and trying costs
    # a dictionary per column chunk before the writer falls back.
    plain = [f.name for f in schema if not pa.types.is_list(f.type)]
    return pq.ParquetWriter(sink, schema, use_dictionary=plain), schema


def _export(conn: sqlite3.Connection, args: argparse.Namespace, where: Path,
            sink: IO[bytes]) -> int:  # fmt: skip
    """Write every batch; returns the rows written. An empty result still gets its schema
    (a Parquet file with no row groups, a CSV header line)."""
    writer, schema = _writer(args.format, args.table, sink)
    rows = 0
    with writer:
        for batch in _batches(conn, args.table, schema, args.where_path, where):
            writer.write_batch(batch)
            rows += batch.num_rows
            del batch  # before the next one is read
    return rows


def export(cfg: Config, args: argparse.Namespace) -> int:
    """Run `exrwatchd export` with the loaded config; returns the exit code."""
    from exrwatchd.catalog import CatalogValueError

    if args.out == "-" and args.format == "parquet" and sys.stdout.isatty():
        print("exrwatchd export: Parquet is binary: give a file, or redirect stdout",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    path = cfg.daemon.state_dir / "catalog.db"
    shown = "stdout" if args.out == "-" else args.out
    try:
        with _snapshot(path) as conn, _destination(args.out) as sink:
            rows = _export(conn, args, path, sink)
    except ExportError as exc:
        print(f"exrwatchd export: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (sqlite3.Error, CatalogValueError) as exc:
        print(f"exrwatchd export: {path}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise  # cli/main.py: `export ... - | head` is normal use
        print(f"exrwatchd export: {shown}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"exrwatchd export: {rows} {args.table} rows to {shown}", file=sys.stderr)
    return EXIT_OK
