"""Issue 12, case 5: frame numbers past 64 bits.

Every test runs the real daemon on real files: VAST through the real `vastdb` SDK against the
loopback emulator, or the local SQLite catalog.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import vastdb
from exrgen import write_scanline
from harness import DaemonEnv, DaemonProcess, wait_for, write_config
from vast_emulator import VastEmulator
from vastdb.config import SessionConfig

BUCKET, SCHEMA = "exrwatch", "exr_metadata"
MAX_ATTEMPTS = 3  # short, so a batch that is never split dead-letters within seconds


@pytest.fixture
def emu() -> Iterator[VastEmulator]:
    with VastEmulator(buckets={BUCKET}) as emulator:
        yield emulator


def vast_session(emu: VastEmulator) -> Any:
    """A real SDK session on the emulator, as a user reading the catalog."""
    return vastdb.connect(endpoint=emu.endpoint, access=emu.access_key,
                          secret=emu.secret_key, timeout=(5, 5),
                          config=SessionConfig(data_endpoints=[emu.endpoint]))  # fmt: skip


def vast_files(emu: VastEmulator) -> list[dict[str, Any]]:
    """Every files row in VAST."""
    with vast_session(emu).transaction() as tx:
        schema = tx.bucket(BUCKET).schema(SCHEMA, fail_if_missing=False)
        table = None if schema is None else schema.table("files", fail_if_missing=False)
        return [] if table is None else table.select().read_all().to_pylist()


def vast_daemon(
    tmp_path: Path, emu: VastEmulator, *, create_tables: bool = True
) -> tuple[DaemonProcess, Path, dict[str, str]]:
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "c.toml", state, [{"path": str(tmp_path / "renders")}],
        sink={"kind": "vast", "backoff_initial_seconds": 0.2, "backoff_max_seconds": 0.5,
              "batch_size": 100, "max_attempts": MAX_ATTEMPTS},
        vast={"endpoint": emu.endpoint, "bucket": BUCKET, "schema": SCHEMA,
              "create_tables": create_tables, "connect_timeout": 1.0, "read_timeout": 2.0},
        log={"level": "info"},
    )  # fmt: skip
    env = {"VAST_DB_ACCESS_KEY": emu.access_key, "VAST_DB_SECRET_KEY": emu.secret_key}
    daemon = DaemonProcess(config, state, env=env)
    daemon.wait_event("daemon.ready")
    return daemon, config, env


def outcomes(daemon: DaemonProcess, paths: set[str]) -> tuple[set[str], dict[str, str]]:
    """(persisted, dead-lettered with their errors) among `paths`, from the daemon's log."""
    done = {e["path"] for e in daemon.seen("sink.persisted")} & paths
    dead = {e["path"]: e["error"] for e in daemon.seen("sink.dead_letter") if e["path"] in paths}
    return done, dead


def wait_settled(daemon: DaemonProcess, paths: set[str], timeout: float = 90.0) -> dict[str, str]:
    """Wait until every path was persisted or dead-lettered; the dead letters."""

    def all_decided() -> bool:
        done, dead = outcomes(daemon, paths)
        return done | set(dead) == paths

    wait_for(all_decided, timeout, lambda: f"outcome of {len(paths)} paths:\n{daemon.tail()}")
    return outcomes(daemon, paths)[1]


# Names whose digits leave int64: not frame numbers. 2**63 - 1 still is one.
FRAMES = {
    "beauty.100000000000000000000.exr": None,  # 10**20: orjson read it back as a float
    "beauty.18446744073709551616.exr": None,  # 2**64
    "beauty.9223372036854775808.exr": None,  # 2**63
    "beauty.9223372036854775807.exr": 2**63 - 1,
    "beauty.0001.exr": 1,
}


def test_frame_numbers_past_64_bits_are_null_in_the_local_catalog(tmp_path: Path) -> None:
    # issue 12, case 5: `beauty.100000000000000000000.exr` was dead-lettered ("frame_number
    # must be an integer"): the journal's JSON turned the integer into a float.
    env = DaemonEnv(tmp_path)
    daemon = env.start()
    try:
        frame = write_scanline(tmp_path / "t.exr").read_bytes()
        for name in FRAMES:
            (env.watch / name).write_bytes(frame)
        dead = wait_settled(daemon, {str(env.watch / n) for n in FRAMES}, 30)
        assert dead == {}, f"dead-lettered: {dead}"
        rows = dict(env.catalog.query("SELECT file_path, frame_number FROM files"))
        assert rows == {str(env.watch / n): f for n, f in FRAMES.items()}
    finally:
        assert daemon.stop() == 0


def test_frame_numbers_past_64_bits_are_null_in_vast(tmp_path: Path, emu: VastEmulator) -> None:
    # issue 12, case 5, through the VAST sink.
    renders = tmp_path / "renders"
    renders.mkdir()
    daemon, _, _ = vast_daemon(tmp_path, emu)
    try:
        frame = write_scanline(tmp_path / "t.exr").read_bytes()
        for name in FRAMES:
            (renders / name).write_bytes(frame)
        dead = wait_settled(daemon, {str(renders / n) for n in FRAMES})
        assert dead == {}, f"dead-lettered: {dead}"
        rows = {r["file_path"]: r["frame_number"] for r in vast_files(emu)}
        assert rows == {str(renders / n): f for n, f in FRAMES.items()}
    finally:
        assert daemon.stop() == 0
