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
from test_metrics import fetch, parse, value
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


def journal_report(config: Path) -> dict[str, Any]:
    return json.loads(status(config, "--json").stdout)["journal"] or {}


def test_a_frame_being_written_is_in_progress_not_degraded(tmp_path: Path) -> None:
    """A frame found incomplete and waited for (max_wait_seconds far off) is counted in
    progress at once, and a daemon waiting for one is healthy; once whole, it leaves the count."""
    env = DaemonEnv(tmp_path, settle={"quiet_seconds": 0.2, "max_wait_seconds": 120.0})
    shot = env.watch / "sh010"
    shot.mkdir()
    frame = write_scanline(tmp_path / "frame.exr").read_bytes()
    daemon = env.start()
    with stopped_on_exit(daemon):
        for n in (1, 2):
            (shot / f"beauty.{n:04d}.exr").write_bytes(frame)
        (shot / "beauty.0003.exr").write_bytes(frame[: len(frame) // 2])  # the farm is writing
        wait_for(lambda: journal_report(env.config).get("frames_in_progress") == 1, 20,
                 lambda: f"one frame in progress; last: {journal_report(env.config)}")  # fmt: skip
        proc = status(env.config)
        assert proc.returncode == 0, proc.stdout
        assert "frames in progress: 1 (exrwatchd sequences lists them)" in proc.stdout
        assert_for_people(proc.stdout)

        (shot / "beauty.0003.exr").write_bytes(frame)  # the rest lands
        wait_for(lambda: journal_report(env.config).get("frames_in_progress") == 0, 20,
                 "frame 3 no longer in progress")  # fmt: skip
        assert "frames in progress" not in status(env.config).stdout
        assert daemon.stop() == 0


def test_a_hook_dead_letter_degrades_status_and_shows_in_metrics(tmp_path: Path) -> None:
    """An exec hook that exits 1 with max_attempts = 1: its event is a dead letter at once,
    which makes `status` exit 1 (as an outbox dead letter does), counted in the text and the
    JSON, and in the hook metrics of a real scrape."""
    env = DaemonEnv(tmp_path, settle={"quiet_seconds": 0.2, "max_wait_seconds": 1.0},
                    metrics={"listen": "127.0.0.1:0"})  # fmt: skip
    with env.config.open("a") as f:
        f.write('\n[[hook]]\nname = "farm"\non = ["file.incomplete"]\n'
                'exec = ["/bin/false"]\nmax_attempts = 1\n')  # fmt: skip
    frame = write_scanline(tmp_path / "frame.exr").read_bytes()
    daemon = env.start()
    with stopped_on_exit(daemon):
        address = daemon.wait_event("metrics.listening")["address"]
        assert wait_for(lambda: status(env.config).returncode == 0, 20, "healthy first")
        (env.watch / "broken.exr").write_bytes(frame[: len(frame) // 2])
        daemon.wait_event("hook.failed", hook="farm", dead_letter=True)
        proc = wait_for(lambda: (p := status(env.config)).returncode == 1 and p, 20,
                        lambda: f"status exit 1; last: {status(env.config)}")  # fmt: skip
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("exrwatchd: running, DEGRADED"), lines
        assert "  problem: 1 hook dead letters in the journal: `exrwatchd journal failed` " \
               "lists them" in lines, lines  # fmt: skip
        assert "journal hooks: ready 0, inflight 0, dead 1" in lines, lines
        assert_for_people(proc.stdout)
        report = json.loads(status(env.config, "--json").stdout)
        assert report["journal"]["hooks"] == {"ready": 0, "inflight": 0, "dead": 1}
        assert report["journal"]["dead"] == 0  # the outbox's are its own

        def scraped() -> dict:
            return parse(fetch(f"http://{address}/metrics")[1])

        s = wait_for(lambda: (s := scraped()) and value(
            s, "exrwatchd_hook_deliveries_total", outcome="dead_lettered") == 1 and s, 20,
            "the dead letter counted in the metrics")  # fmt: skip
        assert value(s, "exrwatchd_hook_deliveries_total", outcome="delivered") == 0
        assert value(s, "exrwatchd_hook_deliveries_total", outcome="retried") == 0
        assert value(s, "exrwatchd_hook_entries", state="dead") == 1
        assert value(s, "exrwatchd_hook_entries", state="ready") == 0

        # requeued, it fails again and is dead again: the counter goes on
        run = subprocess.run([sys.executable, "-m", "exrwatchd", "journal", "retry", "--all",
                              "--config", str(env.config)], capture_output=True, text=True,
                             timeout=60)  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        dead_lettered = {"outcome": "dead_lettered"}
        wait_for(lambda: value(scraped(), "exrwatchd_hook_deliveries_total", **dead_lettered)
                 == 2, 20, "dead-lettered again")  # fmt: skip
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
        hooks = {"dead": 0, "hooks": {"ready": 0, "inflight": 0, "dead": 2}}
        code, problems = assess({"daemon": self.HEALTHY, "journal": hooks})
        assert code == 1 and "2 hook dead letters" in problems[0]
        # frames in progress and hook rows waiting are normal
        busy = {"dead": 0, "frames_in_progress": 4, "hooks": {"ready": 5, "inflight": 1,
                                                              "dead": 0}}  # fmt: skip
        assert assess({"daemon": self.HEALTHY, "journal": busy}) == (0, [])
        assert assess({"daemon": self.HEALTHY | {"running": False}, "journal": None})[0] == 3
        assert assess({"daemon": None, "journal": None})[0] == 3
