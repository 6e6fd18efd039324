"""Pixel-health columns in the catalog: rows, the upsert plan, both sinks, catalog upgrades.

Records are made from real files exactly as the daemon makes them (make_record, then the
pixel lane's `measure`), and go through the journal's JSON round trip.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import OpenEXR
import pyarrow as pa
import pytest
import vastdb
from catalog_layouts import as_version_4
from exrgen import PartSpec, ramp, write_multipart, write_subsampled
from harness import DaemonProcess, wait_for, write_config
from vast_emulator import VastEmulator
from vastdb.config import SessionConfig

from exrwatchd.catalog import TABLES, RecordError, build_rows
from exrwatchd.config import VastConfig
from exrwatchd.exr import inspect_path
from exrwatchd.filesig import FileSig
from exrwatchd.journal import OutboxEntry
from exrwatchd.pipeline import inspect_settled
from exrwatchd.pipeline.pixel_lane import measure
from exrwatchd.secrets import Secret
from exrwatchd.sinks import LocalSink, Outcome, SinkUnavailable
from exrwatchd.sinks.vast import VastSink, init_catalog
from exrwatchd.watch import SettledFile

PIXEL_FILE_COLUMNS = ["has_nan", "has_inf", "is_constant", "pixel_stats_error",
                      "pixel_stats_digest"]  # fmt: skip
PIXEL_CHANNEL_COLUMNS = ["pixel_min", "pixel_max", "pixel_mean", "nan_count", "inf_count"]
_ids = itertools.count(1)


def write(path: Path, channels: dict[str, Any]) -> Path:
    header = {"type": OpenEXR.scanlineimage, "compression": OpenEXR.ZIP_COMPRESSION}
    OpenEXR.File(header, channels).write(str(path))
    return path


def ramps(nan: bool = False) -> dict[str, Any]:
    channels = {name: ramp((16, 8), "float", k) for k, name in enumerate("BGR")}
    if nan:
        channels["R"] = channels["R"].copy()
        channels["R"][0, 0] = np.nan
        channels["G"] = channels["G"].copy()
        channels["G"][1, 1] = np.inf
    return channels


def record(path: Path, *, pixels: bool = True) -> dict[str, Any]:
    """The journaled record of `path`, with pixel stats as the lane adds them (or without)."""
    st = path.stat()
    settled = SettledFile(str(path), FileSig(st.st_size, st.st_mtime_ns, st.st_ino), 0.0, 0)
    verdict = inspect_settled(settled)
    if pixels:
        verdict = measure(verdict)
    assert verdict.record is not None, verdict
    return json.loads(json.dumps(verdict.record))


def stat_list(c: dict[str, Any]) -> list[Any]:
    """A channel's stats in the record, in the order of the catalog's channel columns."""
    return [c["min"], c["max"], c["mean"], c["nan_count"], c["inf_count"]]


def upsert(rec: dict[str, Any]) -> OutboxEntry:
    return OutboxEntry(next(_ids), rec["path"], "upsert", rec, 0, 0.0)


def local_rows(sink: LocalSink, table: str, path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(sink.path)
    conn.row_factory = sqlite3.Row
    try:
        query = f"SELECT * FROM {table} WHERE file_path = ?"
        return [dict(r) for r in conn.execute(query, (str(path),))]
    finally:
        conn.close()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[LocalSink]:
    s = LocalSink(tmp_path / "state" / "catalog.db")
    s.open()
    yield s
    s.close()


# --------------------------------------------------------------------------- rows


def test_rows_match_channels_to_stats_by_part_and_name(tmp_path: Path) -> None:
    specs = [PartSpec("beauty"), PartSpec("depth", channels=("Z",), pixel_type="float")]
    path = write_multipart(tmp_path / "multi.exr", specs)
    rec = record(path)
    rows = build_rows(rec)
    assert [rows.files[c] for c in PIXEL_FILE_COLUMNS[:4]] == [False, False, False, None]
    stats = {(p["index"], c["name"]): c for p in rec["pixel_stats"]["parts"]
             for c in p["channels"]}  # fmt: skip
    assert len(rows.channels) == len(stats) == 5
    for row in rows.channels:
        want = stats[(row["part_index"], row["channel_name"])]
        assert [row[c] for c in PIXEL_CHANNEL_COLUMNS] == stat_list(want)
        assert list(row) == TABLES["channels"].names  # schema order, as the sinks expect


def test_a_channel_missing_from_the_stats_stays_null(tmp_path: Path) -> None:
    rec = record(write(tmp_path / "a.exr", ramps()))
    rec["pixel_stats"]["parts"][0]["channels"] = [
        c for c in rec["pixel_stats"]["parts"][0]["channels"] if c["name"] != "G"]  # fmt: skip
    rows = {r["channel_name"]: r for r in build_rows(rec).channels}
    assert [rows["G"][c] for c in PIXEL_CHANNEL_COLUMNS] == [None] * 5
    assert rows["R"]["pixel_min"] is not None


def test_unavailable_and_absent_stats(tmp_path: Path) -> None:
    sub = build_rows(record(write_subsampled(tmp_path / "yc.exr")))
    assert sub.files["pixel_stats_error"].startswith("Could not open file")
    assert [sub.files[c] for c in PIXEL_FILE_COLUMNS[:3]] == [None] * 3
    assert sub.files["pixel_stats_digest"] is not None and len(sub.channels) == 3
    off = record(write(tmp_path / "b.exr", ramps()), pixels=False)
    assert off["pixel_stats"] is None
    rows = build_rows(off)
    assert [rows.files[c] for c in PIXEL_FILE_COLUMNS] == [None] * 5
    del off["pixel_stats"]  # a record journaled before pixel stats existed
    again = build_rows(off).files
    assert [again[c] for c in PIXEL_FILE_COLUMNS] == [None] * 5


@pytest.mark.parametrize("damage", [
    lambda s: s.update(has_nan="yes"),
    lambda s: s.update(parts={}),
    lambda s: s["parts"][0]["channels"][0].update(nan_count=1.5),
    lambda s: s["parts"][0]["channels"][0].pop("min"),
])  # fmt: skip
def test_malformed_stats_reject_the_entry_alone(
    tmp_path: Path, sink: LocalSink, damage: Any
) -> None:
    good = record(write(tmp_path / "good.exr", ramps()))
    bad = record(write(tmp_path / "bad.exr", ramps()))
    damage(bad["pixel_stats"])
    with pytest.raises(RecordError):
        build_rows(bad)
    outcome = [d.outcome for d in sink.write([upsert(good), upsert(bad)])]
    assert outcome == [Outcome.DELIVERED, Outcome.REJECT]


# --------------------------------------------------------------------------- the plan


def test_same_header_and_stats_only_touches_audit_columns(tmp_path: Path, sink: LocalSink) -> None:
    path = write(tmp_path / "a.exr", ramps())
    sink.write([upsert(record(path))])
    before = local_rows(sink, "files", path)[0]
    sink.write([upsert(record(path))])
    after = local_rows(sink, "files", path)[0]
    assert after["inspection_count"] == 2
    assert [after[c] for c in PIXEL_FILE_COLUMNS] == [before[c] for c in PIXEL_FILE_COLUMNS]
    assert after["inspection_timestamp"] == before["inspection_timestamp"]


def test_same_header_other_pixels_rewrites_the_stats(tmp_path: Path, sink: LocalSink) -> None:
    path = write(tmp_path / "a.exr", ramps())
    first = record(path)
    sink.write([upsert(first)])
    before = local_rows(sink, "files", path)[0]
    write(path, ramps(nan=True))
    second = record(path)
    assert second["header_hash"] == first["header_hash"]
    sink.write([upsert(second)])
    after = local_rows(sink, "files", path)[0]
    assert (after["has_nan"], after["has_inf"], after["inspection_count"]) == (1, 1, 2)
    assert after["inspection_timestamp"] == before["inspection_timestamp"]  # dates the header
    assert after["last_inspected"] != before["last_inspected"]
    channels = {r["channel_name"]: r for r in local_rows(sink, "channels", path)}
    assert (channels["R"]["nan_count"], channels["G"]["inf_count"]) == (1, 1)
    assert len(channels) == 3 and sink.count("files") == 1

    off = record(path, pixels=False)  # pixel stats switched off: the old ones go
    sink.write([upsert(off)])
    row = local_rows(sink, "files", path)[0]
    assert [row[c] for c in PIXEL_FILE_COLUMNS] == [None] * 5 and row["inspection_count"] == 3
    assert all(r["nan_count"] is None for r in local_rows(sink, "channels", path))


def test_the_single_entry_path_plans_the_same(tmp_path: Path, sink: LocalSink) -> None:
    """Two entries of one path in a batch take the per-entry path (upsert, not upsert_batch)."""
    path = write(tmp_path / "a.exr", ramps())
    first = record(path)
    write(path, ramps(nan=True))
    second = record(path)
    assert [d.outcome for d in sink.write([upsert(first), upsert(second)])] == [
        Outcome.DELIVERED] * 2  # fmt: skip
    row = local_rows(sink, "files", path)[0]
    assert (row["has_nan"], row["inspection_count"]) == (1, 2)
    assert row["inspection_timestamp"] == first["inspected_at"]


# --------------------------------------------------------------------------- local upgrade


def _older_catalog(db: Path, version: int, rows: list[dict[str, Any]]) -> None:
    """A catalog as an exrwatchd without pixel columns left it, holding `rows`' files."""
    with LocalSink(db) as s:
        s.write([upsert(r) for r in rows])
    as_version_4(db)
    conn = sqlite3.connect(db)
    # Without the columns appended after the pixel ones, too (files.file_path_bytes).
    later = TABLES["files"].names[TABLES["files"].names.index(PIXEL_FILE_COLUMNS[-1]) + 1 :]
    for table, columns in (("files", [*PIXEL_FILE_COLUMNS, *later]),
                           ("channels", PIXEL_CHANNEL_COLUMNS)):  # fmt: skip
        for column in columns:
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("version", [1, 2])
def test_older_catalog_gains_the_pixel_columns(tmp_path: Path, version: int) -> None:
    """Version 1, and a version-2 catalog made before the pixel columns existed."""
    db = tmp_path / "catalog.db"
    old = write(tmp_path / "old.exr", ramps())
    _older_catalog(db, version, [record(old, pixels=False)])
    new = write(tmp_path / "new.exr", ramps(nan=True))
    with LocalSink(db) as s:
        assert s.count("files") == 1
        assert [d.outcome for d in s.write([upsert(record(new))])] == [Outcome.DELIVERED]
        rows = {r["file_path"]: r for r in (*local_rows(s, "files", old),
                                            *local_rows(s, "files", new))}  # fmt: skip
    assert [rows[str(old)][c] for c in PIXEL_FILE_COLUMNS] == [None] * 5
    assert (rows[str(new)]["has_nan"], rows[str(new)]["has_inf"]) == (1, 1)
    conn = sqlite3.connect(db)
    for table in ("files", "channels"):  # files' own key (file_ref) aside
        have = [r[1] for r in conn.execute(f"PRAGMA table_info({table})") if r[1] != "file_ref"]
        assert have == TABLES[table].names
    conn.close()


