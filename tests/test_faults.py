"""Faults around the real daemon's state and sink: a full disk, a journal deleted or corrupted
while the daemon is stopped, a catalog deleted or replaced (while running or stopped), a VAST
outage and a 503 storm during bursts. Every scenario ends the same way: after recovery (or a
restart) every file is in the catalog exactly once with its header hash, and the journal
outbox is empty.

Disk full is made two ways: RLIMIT_FSIZE (writes past the limit fail with EFBIG; Python
ignores SIGXFSZ, so the process is not killed; the soft limit only, so that the test can
raise it again without CAP_SYS_RESOURCE) and, where this process may mount, a small tmpfs
filled with a ballast file (ENOSPC, the real thing). The daemon rides both out without a
restart; only a start on a full disk exits (75, for systemd to try again).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crash_support import (
    BUCKET,
    Burst,
    check_catalog,
    children,
    journal_stats,
    local_config,
    local_view,
    make_templates,
    outbox_empty,
    plan_files,
    stopped_on_exit,
    vast_config,
    vast_env,
    vast_view,
    write_planned,
)
from harness import ROOT, Catalog, DaemonProcess, wait_for
from vast_emulator import VastEmulator

EXIT_CONFIG = 78  # cli.EXIT_CONFIG; systemd/exrwatchd.service: RestartPreventExitStatus=78
EXIT_TEMPFAIL = 75  # cli.EXIT_TEMPFAIL: systemd restarts it


@pytest.fixture
def emu() -> Iterator[VastEmulator]:
    with VastEmulator(buckets={BUCKET}) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    return make_templates(tmp_path_factory.mktemp("templates"))


def _files(root: Path, templates: list[Any], count: int, seed: int,
           prefix: str = "f") -> tuple[list[Any], dict[str, str]]:  # fmt: skip
    root.mkdir(exist_ok=True)  # the watch root exists before the daemon starts
    planned = plan_files(root, templates, count, random.Random(seed), prefix=prefix)
    return planned, {str(p.path): p.template.header_hash for p in planned}


def _write_all(planned: list[Any]) -> None:
    for item in planned:
        write_planned(item)


def _exited(daemon: DaemonProcess, timeout: float, what: str) -> int:
    wait_for(lambda: daemon.proc.poll() is not None, timeout,
             lambda: f"the daemon to exit ({what}); last lines:\n{daemon.tail()}")  # fmt: skip
    daemon._reader.join(timeout=5)
    return daemon.proc.returncode


def _drained(daemon: DaemonProcess, state: Path, expected: dict[str, str], view: Any,
             timeout: float = 60.0, interval: float = 0.1) -> None:  # fmt: skip
    """Every expected file in the catalog exactly once, right hash, outbox empty."""
    wait_for(lambda: not check_catalog(view(), expected)
             and outbox_empty(state, live_paths=len(expected)), timeout,
             lambda: f"catalog == expected and outbox empty: {check_catalog(view(), expected)}"
             f"; {journal_stats(state)}; last lines:\n{daemon.tail(10)}",
             interval=interval)  # fmt: skip
    stats = journal_stats(state)
    assert (stats.ready, stats.inflight, stats.dead) == (0, 0, 0), stats


def _levels(daemon: DaemonProcess, *levels: str) -> list[dict[str, Any]]:
    with daemon._lock:
        return [e for e in daemon.events if e.get("level") in levels]


# =========================================================================== disk full


class LimitedDaemon(DaemonProcess):
    """harness.DaemonProcess with RLIMIT_FSIZE set before exec: the daemon and the sink
    process it spawns can write no file past `fsize` bytes (the pipe to us is not a file).
    Only the soft limit: raising it again (prlimit) then needs no CAP_SYS_RESOURCE."""

    def __init__(self, config: Path, state_dir: Path, *, fsize: int,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.config = config
        self.state_dir = state_dir
        self.events: list[dict[str, Any]] = []
        self.raw_lines: list[str] = []
        self._lock = threading.Lock()

        def limit() -> None:  # runs in the child between fork and exec
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exrwatchd", "run", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, preexec_fn=limit,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


_UNLIMITED = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)


def _status_json(state: Path) -> dict[str, Any] | None:
    """status.json as the daemon last wrote it (None while it is being rewritten)."""
    try:
        return json.loads((state / "status.json").read_text())
    except (OSError, ValueError):
        return None


def _status_says(state: Path, **want: Any) -> dict[str, Any] | None:
    """status.json when each `want` key is truthy (True) or None (None) in it."""
    status = _status_json(state)
    if status is None:
        return None
    for key, value in want.items():
        if (status.get(key) is None) != (value is None):
            return None
    return status


def _healthz(address: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _cli_status(config: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "exrwatchd", "status", "--config", str(config)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    return done.stdout + done.stderr


def _journaled(state: Path) -> tuple[int, int]:
    """(paths, outbox entries) in the journal."""
    stats = journal_stats(state)
    return sum(stats.paths_by_status.values()), stats.outbox_total


def _holds_while_full(daemon: DaemonProcess, state: Path, seconds: float) -> dict[str, Any]:
    """The journal takes nothing new while the daemon keeps reporting the disk full for
    `seconds` (status.json rewritten meanwhile); the last status."""
    first = wait_for(
        lambda: _status_says(state, journal_disk_full=True),
        15,
        lambda: f"status.json to report the disk full: {_status_json(state)}",
    )
    before = _journaled(state)
    last = wait_for(
        lambda: (
            (s := _status_says(state, journal_disk_full=True))
            and s["updated_at"] >= first["updated_at"] + seconds
            and s
        ),
        seconds + 15,
        lambda: f"status.json still reporting the disk full: {_status_json(state)}",
    )
    assert _journaled(state) == before, "the journal took work while its disk was full"
    assert not daemon.seen("journal.disk_space_recovered")
    assert daemon.proc.poll() is None
    return last


def _no_casualties(daemon: DaemonProcess) -> None:
    for event in ("daemon.unhealthy", "journal.write_failed", "sink.loop_failed",
                  "sink.dead_letter", "daemon.crashed"):  # fmt: skip
        assert not daemon.seen(event), daemon.seen(event)[:3]


def test_file_size_limit_is_ridden_out_and_a_raised_limit_catches_up(
    tmp_path: Path, templates: list[Any]
) -> None:
    """Journal writes past RLIMIT_FSIZE fail (EFBIG: SQLite says "disk I/O error"; Python
    ignores SIGXFSZ). The daemon must stay up, say why, journal nothing more, and catch up
    by itself, without a restart, once the limit is raised."""
    renders = tmp_path / "renders"
    planned, expected = _files(renders, templates, 600, seed=7)
    config, state = local_config(tmp_path, renders)
    daemon = LimitedDaemon(config, state, fsize=1 << 20)
    with stopped_on_exit(daemon):
        daemon.wait_event("daemon.ready")
        daemon.wait_event("sink.started")
        _write_all(planned)
        full = daemon.wait_event("journal.disk_full", timeout=60, writer="journal-writer")
        assert full["level"] == "error", full
        assert full["path"] == str(state / "journal.db"), full
        assert f"RLIMIT_FSIZE {1 << 20}" in full["reason"], full
        status = _holds_while_full(daemon, state, 4.0)
        assert "RLIMIT_FSIZE" in status["journal_disk_full"], status
        assert "cannot be written" in (status["health"] or ""), status
        assert len(local_view(state).paths) < len(expected)  # the limit did bite

        for pid in [daemon.proc.pid, *children(daemon.proc.pid)]:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, _UNLIMITED)
        daemon.wait_event("journal.disk_space_recovered", timeout=40, writer="journal-writer")
        _drained(daemon, state, expected, lambda: local_view(state))
        wait_for(lambda: _status_says(state, journal_disk_full=None), 15, "status.json clear")
        _no_casualties(daemon)
        assert len(daemon.seen("journal.disk_full", writer="journal-writer")) == 1
        assert daemon.stop() == 0


@pytest.mark.slow
def test_stop_on_a_full_disk_with_a_full_queue_is_prompt_and_loses_nothing(
    tmp_path: Path, templates: list[Any]
) -> None:
    """The disk fills while the journal is behind: a lock held on journal.db (an operator's
    long transaction, a slow disk) lets >2,000 verdicts queue up, then the writer's commit
    fails with EFBIG. The daemon waits for space; asked to stop, it must stop within
    shutdown_timeout without waiting for it, and the next start finds everything."""
    renders = tmp_path / "renders"
    planned, expected = _files(renders, templates, 3000, seed=8)
    config, state = local_config(tmp_path, renders, daemon={"shutdown_timeout": 1.0})
    daemon = DaemonProcess(config, state)
    with stopped_on_exit(daemon):
        daemon.wait_event("daemon.ready")
        lock = sqlite3.connect(state / "journal.db", isolation_level=None, timeout=10)
        try:
            lock.execute("BEGIN IMMEDIATE")  # the writer now waits (busy_timeout 10 s)
            _write_all(planned)
            # 2,000 in the writer's queue, more in its hands and waiting in the settle loop,
            # which then stops handing out work (backpressure)
            wait_for(lambda: len(daemon.seen("file.inspected")) >= 2000, 60,
                     lambda: f"{len(daemon.seen('file.inspected'))} inspected")  # fmt: skip
            resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))
        finally:
            lock.rollback()
            lock.close()
        daemon.wait_event("journal.disk_full", timeout=15, writer="journal-writer")
        stopping = time.monotonic()
        code = daemon.stop(timeout=15)
        took = time.monotonic() - stopping
    print(f"stop on a full disk: exit {code} after {took:.1f} s")
    assert code == 0
    assert took < 10, took
    abandoned = daemon.seen("journal.abandoned")
    assert abandoned and abandoned[-1]["verdicts"] > 0, daemon.tail()
    daemon = DaemonProcess(config, state)
    with stopped_on_exit(daemon):
        _drained(daemon, state, expected, lambda: local_view(state), timeout=120)
        assert daemon.stop() == 0


def test_sink_process_on_a_full_journal_keeps_running_and_catches_up(
    tmp_path: Path, templates: list[Any]
) -> None:
    """Only the sink process hits the file-size limit (prlimit on its pid): its claims and
    acknowledgements fail. It must not die: it waits, says why, and ships everything once
    the limit is raised (entries it had delivered but not acknowledged go again, harmlessly)."""
    renders = tmp_path / "renders"
    planned, expected = _files(renders, templates, 200, seed=19)
    config, state = local_config(tmp_path, renders)
    daemon = DaemonProcess(config, state)
    with stopped_on_exit(daemon):
        started = daemon.wait_event("sink.started")
        resource.prlimit(started["pid"], resource.RLIMIT_FSIZE, (64 << 10, resource.RLIM_INFINITY))
        _write_all(planned)
        full = daemon.wait_event("journal.disk_full", timeout=30, writer="sink")
        assert full["level"] == "error" and "RLIMIT_FSIZE" in full["reason"], full
        wait_for(
            lambda: (s := _status_json(state)) and "RLIMIT_FSIZE" in str(s.get("sink_last_error")),
            15,
            lambda: f"status.json: {_status_json(state)}",
        )
        assert daemon.proc.poll() is None
        resource.prlimit(started["pid"], resource.RLIMIT_FSIZE, _UNLIMITED)
        daemon.wait_event("journal.disk_space_recovered", timeout=40, writer="sink")
        _drained(daemon, state, expected, lambda: local_view(state))
        _no_casualties(daemon)
        assert daemon.stop() == 0


def test_sink_process_death_is_reported_with_its_cause(
    tmp_path: Path, templates: list[Any]
) -> None:
    """The sink process dies (SIGKILL): the daemon must exit non-zero saying how it ended;
    a restart recovers everything."""
    renders = tmp_path / "renders"
    planned, expected = _files(renders, templates, 200, seed=19)
    config, state = local_config(tmp_path, renders)
    daemon = DaemonProcess(config, state)
    with stopped_on_exit(daemon):
        started = daemon.wait_event("sink.started")
        _write_all(planned[:100])
        wait_for(lambda: _persisted(daemon) >= 10, 30, "the first files in the catalog")
        os.kill(started["pid"], signal.SIGKILL)
        _write_all(planned[100:])
        code = _exited(daemon, 30, "the sink process died")
    assert code == 1
    reason = daemon.seen("daemon.unhealthy")[-1]["reason"]
    assert f"exited with code {-signal.SIGKILL}" in reason, reason
    daemon2 = DaemonProcess(config, state)
    with stopped_on_exit(daemon2):
        _drained(daemon2, state, expected, lambda: local_view(state))
        assert daemon2.stop() == 0


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700",
                              "exrwatchd-test", str(where)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs CAP_SYS_ADMIN): "
                    f"{mounted.stderr.strip()}")  # fmt: skip
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(fs: Path) -> Path:
    """Write a ballast file until the file system is full (ENOSPC)."""
    ballast = fs / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * chunk)
    assert shutil.disk_usage(fs).free < 4096
    return ballast


def test_disk_full_during_a_burst_is_ridden_out_without_a_restart(
    tmp_path: Path, templates: list[Any]
) -> None:
    """ENOSPC for real: the state dir on a 64 MB tmpfs, filled up by a ballast file during a
    burst. The daemon must stay up, say why (log, status.json, /healthz, `exrwatchd status`),
    journal nothing more while the disk is full, and put every file of the burst in the
    catalog exactly once when space returns, without a restart."""
    renders = tmp_path / "renders"
    planned, expected = _files(renders, templates, 300, seed=9)
    with small_tmpfs(tmp_path / "fs", "64m") as fs:
        state = fs / "state"
        config, _ = local_config(tmp_path, renders, daemon={"state_dir": str(state)},
                                 metrics={"listen": "127.0.0.1:0"})  # fmt: skip
        daemon = DaemonProcess(config, state)
        with stopped_on_exit(daemon):
            address = daemon.wait_event("metrics.listening")["address"]
            daemon.wait_event("sink.started")
            burst = Burst(planned, 3.0).start()
            try:
                wait_for(lambda: _persisted(daemon) >= 30, 30, "the first files in the catalog")
                ballast = fill(fs)
                full = daemon.wait_event("journal.disk_full", timeout=30,
                                         writer="journal-writer")  # fmt: skip
                burst.join()
            finally:
                burst.cancel()
            assert full["level"] == "error", full
            assert full["path"] == str(state / "journal.db"), full
            assert full["free_bytes"] < 4096 and "no space left" in full["reason"], full

            status = _holds_while_full(daemon, state, 4.0)
            assert status["pending"] > 0, status  # the rest waits in the settler
            assert status["journal_queue"] <= 2000 + status["queue_depth"] + 8, status
            code, body = _healthz(address)
            assert code == 503 and "cannot be written" in body, (code, body)
            assert "DISK FULL" in _cli_status(config)
            assert len(local_view(state).paths) < len(expected)

            ballast.unlink()  # space returns
            daemon.wait_event("journal.disk_space_recovered", timeout=40,
                              writer="journal-writer")  # fmt: skip
            _drained(daemon, state, expected, lambda: local_view(state))
            wait_for(lambda: _status_says(state, journal_disk_full=None), 15,
                     "status.json to stop reporting the disk full")  # fmt: skip
            assert _healthz(address)[0] == 200
            _no_casualties(daemon)
            assert len(daemon.seen("journal.disk_full", writer="journal-writer")) == 1
            assert daemon.stop() == 0


def test_a_start_on_a_full_disk_exits_75_saying_why(tmp_path: Path) -> None:
    """Opening the journal needs a little space (its -shm file): a start on a full disk
    exits 75 (EX_TEMPFAIL: systemd tries again), not 78, and the next start works."""
    renders = tmp_path / "renders"
    renders.mkdir()
    with small_tmpfs(tmp_path / "fs", "4m") as fs:
        config, _ = local_config(tmp_path, renders, daemon={"state_dir": str(fs / "state")})
        state = fs / "state"
        daemon = DaemonProcess(config, state)
        with stopped_on_exit(daemon):
            daemon.wait_event("daemon.ready")
            assert daemon.stop() == 0  # journal.db and catalog.db exist
        ballast = fill(fs)
        daemon = DaemonProcess(config, state)
        with stopped_on_exit(daemon):
            code = _exited(daemon, 30, "a start on a full disk")
        print("start on a full disk:", code, daemon.tail(1))
        assert code == EXIT_TEMPFAIL, daemon.tail()
        assert "no space left" in daemon.tail(1) and "free some space" in daemon.tail(1)
        ballast.unlink()
        daemon = DaemonProcess(config, state)
        with stopped_on_exit(daemon):
            daemon.wait_event("daemon.ready")
            assert daemon.stop() == 0


# =========================================================================== journal.db


def _state_files(state: Path, name: str) -> list[Path]:
    return [p for p in (state / name, state / f"{name}-wal", state / f"{name}-shm")
            if p.exists()]  # fmt: skip


@pytest.mark.parametrize("sink", ["local", pytest.param("vast", marks=pytest.mark.slow)])
def test_journal_deleted_while_stopped_is_rebuilt_by_reconciliation(
    tmp_path: Path, templates: list[Any], sink: str, request: pytest.FixtureRequest
) -> None:
    """The catalog keeps its rows; the rescan sends every file again, which the sink must
    recognise: still exactly one row set per path."""
    renders = tmp_path / "renders"
    before, expected_before = _files(renders, templates, 80, seed=10, prefix="a")
    after, expected_after = _files(renders, templates, 40, seed=11, prefix="b")
    if sink == "vast":
        emulator = request.getfixturevalue("emu")
        config, state = vast_config(tmp_path, renders, emulator.endpoint)
        env, view = vast_env(emulator), lambda: vast_view(emulator)
    else:
        config, state = local_config(tmp_path, renders)
        env, view = {}, lambda: local_view(state)
    _write_all(before)
    daemon = DaemonProcess(config, state, env=env)
    with stopped_on_exit(daemon):
        _drained(daemon, state, expected_before, view)
        assert daemon.stop() == 0
    for path in _state_files(state, "journal.db"):
        path.unlink()
    _write_all(after)
    daemon = DaemonProcess(config, state, env=env)
    with stopped_on_exit(daemon):
        daemon.wait_event("daemon.ready")
        _drained(daemon, state, expected_before | expected_after, view)
        assert daemon.stop() == 0
    stats = journal_stats(state)
    assert stats.paths_by_status["complete"] == len(expected_before) + len(expected_after)
    if sink == "local":  # the old files were sent again and recognised: counted, not copied
        counts = dict(Catalog(state).query("SELECT file_path, inspection_count FROM files"))
        assert {counts[p] for p in expected_before} == {2}
        assert {counts[p] for p in expected_after} == {1}


def test_corrupt_journal_refuses_to_start_then_rebuilds_once_moved_aside(
    tmp_path: Path, templates: list[Any]
) -> None:
    renders = tmp_path / "renders"
    before, expected_before = _files(renders, templates, 40, seed=12, prefix="a")
    after, expected_after = _files(renders, templates, 20, seed=13, prefix="b")
    config, state = local_config(tmp_path, renders)
    _write_all(before)
    daemon = DaemonProcess(config, state)
    with stopped_on_exit(daemon):
        _drained(daemon, state, expected_before, lambda: local_view(state))
        assert daemon.stop() == 0
    journal = state / "journal.db"
    with open(journal, "r+b") as f:
        f.write(random.Random(14).randbytes(100))

    daemon = DaemonProcess(config, state)
    with stopped_on_exit(daemon):
        code = _exited(daemon, 30, "a start on a corrupt journal")
    message = "\n".join(daemon.raw_lines)
    assert code == EXIT_CONFIG, message
    assert not daemon.seen("daemon.ready")
    assert f"{journal} is not a valid SQLite database" in message, message
    assert "move it aside and restart" in message, message

    journal.rename(state / "journal.db.corrupt")
    _write_all(after)
    daemon = DaemonProcess(config, state)
    with stopped_on_exit(daemon):
        _drained(daemon, state, expected_before | expected_after, lambda: local_view(state))
        assert daemon.stop() == 0


# =========================================================================== catalog.db


@pytest.mark.parametrize("sink_process", [True, False], ids=["sink_process", "in_thread"])
def test_catalog_deleted_while_running_is_recreated_with_every_file(
    tmp_path: Path, templates: list[Any], sink_process: bool
) -> None:
    """LocalSink would keep writing to the unlinked file: the sink loop notices (one stat
    per turn, idle or not), says so loudly, marks every live path in the journal, opens a
    new catalog and the daemon rescans: every file is back, without a restart."""
    renders = tmp_path / "renders"
    before, expected_before = _files(renders, templates, 20, seed=15, prefix="a")
    after, expected_after = _files(renders, templates, 20, seed=16, prefix="b")
    config, state = local_config(tmp_path, renders, daemon={"sink_process": sink_process})
    _write_all(before)
    daemon = DaemonProcess(config, state)
    with stopped_on_exit(daemon):
        _drained(daemon, state, expected_before, lambda: local_view(state))
        for path in _state_files(state, "catalog.db"):
            path.unlink()
        lost = daemon.wait_event("catalog.lost", timeout=15)  # nothing written meanwhile
        assert lost["level"] == "error" and lost["reason"] == "deleted", lost
        assert lost["path"] == str(state / "catalog.db") and lost["resend"] == 20, lost
        daemon.wait_event("scan.finished", path=str(renders), changed=20)  # the resend
        _write_all(after)
        _drained(daemon, state, expected_before | expected_after, lambda: local_view(state))
        assert len(daemon.seen("catalog.lost")) == 1
        assert daemon.stop() == 0
    daemon = DaemonProcess(config, state)
    with stopped_on_exit(daemon):
        daemon.wait_event("scan.finished")
        _drained(daemon, state, expected_before | expected_after, lambda: local_view(state))
        assert not daemon.seen("catalog.lost")
        assert daemon.stop() == 0


def test_catalog_deleted_while_stopped_is_rebuilt_at_start(
    tmp_path: Path, templates: list[Any]
) -> None:
    renders = tmp_path / "renders"
    planned, expected = _files(renders, templates, 30, seed=20)
    config, state = local_config(tmp_path, renders)
    _write_all(planned)
    daemon = DaemonProcess(config, state)
    with stopped_on_exit(daemon):
        _drained(daemon, state, expected, lambda: local_view(state))
        assert not daemon.seen("catalog.lost")  # a first start creates it quietly
        assert daemon.stop() == 0
    for path in _state_files(state, "catalog.db"):
        path.unlink()
    daemon = DaemonProcess(config, state)
    with stopped_on_exit(daemon):
        lost = daemon.wait_event("catalog.lost")
        assert lost["reason"] == "missing" and lost["resend"] == len(expected), lost
        _drained(daemon, state, expected, lambda: local_view(state))
        assert daemon.stop() == 0


def test_catalog_replaced_by_an_old_copy_is_brought_up_to_date(
    tmp_path: Path, templates: list[Any]
) -> None:
    """An old copy moved over catalog.db while the daemon runs: it has rows of files deleted
    since and lacks newer ones. Everything is sent again, deletions included."""
    renders = tmp_path / "renders"
    old, expected_old = _files(renders, templates, 20, seed=21, prefix="a")
    new, expected_new = _files(renders, templates, 10, seed=22, prefix="b")
    config, state = local_config(tmp_path, renders)
    _write_all(old)
    daemon = DaemonProcess(config, state)
    with stopped_on_exit(daemon):
        _drained(daemon, state, expected_old, lambda: local_view(state))
        copy = state / "catalog.copy.db"
        with sqlite3.connect(state / "catalog.db") as live, sqlite3.connect(copy) as target:
            live.backup(target)
        gone = [item.path for item in old[:5]]
        for path in gone:
            path.unlink()
        _write_all(new)
        expected = {p: h for p, h in expected_old.items() if Path(p) not in gone} | expected_new
        _drained(daemon, state, expected, lambda: local_view(state))
        os.replace(copy, state / "catalog.db")
        lost = daemon.wait_event("catalog.lost", timeout=15)
        assert lost["reason"] == "replaced" and lost["resend"] == len(expected), lost
        _drained(daemon, state, expected, lambda: local_view(state))
        assert daemon.stop() == 0


# =========================================================================== VAST outages


def _vast_daemon(tmp_path: Path, emu: VastEmulator, renders: Path,
                 **sink: Any) -> tuple[DaemonProcess, Path]:  # fmt: skip
    # An entry is retried 0.1-2 s after a failure (backoff 0.2 s doubling, capped at 2 s, x0.5-1
    # jitter), so recovery is quick.
    config, state = vast_config(tmp_path, renders, emu.endpoint,
                                sink={"backoff_max_seconds": 2.0, **sink})  # fmt: skip
    daemon = DaemonProcess(config, state, env=vast_env(emu))
    daemon.wait_event("daemon.ready")
    return daemon, state


def _max_attempts(state: Path) -> int:
    con = sqlite3.connect(f"file:{state / 'journal.db'}?mode=ro", uri=True, timeout=10)
    try:
        return int(con.execute("SELECT coalesce(max(attempts), 0) FROM outbox").fetchone()[0])
    finally:
        con.close()


def _persisted(daemon: DaemonProcess) -> int:
    """Files persisted (frame-sequence summaries are persisted too, under their own key)."""
    return len({e["path"] for e in daemon.seen("sink.persisted") if e.get("op") != "sequence"})


@pytest.mark.parametrize("seconds", [10, pytest.param(60, marks=pytest.mark.slow)])
def test_vast_down_during_a_burst_everything_lands_once(
    tmp_path: Path, emu: VastEmulator, templates: list[Any], seconds: int
) -> None:
    renders = tmp_path / "renders"
    planned, expected = _files(renders, templates, 600, seed=17)
    daemon, state = _vast_daemon(tmp_path, emu, renders)
    with stopped_on_exit(daemon):
        burst = Burst(planned, 3.0).start()
        try:
            wait_for(lambda: _persisted(daemon) >= 50, 30, "the first files in VAST")
            emu.down()
            down_at = time.monotonic()
            downs = len(daemon.seen("sink.unavailable"))
            wait_for(lambda: len(daemon.seen("sink.unavailable")) > downs, 30,
                     "the sink reported unavailable while the cluster is down")  # fmt: skip
            burst.join()
            time.sleep(max(0.0, down_at + seconds - time.monotonic()))  # the outage
            attempts = _max_attempts(state)
        finally:
            emu.up()
            burst.cancel()
        # An unreachable cluster is sink-wide: the outage counts no attempts against entries.
        print(f"down {seconds} s: {_persisted(daemon)} files persisted before recovery, "
              f"outbox entries tried up to {attempts} times")  # fmt: skip
        assert attempts == 0
        _drained(daemon, state, expected, lambda: vast_view(emu), timeout=90, interval=0.5)
        assert not daemon.seen("sink.dead_letter")
        assert daemon.stop() == 0


def test_vast_503_storm_and_resets_during_a_large_burst_land_once(
    tmp_path: Path, emu: VastEmulator, templates: list[Any]
) -> None:
    """A 503 storm (ServiceUnavailable is not retried by the SDK), then connection resets
    before and after a commit and a reply slower than read_timeout, while 1,000 files
    arrive."""
    renders = tmp_path / "renders"
    planned, expected = _files(renders, templates, 1000, seed=18)
    daemon, state = _vast_daemon(tmp_path, emu, renders)
    with stopped_on_exit(daemon):
        emu.fail_next(20, 503, "ServiceUnavailable")
        burst = Burst(planned, 2.0).start()
        try:
            wait_for(lambda: _persisted(daemon) >= 200, 60, "200 files through the storm")
            emu.reset_connection(when="before_commit", n=2)
            emu.reset_connection(when="after_commit", n=2)
            emu.delay(3.0, command="rows")  # read_timeout is 2 s
            burst.join()
        finally:
            burst.cancel()
        # The test's own reads would take the faults: wait until the daemon met them all.
        wait_for(
            lambda: _persisted(daemon) == len(expected) and not emu.faults.pending(),
            120,
            lambda: f"{_persisted(daemon)} persisted, {emu.faults.pending()} armed",
        )
        _drained(daemon, state, expected, lambda: vast_view(emu), timeout=60, interval=0.5)
        assert len(daemon.seen("sink.retry")) >= 20
        assert not daemon.seen("sink.dead_letter")
        assert daemon.stop() == 0
