"""The catalog schema (declared once) and the pure row builder."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import exrgen
import numpy as np
import pyarrow as pa
import pytest

from exrwatchd.catalog import (
    ATTRIBUTES,
    CATALOG_VERSION,
    CHANNEL_DIM,
    CHANNELS,
    CHILD_TABLES,
    FILE_TABLES,
    FILES,
    METADATA_DIM,
    PARTS,
    SEQUENCES,
    TABLES,
    FileRows,
    RecordError,
    build_rows,
    file_id_for,
    normalize_path,
    to_arrow,
)
from exrwatchd.exr import inspect_path
from exrwatchd.exr.report import inspection_to_dict
from exrwatchd.sinks import LocalSink
from exrwatchd.sinks._sqlite_catalog import FILE_REF, FROM_FILES, ddl, rows_table, sql_type


def make_record(path: str | os.PathLike[str], **extra: Any) -> dict[str, Any]:
    """What the daemon journals for `path`: the JSON record plus its three keys, after a JSON
    round trip (the journal stores records as JSON)."""
    result = inspect_path(os.fspath(path))
    record = inspection_to_dict(result, embeddings=True)
    record["inspection_id"] = uuid.uuid4().hex
    record["inspected_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    record["inode"] = result.stat.inode if result.stat else None
    record.update(extra)
    return json.loads(json.dumps(record))


def _types(t: pa.DataType) -> list[pa.DataType]:
    """`t` and every type nested in it."""
    out = [t]
    for i in range(t.num_fields):
        out += _types(t.field(i).type)
    return out


ALLOWED = (
    pa.string(),
    pa.int32(),
    pa.int64(),
    pa.float32(),
    pa.float64(),
    pa.bool_(),
    pa.timestamp("us", tz="UTC"),
    pa.binary(),  # files.file_path_bytes (the SDK maps it to VAST's binary type)
)


class TestSchema:
    def test_tables(self) -> None:
        assert list(TABLES) == ["files", "parts", "channels", "attributes", "sequences"]
        assert TABLES == {"files": FILES, "parts": PARTS, "channels": CHANNELS,
                          "attributes": ATTRIBUTES, "sequences": SEQUENCES}  # fmt: skip
        assert FILE_TABLES == ("files", "parts", "channels", "attributes")
        assert isinstance(CATALOG_VERSION, int)

    def test_sqlite_ddl_is_the_arrow_schema(self, tmp_path: Path) -> None:
        with LocalSink(tmp_path / "catalog.db"):
            pass
        conn = sqlite3.connect(tmp_path / "catalog.db")
        objects = [tuple(r) for r in conn.execute(
            "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view') "
            "ORDER BY rowid")]  # fmt: skip
        stored = [("table", rows_table(t) if t in CHILD_TABLES else t) for t in TABLES]
        assert objects == stored + [("view", t) for t in CHILD_TABLES]
        for name, schema in TABLES.items():  # what queries see, the views included
            info = [r for r in conn.execute(f"PRAGMA table_info({name})") if r[1] != FILE_REF]
            assert [r[1] for r in info] == schema.names
            assert [r[2] for r in info] == [sql_type(f.type) for f in schema]
            if name not in CHILD_TABLES:
                assert [bool(r[3]) for r in info] == [not f.nullable for f in schema]
        for name in CHILD_TABLES:  # what is stored: the columns but file_id and file_path
            info = conn.execute(f"PRAGMA table_info({rows_table(name)})").fetchall()
            fields = [f for f in TABLES[name] if f.name not in FROM_FILES]
            assert [r[1] for r in info] == [FILE_REF, *(f.name for f in fields)]
            assert [bool(r[3]) for r in info[1:]] == [not f.nullable for f in fields]
        conn.close()

    def test_ddl_derived_not_written(self) -> None:
        creates = [s for s in ddl() if s.startswith("CREATE TABLE")]
        views = [s for s in ddl() if s.startswith("CREATE VIEW")]
        assert len(creates) == len(TABLES) and len(views) == len(CHILD_TABLES)
        for statement, (name, schema) in zip(creates, TABLES.items(), strict=True):
            assert f" {rows_table(name) if name in CHILD_TABLES else name} (" in statement
            for field in schema:
                if name not in CHILD_TABLES or field.name not in FROM_FILES:
                    assert f"    {field.name} {sql_type(field.type)}" in statement
        for statement, name in zip(views, CHILD_TABLES, strict=True):
            assert f" {name} AS SELECT " in statement
            assert all(f" AS {field.name}" in statement for field in TABLES[name])

    def test_only_types_vast_accepts(self) -> None:
        for schema in TABLES.values():
            for field in schema:
                for t in _types(field.type):
                    assert not pa.types.is_large_string(t), field.name
                    assert not pa.types.is_large_binary(t), field.name
                    assert not pa.types.is_large_list(t), field.name
                if pa.types.is_fixed_size_list(field.type):
                    item = field.type.value_field
                    assert item.type == pa.float32() and not item.nullable, field.name
                else:
                    assert field.type in ALLOWED, (field.name, field.type)

    def test_vectors(self) -> None:
        for name, dim in (("metadata_embedding", METADATA_DIM),
                          ("channel_fingerprint", CHANNEL_DIM)):  # fmt: skip
            t = FILES.field(name).type
            assert t == pa.list_(pa.field("item", pa.float32(), nullable=False), dim)

    def test_dims_match_the_embedder(self) -> None:
        from exrwatchd.exr import embed

        assert (METADATA_DIM, CHANNEL_DIM) == (embed.METADATA_DIM, embed.CHANNEL_DIM)

    def test_every_field_documented(self) -> None:
        for name, schema in TABLES.items():
            assert schema.metadata[b"table"] == name.encode()
            for field in schema:
                assert field.metadata and field.metadata[b"doc"], f"{name}.{field.name}"

    def test_predecessor_names_kept(self) -> None:
        # ../shared/seed: the predecessor's columns (tile_depth and the per-channel
        # fingerprint were dropped: EXR tiles are 2D, and the fingerprint is per file).
        predecessor = {
            FILES: "file_id file_path file_path_normalized header_hash size_bytes mtime "
            "multipart_count is_deep metadata_embedding inspection_timestamp inspection_count "
            "last_inspected",
            PARTS: "file_id file_path part_index part_name view_name multi_view data_window "
            "display_window pixel_aspect_ratio line_order compression is_tiled tile_width "
            "tile_height is_deep",
            CHANNELS: "file_id file_path part_index channel_name channel_type x_sampling "
            "y_sampling",
            ATTRIBUTES: "file_id file_path part_index attribute_name attribute_type "
            "attribute_value",
        }
        for schema, names in predecessor.items():
            assert set(names.split()) <= set(schema.names), schema.metadata[b"table"]


class TestFileId:
    def test_depends_on_path_only(self, tmp_path: Path) -> None:
        path = exrgen.write_scanline(tmp_path / "beauty.0001.exr")
        first = build_rows(make_record(path))
        os.utime(path, ns=(1, 1))
        exrgen.write_multipart(path)  # another header, another size, another mtime
        second = build_rows(make_record(path))
        assert first.files["header_hash"] != second.files["header_hash"]
        assert first.files["mtime"] != second.files["mtime"]
        assert first.file_id == second.file_id == file_id_for(path)

    def test_case_is_kept(self) -> None:
        assert file_id_for("/mnt/Shot/a.exr") != file_id_for("/mnt/shot/a.exr")
        assert normalize_path("/mnt/Shot/a.exr") == "/mnt/Shot/a.exr"

    def test_normalized_not_resolved(self, tmp_path: Path) -> None:
        assert file_id_for("/mnt//shot/./x/../a.exr") == file_id_for("/mnt/shot/a.exr")
        assert normalize_path("/mnt//shot/./a.exr") == "/mnt/shot/a.exr"
        target = exrgen.write_scanline(tmp_path / "real.exr")
        link = tmp_path / "link.exr"
        link.symlink_to(target)
        assert file_id_for(link) != file_id_for(target)
        assert build_rows(make_record(link)).files["file_path_normalized"] == str(link)

    def test_is_sha256_of_the_path_bytes(self) -> None:
        fid = file_id_for("/mnt/a.exr")
        assert fid == hashlib.sha256(b"/mnt/a.exr").hexdigest()[:32]
        assert len(fid) == 32 and int(fid, 16) >= 0

    def test_invalid_utf8_path(self, tmp_path: Path) -> None:
        raw = os.fsdecode(os.fsencode(str(tmp_path)) + b"/bad_\xff.exr")
        os.rename(exrgen.write_scanline(tmp_path / "good.exr"), raw)
        lookalike = str(tmp_path) + "/bad_\\udcff.exr"
        assert file_id_for(raw) == hashlib.sha256(os.fsencode(raw)).hexdigest()[:32]
        assert file_id_for(raw) != file_id_for(lookalike)
        rows = build_rows(make_record(raw))
        assert rows.files["file_path"] == lookalike  # backslashreplace for display
        assert rows.files["file_path_normalized"] == lookalike
        assert all(r["file_path"] == lookalike for r in rows.parts + rows.channels)
        rows.files["file_path"].encode("utf-8")  # storable anywhere


class TestBuildRows:
    def test_every_kind(self, kinds_dir: dict[str, Path]) -> None:
        for kind, path in kinds_dir.items():
            record = make_record(path)
            rows = build_rows(record)
            check_rows(rows, record, kind)

    def test_kind_details(self, kinds_dir: dict[str, Path]) -> None:
        rows = {k: build_rows(make_record(p)) for k, p in kinds_dir.items()}
        assert rows["multipart"].files["multipart_count"] > 1
        assert rows["deep_scanline"].files["is_deep"] and rows["deep_tiled"].parts[0]["is_deep"]
        assert not rows["scanline_half"].files["is_deep"]
        tiled = rows["tiled"].parts[0]
        assert tiled["is_tiled"] and (tiled["tile_width"], tiled["tile_height"]) == (16, 16)
        assert tiled["tile_level_mode"] == "one_level"
        assert rows["mipmap"].parts[0]["tile_level_mode"] == "mipmap_levels"
        flat = rows["scanline_half"].parts[0]
        assert not flat["is_tiled"] and flat["tile_width"] is None
        assert flat["data_window"] == "[0,0,31,15]" and (flat["width"], flat["height"]) == (32, 16)
        offset = rows["scanline_offset_window"].parts[0]
        assert json.loads(offset["data_window"]) == [-4, 3, 11, 10]
        assert {c["channel_type"] for c in rows["scanline_uint"].channels} == {"uint"}
        assert rows["scanline_decreasing_y"].parts[0]["line_order"] == "decreasing_y"
        sub = {c["channel_name"]: c for c in rows["subsampled"].channels}
        assert any(c["x_sampling"] == 2 for c in sub.values())
        for name, fr in rows.items():
            if name.startswith("compression_"):
                assert fr.parts[0]["compression"] == name.removeprefix("compression_")

    def test_multi_view(self, kinds_dir: dict[str, Path]) -> None:
        single = build_rows(make_record(kinds_dir["multiview_singlepart"]))
        assert single.parts[0]["multi_view"]
        by_name = {c["channel_name"]: c for c in single.channels}
        assert by_name["right.R"]["view_name"] == "right"
        assert by_name["right.R"]["layer_name"] == "right"
        assert by_name["right.R"]["component_name"] == "R"
        assert by_name["R"]["view_name"] == "left" and by_name["R"]["layer_name"] == ""
        multi = build_rows(make_record(kinds_dir["multiview_multipart"]))
        assert [p["view_name"] for p in multi.parts] == ["left", "right"]
        assert all(p["multi_view"] for p in multi.parts)
        assert not build_rows(make_record(kinds_dir["multipart"])).parts[0]["multi_view"]

    def test_layers(self, tmp_path: Path) -> None:
        path = exrgen.write_scanline(tmp_path / "aov.exr",
                                     channels=("A", "diffuse.R", "light.key.G"))  # fmt: skip
        rows = build_rows(make_record(path))
        split = {c["channel_name"]: (c["layer_name"], c["component_name"]) for c in rows.channels}
        assert split == {"A": ("", "A"), "diffuse.R": ("diffuse", "R"),
                         "light.key.G": ("light.key", "G")}  # fmt: skip
        assert [c["channel_index"] for c in rows.channels] == list(range(3))

    def test_attributes(self, kinds_dir: dict[str, Path]) -> None:
        record = make_record(kinds_dir["every_attribute_type"])
        rows = build_rows(record)
        attrs = record["parts"][0]["attributes"]
        got = {a["attribute_name"]: a for a in rows.attributes}
        assert set(got) == set(attrs)
        for name, attr in attrs.items():
            assert got[name]["attribute_type"] == attr["type"]
            assert json.loads(got[name]["attribute_value"]) == attr["value"]
            assert got[name]["attribute_base64"] == attr.get("base64")
        assert got["aOpaque"]["attribute_value"] == "null"
        assert got["aOpaque"]["attribute_base64"] == "AQIDBA=="

    def test_frame_number(self, tmp_path: Path) -> None:
        path = exrgen.write_scanline(tmp_path / "sh010_beauty.1042.exr")
        assert build_rows(make_record(path)).files["frame_number"] == 1042
        huge = make_record(path, frame_number=10**30)
        assert build_rows(huge).files["frame_number"] is None

    def test_audit_fields(self, tmp_path: Path) -> None:
        path = exrgen.write_scanline(tmp_path / "a.exr")
        record = make_record(path, inspected_at="2026-03-01T10:20:30.123456Z")
        files = build_rows(record).files
        moment = datetime(2026, 3, 1, 10, 20, 30, 123456, tzinfo=UTC)
        assert files["inspection_timestamp"] == files["last_inspected"] == moment
        assert files["inspection_count"] == 1
        assert files["last_inspection_id"] == record["inspection_id"]
        assert files["mtime"].tzinfo is not None
        assert files["inode"] == os.stat(path).st_ino

    def test_error_record(self, tmp_path: Path) -> None:
        path = tmp_path / "broken.0007.exr"
        path.write_bytes(b"not an exr at all")
        record = make_record(path)
        rows = build_rows(record)
        f = rows.files
        assert (f["error_kind"], f["is_complete"]) == ("not_exr", False)
        assert f["error_message"] == record["error"]["message"]
        assert f["header_hash"] is None and f["multipart_count"] == 0
        assert f["metadata_embedding"] is None and f["channel_fingerprint"] is None
        assert f["frame_number"] == 7 and f["size_bytes"] == 17
        assert rows.parts == rows.channels == rows.attributes == []
        vanished = build_rows(make_record(tmp_path / "gone.exr"))
        assert vanished.files["error_kind"] == "vanished" and vanished.files["mtime"] is None

    def test_incomplete(self, tmp_path: Path) -> None:
        src = exrgen.write_scanline(tmp_path / "full.exr")
        data = src.read_bytes()
        cut = tmp_path / "cut.exr"
        cut.write_bytes(data[: len(data) - 10])
        f = build_rows(make_record(cut)).files
        assert not f["is_complete"] and f["incomplete_reason"] and f["error_kind"] is None

    def test_inode_wraps_into_int64(self, tmp_path: Path) -> None:
        path = exrgen.write_scanline(tmp_path / "a.exr")
        assert build_rows(make_record(path, inode=2**64 - 1)).files["inode"] == -1
        assert build_rows(make_record(path, inode=None)).files["inode"] is None

    def test_non_finite_pixel_aspect_ratio(self, tmp_path: Path) -> None:
        record = make_record(exrgen.write_scanline(tmp_path / "a.exr"))
        record["parts"][0]["pixel_aspect_ratio"] = "NaN"
        assert build_rows(record).parts[0]["pixel_aspect_ratio"] is None

    @pytest.mark.parametrize("key", ["path", "inspection_id", "inspected_at", "parts",
                                     "complete", "header_hash"])  # fmt: skip
    def test_missing_key(self, tmp_path: Path, key: str) -> None:
        record = make_record(exrgen.write_scanline(tmp_path / "a.exr"))
        del record[key]
        with pytest.raises(RecordError, match=key):
            build_rows(record)

    @pytest.mark.parametrize(
        ("mutate", "match"),
        [
            (lambda r: r.update(size_bytes="12"), "size_bytes"),
            (lambda r: r.update(metadata_embedding=[0.0] * 5), "metadata_embedding"),
            (lambda r: r.update(channel_fingerprint=[float("nan")] * 128), "NaN"),
            (lambda r: r.update(inspected_at="yesterday"), "inspected_at"),
            (lambda r: r["parts"][0]["channels"][0].pop("name"), "name"),
            (lambda r: r["parts"][0].update(data_window=[0, 0, 1]), "data_window"),
            (lambda r: r.update(parts={}), "parts"),
            (lambda r: r.update(error="boom"), "error"),
        ],
    )
    def test_malformed(self, tmp_path: Path, mutate: Any, match: str) -> None:
        record = make_record(exrgen.write_scanline(tmp_path / "a.exr"))
        mutate(record)
        with pytest.raises(RecordError, match=match):
            build_rows(record)


def check_rows(rows: FileRows, record: dict[str, Any], kind: str) -> None:
    """`rows` hold exactly what `record` says, with the schema's keys and value types."""
    parts = record["parts"]
    assert rows.file_id == file_id_for(record["path"]), kind
    assert len(rows.parts) == len(parts) == rows.files["multipart_count"], kind
    assert len(rows.channels) == sum(len(p["channels"]) for p in parts), kind
    assert len(rows.attributes) == sum(len(p["attributes"]) for p in parts), kind
    assert [p["channel_count"] for p in rows.parts] == [len(p["channels"]) for p in parts]
    assert rows.files["frame_number"] == record["frame_number"], kind
    assert rows.files["header_hash"] == record["header_hash"], kind
    assert rows.files["is_complete"] is record["complete"] is True, kind
    assert rows.files["embedding_version"] == record["embedding_version"], kind
    for name, dim in (("metadata_embedding", METADATA_DIM), ("channel_fingerprint", CHANNEL_DIM)):
        vec = rows.files[name]
        assert vec.dtype == np.float32 and vec.shape == (dim,), (kind, name)
        assert np.array_equal(vec, np.asarray(record[name], dtype=np.float32)), (kind, name)
    for part_row, part in zip(rows.parts, parts, strict=True):
        assert part_row["compression"] == part["compression"]
        assert part_row["part_type"] == part["type"]
        assert json.loads(part_row["display_window"]) == part["display_window"]
    tables = {"files": [rows.files], "parts": rows.parts, "channels": rows.channels,
              "attributes": rows.attributes}  # fmt: skip
    for table, table_rows in tables.items():
        schema = TABLES[table]
        for row in table_rows:
            assert list(row) == schema.names, (kind, table)
            assert row["file_id"] == rows.file_id
            for field in schema:
                check_value(row[field.name], field, f"{kind}: {table}.{field.name}")