# --------------------------------------------------------------------------- VAST

BUCKET, SCHEMA = "exrwatch", "exr_metadata"


@pytest.fixture
def emu() -> Iterator[VastEmulator]:
    with VastEmulator(buckets={BUCKET}) as emulator:
        yield emulator


def vast_config(emu: VastEmulator) -> VastConfig:
    return VastConfig(
        endpoint=emu.endpoint, bucket=BUCKET, schema=SCHEMA,
        access_key=Secret(emu.access_key, "test"), secret_key=Secret(emu.secret_key, "test"),
        connect_timeout=2.0, read_timeout=2.0,
    )  # fmt: skip


def vast_session(emu: VastEmulator) -> Any:
    return vastdb.connect(
        endpoint=emu.endpoint, access=emu.access_key, secret=emu.secret_key, timeout=(5, 5),
        config=SessionConfig(data_endpoints=[emu.endpoint]),
    )  # fmt: skip


def vast_rows(emu: VastEmulator, table: str) -> list[dict[str, Any]]:
    with vast_session(emu).transaction() as tx:
        t = tx.bucket(BUCKET).schema(SCHEMA).table(table, fail_if_missing=False)
        return [] if t is None else t.select().read_all().to_pylist()


def test_vast_sink_writes_and_rewrites_the_pixel_columns(tmp_path: Path, emu: VastEmulator) -> None:
    init_catalog(vast_config(emu))
    sink = VastSink(vast_config(emu))
    sink.open()
    path = write(tmp_path / "a.exr", ramps())
    black = write(tmp_path / "black.exr", {c: np.zeros((8, 16), np.float16) for c in "BGR"})
    sub = write_subsampled(tmp_path / "yc.exr")
    first = record(path)
    batch = [upsert(first), upsert(record(black)), upsert(record(sub))]
    assert [d.outcome for d in sink.write(batch)] == [Outcome.DELIVERED] * 3
    files = {r["file_path"]: r for r in vast_rows(emu, "files")}
    assert (files[str(black)]["is_constant"], files[str(black)]["has_nan"]) == (True, False)
    assert files[str(sub)]["pixel_stats_error"].startswith("Could not open file")
    assert files[str(sub)]["has_nan"] is None
    want = {(p["index"], c["name"]): c for p in first["pixel_stats"]["parts"]
            for c in p["channels"]}  # fmt: skip
    channels = [r for r in vast_rows(emu, "channels") if r["file_path"] == str(path)]
    assert len(channels) == 3
    for row in channels:
        c = want[(row["part_index"], row["channel_name"])]
        assert [row[k] for k in PIXEL_CHANNEL_COLUMNS] == stat_list(c)

    write(path, ramps(nan=True))  # same header, other pixels: replaced, timestamp kept
    sink.write([upsert(record(path))])
    files = {r["file_path"]: r for r in vast_rows(emu, "files")}
    assert len(files) == 3
    row = files[str(path)]
    assert (row["has_nan"], row["has_inf"], row["inspection_count"]) == (True, True, 2)
    assert row["inspection_timestamp"].isoformat().replace("+00:00", "Z").startswith(
        first["inspected_at"][:19])  # fmt: skip
    nan_counts = {r["channel_name"]: r["nan_count"] for r in vast_rows(emu, "channels")
                  if r["file_path"] == str(path)}  # fmt: skip
    assert nan_counts == {"B": 0, "G": 0, "R": 1}
    sink.close()


