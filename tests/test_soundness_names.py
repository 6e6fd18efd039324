"""Issue 12, cases 4 and 5: file names that are not UTF-8, and frame numbers past 64 bits.

Every test runs the real daemon on real files: VAST through the real `vastdb` SDK against the
loopback emulator, or the local SQLite catalog. Bursts are made deterministic by holding the
sink down until the journal holds every file, so the whole burst goes out as one batch.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from crash_support import vast_session
from exrgen import write_multipart, write_scanline
from harness import ROOT, DaemonEnv, DaemonProcess, wait_for, write_config
from vast_emulator import VastEmulator
from vast_emulator.store import EmulatorError

from exrwatchd.catalog import CATALOG_VERSION, TABLES

BUCKET, SCHEMA = "exrwatch", "exr_metadata"
MAX_ATTEMPTS = 3  # short, so a batch that is never split dead-letters within seconds

# Names as other systems write them on shares: Latin-1 and raw bytes, in a sequence or not.
BAD_NAMES = (b"caf\xe9.0001.exr", b"shot_\xff\xfe.exr")
# The catalog's text form of BAD_NAMES: each undecodable byte as a \udcXX escape.
BAD_TEXT = ("caf\\udce9.0001.exr", "shot_\\udcff\\udcfe.exr")
# A valid UTF-8 name (with backslashes) whose text is that of BAD_NAMES[1]: kept apart.
LOOKALIKE = BAD_TEXT[1].encode()


@pytest.fixture
def emu() -> Iterator[VastEmulator]:
    with VastEmulator(buckets={BUCKET}) as emulator:
        yield emulator


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
        log={"level": "debug"},  # sink.persisted per file
    )  # fmt: skip
    env = {"VAST_DB_ACCESS_KEY": emu.access_key, "VAST_DB_SECRET_KEY": emu.secret_key}
    daemon = DaemonProcess(config, state, env=env)
    daemon.wait_event("daemon.ready")
    return daemon, config, env


def journaled(state: Path) -> int:
    """Paths the journal has recorded (in the same transaction as their outbox entries)."""
    db = state / "journal.db"
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT count(*) FROM paths WHERE status = 'complete'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


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


def burst(tmp_path: Path, emu: VastEmulator) -> tuple[DaemonProcess, Path, dict[str, str],
                                                      dict[str, bytes]]:  # fmt: skip
    """30 ordinary names (LOOKALIKE one of them) + BAD_NAMES, journaled while VAST is down,
    then VAST back up: the whole burst is one batch. Returns the daemon, its config, env and
    {path: raw bytes}."""
    renders = tmp_path / "renders"
    renders.mkdir()
    frame = write_scanline(tmp_path / "t.exr").read_bytes()
    raw = [os.fsencode(renders / f"ok.{i:04d}.exr") for i in range(29)]
    raw += [os.fsencode(renders) + b"/" + name for name in (LOOKALIKE, *BAD_NAMES)]
    for path in raw:
        with open(path, "wb") as f:  # bytes paths: exactly these bytes on disk
            f.write(frame)
    emu.down()
    daemon, config, env = vast_daemon(tmp_path, emu)
    wait_for(lambda: journaled(tmp_path / "state") == len(raw), 60,
             lambda: f"{journaled(tmp_path / 'state')} of {len(raw)} journaled")  # fmt: skip
    emu.up()
    return daemon, config, env, {os.fsdecode(p): p for p in raw}


def test_non_utf8_names_reach_vast_with_their_batch(tmp_path: Path, emu: VastEmulator) -> None:
    # issue 12, case 4: a burst of 30 ordinary + 2 non-UTF-8 names; before, the batch failed
    # on every attempt (UnicodeEncodeError, taken as transient) and all 32 were dead-lettered.
    daemon, _, _, raw = burst(tmp_path, emu)
    try:
        dead = wait_settled(daemon, set(raw))
        assert dead == {}, f"{len(dead)} of {len(raw)} dead-lettered: {sorted(dead.values())[:1]}"
        rows = vast_files(emu)
        by_bytes = {r["file_path_bytes"]: r for r in rows}
        assert len(rows) == len(raw) and set(by_bytes) == set(raw.values())
        renders = os.fsencode(tmp_path / "renders") + b"/"
        for name, text in zip((*BAD_NAMES, LOOKALIKE), (*BAD_TEXT, BAD_TEXT[1]), strict=True):
            assert by_bytes[renders + name]["file_path"] == os.fsdecode(renders) + text
        for data, row in by_bytes.items():
            assert row["file_id"] == hashlib.sha256(data).hexdigest()[:32], data
            assert row["file_path_normalized"] == row["file_path"]

        # Re-inspections find the stored row (lookup and storage agree): one row per path.
        bad = next(p for p, data in raw.items() if data.endswith(BAD_NAMES[1]))
        with open(raw[bad], "wb") as f:
            f.write(write_multipart(tmp_path / "m.exr").read_bytes())
        wait_for(lambda: len(daemon.seen("sink.persisted", path=bad)) >= 2, 30,
                 lambda: f"the rewritten {bad!r} persisted again:\n{daemon.tail()}")  # fmt: skip
        rows_now = vast_files(emu)
        assert len(rows_now) == len(raw)
        (again,) = [r for r in rows_now if r["file_path_bytes"] == raw[bad]]
        assert again["inspection_count"] == 2 and again["multipart_count"] > 1
        gone = next(p for p, data in raw.items() if data.endswith(BAD_NAMES[0]))
        os.unlink(raw[gone])
        wait_for(lambda: daemon.seen("sink.persisted", path=gone, op="delete"), 30,
                 lambda: f"the deletion of {gone!r} persisted:\n{daemon.tail()}")  # fmt: skip
        assert raw[gone] not in {r["file_path_bytes"] for r in vast_files(emu)}
        assert len(vast_files(emu)) == len(raw) - 1
    finally:
        assert daemon.stop() == 0


def test_an_unknown_error_isolates_its_entry(tmp_path: Path, emu: VastEmulator) -> None:
    # issue 12, case 4: an error the sink does not know (here an HTTP 405 for one row) must
    # cost only its own entry; before, it counted as transient and sank the whole batch.
    renders = str(tmp_path / "renders")
    target = os.path.join(renders, "ok.0007.exr")

    def refuse(row: Mapping[str, Any]) -> bool:
        if row.get("file_path") == target:
            raise EmulatorError(405, "MethodNotAllowed", f"refused {target}")
        return False

    emu.reject_rows(refuse)
    daemon, config, env, raw = burst(tmp_path, emu)
    try:
        dead = wait_settled(daemon, set(raw))
        assert set(dead) == {target}, f"dead-lettered: {sorted(dead)[:3]} ({len(dead)})"
        retries = daemon.seen("sink.retry", path=target)  # alone, after the split
        assert len(retries) == MAX_ATTEMPTS and "MethodNotAllowed" in retries[0]["error"]
        assert len(vast_files(emu)) == len(raw) - 1

        # Nothing accepted is lost: once the cause is gone, the operator's retry delivers it.
        emu.reject_rows(None)
        subprocess.run([sys.executable, "-m", "exrwatchd", "journal", "--config", str(config),
                        "retry", "--all"], check=True, capture_output=True, cwd=ROOT,
                       env={**os.environ, **env}, timeout=60)  # fmt: skip
        wait_for(lambda: daemon.seen("sink.persisted", path=target), 30,
                 lambda: f"{target} persisted after the retry:\n{daemon.tail()}")  # fmt: skip
        assert len(vast_files(emu)) == len(raw)
    finally:
        assert daemon.stop() == 0


def test_non_utf8_names_in_the_local_catalog(tmp_path: Path) -> None:
    # issue 12, case 4: the local catalog stores the same text form and bytes as VAST.
    env = DaemonEnv(tmp_path)
    daemon = env.start()
    try:
        frame = write_scanline(tmp_path / "t.exr").read_bytes()
        raw = [os.fsencode(env.watch) + b"/" + name for name in (*BAD_NAMES, LOOKALIKE)]
        for path in raw:
            with open(path, "wb") as f:
                f.write(frame)
        dead = wait_settled(daemon, {os.fsdecode(p) for p in raw}, 30)
        assert dead == {}, f"dead-lettered: {dead}"
        rows = env.catalog.query("SELECT file_path, file_path_bytes, file_id FROM files")
        assert sorted(rows) == sorted(
            (os.path.join(str(env.watch), text), data, hashlib.sha256(data).hexdigest()[:32])
            for text, data in zip((*BAD_TEXT, BAD_TEXT[1]), raw, strict=True)
        )
    finally:
        assert daemon.stop() == 0


def test_older_local_catalog_gains_file_path_bytes(tmp_path: Path) -> None:
    # issue 12, case 4: a version-2 catalog (no file_path_bytes, a unique path index) is
    # upgraded in place when the daemon opens it, and then holds both look-alike names.
    env = DaemonEnv(tmp_path)
    frame = write_scanline(tmp_path / "t.exr").read_bytes()
    old = env.watch / "old.exr"
    old.write_bytes(frame)
    daemon = env.start()
    wait_settled(daemon, {str(old)}, 30)
    assert daemon.stop() == 0
    conn = sqlite3.connect(env.state / "catalog.db")
    conn.execute("ALTER TABLE files DROP COLUMN file_path_bytes")
    conn.execute("DROP INDEX files_by_path")
    conn.execute("CREATE UNIQUE INDEX files_by_path ON files (file_path_normalized)")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()

    raw = [os.fsencode(env.watch) + b"/" + name for name in (BAD_NAMES[1], LOOKALIKE)]
    for path in raw:
        with open(path, "wb") as f:
            f.write(frame)
    daemon = env.start()
    try:
        upgraded = daemon.wait_event("catalog.upgraded")
        assert upgraded["columns_added"] == ["files.file_path_bytes"]
        assert wait_settled(daemon, {os.fsdecode(p) for p in raw}, 30) == {}
        rows = dict(env.catalog.query("SELECT file_path_bytes, file_path FROM files"))
        assert rows == {None: str(old), raw[0]: os.fsdecode(env.watch) + "/" + BAD_TEXT[1],
                        raw[1]: os.fsdecode(env.watch) + "/" + BAD_TEXT[1]}  # fmt: skip
        assert env.catalog.query("PRAGMA user_version") == [(CATALOG_VERSION,)]
    finally:
        assert daemon.stop() == 0


def test_older_vast_tables_gain_file_path_bytes(tmp_path: Path, emu: VastEmulator) -> None:
    # issue 12, case 4: tables made before the column: the daemon refuses to start, naming
    # it, until `exrwatchd vast init` adds it.
    with vast_session(emu).transaction() as tx:
        schema = tx.bucket(BUCKET).create_schema(SCHEMA)
        for name, full in TABLES.items():
            older = [f for f in full if f.name != "file_path_bytes"]
            schema.create_table(name, pa.schema(older, metadata=full.metadata))
    renders = tmp_path / "renders"
    renders.mkdir()
    raw = os.fsencode(renders) + b"/" + BAD_NAMES[0]
    with open(raw, "wb") as f:
        f.write(write_scanline(tmp_path / "t.exr").read_bytes())
    with pytest.raises(AssertionError, match="exited \\(78\\)") as refused:
        vast_daemon(tmp_path, emu, create_tables=False)
    assert "table files lacks columns file_path_bytes" in str(refused.value)
    config = tmp_path / "c.toml"
    env = {"VAST_DB_ACCESS_KEY": emu.access_key, "VAST_DB_SECRET_KEY": emu.secret_key}
    subprocess.run([sys.executable, "-m", "exrwatchd", "vast", "init", "--config", str(config)],
                   check=True, capture_output=True, cwd=ROOT, env={**os.environ, **env},
                   timeout=60)  # fmt: skip
    daemon, _, _ = vast_daemon(tmp_path, emu, create_tables=False)
    try:
        assert wait_settled(daemon, {os.fsdecode(raw)}) == {}
        (row,) = vast_files(emu)
        assert row["file_path_bytes"] == raw
        assert row["file_path"] == os.fsdecode(renders) + "/" + BAD_TEXT[0]
    finally:
        assert daemon.stop() == 0


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
