"""`exrwatchd export`: the catalog the real daemon wrote, as Parquet and CSV, checked with
pyarrow against the SQLite rows (read with the sink's own value mapping, py_row); the
directory-aware path filter; stdout; errors; and memory that does not grow with the catalog.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from crash_support import stopped_on_exit
from exrgen import write_multipart, write_scanline, write_tiled
from harness import ROOT, DaemonEnv, wait_for, write_config

from exrwatchd.catalog import (
    CHANNEL_DIM,
    METADATA_DIM,
    TABLES,
    csv_schema,
    display_text,
    parquet_schema,
)
from exrwatchd.cli.export import TABLE_NAMES
from exrwatchd.sinks import LocalSink
from exrwatchd.sinks._sqlite_catalog import py_row

KEYS = {
    "files": ("file_id",),
    "parts": ("file_id", "part_index"),
    "channels": ("file_id", "part_index", "channel_index"),
    "attributes": ("file_id", "part_index", "attribute_name"),
    "sequences": ("sequence_id",),
}
CAFE = b"caf\xe9.0001.exr"  # Latin-1: not UTF-8


def export(
    config: Path, *args: str | bytes, cwd: Path = ROOT
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "exrwatchd", "export", "--config", str(config), *args],
        capture_output=True, cwd=cwd, timeout=120,
    )  # fmt: skip


class Shots:
    """The daemon's catalog of a small tree: sh01 (a sequence, a multi-part file, an
    unreadable file, a non-UTF-8 name), and the neighbours a naive prefix would take:
    sh010, sh01-old and the file sh01.exr."""

    def __init__(self, env: DaemonEnv) -> None:
        self.env = env
        self.sh01 = env.watch / "sh01"
        self.catalog = env.state / "catalog.db"

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of `table` as the sink reads it back, sorted by key."""
        names = ", ".join(TABLES[table].names)
        con = sqlite3.connect(f"file:{self.catalog}?mode=ro", uri=True)
        try:
            rows = [py_row(table, r) for r in con.execute(f"SELECT {names} FROM {table}")]
        finally:
            con.close()
        return sorted(rows, key=lambda r: tuple(r[k] for k in KEYS[table]))


def make_tree(watch: Path) -> set[str]:
    sh01 = watch / "sh01"
    made = [write_scanline(sh01 / f"beauty.{f:04d}.exr") for f in (1, 2, 3)]
    made.append(write_multipart(sh01 / "comp.0001.exr"))
    (sh01 / "broken.exr").write_bytes(b"not an EXR at all")
    made.append(sh01 / "broken.exr")
    latin = write_scanline(watch / "latin.exr")
    os.rename(os.fsencode(latin), os.fsencode(sh01) + b"/" + CAFE)
    made += [write_tiled(watch / "sh010" / f"beauty.{f:04d}.exr") for f in (1, 2)]
    made.append(write_scanline(watch / "sh01-old" / "beauty.0001.exr"))
    made.append(write_scanline(watch / "sh01.exr"))
    paths = {str(p) for p in made}
    return paths | {display_text(os.fsdecode(os.fsencode(sh01) + b"/" + CAFE))}


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shots]:
    env = DaemonEnv(tmp_path_factory.mktemp("export"))
    expected = make_tree(env.watch)
    daemon = env.start()
    with stopped_on_exit(daemon):
        env.catalog.wait_paths(expected)
        wait_for(
            lambda: env.catalog.query("SELECT count(*) FROM sequences") == [(5,)],
            20,
            lambda: f"5 sequences; have {env.catalog.query('SELECT * FROM sequences')}",
        )
        # The daemon keeps running: an export reads a live catalog.
        yield Shots(env)
        daemon.stop()


# --------------------------------------------------------------------------- comparing


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    """Vectors as their float32 bytes: equal only when every float32 is."""
    out = {}
    for name, value in row.items():
        if isinstance(value, np.ndarray | list) and name.endswith(("embedding", "fingerprint")):
            value = np.asarray(value, dtype=np.float32).tobytes()
        out[name] = value
    return out