def test_vast_init_adds_the_pixel_columns_to_older_tables(tmp_path: Path,
                                                         emu: VastEmulator) -> None:  # fmt: skip
    pixel = set(PIXEL_FILE_COLUMNS) | set(PIXEL_CHANNEL_COLUMNS)
    with vast_session(emu).transaction() as tx:
        schema = tx.bucket(BUCKET).create_schema(SCHEMA)
        for name, full in TABLES.items():
            older = pa.schema([f for f in full if f.name not in pixel], metadata=full.metadata)
            schema.create_table(name, older)
    with pytest.raises(SinkUnavailable, match="lacks columns has_nan, has_inf"):
        VastSink(vast_config(emu)).open()  # the daemon only checks: it says what to run
    init_catalog(vast_config(emu))
    with vast_session(emu).transaction() as tx:
        for name in ("files", "channels"):
            found = tx.bucket(BUCKET).schema(SCHEMA).table(name).arrow_schema
            assert set(TABLES[name].names) <= set(found.names)
    sink = VastSink(vast_config(emu))
    sink.open()
    path = write(tmp_path / "a.exr", ramps(nan=True))
    assert [d.outcome for d in sink.write([upsert(record(path))])] == [Outcome.DELIVERED]
    (row,) = vast_rows(emu, "files")
    assert (row["has_nan"], row["has_inf"]) == (True, True)
    sink.close()