def check_value(value: Any, field: pa.Field, where: str) -> None:
    if value is None:
        assert field.nullable, where
        return
    t = field.type
    if pa.types.is_string(t):
        assert isinstance(value, str), where
        value.encode("utf-8")
    elif pa.types.is_boolean(t):
        assert isinstance(value, bool), where
    elif pa.types.is_integer(t):
        assert isinstance(value, int) and not isinstance(value, bool), where
        bits = t.bit_width - 1
        assert -(2**bits) <= value < 2**bits, where
    elif pa.types.is_floating(t):
        assert isinstance(value, float), where
    elif pa.types.is_timestamp(t):
        assert isinstance(value, datetime) and value.utcoffset() is not None, where
    elif pa.types.is_binary(t):
        assert isinstance(value, bytes), where
    else:
        assert isinstance(value, np.ndarray) and value.dtype == np.float32, where
        assert value.shape == (t.list_size,), where


class TestToArrow:
    def test_tables_validate_against_the_schemas(
        self, kinds_dir: dict[str, Path], tmp_path: Path
    ) -> None:
        broken = tmp_path / "broken.exr"
        broken.write_bytes(b"garbage")
        records = [make_record(p) for p in kinds_dir.values()] + [make_record(broken)]
        rows = [build_rows(r) for r in records]
        tables = to_arrow(rows)
        assert list(tables) == list(FILE_TABLES)
        for name, table in tables.items():
            assert table.schema.equals(TABLES[name], check_metadata=True), name
            table.validate(full=True)
            for field in table.schema:
                if not field.nullable:
                    assert table.column(field.name).null_count == 0, (name, field.name)
        assert tables["files"].num_rows == len(rows)
        assert tables["parts"].num_rows == sum(len(r.parts) for r in rows)
        assert tables["channels"].num_rows == sum(len(r.channels) for r in rows)
        assert tables["attributes"].num_rows == sum(len(r.attributes) for r in rows)
        emb = tables["files"].column("metadata_embedding")
        assert emb.null_count == 1  # the broken file
        first = np.asarray(emb[0].values.to_numpy(zero_copy_only=False), dtype=np.float32)
        assert np.array_equal(first, rows[0].files["metadata_embedding"])
        ts = tables["files"].column("last_inspected")[0].as_py()
        assert ts == rows[0].files["last_inspected"]

    def test_empty_batch(self) -> None:
        tables = to_arrow([])
        assert all(t.num_rows == 0 and t.schema.equals(TABLES[n]) for n, t in tables.items())
