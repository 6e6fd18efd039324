"""The local catalog's storage layout and the sink's row builder (issue 13, per-file cost).

`build_values` checks child rows with plain type tests first and only falls back to the
checked path (which names the bad value) when something is unusual: both must give the same
rows. The tables of files are rowid tables, the child rows stored keyed by `file_ref`
behind views of the child tables' names (catalog version 5); a catalog of version 4, or with
its tables clustered on their keys, is rebuilt in place when opened, keeping every row.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import exrgen
import pytest
from catalog_layouts import as_version_4

from exrwatchd.catalog import (
    CATALOG_VERSION,
    CHILD_TABLES,
    FILE_TABLES,
    TABLES,
    build_rows,
    build_values,
    file_id_for,
)
from exrwatchd.catalog import rows as rows_mod
from exrwatchd.exr import inspect_path
from exrwatchd.exr.report import inspection_to_dict
from exrwatchd.journal import OutboxEntry
from exrwatchd.sinks import LocalSink, Outcome
from exrwatchd.sinks._sqlite_catalog import rows_table


def make_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    result = inspect_path(os.fspath(path))
    record = inspection_to_dict(result, embeddings=True)
    record["inspection_id"] = uuid.uuid4().hex
    record["inspected_at"] = "2026-12-03T10:00:00.000000Z"
    record["inode"] = result.stat.inode if result.stat else None
    return json.loads(json.dumps(record))


def checked_children(record: dict[str, Any]) -> tuple[list[tuple[Any, ...]], ...]:
    """The child rows as the checked path alone builds them."""
    file_id, file_path = file_id_for(record["path"]), record["path"]
    channels, attributes = [], []
    for index, part in enumerate(record["parts"]):
        where = f"parts[{index}]"
        for ci, ch in enumerate(part["channels"]):
            name, *rest = rows_mod._checked_channel(ch, f"{where}.channels[{ci}]")
            layer, _, component = name.rpartition(".")
            channels.append((file_id, file_path, index, ci, name, layer, component, *rest,
                             None, None, None, None, None))  # fmt: skip
        for name, attr in part["attributes"].items():
            attributes.append(
                rows_mod._checked_attribute(file_id, file_path, index, name, attr, where)
            )
    return channels, attributes


class TestBuilder:
    def test_fast_rows_equal_checked_rows(self, kinds_dir: dict[str, Path]) -> None:
        for kind, path in kinds_dir.items():
            record = make_record(path)
            values = build_values(record)
            channels, attributes = checked_children(record)
            assert values.channels == channels, kind
            assert values.attributes == attributes, kind

    def test_unusual_values_take_the_checked_path(self, tmp_path: Path) -> None:
        record = make_record(exrgen.write_scanline(tmp_path / "a.exr"))
        attrs = record["parts"][0]["attributes"]
        attrs["nan"] = {"type": "float", "value": float("nan")}
        attrs["opaque"] = {"type": "myType", "value": None, "base64": "AAE="}
        attrs["caf\udce9"] = {"type": "string", "value": "x"}
        record["parts"][0]["channels"][0]["name"] = "caf\udce9.R"
        values = build_values(record)
        by_name = {row[3]: row for row in values.attributes}
        assert by_name["nan"][5] == '"NaN"'
        assert by_name["opaque"][5:] == ("null", "AAE=")
        assert "caf\\udce9" in by_name
        assert values.channels[0][4:7] == ("caf\\udce9.R", "caf\\udce9", "R")
        assert checked_children(record) == (values.channels, values.attributes)

    def test_build_rows_is_build_values_by_name(self, kinds_dir: dict[str, Path]) -> None:
        record = make_record(kinds_dir["multipart"])
        rows, values = build_rows(record), build_values(record)
        for table in ("parts", "channels", "attributes"):
            assert [tuple(r.values()) for r in getattr(rows, table)] == getattr(values, table)
            assert all(list(r) == TABLES[table].names for r in getattr(rows, table))

    @pytest.mark.parametrize(
        ("mutate", "match"),
        [
            (lambda p: p["channels"][0].update(x_sampling=2**63), "x_sampling"),
            (lambda p: p["channels"][0].update(p_linear=1), "p_linear"),
            (lambda p: p["channels"].append("R"), "malformed record"),
            (lambda p: p["attributes"].update(bad={"type": 3, "value": 1}), "bad"),
            (lambda p: p["attributes"].update(bad={"type": "int"}), "has no 'value'"),
        ],
    )
    def test_bad_child_values_named(self, tmp_path: Path, mutate: Any, match: str) -> None:
        record = make_record(exrgen.write_scanline(tmp_path / "a.exr"))
        mutate(record["parts"][0])
        with pytest.raises(rows_mod.RecordError, match=match):
            build_values(record)


def table_sql(db: Path, name: str) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,))
                   .fetchone()[0])  # fmt: skip
    finally:
        conn.close()


def dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(db)
    try:
        return {t: sorted(conn.execute(f"SELECT {', '.join(TABLES[t].names)} FROM {t}"),
                          key=repr) for t in FILE_TABLES}  # fmt: skip
    finally:
        conn.close()


def upsert(record: dict[str, Any], entry_id: int) -> OutboxEntry:
    return OutboxEntry(entry_id, record["path"], "upsert", record, 0, 0.0)


def two_frames_catalogued(tmp_path: Path) -> tuple[list[Path], list[dict[str, Any]], Path]:
    """A scanline and a multi-part frame, their records, and the catalog they are in."""
    frames = [exrgen.write_scanline(tmp_path / "a.0001.exr"),
              exrgen.write_multipart(tmp_path / "a.0002.exr")]  # fmt: skip
    records = [make_record(p) for p in frames]
    with LocalSink(tmp_path) as sink:
        sink.write([upsert(r, i) for i, r in enumerate(records, 1)])
    return frames, records, tmp_path / "catalog.db"


class TestLayout:
    def test_file_tables_are_rowid_tables_with_unique_keys(self, tmp_path: Path) -> None:
        frame = exrgen.write_scanline(tmp_path / "a.0001.exr")
        with LocalSink(tmp_path) as sink:
            assert sink.write([upsert(make_record(frame), 1)])[0].outcome is Outcome.DELIVERED
        db = tmp_path / "catalog.db"
        assert "WITHOUT ROWID" in table_sql(db, "sequences")
        conn = sqlite3.connect(db)
        files = ", ".join(TABLES["files"].names)
        with pytest.raises(sqlite3.IntegrityError):  # a second row of the same file_id
            conn.execute(f"INSERT INTO files ({files}) SELECT {files} FROM files")
        for table in CHILD_TABLES:
            assert "WITHOUT ROWID" not in table_sql(db, rows_table(table))
            assert table_sql(db, table).startswith("CREATE VIEW")
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(f"INSERT INTO {rows_table(table)} SELECT * FROM {rows_table(table)}")
        conn.close()

    def test_vacuum_keeps_every_child_row_with_its_file(self, tmp_path: Path) -> None:
        # The child rows refer to files.file_ref, an INTEGER PRIMARY KEY, which VACUUM keeps
        # (it may renumber an implicit rowid). Gaps in the numbers are what it would close.
        frames = [exrgen.write_scanline(tmp_path / f"a.{i:04d}.exr") for i in range(1, 5)]
        records = [make_record(p) for p in frames]
        with LocalSink(tmp_path) as sink:
            sink.write([upsert(r, i) for i, r in enumerate(records, 1)])
            sink.write([OutboxEntry(9, records[0]["path"], "delete", None, 0, 0.0)])
        db = tmp_path / "catalog.db"
        before = dump(db)
        conn = sqlite3.connect(db)
        conn.execute("VACUUM")
        conn.close()
        assert dump(db) == before and len(before["files"]) == 3

    def test_version_4_catalog_is_rebuilt_in_place(self, tmp_path: Path) -> None:
        frames, records, db = two_frames_catalogued(tmp_path)
        before = dump(db)
        as_version_4(db)
        assert dump(db) == before
        assert all(table_sql(db, t).startswith("CREATE TABLE") for t in CHILD_TABLES)

        with LocalSink(tmp_path) as sink:
            assert all(table_sql(db, t).startswith("CREATE VIEW") for t in CHILD_TABLES)
            assert dump(db) == before
            again = make_record(frames[0])
            assert sink.write([upsert(again, 3)])[0].outcome is Outcome.DELIVERED
            gone = OutboxEntry(4, records[1]["path"], "delete", None, 0, 0.0)
            assert sink.write([gone])[0].outcome is Outcome.DELIVERED
        after = dump(db)
        assert [r[0] for r in after["files"]] == [file_id_for(records[0]["path"])]
        assert all(row[0] == after["files"][0][0] for t in CHILD_TABLES for row in after[t])
        assert len(after["channels"]) == len(records[0]["parts"][0]["channels"])
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == CATALOG_VERSION
        for table in CHILD_TABLES:  # nothing left behind the views
            stored = conn.execute(f"SELECT count(*) FROM {rows_table(table)}").fetchone()[0]
            assert stored == len(after[table])
        conn.close()

    def test_a_column_added_to_a_child_table_reaches_its_view(self, tmp_path: Path) -> None:
        # A later version appending a nullable column to a child table: stored in its
        # _rows table, shown by its view, made again. Here: channels.inf_count.
        frame = exrgen.write_scanline(tmp_path / "a.0001.exr")
        record = make_record(frame)
        with LocalSink(tmp_path) as sink:
            sink.write([upsert(record, 1)])
        db = tmp_path / "catalog.db"
        before = dump(db)
        names = TABLES["channels"].names
        assert names[-1] == "inf_count" and TABLES["channels"].field("inf_count").nullable
        conn = sqlite3.connect(db)
        conn.execute("DROP VIEW channels")
        conn.execute("ALTER TABLE channels_rows DROP COLUMN inf_count")
        picked = ", ".join(f"{'f' if c in ('file_id', 'file_path') else 'r'}.{c} AS {c}"
                           for c in names[:-1])  # fmt: skip
        conn.execute(f"CREATE VIEW channels AS SELECT {picked} FROM channels_rows AS r "
                     "JOIN files AS f ON f.file_ref = r.file_ref")  # fmt: skip
        conn.commit()
        conn.close()
        with LocalSink(tmp_path) as sink:
            assert sink.count("channels") == len(before["channels"])
        after = dump(db)
        assert after["channels"] == [(*row[:-1], None) for row in before["channels"]]
        assert after["files"] == before["files"]

    def test_clustered_tables_are_rebuilt_in_place(self, tmp_path: Path) -> None:
        frames, records, db = two_frames_catalogued(tmp_path)
        before = dump(db)
        as_version_4(db, clustered=True)  # the layout before 2026-12: clustered on the keys
        assert all("WITHOUT ROWID" in table_sql(db, t) for t in FILE_TABLES)

        with LocalSink(tmp_path) as sink:
            stored = ["files", *(rows_table(t) for t in CHILD_TABLES)]
            assert not any("WITHOUT ROWID" in table_sql(db, t) for t in stored)
            assert dump(db) == before
            replay = sink.write([upsert(records[0], 3)])  # same inspection_id: a no-op
            assert replay[0].outcome is Outcome.DELIVERED and dump(db) == before
            again = make_record(frames[1])
            assert sink.write([upsert(again, 4)])[0].outcome is Outcome.DELIVERED
            assert sink.count("files") == 2
            row = sink.file_row(frames[1])
            assert row is not None and row["inspection_count"] == 2
        conn = sqlite3.connect(db)
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'files'"
            )
        }
        conn.close()
        assert "files_by_path" in indexes
