"""Opening the local catalog: WAL and durability settings, creating the tables, upgrading an
older catalog in place, and refusing one this version cannot write.

Every catalog version until 4 only appended (tables, nullable columns), so an older catalog
is upgraded by creating what is missing: no rescan. Version 5 changed the layout, not the
content: the child tables' rows moved to `<table>_rows` tables keyed by the files row's
`file_ref`, behind views of the old names and columns (_sqlite_catalog.py says why). An
older catalog is rebuilt into it once, in one transaction, keeping every row; tables still
clustered on their keys (WITHOUT ROWID, before 2026-12) go the same way. Older versions of
exrwatchd refuse a version 5 catalog (they could not write its views).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from exrwatchd._wal import BACKSTOP_PAGES
from exrwatchd.catalog import CATALOG_VERSION, CHILD_TABLES, FILE_TABLES, TABLES
from exrwatchd.logs import get_logger
from exrwatchd.sinks._sqlite_catalog import (
    FILE_REF,
    FROM_FILES,
    create_table,
    create_view,
    ddl,
    rows_table,
    sql_type,
    stored_columns,
)
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
        if version < CATALOG_VERSION or _lacks_columns(conn):
            conn.execute("BEGIN IMMEDIATE")
            try:
                _drop_unique_path_index(conn)
                added = _add_missing_columns(conn, where)
                rebuilt = list(FILE_TABLES) if _has_child_tables(conn) else []
                if rebuilt:  # minutes for millions of files: say why the sink waits
                    _log.info("catalog.rebuilding", path=str(path), from_version=version,
                              layout="child rows keyed by file_ref, behind views")  # fmt: skip
                    _rebuild_with_views(conn)
                for statement in ddl():  # CREATE ... IF NOT EXISTS: only what is missing
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {CATALOG_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if version:
                _log.info("catalog.upgraded", path=str(path), from_version=version,
                          to_version=CATALOG_VERSION, columns_added=added,
                          tables_rebuilt=rebuilt)  # fmt: skip
        _check_columns(conn, where)
    except sqlite3.Error as exc:
        raise SinkUnavailable(f"{where}: {exc}") from exc


def _has_child_tables(conn: sqlite3.Connection) -> bool:
    """The child tables are tables here, not views: a catalog from before version 5."""
    found = conn.execute(
        f"SELECT count(*) FROM sqlite_master WHERE type = 'table' "
        f"AND name IN ({', '.join('?' * len(CHILD_TABLES))})", CHILD_TABLES,
    ).fetchone()[0]  # fmt: skip
    return bool(found)


def _rebuild_with_views(conn: sqlite3.Connection) -> None:
    """Copy an older catalog's files and child tables into version 5's layout (in the
    caller's transaction, whose ddl() then makes the views and the path index in their
    place). Child rows whose file has no files row are not carried over: no view could
    show them."""
    columns = ", ".join(TABLES["files"].names)
    conn.execute(create_table("files", as_name="files_v5"))
    conn.execute(f"INSERT INTO files_v5 ({columns}) SELECT {columns} FROM files")
    for table in CHILD_TABLES:
        conn.execute(create_table(table))
        stored = stored_columns(table)
        picked = ", ".join(f"c.{c}" for c in stored[1:])
        conn.execute(f"INSERT INTO {rows_table(table)} ({', '.join(stored)}) "
                     f"SELECT f.{FILE_REF}, {picked} FROM {table} AS c "
                     f"JOIN files_v5 AS f ON f.file_id = c.file_id")  # fmt: skip
        conn.execute(f"DROP TABLE {table}")
    conn.execute("DROP TABLE files")  # its indexes go with it
    conn.execute("ALTER TABLE files_v5 RENAME TO files")


def _drop_unique_path_index(conn: sqlite3.Connection) -> None:
    """Before version 3 the path index was unique, which refused a file whose name is the
    text form of another's non-UTF-8 name; ddl() creates it again, not unique."""
    for row in conn.execute("PRAGMA index_list(files)").fetchall():
        if row[1] == "files_by_path" and row[2]:  # (seq, name, unique, ...)
            conn.execute("DROP INDEX files_by_path")


def _columns_of(conn: sqlite3.Connection, name: str) -> list[tuple[str, str]]:
    """(name, type) of each column of table or view `name`, without FILE_REF."""
    return [(r[1], r[2]) for r in conn.execute(f"PRAGMA table_info({name})") if r[1] != FILE_REF]


def _check_columns(conn: sqlite3.Connection, where: str) -> None:
    for name, schema in TABLES.items():
        have = _columns_of(conn, name)
        want = [(f.name, sql_type(f.type)) for f in schema]
        if have != want:
            raise SinkUnavailable(f"{where}: table {name} has columns {have}, expected {want}")


def _lacks_columns(conn: sqlite3.Connection) -> bool:
    """Some table is missing, or has fewer columns than its schema declares."""
    return any(len(_columns_of(conn, name)) < len(schema) for name, schema in TABLES.items())


def _add_missing_columns(conn: sqlite3.Connection, where: str) -> list[str]:
    """Append the columns a table of an older catalog lacks; their values start as NULL.
    A child table's view is made again over its `_rows` table's new columns."""
    added = []
    for name, schema in TABLES.items():
        have = [column for column, _ in _columns_of(conn, name)]
        if not have:
            continue  # missing altogether: ddl() creates it
        if have != schema.names[: len(have)]:
            raise SinkUnavailable(
                f"{where}: table {name} has columns {have}, which are not a prefix of "
                f"{schema.names}; move the file aside to rebuild it from a rescan"
            )
        kind = conn.execute("SELECT type FROM sqlite_master WHERE name = ?", (name,)).fetchone()
        is_view = kind is not None and kind[0] == "view"
        for field in list(schema)[len(have) :]:
            if not field.nullable or field.name in FROM_FILES:
                raise SinkUnavailable(f"{where}: cannot add non-null column {name}.{field.name}")
            target = rows_table(name) if is_view else name
            conn.execute(f"ALTER TABLE {target} ADD COLUMN {field.name} {sql_type(field.type)}")
            added.append(f"{name}.{field.name}")
        if is_view and len(have) < len(schema):
            conn.execute(f"DROP VIEW {name}")
            conn.execute(create_view(name))
    return added