def sorted_rows(table: pa.Table, name: str) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=lambda r: tuple(r[k] for k in KEYS[name]))


def read_csv(data: bytes | Path, table: str) -> pa.Table:
    schema = csv_schema(TABLES[table])
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    return pcsv.read_csv(source, convert_options=pcsv.ConvertOptions(
        column_types={f.name: f.type for f in schema},
        strings_can_be_null=True, quoted_strings_can_be_null=False,  # '' stays ''
    ))  # fmt: skip


def from_csv(row: dict[str, Any]) -> dict[str, Any]:
    if row.get("file_path_bytes") is not None:
        row["file_path_bytes"] = base64.b64decode(row["file_path_bytes"])
    return row


def without_vectors(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("metadata_embedding", "channel_fingerprint")}


def test_table_names_are_the_catalogs() -> None:
    assert tuple(TABLES) == TABLE_NAMES


# --------------------------------------------------------------------------- every table


@pytest.mark.parametrize("table", list(TABLES))
def test_parquet_holds_every_row_with_the_catalog_schema(
    shots: Shots, tmp_path: Path, table: str
) -> None:
    out = tmp_path / f"{table}.parquet"
    proc = export(shots.env.config, "--format", "parquet", "--table", table, str(out))
    assert proc.returncode == 0, proc.stderr.decode()
    expected = shots.rows(table)
    assert proc.stderr.decode().strip() == (
        f"exrwatchd export: {len(expected)} {table} rows to {out}"
    )
    got = pq.read_table(out)
    # The catalog's schema, descriptions included; vectors as lists (see parquet_schema).
    assert got.schema.equals(parquet_schema(TABLES[table]), check_metadata=True), got.schema
    assert got.num_rows == len(expected) > 0
    assert [comparable(r) for r in sorted_rows(got, table)] == [comparable(r) for r in expected]
    if table == "files":  # the unreadable file: null vectors; the others: unit vectors
        vectors = {r["file_path"]: r["metadata_embedding"] for r in got.to_pylist()}
        assert vectors[str(shots.sh01 / "broken.exr")] is None
        norm = np.linalg.norm(np.asarray(vectors[str(shots.sh01 / "beauty.0001.exr")], "<f4"))
        assert norm == pytest.approx(1.0, abs=1e-5)
    assert not list(tmp_path.glob(".*partial")), "the temporary file was left behind"


@pytest.mark.parametrize("table", list(TABLES))
def test_csv_holds_every_row_without_the_vectors(shots: Shots, tmp_path: Path, table: str) -> None:
    out = tmp_path / f"{table}.csv"
    proc = export(shots.env.config, "--format", "csv", "--table", table, str(out))
    assert proc.returncode == 0, proc.stderr.decode()
    got = read_csv(out, table)
    header = out.read_text().splitlines()[0]
    assert header == ",".join(f'"{n}"' for n in csv_schema(TABLES[table]).names)
    assert "metadata_embedding" not in header and "channel_fingerprint" not in header
    expected = [without_vectors(r) for r in shots.rows(table)]
    assert [from_csv(r) for r in sorted_rows(got, table)] == expected
    if table == "files":  # the non-UTF-8 name's exact bytes survive as base64
        raw = {r["file_path_bytes"] for r in expected}
        assert os.fsencode(shots.sh01) + b"/" + CAFE in raw


# --------------------------------------------------------------------------- --where-path


def exported_paths(shots: Shots, tmp_path: Path, *where: str | bytes, cwd: Path = ROOT) -> set[str]:
    out = tmp_path / "where.parquet"
    proc = export(shots.env.config, "--format", "parquet", *where, str(out), cwd=cwd)
    assert proc.returncode == 0, proc.stderr.decode()
    return set(pq.read_table(out, columns=["file_path"]).column(0).to_pylist())


def under(paths: Sequence[str], directory: Path) -> set[str]:
    return {p for p in paths if p.startswith(f"{directory}/")}


