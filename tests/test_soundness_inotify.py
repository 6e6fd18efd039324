"""The inotify limits never blind a root silently (issue 12, case 17), through the real daemon.

When watches cannot be added (ENOSPC: `max_user_watches`; EMFILE: `max_user_instances`;
ENOMEM), the daemon logs `watch.failed` with the limit and the directory count and polls that
root, so a frame is found within `poll_interval`, not at the next rescan; once the limit is
raised, inotify takes the root back.

The limits are real, and the daemon's alone: it runs in a user namespace of its own
(`unshare --user --map-root-user`, root mapped to root, so it reads the same files), whose
`/proc/sys/user/max_inotify_watches` and `max_inotify_instances` the kernel enforces for that
namespace only (the charges also go up to the parent namespace, so nothing is loosened). The
host's `fs.inotify.*` sysctls, which the other tests on this machine share, are not touched.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exrgen import write_scanline
from harness import Catalog, DaemonProcess, wait_for, write_config

#: Directories per tree: well above the watch limit the daemon gets.
DIRS = 100
LIMIT = 60


def _namespaces_work() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run(
        [unshare, "--user", "--map-root-user", "sh", "-c",
         "echo 7 > /proc/sys/user/max_inotify_watches"],
        capture_output=True, check=False,
    )  # fmt: skip
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _namespaces_work(),
    reason="no user namespaces (unshare --user) with their own inotify limits here: the only "
    "way to give the daemon a low limit without lowering the host's for everyone",
)


def _limited(watches: int | None = None, instances: int | None = None) -> list[str]:
    """A wrapper that runs the daemon in its own user namespace with these inotify limits."""
    sets = [f"echo {value} > /proc/sys/user/max_inotify_{name}"
            for name, value in (("watches", watches), ("instances", instances))
            if value is not None]  # fmt: skip
    script = " && ".join([*sets, 'exec "$@"'])
    return ["unshare", "--user", "--map-root-user", "sh", "-c", script, "sh"]


def _raise_limit(daemon: DaemonProcess, watches: int) -> None:
    """What an operator does with sysctl, in the daemon's namespace."""
    subprocess.run(
        ["nsenter", "--user", "--target", str(daemon.proc.pid), "sh", "-c",
         f"echo {watches} > /proc/sys/user/max_inotify_watches"],
        check=True,
    )  # fmt: skip


def _tree(root: Path, count: int, prefix: str = "d") -> list[Path]:
    dirs = [root / f"{prefix}{i:03d}" for i in range(count)]
    for d in dirs:
        d.mkdir(parents=True)
    return dirs


def _frames(dirs: list[Path], name: str = "f.0001.exr") -> set[str]:
    return {str(write_scanline(d / name)) for d in dirs}


class Env:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.state = base / "state"
        self.catalog = Catalog(self.state)
        self.daemon: DaemonProcess | None = None

    def start(self, roots: list[Path], wrapper: list[str], **watch: Any) -> DaemonProcess:
        watches = [{"path": str(r), "backend": "inotify", **watch} for r in roots]
        # An hour between rescans: only a watcher (inotify or the fallback poller) finds a
        # frame within the tests' deadlines.
        config = write_config(self.base / "config.toml", self.state, watches,
                              daemon={"rescan_interval": 3600.0})  # fmt: skip
        self.daemon = DaemonProcess(config, self.state, wrapper=wrapper)
        self.daemon.wait_event("daemon.ready")
        self.daemon.wait_event("scan.finished")
        return self.daemon


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    if e.daemon is not None:
        e.daemon.kill()


