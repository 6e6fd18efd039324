"""The real daemon shipping to the VAST emulator through the real SDK, with faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crash_support import vast_session
from exrgen import write_multipart, write_scanline
from harness import ROOT, DaemonProcess, wait_for, write_config
from vast_emulator import VastEmulator

BUCKET, SCHEMA = "exrwatch", "exr_metadata"


@pytest.fixture
def emu() -> Iterator[VastEmulator]:
    with VastEmulator(buckets={BUCKET}) as emulator:
        yield emulator


def files_by_path(emu: VastEmulator) -> dict[str, list[dict[str, Any]]]:
    session = vast_session(emu)
    with session.transaction() as tx:
        schema = tx.bucket(BUCKET).schema(SCHEMA, fail_if_missing=False)
        if schema is None:
            return {}
        table = schema.table("files", fail_if_missing=False)
        if table is None:
            return {}
        rows = table.select(columns=["file_path", "file_id", "header_hash"]).read_all()
        children = {
            name: set(schema.table(name).select(columns=["file_id"]).read_all()
                      .column("file_id").to_pylist())
            for name in ("parts", "channels", "attributes")
        }  # fmt: skip
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows.to_pylist():
        out.setdefault(row["file_path"], []).append(row)
    ids = {r["file_id"] for rs in out.values() for r in rs}
    orphans = set().union(*children.values()) - ids
    assert not orphans, f"child rows without a files row: {len(orphans)}"
    return out


def persisted(daemon: DaemonProcess) -> int:
    """Files persisted (frame-sequence summaries are persisted too, under their own key)."""
    return len({e["path"] for e in daemon.seen("sink.persisted") if e.get("op") != "sequence"})


def start(tmp_path: Path, emu: VastEmulator, renders: Path) -> tuple[DaemonProcess, Path]:
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "c.toml", state, [{"path": str(renders)}],
        sink={"kind": "vast", "backoff_initial_seconds": 0.2, "backoff_max_seconds": 1.0,
              "batch_size": 100},
        vast={"endpoint": emu.endpoint, "bucket": BUCKET, "schema": SCHEMA,
              "create_tables": True, "connect_timeout": 1.0, "read_timeout": 2.0},
        log={"level": "debug"},  # sink.persisted per file
    )  # fmt: skip
    env = {"VAST_DB_ACCESS_KEY": emu.access_key, "VAST_DB_SECRET_KEY": emu.secret_key}
    daemon = DaemonProcess(config, state, env=env)
    daemon.wait_event("daemon.ready")
    return daemon, config


def test_burst_through_every_fault_lands_exactly_once(tmp_path: Path, emu: VastEmulator) -> None:
    renders = tmp_path / "renders"
    renders.mkdir()
    templates = [write_scanline(tmp_path / "t1.exr").read_bytes(),
                 write_multipart(tmp_path / "t2.exr").read_bytes()]  # fmt: skip
    daemon, config = start(tmp_path, emu, renders)
    expected: set[str] = set()
    faults = [
        lambda: emu.fail_next(3, status=503, code="ServiceUnavailable"),
        lambda: emu.fail_next(2, status=500, code="InternalError"),
        lambda: emu.fail_next(2, status=502, code=""),
        lambda: emu.reset_connection(when="before_commit"),
        lambda: emu.reset_connection(when="after_commit"),
        lambda: emu.delay(3.0, command="rows"),
        emu.down,
    ]
    try:
        for round_, fault in enumerate(faults):
            fault()
            for i in range(150):  # 7 rounds: a burst of 1,050 files
                path = renders / f"r{round_}" / f"f.{i:04d}.exr"
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(templates[i % 2])
                expected.add(str(path))
            if round_ == len(faults) - 1:  # the server is down: wait until that bites
                # unreachable is sink-wide: the loop backs off as a whole, no attempt counted
                downs = len(daemon.seen("sink.unavailable"))
                wait_for(lambda n=downs: len(daemon.seen("sink.unavailable")) > n, 60,
                         "the sink reported unavailable while the server is down")  # fmt: skip
                emu.up()
            # Each round's files land before the next fault is armed, so every fault is met
            # by the daemon (not by this test's own reads).
            wait_for(lambda: persisted(daemon) >= len(expected), 120,
                     lambda: f"persisted {persisted(daemon)}/{len(expected)}")  # fmt: skip
        rows = wait_for(
            lambda: (r := files_by_path(emu)) and set(r) == expected and r,
            120,
            lambda: f"{len(files_by_path(emu))} of {len(expected)} files in VAST",
        )
        assert all(len(v) == 1 for v in rows.values())  # never a duplicate

        def outbox() -> dict[str, Any]:
            status = subprocess.run(
                [sys.executable, "-m", "exrwatchd", "status", "--config", str(config), "--json"],
                capture_output=True, text=True, cwd=ROOT, timeout=60,
                env={**os.environ, "VAST_DB_ACCESS_KEY": "x", "VAST_DB_SECRET_KEY": "y"},
            )  # fmt: skip
            return json.loads(status.stdout)["journal"]

        drained = wait_for(lambda: (j := outbox())["ready"] == 0 and j["inflight"] == 0 and j,
                           30, lambda: f"outbox empty: {outbox()}")  # fmt: skip
        assert drained["dead"] == 0
    finally:
        assert daemon.stop() == 0
    logs = "\n".join(daemon.raw_lines)
    assert emu.secret_key not in logs and emu.access_key not in logs


def test_restarts_never_duplicate(tmp_path: Path, emu: VastEmulator) -> None:
    renders = tmp_path / "renders"
    expected = {str(write_scanline(renders / f"f.{i}.exr")) for i in range(30)}
    for _ in range(3):
        daemon, _ = start(tmp_path, emu, renders)
        daemon.kill()  # kill -9, mid-flight or not
    daemon, _ = start(tmp_path, emu, renders)
    try:
        rows = wait_for(
            lambda: (r := files_by_path(emu)) and set(r) == expected and r, 60, "all files in VAST"
        )
        assert all(len(v) == 1 for v in rows.values())
    finally:
        assert daemon.stop() == 0


def sequences_in_vast(emu: VastEmulator) -> dict[str, dict[str, Any]]:
    session = vast_session(emu)
    with session.transaction() as tx:
        schema = tx.bucket(BUCKET).schema(SCHEMA, fail_if_missing=False)
        table = None if schema is None else schema.table("sequences", fail_if_missing=False)
        if table is None:
            return {}
        rows = table.select().read_all().to_pylist()
    assert len({r["sequence_id"] for r in rows}) == len(rows), "one row per sequence"
    return {r["pattern"]: r for r in rows}


def test_sequences_table_follows_the_frames(tmp_path: Path, emu: VastEmulator) -> None:
    renders = tmp_path / "renders"
    renders.mkdir()
    frame = write_scanline(tmp_path / "t.exr").read_bytes()
    daemon, _ = start(tmp_path, emu, renders)
    try:
        for n in (1, 2, 4):
            (renders / f"comp.{n:03d}.exr").write_bytes(frame)
        wait_for(lambda: sequences_in_vast(emu).get("comp.%03d.exr", {}).get("frame_count") == 3,
                 30, "three frames in VAST's sequences table")  # fmt: skip
        row = sequences_in_vast(emu)["comp.%03d.exr"]
        assert json.loads(row["missing_ranges"]) == [[3, 3]] and row["is_whole"] is False
        (renders / "comp.003.exr").write_bytes(frame)
        wait_for(lambda: sequences_in_vast(emu)["comp.%03d.exr"]["is_whole"], 30, "filled")
        for n in (1, 2, 3, 4):
            (renders / f"comp.{n:03d}.exr").unlink()
        wait_for(lambda: "comp.%03d.exr" not in sequences_in_vast(emu), 30, "sequence gone")
        assert daemon.stop() == 0
    finally:
        daemon.kill()