def test_where_path_takes_the_directory_not_its_namesakes(shots: Shots, tmp_path: Path) -> None:
    every = [r["file_path"] for r in shots.rows("files")]
    sh01 = under(every, shots.sh01)
    assert len(sh01) == 6
    assert exported_paths(shots, tmp_path, "--where-path", str(shots.sh01)) == sh01
    # Not /sh010, /sh01-old or /sh01.exr: a trailing slash changes nothing, and a relative
    # PREFIX is taken from the current directory.
    assert exported_paths(shots, tmp_path, "--where-path", f"{shots.sh01}/") == sh01
    assert exported_paths(shots, tmp_path, "--where-path", "sh01", cwd=shots.env.watch) == sh01
    one = str(shots.sh01 / "beauty.0002.exr")
    assert exported_paths(shots, tmp_path, "--where-path", one) == {one}
    # A name that is not UTF-8, given as the bytes the shell passes.
    latin = os.fsencode(shots.sh01) + b"/" + CAFE
    assert exported_paths(shots, tmp_path, b"--where-path", latin) == {
        display_text(os.fsdecode(latin))
    }
    assert exported_paths(shots, tmp_path, "--where-path", str(shots.sh01 / "nothing")) == set()


def test_where_path_on_child_tables_and_sequences(shots: Shots, tmp_path: Path) -> None:
    sh01_ids = {r["file_id"] for r in shots.rows("files")
                if r["file_path"].startswith(f"{shots.sh01}/")}  # fmt: skip
    for table in ("parts", "channels", "attributes"):
        out = tmp_path / f"{table}.parquet"
        where = ("--where-path", str(shots.sh01))
        proc = export(shots.env.config, "--format", "parquet", "--table", table, *where, str(out))
        assert proc.returncode == 0, proc.stderr.decode()
        expected = [r for r in shots.rows(table) if r["file_id"] in sh01_ids]
        assert len(expected) < len(shots.rows(table))  # sh010 and the others are left out
        got = sorted_rows(pq.read_table(out), table)
        assert [comparable(r) for r in got] == [comparable(r) for r in expected]
    out = tmp_path / "sequences.csv"
    where = ("--where-path", str(shots.sh01))
    proc = export(shots.env.config, "--format", "csv", "--table", "sequences", *where, str(out))
    assert proc.returncode == 0, proc.stderr.decode()
    got = read_csv(out, "sequences").to_pylist()
    assert sorted(r["pattern"] for r in got) == [
        "beauty.%04d.exr", "caf\\udce9.%04d.exr", "comp.%04d.exr"]  # fmt: skip
    assert {r["directory"] for r in got} == {str(shots.sh01)}


# --------------------------------------------------------------------------- stdout, errors


def test_csv_to_stdout(shots: Shots) -> None:
    proc = export(shots.env.config, "--format", "csv", "--table", "parts", "-")
    assert proc.returncode == 0, proc.stderr.decode()
    got = read_csv(proc.stdout, "parts")
    assert got.num_rows == len(shots.rows("parts"))
    assert b"parts rows to stdout" in proc.stderr


def test_parquet_to_a_pipe(shots: Shots) -> None:
    proc = export(shots.env.config, "--format", "parquet", "-")
    assert proc.returncode == 0, proc.stderr.decode()
    assert pq.read_table(io.BytesIO(proc.stdout)).num_rows == len(shots.rows("files"))