def test_watch_limit_below_the_directory_count_polls_the_root(env: Env) -> None:
    # issue 12, case 17: 60 watches for 100 directories: watchdog swallowed the failed
    # subdirectory watches, nothing was logged, and a frame dropped into an unwatched
    # directory waited for the hourly rescan.
    renders = env.base / "renders"
    dirs = _tree(renders, DIRS)
    daemon = env.start([renders], _limited(watches=LIMIT), poll_interval=0.2)
    frames = _frames(dirs)  # one in every directory: whichever inotify did not cover
    env.catalog.wait_paths(frames, timeout=30)
    failed = daemon.wait_event("watch.failed", path=str(renders))
    assert failed["errno"] == "ENOSPC", failed
    assert failed["limit"] == "user.max_inotify_watches", failed
    assert failed["limit_value"] == LIMIT, failed
    assert failed["directories"] == DIRS + 1, failed  # the root is a directory too
    assert failed["fallback"] == "poll", failed
    started = daemon.wait_event("watch.started", path=str(renders), backend="poll")
    assert "inotify watch limit reached" in started["reason"], started


def test_watches_running_out_later_poll_the_root(env: Env) -> None:
    # issue 12, case 17: directories created while the daemon runs, past the limit: the
    # watches failed in watchdog's own thread, silently.
    renders = env.base / "renders"
    _tree(renders, 20)
    daemon = env.start([renders], _limited(watches=LIMIT), poll_interval=0.2)
    assert daemon.seen("watch.started", path=str(renders), backend="inotify")
    later = _tree(renders, DIRS, prefix="new")
    failed = daemon.wait_event("watch.failed", path=str(renders))
    assert failed["errno"] == "ENOSPC", failed
    assert failed["limit_value"] == LIMIT, failed
    assert failed["fallback"] == "poll", failed
    frames = _frames(later)
    env.catalog.wait_paths(frames, timeout=30)


def test_a_root_left_without_watches_polls_and_the_next_root_keeps_inotify(env: Env) -> None:
    # issue 12, case 17: the run that did log `watch.failed`: the first root's tree took
    # every watch (and kept them), the second root's own watch failed (raised, so logged),
    # and neither root was polled.
    big, small = env.base / "big", env.base / "small"
    big_dirs, small_dirs = _tree(big, DIRS), _tree(small, 3)
    daemon = env.start([big, small], _limited(watches=LIMIT), poll_interval=0.2)
    frames = _frames(big_dirs) | _frames(small_dirs)
    env.catalog.wait_paths(frames, timeout=30)
    assert daemon.seen("watch.failed", path=str(big), fallback="poll")
    # The first root's partial watches were given back: the second one fits.
    assert daemon.seen("watch.started", path=str(small), backend="inotify")
    assert not daemon.seen("watch.failed", path=str(small))


def test_no_inotify_instance_left_polls_the_root(env: Env) -> None:
    # issue 12, case 17: EMFILE from inotify_init (max_user_instances), before any watch.
    renders = env.base / "renders"
    dirs = _tree(renders, 3)
    daemon = env.start([renders], _limited(instances=0), poll_interval=0.2)
    failed = daemon.wait_event("watch.failed", path=str(renders))
    assert failed["errno"] == "EMFILE", failed
    assert failed["limit"] == "user.max_inotify_instances", failed
    assert failed["limit_value"] == 0, failed
    env.catalog.wait_paths(_frames(dirs), timeout=30)


def test_inotify_takes_the_root_back_when_the_limit_is_raised(env: Env) -> None:
    # issue 12, case 17: "until inotify can cover it again". The poller here waits an hour
    # between scans, so only inotify can find the last frame in time.
    renders = env.base / "renders"
    dirs = _tree(renders, DIRS)
    daemon = env.start([renders], _limited(watches=LIMIT), poll_interval=3600.0)
    daemon.wait_event("watch.failed", path=str(renders), fallback="poll")
    scans = len(daemon.seen("scan.finished", path=str(renders)))
    _raise_limit(daemon, 10 * DIRS)
    back = daemon.wait_event("watch.started", path=str(renders), backend="inotify", timeout=20)
    assert "raised" in back["reason"], back
    # The switch is followed by a reconciliation (for what fell between the two watchers);
    # the frame comes after it, so that only inotify can report it.
    wait_for(lambda: len(daemon.seen("scan.finished", path=str(renders))) > scans, 30,
             lambda: "the reconciliation after the switch:\n" + daemon.tail())  # fmt: skip
    env.catalog.wait_paths(_frames(dirs[-1:]), timeout=30)
