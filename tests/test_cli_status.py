"""`exrwatchd status` against the real daemon: what it prints for people and its exit code
for monitoring (0 running and healthy, 1 running but degraded, 3 not running)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from crash_support import stopped_on_exit, vast_config, vast_env
from exrgen import write_scanline
from harness import ROOT, DaemonEnv, DaemonProcess, wait_for
from vast_emulator import VastEmulator

from exrwatchd.cli.status import assess

# What a Python value looks like when it leaks into text meant for people.
REPR = re.compile(r"\bNone\b|[{}\[\]]|'[a-z_]+':")


def status(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exrwatchd", "status", "--config", str(config), *extra],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=60,
    )  # fmt: skip


def assert_for_people(text: str) -> None:
    # An error message is quoted as the sink gave it (the vastdb SDK's own text holds reprs).
    lines = [re.split(r"(?:failing|FAILING|last error): ", line)[0] for line in text.splitlines()]
    leaked = [line for line in lines if REPR.search(line)]
    assert not leaked, f"Python reprs in the text output: {leaked}"


def test_never_started_and_stopped_exit_3(tmp_path: Path) -> None:
    env = DaemonEnv(tmp_path)
    proc = status(env.config)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "not running" in proc.stdout
    assert_for_people(proc.stdout)

    write_scanline(env.watch / "sh010" / "beauty.0001.exr")
    daemon = env.start()
    with stopped_on_exit(daemon):
        env.catalog.wait_paths({str(env.watch / "sh010" / "beauty.0001.exr")})
        assert daemon.stop() == 0
    proc = status(env.config)
    assert proc.returncode == 3
    assert proc.stdout.splitlines()[0].startswith("exrwatchd: not running")
    assert "complete 1, incomplete 0" in proc.stdout
    assert_for_people(proc.stdout)
    assert status(env.config, "--json").returncode == 3


def test_running_and_healthy_exit_0(tmp_path: Path) -> None:
    env = DaemonEnv(tmp_path)
    write_scanline(env.watch / "beauty.0001.exr")
    daemon = env.start()
    with stopped_on_exit(daemon):
        env.catalog.wait_paths({str(env.watch / "beauty.0001.exr")})
        proc = wait_for(lambda: (p := status(env.config)).returncode == 0 and p, 20,
                        lambda: f"status exit 0; last: {status(env.config)}")  # fmt: skip
        first = proc.stdout.splitlines()[0]
        assert first.startswith(f"exrwatchd: running, healthy (pid {daemon.proc.pid}"), first
        assert "sink: healthy" in proc.stdout
        assert_for_people(proc.stdout)
        report = json.loads(status(env.config, "--json").stdout)
        assert report["daemon"]["running"] is True  # --json unchanged
        assert report["journal"]["paths_by_status"]["complete"] == 1
        assert daemon.stop() == 0


@pytest.fixture
def emu() -> Iterator[VastEmulator]:
    with VastEmulator(buckets={"exrwatch"}) as emulator:
        yield emulator


def test_running_with_the_sink_failing_exits_1(tmp_path: Path, emu: VastEmulator) -> None:
    renders = tmp_path / "renders"
    renders.mkdir()
    config, state = vast_config(tmp_path, renders, emu.endpoint)
    daemon = DaemonProcess(config, state, env=vast_env(emu))
    with stopped_on_exit(daemon):
        daemon.wait_event("daemon.ready")
        assert wait_for(lambda: status(config).returncode == 0, 20, "healthy first")
        emu.down()
        write_scanline(renders / "beauty.0001.exr")  # something to deliver, which fails
        proc = wait_for(lambda: (p := status(config)).returncode == 1 and p, 40,
                        lambda: f"status exit 1, VAST down; last: {status(config)}")  # fmt: skip
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("exrwatchd: running, DEGRADED"), lines
        assert any(line.startswith("  problem: sink failing") for line in lines), lines
        assert_for_people(proc.stdout)
        assert status(config, "--json").returncode == 1
        emu.up()
        wait_for(lambda: status(config).returncode == 0, 40, "healthy again once VAST is back")
        assert daemon.stop() == 0


class TestAssess:
    """The other degraded conditions, on the status.json the daemon writes."""

    HEALTHY: ClassVar[dict[str, Any]] = {
        "pid": 1, "running": True, "age_seconds": 1.0, "sink_unhealthy_since": None,
        "health": None, "journal_disk_full": None, "unreadable_count": 0,
    }  # fmt: skip

    def test_each_condition(self) -> None:
        journal = {"dead": 0}
        assert assess({"daemon": self.HEALTHY, "journal": journal}) == (0, [])
        for change, words in [
            ({"journal_disk_full": "No space left on device"}, "journal: DISK FULL"),
            ({"health": "watcher for /srv is dead"}, "watcher for /srv is dead"),
            ({"unreadable_count": 2}, "2 paths unreadable"),
            ({"age_seconds": 600.0}, "not updated for 600 s"),
        ]:
            code, problems = assess({"daemon": self.HEALTHY | change, "journal": journal})
            assert code == 1 and any(words in p for p in problems), (change, problems)
        code, problems = assess({"daemon": self.HEALTHY, "journal": {"dead": 3}})
        assert code == 1 and "3 dead letters" in problems[0]
        assert assess({"daemon": self.HEALTHY | {"running": False}, "journal": None})[0] == 3
        assert assess({"daemon": None, "journal": None})[0] == 3
