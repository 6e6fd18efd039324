"""Lost events: a real inotify queue overflow, and a start-up with work already waiting.

The overflow is real: the daemon process is frozen with SIGSTOP while more than
`fs.inotify.max_queued_events` events happen (no system setting is changed), so the kernel
drops events and queues IN_Q_OVERFLOW. After SIGCONT the daemon must notice and rescan.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from exrgen import write_scanline
from harness import Catalog, DaemonProcess, wait_for, write_config
from harness import children as harness_children


def _max_queued_events() -> int:
    try:
        return int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    except OSError:
        return 0


@pytest.mark.slow
@pytest.mark.skipif(not 0 < _max_queued_events() <= 65536, reason="inotify queue limit unknown")
def test_inotify_queue_overflow_triggers_a_rescan(tmp_path: Path) -> None:
    template = write_scanline(tmp_path / "t.exr").read_bytes()
    renders = tmp_path / "renders"
    renders.mkdir()
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "c.toml", state, [{"path": str(renders), "backend": "inotify"}],
        daemon={"rescan_interval": 3600.0},  # only the overflow can trigger the rescan
        log={"level": "info"},
    )  # fmt: skip
    daemon = DaemonProcess(config, state)
    try:
        daemon.wait_event("scan.finished")
        # Each new file costs IN_CREATE and IN_CLOSE_WRITE (the daemon does not subscribe
        # to IN_MODIFY): 2 events.
        count = _max_queued_events() // 2 + 2000
        os.kill(daemon.proc.pid, signal.SIGSTOP)
        try:
            expected = set()
            for i in range(count):
                path = renders / f"f.{i:06d}.exr"
                path.write_bytes(template)
                expected.add(str(path))
        finally:
            os.kill(daemon.proc.pid, signal.SIGCONT)
        daemon.wait_event("watch.events_lost", timeout=60)
        Catalog(state).wait_paths(expected, timeout=240)
        rescans = daemon.seen("scan.finished")
        assert len(rescans) >= 2  # the start-up scan, and the one the overflow caused
    finally:
        assert daemon.stop() == 0


def test_backlog_present_at_start_is_found_by_the_first_scan(tmp_path: Path) -> None:
    renders = tmp_path / "renders"
    expected = {str(write_scanline(renders / f"d{i % 7}" / f"f.{i}.exr")) for i in range(60)}
    state = tmp_path / "state"
    config = write_config(tmp_path / "c.toml", state, [{"path": str(renders)}])
    daemon = DaemonProcess(config, state)
    try:
        Catalog(state).wait_paths(expected, timeout=60)
    finally:
        assert daemon.stop() == 0


@pytest.mark.parametrize("backend", ["inotify", "poll"])
def test_watch_root_removed_and_recreated(tmp_path: Path, backend: str) -> None:
    """A root that turns up empty (an unmounted share) is never taken to mean that every
    file under it was deleted; when it comes back, watching carries on."""
    renders = tmp_path / "renders"
    first = write_scanline(renders / "a.0001.exr")
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "c.toml", state,
        [{"path": str(renders), "backend": backend, "poll_interval": 0.2}],
        daemon={"rescan_interval": 0.5},
    )  # fmt: skip
    daemon = DaemonProcess(config, state)
    catalog = Catalog(state)
    try:
        catalog.wait_paths({str(first)})
        # Nothing of the file still settling when the share goes: the poller's first scan
        # can detect it a second time, after the reconciler did; a file that vanishes from a
        # root that is there (empty) is gone for real, which is not what this test is about.
        wait_for(lambda: _idle(daemon, state), 30, lambda: f"an idle daemon: {daemon.tail()}")
        away = tmp_path / "elsewhere"
        renders.rename(away)  # the share is gone...
        if backend == "poll":
            # ...and stays gone until the poller has said so: between two polls a root
            # renamed and recreated would never fail a walk (issue 12, case 16: this wait
            # depended on the moment of a poll).
            daemon.wait_event("watch.walk_error", timeout=30)
        renders.mkdir()  # an empty mount point: what an unmounted share looks like
        wait_for(
            lambda: any("is empty" in e.get("error", "")
                        for e in daemon.seen("scan.root_unavailable")),
            30, lambda: "scan.root_unavailable for the empty root:\n" + daemon.tail(),
        )  # fmt: skip
        assert set(catalog.paths()) == {str(first)}  # not wiped
        renders.rmdir()
        away.rename(renders)  # the share is back
        second = write_scanline(renders / "b.0001.exr")
        catalog.wait_paths({str(first), str(second)}, timeout=30)
        assert daemon.proc.poll() is None  # still running
    finally:
        assert daemon.stop() == 0


def _idle(daemon: DaemonProcess, state: Path) -> bool:
    """The daemon's last status (rewritten every 2 s) was taken after every detection it has
    logged so far, and nothing was settling, queued or being read then."""
    try:
        status = json.loads((state / "status.json").read_text())
    except (OSError, ValueError):
        return False
    busy = (status["pending"], status["queue_depth"], status["inflight"], status["journal_queue"])
    return busy == (0, 0, 0, 0) and status["detected"] == len(daemon.seen("file.detected"))


def test_dead_observer_is_restarted_and_rescans(tmp_path: Path) -> None:
    """Deleting the watched root kills watchdog's emitter; when the root is back the daemon
    starts a new observer and rescans, and files deleted meanwhile leave the catalog."""
    renders = tmp_path / "renders"
    first = write_scanline(renders / "a.0001.exr")
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "c.toml", state, [{"path": str(renders), "backend": "inotify"}],
        daemon={"rescan_interval": 3600.0},
    )  # fmt: skip
    daemon = DaemonProcess(config, state)
    catalog = Catalog(state)
    try:
        catalog.wait_paths({str(first)})
        shutil.rmtree(renders)
        daemon.wait_event("watch.died", timeout=30)
        renders.mkdir()
        second = write_scanline(renders / "b.0001.exr")
        catalog.wait_paths({str(second)}, timeout=30)
        assert len(daemon.seen("watch.started")) == 2
    finally:
        assert daemon.stop() == 0


def test_kill_9_leaves_no_orphaned_sink_process(tmp_path: Path) -> None:
    renders = tmp_path / "renders"
    renders.mkdir()
    state = tmp_path / "state"
    config = write_config(tmp_path / "c.toml", state, [{"path": str(renders)}])
    daemon = DaemonProcess(config, state)
    daemon.wait_event("daemon.ready")
    children = harness_children(daemon.proc.pid)
    assert children, "the sink runs in a child process"
    daemon.kill()  # SIGKILL: no chance to stop its child

    def all_gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() and "Z" not in
                       Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                       for pid in children)  # fmt: skip

    wait_for(all_gone, 20, f"children {children} of the killed daemon to exit")
