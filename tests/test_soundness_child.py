"""Issue 12, case 9 and its "Also" items: the sink child process, state files, secrets.

Every test runs the real daemon (`exrwatchd run`, its spawned sink child, real inotify,
real SQLite files); the VAST ones ship through the real vastdb SDK to the loopback emulator.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exrgen import write_scanline
from harness import ROOT, Catalog, DaemonEnv, DaemonProcess, children, wait_for, write_config
from test_vast_e2e import BUCKET, SCHEMA, files_by_path
from vast_emulator import VastEmulator

from exrwatchd.config import load_config
from exrwatchd.daemon.sink_process import SinkProcess


@pytest.fixture
def emu() -> Iterator[VastEmulator]:
    with VastEmulator(buckets={BUCKET}) as emulator:
        yield emulator


def log_events(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a log file (a line still being written is skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def sink_children(daemon: DaemonProcess, started: int) -> list[dict[str, Any]]:
    """Wait until `started` sink children have said sink.started; their events."""
    wait_for(lambda: len(daemon.seen("sink.started")) >= started, 30,
             lambda: f"{started} sink.started events; last lines:\n{daemon.tail()}")  # fmt: skip
    return daemon.seen("sink.started")


def environ_of(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """The daemon inherits the test's umask: pin the usual 022 so a 0644 file shows as such."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def cli(name: str, config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "exrwatchd", name, "--config", str(config), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60, env=env,
    )  # fmt: skip


def test_a_reload_that_restarts_the_sink_keeps_the_child_on_the_parents_journal(
    tmp_path: Path,
) -> None:
    # issue 12, case 9: state_dir edited in the file (a restart-only key) and the sink
    # settings changed, then SIGHUP: the new sink child must ship from the journal the
    # parent still writes, not from the one the file now names.
    env = DaemonEnv(tmp_path)
    daemon = env.start()
    try:
        first = str(write_scanline(env.watch / "first.0001.exr"))
        env.catalog.wait_paths({first})
        sink_children(daemon, 1)
        elsewhere = tmp_path / "elsewhere"
        write_config(env.config, elsewhere, [{"path": str(env.watch)}],
                     sink={"batch_size": 7})  # fmt: skip
        daemon.proc.send_signal(signal.SIGHUP)
        reloaded = daemon.wait_event("config.reloaded")
        assert reloaded["sink_restarted"] is True
        assert reloaded["needs_restart"] == ["daemon.state_dir"]
        sink_children(daemon, 2)
        second = str(write_scanline(env.watch / "second.0001.exr"))
        env.catalog.wait_paths({first, second})
        assert not elsewhere.exists(), "the child opened the state_dir the file names"
    finally:
        assert daemon.stop() == 0


def test_a_wake_up_before_start_never_reaches_the_child_before_its_config(tmp_path: Path) -> None:
    # issue 12, case 9: the config is the child's first message on its pipe. restart_sink
    # makes the new SinkProcess the daemon's sink loop before starting it, so the journal
    # writer's thread can wake it first; that wake-up must not be read as the config.
    log_file = tmp_path / "sink.log"
    env = DaemonEnv(tmp_path, log={"level": "info", "file": str(log_file)})
    sink = SinkProcess(load_config(env.config))
    sink.wake()
    sink.start()
    try:
        wait_for(lambda: not sink.alive() or any(e.get("event") == "sink.started"
                                                 for e in log_events(log_file)),
                 30, "the sink child to start or die")  # fmt: skip
        assert sink.alive(), f"the sink child died: {sink.error}"
    finally:
        sink.stop(timeout=10)
    assert sink.last_error is None and "exited with code 0" in str(sink.error)


def test_the_sink_child_logs_to_the_configured_log_file_and_follows_its_rotation(
    tmp_path: Path,
) -> None:
    # issue 12, case 9: the child logs to log.file like its parent, not only to stdout; and
    # a SIGHUP after logrotate moved the file reopens it in the child too.
    log_file = tmp_path / "exrwatchd.log"
    env = DaemonEnv(tmp_path, log={"level": "debug", "file": str(log_file)})
    daemon = DaemonProcess(env.config, env.state)
    try:

        def child_started() -> list[dict[str, Any]]:
            kids = children(daemon.proc.pid)
            return [e for e in log_events(log_file)
                    if e.get("event") == "sink.started" and e.get("pid") in kids]  # fmt: skip

        wait_for(child_started, 30, lambda: f"sink.started of a child in {log_file}")
        rotated = tmp_path / "exrwatchd.log.1"
        log_file.rename(rotated)
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any(e.get("event") == "config.reloaded" for e in log_events(log_file)),
                 30, "config.reloaded in the reopened log file")  # fmt: skip
        path = str(write_scanline(env.watch / "after_rotation.exr"))
        env.catalog.wait_paths({path})
        # sink.persisted is the child's own line: it must be in the new file, not the old one.
        wait_for(lambda: [e for e in log_events(log_file)
                          if e.get("event") == "sink.persisted" and e.get("path") == path],
                 30, lambda: f"sink.persisted {path} in the reopened {log_file}")  # fmt: skip
        assert not [e for e in log_events(rotated) if e.get("path") == path]
    finally:
        assert daemon.stop() == 0