def test_missing_catalog_names_the_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path / "config.toml", state, [{"path": str(tmp_path)}])
    out = tmp_path / "files.parquet"
    proc = export(config, "--format", "parquet", str(out))
    assert proc.returncode == 1
    assert f"no catalog at {state / 'catalog.db'}" in proc.stderr.decode()
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_bad_config_is_78_and_unwritable_out_is_1(shots: Shots, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon\n")
    proc = export(bad, "--format", "csv", "-")
    assert proc.returncode == 78 and str(bad) in proc.stderr.decode()
    out = tmp_path / "no" / "such" / "dir" / "files.csv"
    proc = export(shots.env.config, "--format", "csv", str(out))
    assert proc.returncode == 1
    assert str(out.parent) in proc.stderr.decode() or str(out) in proc.stderr.decode()
    proc = export(shots.env.config, "--format", "xlsx", "-")
    assert proc.returncode == 2


# --------------------------------------------------------------------------- scale


def synthetic_catalog(state: Path, n: int) -> Path:
    """A catalog made by the real LocalSink, with `n` files rows inserted directly."""
    path = state / "catalog.db"
    state.mkdir(parents=True, exist_ok=True)
    with LocalSink(path):
        pass
    rng = np.random.default_rng(7)
    meta = [rng.random(METADATA_DIM, dtype=np.float32).tobytes() for _ in range(16)]
    chan = [rng.random(CHANNEL_DIM, dtype=np.float32).tobytes() for _ in range(16)]
    when = "2026-01-31T12:00:00.000000Z"

    def rows() -> Iterator[tuple[Any, ...]]:
        for i in range(n):
            p = f"/renders/sh{i % 100:03d}/beauty.{i:07d}.exr"
            yield (f"{i:032x}", p, p, "0" * 64, 1000 + i, when, i, 1, 0, 1, None, None, None,
                   i, meta[i % 16], chan[i % 16], 1, when, 1, when, f"inspection-{i}",
                   None, None, None, None, None, p.encode())  # fmt: skip

    con = sqlite3.connect(path)
    # Test set-up speed only: no fsync, and rows straight into the file rather than via
    # the WAL (whose checkpoint would write every page twice); WAL again afterwards.
    con.execute("PRAGMA synchronous = OFF")
    con.execute("PRAGMA journal_mode = MEMORY")
    with con:
        marks = ", ".join("?" * len(TABLES["files"]))
        names = ", ".join(TABLES["files"].names)
        con.executemany(f"INSERT INTO files ({names}) VALUES ({marks})", rows())
    con.execute("PRAGMA journal_mode = WAL")
    con.close()
    return path


MEASURE = """
import json, resource, sys
import pyarrow.parquet, pyarrow.csv
from exrwatchd.cli.main import main
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
code = main(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"code": code, "base_kib": base, "peak_kib": peak}))
"""


def test_memory_stays_bounded_on_a_large_catalog(tmp_path: Path) -> None:
    n = 200_000
    state = tmp_path / "state"
    synthetic_catalog(state, n)
    config = write_config(tmp_path / "config.toml", state, [{"path": str(tmp_path)}])
    out = tmp_path / "files.parquet"
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, "export", "--config", str(config), "--format",
         "parquet", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    measured = json.loads(proc.stdout.splitlines()[-1])
    assert measured["code"] == 0
    # The vectors alone of the whole table, as Arrow holds them: 410 MB.
    whole = n * (METADATA_DIM + CHANNEL_DIM) * 4
    grew = (measured["peak_kib"] - measured["base_kib"]) * 1024
    assert grew < whole / 3, f"export grew by {grew >> 20} MiB for a {whole >> 20} MiB table"
    meta = pq.ParquetFile(out).metadata
    assert meta.num_rows == n and meta.num_row_groups > 1


def test_one_snapshot_while_the_catalog_changes(tmp_path: Path, monkeypatch: Any) -> None:
    """Rows committed after the export started are not in it, whatever batch it is at."""
    import exrwatchd.cli.export as export_module

    path = synthetic_catalog(tmp_path, 50)
    monkeypatch.setitem(export_module.BATCH_ROWS, "files", 10)
    with export_module._snapshot(path) as conn:
        batches = export_module._batches(conn, "files", TABLES["files"], None, path)
        first = next(batches)
        writer = sqlite3.connect(path)
        with writer:
            writer.execute("DELETE FROM files WHERE file_id > ?", (f"{25:032x}",))
        writer.close()
        rows = first.num_rows + sum(b.num_rows for b in batches)
    assert rows == 50
