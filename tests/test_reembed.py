"""`exrwatchd reembed`: catalogued files are read again and their rows replaced with the
current embeddings (issue 15: rows of an older embedding version)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from exrgen import write_scanline
from harness import ROOT, write_config

from exrwatchd.exr.embed import EMBEDDING_VERSION


def _exrwatchd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exrwatchd", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)  # fmt: skip


def _rows(catalog: Path) -> dict[str, tuple[int, int]]:
    conn = sqlite3.connect(catalog)
    try:
        return {path: (version, count) for path, version, count in conn.execute(
            "SELECT file_path, embedding_version, inspection_count FROM files")}  # fmt: skip
    finally:
        conn.close()


def test_reembed_reads_the_files_under_a_directory_again_and_replaces_their_rows(
    tmp_path: Path,
) -> None:
    renders, state = tmp_path / "renders", tmp_path / "state"
    showa = [write_scanline(renders / "showA" / f"beauty.{i:04d}.exr") for i in (1, 2)]
    neighbour = write_scanline(renders / "showAB" / "beauty.0001.exr")  # a shared prefix
    config = write_config(tmp_path / "c.toml", state, [{"path": str(renders)}])
    assert _exrwatchd("scan", "--config", str(config)).returncode == 0
    catalog = state / "catalog.db"
    # rows written by an exrwatchd whose embeddings were another version
    conn = sqlite3.connect(catalog)
    conn.execute("UPDATE files SET embedding_version = ?", (EMBEDDING_VERSION - 1,))
    conn.commit()
    conn.close()

    marked = _exrwatchd("reembed", "--config", str(config), str(renders / "showA"))
    assert marked.returncode == 0, marked.stderr
    assert marked.stderr.startswith("2 files in ")
    # `status` says what waits to be read (the daemon is stopped: exit 3, still reported)
    status = _exrwatchd("status", "--json", "--config", str(config))
    assert json.loads(status.stdout)["journal"]["to_read_again"] == 2, status.stdout
    text = _exrwatchd("status", "--config", str(config)).stdout
    assert "to read again: 2 files" in text, text
    assert _exrwatchd("scan", "--config", str(config)).returncode == 0
    status = _exrwatchd("status", "--json", "--config", str(config))
    assert json.loads(status.stdout)["journal"]["to_read_again"] == 0
    rows = _rows(catalog)
    assert all(rows[str(p)] == (EMBEDDING_VERSION, 2) for p in showa), rows
    assert rows[str(neighbour)] == (EMBEDDING_VERSION - 1, 1), rows  # not under showA

    everything = _exrwatchd("reembed", "--config", str(config))
    assert everything.returncode == 0 and everything.stderr.startswith("3 files in ")
    assert _exrwatchd("scan", "--config", str(config)).returncode == 0
    assert _rows(catalog)[str(neighbour)] == (EMBEDDING_VERSION, 2)


def test_reembed_without_a_journal_says_so(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", tmp_path / "state",
                          [{"path": str(tmp_path / "renders")}])  # fmt: skip
    result = _exrwatchd("reembed", "--config", str(config))
    assert result.returncode == 1 and "no journal" in result.stderr