def test_no_child_of_the_daemon_inherits_the_vast_credentials(
    tmp_path: Path, emu: VastEmulator
) -> None:
    # issue 12, "Also": the parent is started with VAST_DB_* in its environment; the sink
    # child gets its credentials through its pipe, and no child's environment holds them,
    # before or after a reload that restarts the sink (the reload still resolves them).
    renders = tmp_path / "renders"
    renders.mkdir()
    state = tmp_path / "state"

    def config(batch_size: int) -> Path:
        return write_config(
            tmp_path / "c.toml", state, [{"path": str(renders)}],
            sink={"kind": "vast", "batch_size": batch_size, "backoff_initial_seconds": 0.2,
                  "backoff_max_seconds": 1.0},
            vast={"endpoint": emu.endpoint, "bucket": BUCKET, "schema": SCHEMA,
                  "create_tables": True, "connect_timeout": 1.0, "read_timeout": 2.0},
            log={"level": "info"},
        )  # fmt: skip

    secrets = {"VAST_DB_ACCESS_KEY": emu.access_key, "VAST_DB_SECRET_KEY": emu.secret_key}
    daemon = DaemonProcess(config(100), state, env=secrets)

    def check_children(started: int) -> None:
        sink_children(daemon, started)
        kids = children(daemon.proc.pid)
        assert kids, "the daemon has no child process"
        for pid in kids:
            leaked = [v.split(b"=", 1)[0] for v in environ_of(pid)
                      if v.startswith(b"VAST_DB_") or emu.secret_key.encode() in v
                      or emu.access_key.encode() in v]  # fmt: skip
            assert not leaked, f"child {pid} has {leaked} in its environment"
        assert any(v.startswith(b"VAST_DB_") for v in environ_of(daemon.proc.pid))

    try:
        daemon.wait_event("daemon.ready")
        check_children(1)
        first = str(write_scanline(renders / "first.0001.exr"))
        wait_for(lambda: first in files_by_path(emu), 60, "first.0001.exr in VAST")
        config(50)
        daemon.proc.send_signal(signal.SIGHUP)
        assert daemon.wait_event("config.reloaded")["sink_restarted"] is True
        check_children(2)
        second = str(write_scanline(renders / "second.0001.exr"))
        wait_for(lambda: second in files_by_path(emu), 60, "second.0001.exr in VAST")
    finally:
        assert daemon.stop() == 0
    logs = "\n".join(daemon.raw_lines)
    assert emu.secret_key not in logs and emu.access_key not in logs


def test_status_json_is_created_mode_0600(tmp_path: Path) -> None:
    # issue 12, "Also": the README says every state file is 0600; status.json was 0644
    # whenever the daemon ran outside the unit (whose UMask hides it).
    env = DaemonEnv(tmp_path)
    with umask(0o022):
        daemon = env.start()
    try:
        status = env.state / "status.json"
        wait_for(status.exists, 20, "status.json")
        for path in env.state.iterdir():
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == 0o600, f"{path.name} is mode {mode:04o}"
    finally:
        assert daemon.stop() == 0


def test_status_needs_no_vast_credentials(tmp_path: Path) -> None:
    # issue 12, "Also": `exrwatchd status` reads the journal and status.json only; an
    # operator checking a stuck VAST daemon must not need its secret keys.
    env = DaemonEnv(tmp_path)
    daemon = env.start()
    try:
        path = str(write_scanline(env.watch / "f.0001.exr"))
        Catalog(env.state).wait_paths({path})
    finally:
        assert daemon.stop() == 0
    vast_config = write_config(
        tmp_path / "vast.toml", env.state, [{"path": str(env.watch)}],
        sink={"kind": "vast"},
        vast={"endpoint": "http://127.0.0.1:9", "bucket": BUCKET,
              "access_key_file": str(tmp_path / "missing" / "access_key")},
    )  # fmt: skip
    bare = {k: v for k, v in os.environ.items()
            if not k.startswith("VAST_DB_") and k != "CREDENTIALS_DIRECTORY"}  # fmt: skip
    text = cli("status", vast_config, bare)
    assert text.returncode == 3, text.stderr  # LSB "not running": read, not refused (78)
    assert f"state_dir: {env.state}" in text.stdout
    assert "journal outbox: ready 0, inflight 0" in text.stdout
    as_json = cli("status", vast_config, bare, "--json")
    assert as_json.returncode == 3, as_json.stderr
    status = json.loads(as_json.stdout)
    assert status["journal"]["ready"] == 0 and status["daemon"]["running"] is False
    # The other commands that read only the journal, likewise.
    for name, args in (("journal", ("stats",)), ("sequences", ())):
        done = cli(name, vast_config, bare, *args)
        assert done.returncode == 0, f"{name}: {done.stderr}"
