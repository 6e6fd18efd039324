"""Opening the local catalog: WAL and durability settings, creating the tables, upgrading an
older catalog in place, and refusing one this version cannot write.

Every catalog version only appends (tables, nullable columns), so an older catalog is
upgraded by creating what is missing: no rescan. One change of layout, not of content, is
made on the way: tables of files clustered on their keys (WITHOUT ROWID, before 2026-12)
are copied once into the rowid tables `ddl()` makes now. The layout does not change the
catalog version: the tables, columns and values are the same, and a catalog of either
layout can be read and written by either code.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from exrwatchd._wal import BACKSTOP_PAGES
from exrwatchd.catalog import CATALOG_VERSION, TABLES
from exrwatchd.logs import get_logger
from exrwatchd.sinks._sqlite_catalog import PATH_INDEX, ROWID_TABLES, create_table, ddl, sql_type
from exrwatchd.sinks.base import SinkUnavailable

_log = get_logger("exrwatchd.sinks.local")


def prepare_catalog(conn: sqlite3.Connection, path: Path, cache_kib: int) -> None:
    """Make `conn` (just opened on `path`) ready to write, or raise SinkUnavailable."""
    where = f"catalog {path}"
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise SinkUnavailable(f"{where}: WAL journal mode unavailable (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        # Rows are keyed by a hash of the path, so a batch touches pages all over each
        # table: SQLite's default 2 MB page cache re-reads most of them every batch.
        conn.execute(f"PRAGMA cache_size = -{cache_kib}")
        # Batches commit megabytes of WAL: LocalSink's checkpoint thread copies it into the
        # file beside the next batch; the commits themselves only at the backstop.
        conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > CATALOG_VERSION:
            raise SinkUnavailable(
                f"{where} has catalog version {version}, newer than the {CATALOG_VERSION} "
                "this exrwatchd writes; upgrade exrwatchd, or move the file aside to "
                "rebuild it from a rescan"
            )
        # Also at the current version when columns are missing: version 2 gained its
        # tables and columns over several commits, so a catalog made in between has
        # version 2 and only some of them.
        clustered = _clustered_rowid_tables(conn)
        if version < CATALOG_VERSION or clustered or _lacks_columns(conn):
            conn.execute("BEGIN IMMEDIATE")
            try:
                _drop_unique_path_index(conn)
                for statement in ddl():  # CREATE ... IF NOT EXISTS: only what is missing
                    conn.execute(statement)
                added = _add_missing_columns(conn, where)
                for table in clustered:
                    _rebuild_as_rowid(conn, table)
                conn.execute(f"PRAGMA user_version = {CATALOG_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if version:
                _log.info("catalog.upgraded", path=str(path), from_version=version,
                          to_version=CATALOG_VERSION, columns_added=added,
                          tables_rebuilt=clustered)  # fmt: skip
        _check_columns(conn, where)
    except sqlite3.Error as exc:
        raise SinkUnavailable(f"{where}: {exc}") from exc


def _clustered_rowid_tables(conn: sqlite3.Connection) -> list[str]:
    """The tables `ddl()` makes as rowid tables that this catalog has WITHOUT ROWID."""
    return [
        name
        for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
        if name in ROWID_TABLES and "WITHOUT ROWID" in " ".join(str(sql).upper().split())
    ]


def _rebuild_as_rowid(conn: sqlite3.Connection, table: str) -> None:
    """Copy `table` into a rowid table of the same columns and put it in its place (its
    indexes go with the old table; `ddl()` makes them again)."""
    columns = ", ".join(TABLES[table].names)
    conn.execute(create_table(table, as_name=f"{table}_rebuilt"))
    conn.execute(f"INSERT INTO {table}_rebuilt ({columns}) SELECT {columns} FROM {table}")
    conn.execute(f"DROP TABLE {table}")
    conn.execute(f"ALTER TABLE {table}_rebuilt RENAME TO {table}")
    if table == "files":
        conn.execute(PATH_INDEX)


def _drop_unique_path_index(conn: sqlite3.Connection) -> None:
    """Before version 3 the path index was unique, which refused a file whose name is the
    text form of another's non-UTF-8 name; ddl() creates it again, not unique."""
    for row in conn.execute("PRAGMA index_list(files)").fetchall():
        if row[1] == "files_by_path" and row[2]:  # (seq, name, unique, ...)
            conn.execute("DROP INDEX files_by_path")


def _check_columns(conn: sqlite3.Connection, where: str) -> None:
    for name, schema in TABLES.items():
        have = [(r[1], r[2]) for r in conn.execute(f"PRAGMA table_info({name})")]
        want = [(f.name, sql_type(f.type)) for f in schema]
        if have != want:
            raise SinkUnavailable(f"{where}: table {name} has columns {have}, expected {want}")


def _lacks_columns(conn: sqlite3.Connection) -> bool:
    """Some table is missing, or has fewer columns than its schema declares."""
    return any(
        len(conn.execute(f"PRAGMA table_info({name})").fetchall()) < len(schema)
        for name, schema in TABLES.items()
    )


def _add_missing_columns(conn: sqlite3.Connection, where: str) -> list[str]:
    """Append the columns a table of an older catalog lacks; their values start as NULL."""
    added = []
    for name, schema in TABLES.items():
        have = [r[1] for r in conn.execute(f"PRAGMA table_info({name})")]
        if have != schema.names[: len(have)]:
            raise SinkUnavailable(
                f"{where}: table {name} has columns {have}, which are not a prefix of "
                f"{schema.names}; move the file aside to rebuild it from a rescan"
            )
        for field in list(schema)[len(have) :]:
            if not field.nullable:
                raise SinkUnavailable(f"{where}: cannot add non-null column {name}.{field.name}")
            conn.execute(f"ALTER TABLE {name} ADD COLUMN {field.name} {sql_type(field.type)}")
            added.append(f"{name}.{field.name}")
    return added