def test_daemon_ships_pixel_columns_to_vast(tmp_path: Path, emu: VastEmulator) -> None:
    renders = tmp_path / "renders"
    renders.mkdir()
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "c.toml", state, [{"path": str(renders)}],
        sink={"kind": "vast", "backoff_initial_seconds": 0.2, "backoff_max_seconds": 1.0},
        vast={"endpoint": emu.endpoint, "bucket": BUCKET, "schema": SCHEMA,
              "create_tables": True, "connect_timeout": 1.0, "read_timeout": 2.0},
        inspect={"pixel_stats": True},
    )  # fmt: skip
    env = {"VAST_DB_ACCESS_KEY": emu.access_key, "VAST_DB_SECRET_KEY": emu.secret_key}
    daemon = DaemonProcess(config, state, env=env)
    try:
        daemon.wait_event("daemon.ready")
        broken = write(renders / "broken.0001.exr", ramps(nan=True))
        normal = write(renders / "normal.0001.exr", ramps())

        def landed() -> dict[str, Any] | None:
            rows = {r["file_path"]: r for r in vast_rows(emu, "files")}
            ok = {str(broken), str(normal)} <= set(rows)
            return rows if ok else None

        rows = wait_for(landed, 60, lambda: f"files in VAST: {list(vast_rows(emu, 'files'))}")
        assert (rows[str(broken)]["has_nan"], rows[str(broken)]["has_inf"]) == (True, True)
        assert (rows[str(normal)]["has_nan"], rows[str(normal)]["is_constant"]) == (False, False)
        counts = {(r["file_path"], r["channel_name"]): (r["nan_count"], r["inf_count"])
                  for r in vast_rows(emu, "channels")}  # fmt: skip
        assert counts[(str(broken), "R")] == (1, 0) and counts[(str(broken), "G")] == (0, 1)
        assert counts[(str(normal), "B")] == (0, 0)
    finally:
        assert daemon.stop() == 0
    assert inspect_path(str(broken)).error is None


