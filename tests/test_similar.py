"""`exrwatchd similar`: ranking, the words for what differs, and the command end to end on
catalogs the real daemon filled (local SQLite, and VAST through the emulator)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from exrgen import PartSpec, write_deep_scanline, write_multipart, write_scanline
from harness import ROOT, Catalog, DaemonProcess, write_config

from exrwatchd.catalog.similar import Layout, TopK, VectorChunk, differences

AOVS = ("R", "G", "B", "A", "diffuse.R", "diffuse.G", "diffuse.B", "Z")
# An unrelated layout: deep stereo, two parts.
DEEP_STEREO = tuple(PartSpec(v, kind="deepscanline", channels=("R", "G", "B", "A", "Z"),
                             pixel_type="float", compression="zips", view=v)
                    for v in ("left", "right"))  # fmt: skip


def corpus() -> Path:
    env = os.environ.get("EXRWATCHD_CORPUS")
    return Path(env) if env else ROOT.parent / "shared" / "corpus" / "openexr-images"


# --------------------------------------------------------------------------- pure parts


def test_top_k_over_chunks_is_a_full_sort() -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((10_000, 16)).astype(np.float32)
    query = rng.standard_normal(16).astype(np.float32)
    keys = np.array([f"{i:05d}".encode() for i in range(len(vectors))], dtype=object)
    chunks = [VectorChunk(keys[i : i + 999], vectors[i : i + 999])
              for i in range(0, len(vectors), 999)]  # fmt: skip
    scores = vectors @ query
    for lowest in (False, True):
        got = TopK(7, lowest=lowest).rank(query, chunks).result()
        order = np.argsort(scores if lowest else -scores, kind="stable")[:7]
        assert [k for k, _ in got] == [keys[i] for i in order]
        assert [s for _, s in got] == pytest.approx([float(scores[i]) for i in order], abs=1e-6)


def test_differences_in_words() -> None:
    hero = Layout(1, frozenset(AOVS), ("zip",), ((0, 0, 63, 31),))
    assert differences(hero, hero) == []
    odd = Layout(2, frozenset(AOVS[:4]) | {"spec.R"}, ("piz", "piz"),
                 ((10, 4, 49, 23), (0, 0, 63, 31)))  # fmt: skip
    assert differences(hero, odd) == [
        "2 parts instead of 1",
        "adds channels spec.R",
        "lacks channels Z, diffuse.B, diffuse.G, diffuse.R",
        "compression piz instead of zip",
        "data window 40x20 at (10,4) instead of 64x32 at (0,0) (part 0)",
    ]


# --------------------------------------------------------------------------- end to end


def similar(config: Path, *args: str, env: dict[str, str] | None = None,
            code: int = 0) -> subprocess.CompletedProcess[str]:  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "exrwatchd", "similar", "--config", str(config), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert result.returncode == code, result.stderr
    return result


def rows(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def write_shot(renders: Path) -> dict[str, Path]:
    """Six frames of one render (bounding boxes move), one odd frame, unrelated files."""
    shot = renders / "sh010"
    out = {}
    for n in (1001, 1002, 1003, 1005, 1006):
        out[f"f{n}"] = write_scanline(shot / f"beauty.{n}.exr", channels=AOVS, size=(64, 32),
                                      data_window_origin=(1 + n % 3, 1 + n % 2))  # fmt: skip
    # frame 1004 was written by another render setup: other compression, no diffuse AOV
    out["odd"] = write_scanline(shot / "beauty.1004.exr", channels=("R", "G", "B", "A", "Z"),
                                compression="piz", size=(64, 32),
                                data_window_origin=(1, 1))  # fmt: skip
    out["multi"] = write_multipart(renders / "sh020" / "deep.1001.exr", DEEP_STEREO)
    out["plate"] = write_scanline(renders / "plates" / "plate.0001.exr", channels=("R", "G", "B"),
                                  size=(64, 32))  # fmt: skip
    return out


def fill_local(tmp_path: Path, renders: Path) -> tuple[Path, Path]:
    """Let the real daemon catalog `renders`; returns (config, state_dir) once it stopped."""
    state = tmp_path / "state"
    config = write_config(tmp_path / "c.toml", state, [{"path": str(renders)}])
    expected = {str(p) for p in renders.rglob("*.exr")}
    daemon = DaemonProcess(config, state)
    try:
        daemon.wait_event("daemon.ready")
        Catalog(state).wait_paths(expected, timeout=60)
    finally:
        assert daemon.stop() == 0
    return config, state


@pytest.fixture
def local_shot(tmp_path: Path) -> tuple[Path, Path, dict[str, Path]]:
    renders = tmp_path / "renders"
    files = write_shot(renders)
    config, state = fill_local(tmp_path, renders)
    return config, state, files


def test_local_frames_of_a_sequence_rank_each_other_first(local_shot: Any) -> None:
    config, state, files = local_shot
    result = rows(similar(config, str(files["f1001"]), "--top", "20", "--json"))
    paths = [r["path"] for r in result]
    frames = {str(files[f"f{n}"]) for n in (1002, 1003, 1005, 1006)}
    assert set(paths[:4]) == frames, paths  # then the odd frame, then the rest
    assert str(files["f1001"]) not in paths  # never the query itself
    assert all(r["score"] >= 0.99 for r in result[:4])
    assert all("channels" not in " ".join(r["differences"]) for r in result[:4])
    by_path = {r["path"]: r for r in result}
    assert by_path[str(files["multi"])]["score"] <= 0.5
    assert "2 parts instead of 1" in by_path[str(files["multi"])]["differences"]
    # the copy of the vectors beside the catalog, built by this first query
    assert (state / "similar-metadata_embedding.f32").stat().st_size == 8 * 384 * 4
    for copy in state.glob("similar-*"):  # state files are the owner's alone (README)
        assert copy.stat().st_mode & 0o777 == 0o600, copy


def test_local_odd_frame_of_a_shot_comes_first_with_lowest(local_shot: Any) -> None:
    config, _, files = local_shot
    text = similar(config, str(files["f1001"]), "--within", str(files["f1001"].parent),
                   "--lowest", "--top", "2").stdout.splitlines()  # fmt: skip
    assert len(text) == 2
    score, path, what = text[0].split("  ", 2)
    assert path == str(files["odd"]) and float(score) < 0.99
    assert "compression piz instead of zip" in what
    assert "lacks channels diffuse.B, diffuse.G, diffuse.R" in what
    assert str(files["multi"]) not in "\n".join(text)  # outside the shot directory


def test_local_layout_ranks_by_channels_alone(local_shot: Any) -> None:
    config, _, files = local_shot
    result = rows(similar(config, str(files["f1001"]), "--layout", "--top", "20", "--json"))
    scores = {r["path"]: r["score"] for r in result}
    for n in (1002, 1003, 1005, 1006):  # identical channel sets: identical fingerprints
        assert scores[str(files[f"f{n}"])] == pytest.approx(1.0, abs=1e-5)
    assert scores[str(files["odd"])] < 0.99


def test_local_catalog_path_and_other_embedding_versions(local_shot: Any) -> None:
    config, state, files = local_shot
    similar(config, str(files["f1002"]))  # builds the vector copy
    # A path only the catalog knows (the file is gone from disk, the daemon is stopped).
    files["f1003"].unlink()
    with sqlite3.connect(state / "catalog.db") as con:  # rows of an older embedding
        con.execute("UPDATE files SET embedding_version = 1 WHERE file_path IN (?, ?)",
                    (str(files["f1005"]), str(files["plate"])))  # fmt: skip
    result = similar(config, str(files["f1003"]), "--json", "--top", "20")
    paths = [r["path"] for r in rows(result)]
    assert set(paths[:3]) == {
        str(files["f1001"]), str(files["f1002"]), str(files["f1006"])}  # fmt: skip
    assert str(files["f1005"]) not in paths and str(files["plate"]) not in paths  # stale copy?
    assert "left out 2 catalog rows" in result.stderr and "2 of version 1" in result.stderr
    # The query's own vectors being of an older version is an error that says so.
    files["f1005"].unlink()
    failed = similar(config, str(files["f1005"]), code=1)
    assert "embedding version 1, not 2" in failed.stderr
    missing = similar(config, str(state / "nowhere.exr"), code=1)
    assert "no such file, and not in the catalog" in missing.stderr
    bad = state / "bad.exr"
    bad.write_bytes(b"not an exr")
    assert "bad.exr: cannot read: not_exr" in similar(config, str(bad), code=1).stderr


def test_local_no_catalog_yet(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", tmp_path / "state", [{"path": str(tmp_path)}])
    good = write_scanline(tmp_path / "good.exr")
    assert "catalog.db: not found" in similar(config, str(good), code=1).stderr


def test_local_one_writer_frames_then_same_setup_then_unrelated(tmp_path: Path) -> None:
    # One writer: same compression and size everywhere, so only structure separates layouts.
    renders, same = tmp_path / "renders", {"compression": "zips", "size": (64, 32)}
    frames = [write_scanline(renders / f"beauty.{n}.exr", channels=AOVS,
                             data_window_origin=(1 + n % 3, 1 + n % 2), **same)
              for n in (1001, 1002, 1003)]  # fmt: skip
    setup = {  # the same render setup with one AOV off; the same frame recompressed
        write_scanline(renders / "no_diffuse.exr", channels=("R", "G", "B", "A", "Z"), **same),
        write_scanline(renders / "piz.exr", channels=AOVS, compression="piz", size=(64, 32)),
    }
    unrelated = {
        write_multipart(renders / "ten.exr", [PartSpec(f"layer{i}", channels=("R", "G", "B"),
                                                       **same) for i in range(10)]),
        write_deep_scanline(renders / "deep.exr", **same),
        write_multipart(renders / "stereo.exr", DEEP_STEREO),
    }  # fmt: skip
    config, _ = fill_local(tmp_path, renders)
    result = rows(similar(config, str(frames[0]), "--json", "--top", "20"))
    paths = [Path(r["path"]) for r in result]
    assert set(paths[:2]) == set(frames[1:]) and set(paths[2:4]) == setup, result
    assert set(paths[4:]) == unrelated
    assert min(r["score"] for r in result[:2]) >= 0.99
    assert max(r["score"] for r in result[4:]) <= 0.5
    assert min(r["score"] for r in result[2:4]) >= 0.9


@pytest.mark.corpus
def test_corpus_beachball_frames_first_plate_far(tmp_path: Path) -> None:
    source = corpus()
    names = [f"Beachball/multipart.000{n}.exr" for n in range(1, 5)]
    names += ["DisplayWindow/t01.exr", "DisplayWindow/t02.exr", "Beachball/singlepart.0001.exr"]
    if not all((source / n).is_file() for n in names):
        pytest.skip(f"reference corpus not found at {source} (set EXRWATCHD_CORPUS)")
    renders = tmp_path / "renders"
    for name in names:
        (renders / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, renders / name)
    config, _ = fill_local(tmp_path, renders)
    result = rows(similar(config, str(renders / names[0]), "--json"))
    assert {r["path"] for r in result[:3]} == {str(renders / n) for n in names[1:4]}
    plate = next(r for r in result if r["path"].endswith("t01.exr"))
    assert plate["score"] <= 0.5 and "1 part instead of 10" in plate["differences"]


# --------------------------------------------------------------------------- VAST


@pytest.fixture
def emu() -> Iterator[Any]:
    from vast_emulator import VastEmulator

    with VastEmulator(buckets={"exrwatch"}) as emulator:
        yield emulator


def test_vast_ranks_streaming_with_within_pushed_down(tmp_path: Path, emu: Any) -> None:
    renders = tmp_path / "renders"
    files = write_shot(renders)
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "c.toml", state, [{"path": str(renders)}],
        sink={"kind": "vast", "backoff_initial_seconds": 0.2, "backoff_max_seconds": 1.0},
        vast={"endpoint": emu.endpoint, "bucket": "exrwatch", "schema": "exr_metadata",
              "create_tables": True, "connect_timeout": 1.0, "read_timeout": 5.0},
    )  # fmt: skip
    env = {"VAST_DB_ACCESS_KEY": emu.access_key, "VAST_DB_SECRET_KEY": emu.secret_key}
    daemon = DaemonProcess(config, state, env=env)
    try:
        daemon.wait_event("daemon.ready")
        for path in files.values():
            daemon.wait_event("sink.persisted", timeout=60, path=str(path))
    finally:
        assert daemon.stop() == 0
    everything = rows(similar(config, str(files["f1001"]), "--json", "--top", "20", env=env))
    assert {r["path"] for r in everything[:4]} == {
        str(files[f"f{n}"]) for n in (1002, 1003, 1005, 1006)}  # fmt: skip
    assert next(r for r in everything if r["path"] == str(files["multi"]))["score"] <= 0.5
    assert not (state / "similar-metadata_embedding.f32").exists()  # local catalog only
    shot = rows(similar(config, str(files["f1001"]), "--json", "--within", str(renders / "sh010"),
                        "--lowest", "--top", "20", env=env))  # fmt: skip
    assert shot[0]["path"] == str(files["odd"])
    assert {r["path"] for r in shot} == {str(files[k]) for k in files
                                         if k not in ("f1001", "multi", "plate")}  # fmt: skip
    assert "compression piz instead of zip" in shot[0]["differences"]
