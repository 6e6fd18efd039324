"""Older layouts of the local catalog, made from a current one, for the upgrade tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from exrwatchd.catalog import CHILD_TABLES, FILE_TABLES, TABLES
from exrwatchd.sinks._sqlite_catalog import KEYS, PATH_INDEX, _columns, rows_table


def as_version_4(db: Path, *, clustered: bool = False) -> None:
    """Rewrite the catalog at `db` in catalog version 4's layout, every row kept: the child
    tables as tables of their own, each row with its file_id and file_path, `files` keyed by
    file_id alone; with `clustered`, the tables WITHOUT ROWID (the layout before 2026-12)."""
    conn = sqlite3.connect(db)
    try:
        for table in FILE_TABLES:
            schema = TABLES[table]
            conn.execute(f"CREATE TABLE {table}_v4 (\n    {_columns(schema)},\n"
                         f"    PRIMARY KEY ({', '.join(KEYS[table])})\n)"
                         + (" WITHOUT ROWID" if clustered else ""))  # fmt: skip
            names = ", ".join(schema.names)
            conn.execute(f"INSERT INTO {table}_v4 ({names}) SELECT {names} FROM {table}")
        for table in CHILD_TABLES:
            conn.execute(f"DROP VIEW {table}")
            conn.execute(f"DROP TABLE {rows_table(table)}")
        conn.execute("DROP TABLE files")
        for table in FILE_TABLES:
            conn.execute(f"ALTER TABLE {table}_v4 RENAME TO {table}")
        conn.execute(PATH_INDEX)
        conn.execute("PRAGMA user_version = 4")
        conn.commit()
    finally:
        conn.close()