# --------------------------------------------------------------------------- documented queries

DOCS = Path(__file__).resolve().parents[1] / "docs" / "catalog.md"


def pixel_queries() -> list[str]:
    import re

    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## Pixel health") : text.index("## Querying the catalog")]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)


def test_documented_pixel_queries_answer(tmp_path: Path, sink: LocalSink) -> None:
    shot = tmp_path / "renders" / "sh010"
    shot.mkdir(parents=True)
    broken = write(shot / "beauty.0001.exr", ramps(nan=True))
    black = write(shot / "beauty.0002.exr", {c: np.zeros((8, 16), np.float16) for c in "BGR"})
    hot = ramps()
    hot["R"] = hot["R"] * 4
    bright = write(shot / "beauty.0003.exr", hot)
    sub = write_subsampled(shot / "yc.0001.exr")
    unchecked = write(shot / "beauty.0004.exr", ramps())
    records = [record(p) for p in (broken, black, bright, sub)] + [
        record(unchecked, pixels=False)]  # fmt: skip
    assert [d.outcome for d in sink.write([upsert(r) for r in records])] == [
        Outcome.DELIVERED] * 5  # fmt: skip
    queries = pixel_queries()
    assert len(queries) == 4
    conn = sqlite3.connect(f"file:{sink.path}?mode=ro", uri=True)
    nan_inf, constant, unchecked_q, out_of_range = (conn.execute(q).fetchall() for q in queries)
    conn.close()
    assert [(Path(r[0]).name, r[2], r[3], r[4]) for r in nan_inf] == [
        ("beauty.0001.exr", "G", 0, 1), ("beauty.0001.exr", "R", 1, 0)]  # fmt: skip
    assert [(Path(r[0]).name, r[1]) for r in constant] == [("beauty.0002.exr", 2)]
    assert [(Path(r[0]).name, r[1][:14]) for r in unchecked_q] == [
        ("beauty.0004.exr", "not computed"), ("yc.0001.exr", "Could not open")]  # fmt: skip
    assert [(Path(r[0]).name, r[1]) for r in out_of_range] == [("beauty.0003.exr", "R")]
