"""SIGHUP: the real daemon re-reads its config; nothing in flight is lost."""

from __future__ import annotations

import signal
from pathlib import Path

from exrgen import write_scanline
from harness import Catalog, DaemonProcess, write_config


def test_reload_adds_and_removes_watches_and_survives_a_bad_config(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    state = tmp_path / "state"
    config = tmp_path / "c.toml"
    write_config(config, state, [{"path": str(a)}])
    daemon = DaemonProcess(config, state)
    catalog = Catalog(state)
    try:
        daemon.wait_event("daemon.ready")
        burst = {str(write_scanline(a / f"burst.{i}.exr")) for i in range(100)}

        write_config(config, state, [{"path": str(b)}], log={"level": "info"})
        daemon.proc.send_signal(signal.SIGHUP)  # mid-burst: nothing may be lost
        reloaded = daemon.wait_event("config.reloaded")
        assert reloaded["added_watches"] == [str(b)]
        assert reloaded["removed_watches"] == [str(a)]
        in_b = str(write_scanline(b / "new.0001.exr"))
        catalog.wait_paths(burst | {in_b}, timeout=60)
        # The level went from debug to info: no per-file event for the new file (catalogued
        # above), only the progress lines that sum files up.
        assert not daemon.seen("file.detected", path=in_b)
        assert not daemon.seen("file.inspected", path=in_b)

        write_scanline(a / "after_removal.exr")  # no longer watched
        barrier = str(write_scanline(b / "barrier.exr"))
        catalog.wait_paths(burst | {in_b, barrier})

        config.write_text("[daemon\nbroken = ")
        daemon.proc.send_signal(signal.SIGHUP)
        failed = daemon.wait_event("config.reload_failed")
        assert "c.toml" in failed["error"]
        still = str(write_scanline(b / "still_running.exr"))
        catalog.wait_paths(burst | {in_b, barrier, still})
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0


def test_reload_reports_what_needs_a_restart(tmp_path: Path) -> None:
    renders = tmp_path / "r"
    renders.mkdir()
    state = tmp_path / "state"
    config = tmp_path / "c.toml"
    write_config(config, state, [{"path": str(renders)}])
    daemon = DaemonProcess(config, state)
    try:
        daemon.wait_event("daemon.ready")
        write_config(config, state, [{"path": str(renders)}], daemon={"workers": 3},
                     settle={"quiet_seconds": 0.1})  # fmt: skip
        daemon.proc.send_signal(signal.SIGHUP)
        event = daemon.wait_event("config.reloaded")
        assert event["needs_restart"] == ["daemon.workers"]
        path = str(write_scanline(renders / "f.exr"))
        Catalog(state).wait_paths({path})
    finally:
        assert daemon.stop() == 0


def test_log_file_is_reopened_on_sighup(tmp_path: Path) -> None:
    """logrotate moves the file away and sends SIGHUP: new lines go to a new file."""
    renders = tmp_path / "r"
    renders.mkdir()
    state = tmp_path / "state"
    log_file = tmp_path / "exrwatchd.log"
    config = write_config(tmp_path / "c.toml", state, [{"path": str(renders)}],
                          log={"level": "info", "file": str(log_file)})  # fmt: skip
    daemon = DaemonProcess(config, state)
    try:
        from harness import wait_for

        wait_for(lambda: log_file.exists() and "daemon.ready" in log_file.read_text(), 20,
                 "daemon.ready in the log file")  # fmt: skip
        rotated = tmp_path / "exrwatchd.log.1"
        log_file.rename(rotated)
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: log_file.exists() and "config.reloaded" in log_file.read_text(), 20,
                 "config.reloaded in the reopened log file")  # fmt: skip
        assert "config.reloaded" not in rotated.read_text()
        assert "daemon.ready" in rotated.read_text()
    finally:
        assert daemon.stop() == 0


def test_log_file_is_reopened_on_sighup_even_when_the_new_config_is_refused(
    tmp_path: Path,
) -> None:
    """logrotate's SIGHUP does not depend on the config file being valid at that moment: the
    refusal itself, and every line after it, goes to the new file, not the rotated one."""
    from harness import wait_for

    renders = tmp_path / "r"
    renders.mkdir()
    state = tmp_path / "state"
    log_file = tmp_path / "exrwatchd.log"
    config = write_config(tmp_path / "c.toml", state, [{"path": str(renders)}],
                          log={"level": "info", "file": str(log_file)})  # fmt: skip
    daemon = DaemonProcess(config, state)
    try:
        wait_for(lambda: log_file.exists() and "daemon.ready" in log_file.read_text(), 20,
                 "daemon.ready in the log file")  # fmt: skip
        rotated = tmp_path / "exrwatchd.log.1"
        log_file.rename(rotated)
        config.write_text(config.read_text() + "\n[daemon\nbroken = ")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: log_file.exists() and "config.reload_failed" in log_file.read_text(),
                 20, lambda: f"config.reload_failed in the reopened log file; the rotated one "
                 f"ends: {rotated.read_text()[-400:]}")  # fmt: skip
        assert "config.reload_failed" not in rotated.read_text()
    finally:
        assert daemon.stop() == 0
