"""Unreadable is not deleted (issue 12, cases 2 and 15), through the real daemon process.

Only ENOENT (and ENOTDIR) may mean "gone". A directory that turns unreadable (EACCES here;
EIO, ESTALE, ENOTCONN elsewhere) keeps the rows of the files under it, is logged once
(`watch.unreadable` with the errno), counted (`exrwatchd_unreadable_total`) and shown by
`exrwatchd status`. A mount point below a watch root that is unmounted (empty) or missing
is "unavailable", as the watch root itself.

Root ignores `chmod 000` (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH). When the tests run as
root, the daemon runs under `setpriv` with those two capabilities dropped from its bounding
set, so the kernel applies the permission bits to it and it meets a real EACCES. (Switching
to `nobody` is not possible here: the interpreter lives under /root, mode 0700.)
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exrgen import write_scanline
from harness import ROOT, Catalog, DaemonProcess, wait_for, write_config

from exrwatchd.cli.status import gather_status
from exrwatchd.config import load_config
from exrwatchd.watch import SettledFile, Settler
from exrwatchd.watch.poll import PollScanner
from exrwatchd.watch.settle import Unreadable, Vanished

#: Without these, root is bound by permission bits like anyone else.
DAC_CAPS = "-dac_override,-dac_read_search"


class Tree:
    """A watched tree, a state directory and a daemon that `chmod 000` locks out."""

    def __init__(self, base: Path, wrapper: list[str]) -> None:
        self.base = base
        self.wrapper = wrapper
        self.renders = base / "renders"
        self.renders.mkdir()
        self.state = base / "state"
        self.catalog = Catalog(self.state)
        self.config = base / "config.toml"

    def start(self, watch: dict[str, Any], **sections: Any) -> DaemonProcess:
        write_config(self.config, self.state, [{"path": str(self.renders), **watch}],
                     **sections)  # fmt: skip
        daemon = DaemonProcess(self.config, self.state, wrapper=self.wrapper)
        daemon.wait_event("daemon.ready")
        return daemon


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    wrapper: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux): no way to make the "
                        "daemon subject to chmod 000, so no real EACCES")  # fmt: skip
        wrapper = [setpriv, "--bounding-set", DAC_CAPS, "--"]
    yield Tree(tmp_path, wrapper)
    for path in (tmp_path, *tmp_path.rglob("*")):  # let pytest clean up
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


def _scans_after(daemon: DaemonProcess, before: int, more: int) -> list[dict[str, Any]]:
    """Wait for `more` scan.finished events past the first `before`; return them all (the
    first may have started before the change, so it could have seen nothing to delete; the
    others surely began after it)."""
    wait_for(lambda: len(daemon.seen("scan.finished")) >= before + more, 60,
             lambda: "more reconciliations:\n" + daemon.tail())  # fmt: skip
    return daemon.seen("scan.finished")[before:]


def _metric(daemon: DaemonProcess, line_start: str) -> float | None:
    address = daemon.wait_event("metrics.listening")["address"]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(line_start + " "):
                return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.parametrize("backend", ["inotify", "poll"])
def test_unreadable_parent_directory_keeps_its_rows(tree: Tree, backend: str) -> None:
    # issue 12, case 2: `chmod 000` of a parent directory made reconciliation's isdir()
    # false and every file below it was journaled as deleted (4 of 4 rows).
    shot = tree.renders / "shot"
    files = {str(write_scanline(shot / "sub" / f"f.{i:04d}.exr")) for i in range(1, 5)}
    daemon = tree.start({"backend": backend, "poll_interval": 0.2},
                        daemon={"rescan_interval": 0.5},
                        metrics={"listen": "127.0.0.1:0"})  # fmt: skip
    try:
        tree.catalog.wait_paths(files)
        before = len(daemon.seen("scan.finished"))
        shot.chmod(0)
        after = _scans_after(daemon, before, 3)
        assert [scan["gone"] for scan in after] == [0] * len(after), daemon.tail()
        unreadable = daemon.wait_event("watch.unreadable", path=str(shot))
        assert unreadable["errno"] == "EACCES"
        _scans_after(daemon, len(daemon.seen("scan.finished")), 2)
        assert len(daemon.seen("watch.unreadable", path=str(shot))) == 1  # once, not per scan
        assert not daemon.seen("watch.walk_error", path=str(shot))
        assert not daemon.seen("file.deleted")
        assert set(tree.catalog.paths()) == files
        # Counted as logged: once per path (the poller also meets sub/, below shot/).
        wait_for(lambda: _metric(daemon, 'exrwatchd_unreadable_total{errno="EACCES"}')
                 == len(daemon.seen("watch.unreadable", errno="EACCES")), 10,
                 "exrwatchd_unreadable_total to count the watch.unreadable lines")  # fmt: skip
        cfg = load_config(tree.config)
        wait_for(lambda: str(shot) in (gather_status(cfg)["daemon"] or {}).get("unreadable", {}),
                 10, "status.json to list the unreadable directory")  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "exrwatchd", "status", "--config", str(tree.config)],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        text = done.stdout
        assert done.returncode == 1, text  # running but degraded
        assert f"unreadable: {shot} (EACCES)" in text, text

        shot.chmod(0o755)  # readable again: forgotten by the next reconciliation
        daemon.wait_event("watch.readable", path=str(shot), timeout=30)
        (shot / "sub" / "f.0004.exr").unlink()  # and a real deletion is still one
        files.discard(str(shot / "sub" / "f.0004.exr"))
        tree.catalog.wait_paths(files)
    finally:
        shot.chmod(0o755)
        assert daemon.stop() == 0


def test_file_settling_under_an_unreadable_directory_is_not_deleted(tree: Tree) -> None:
    # issue 12, case 2: the settler's stat_sig() returned None for EACCES, so a file that
    # changed under a directory that had just turned unreadable was journaled as deleted.
    shot = tree.renders / "shot"
    sub = shot / "sub"
    files = {str(write_scanline(sub / f"f.{i:04d}.exr")) for i in range(1, 5)}
    other = write_scanline(tree.base / "other.exr", size=(8, 8)).read_bytes()
    daemon = tree.start({"backend": "inotify"}, daemon={"rescan_interval": 3600.0})
    try:
        first_hash = tree.catalog.wait_paths(files)[str(sub / "f.0001.exr")][0]
        shot.chmod(0)
        # The inotify watch on sub/ outlives the chmod; root may still write there. The
        # daemon hears of both files and can stat neither: deterministically, no race.
        (sub / "f.0001.exr").write_bytes(other)
        (sub / "f.0005.exr").write_bytes(other)
        wait_for(lambda: daemon.seen("file.deleted") or daemon.seen("watch.unreadable"), 30,
                 lambda: "the settler's verdict:\n" + daemon.tail())  # fmt: skip
        assert not daemon.seen("file.deleted"), daemon.tail()
        event = daemon.seen("watch.unreadable")[0]
        assert (event["path"], event["errno"]) == (str(sub), "EACCES")
        assert set(tree.catalog.paths()) == files

        shot.chmod(0o755)  # the settler looks again and records both
        files.add(str(sub / "f.0005.exr"))
        tree.catalog.wait_paths(files)
        wait_for(lambda: tree.catalog.paths()[str(sub / "f.0001.exr")][0] != first_hash, 30,
                 "the rewritten f.0001.exr recorded")  # fmt: skip
        assert not daemon.seen("file.deleted")
    finally:
        shot.chmod(0o755)
        assert daemon.stop() == 0


def _mount(args: list[str]) -> str | None:
    """Run mount/umount; the reason it failed, or None."""
    if shutil.which(args[0]) is None:
        return f"{args[0]} is not installed"
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    return None if done.returncode == 0 else done.stderr.strip() or f"exit {done.returncode}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs (its own st_dev) outside the tree, bind-mounted below the root by the test,
    so an unmount leaves the files intact for the share to come back."""
    path = tmp_path / "store"
    path.mkdir()
    problem = _mount(["mount", "-t", "tmpfs", "-o", "size=16m", "exrwatchd-test", str(path)])
    if problem is not None:
        pytest.skip(f"cannot mount a tmpfs here ({problem}): a mount point below a root "
                    "needs CAP_SYS_ADMIN")  # fmt: skip
    try:
        yield path
    finally:
        _mount(["umount", "-R", str(path)])


@pytest.mark.parametrize("backend", ["inotify", "poll"])
def test_unmounted_share_below_the_root_keeps_its_rows(
    tmp_path: Path, store: Path, backend: str
) -> None:
    # issue 12, case 15: a share mounted below a watch root, unmounted (an empty directory
    # left) or with its mount point gone, looked like a mass deletion.
    renders = tmp_path / "renders"
    share = renders / "share"
    share.mkdir(parents=True)
    local = str(write_scanline(renders / "local.0001.exr"))
    names = ["a.0001.exr", "x/b.0001.exr", "x/b.0002.exr"]
    for name in names:
        write_scanline(store / name)
    assert _mount(["mount", "--bind", str(store), str(share)]) is None
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "c.toml", state,
        [{"path": str(renders), "backend": backend, "poll_interval": 0.2}],
        daemon={"rescan_interval": 0.5},
    )  # fmt: skip
    daemon = DaemonProcess(config, state)
    catalog = Catalog(state)
    expected = {local} | {str(share / name) for name in names}
    try:
        catalog.wait_paths(expected)
        for step, newcomer in (("unmounted", "new.0001.exr"), ("missing", "new.0002.exr")):
            before = len(daemon.seen("scan.finished"))
            if step == "unmounted":
                assert _mount(["umount", str(share)]) is None
            else:
                share.rmdir()
            # A file on the root's own disk after the change: once it is recorded, the
            # poller and the reconciler have both been through the tree since.
            expected.add(str(write_scanline(renders / newcomer)))
            catalog.wait_paths(expected)
            after = _scans_after(daemon, before, 3)
            assert [scan["gone"] for scan in after] == [0] * len(after), (step, daemon.tail())
            assert not daemon.seen("file.deleted"), (step, daemon.tail())
            event = daemon.wait_event("watch.unreadable", path=str(share))
            assert event["errno"] == "ENODEV"

        share.mkdir()
        assert _mount(["mount", "--bind", str(store), str(share)]) is None  # back
        (store / "x" / "b.0002.exr").unlink()  # a real deletion inside the share
        expected.discard(str(share / "x" / "b.0002.exr"))
        write_scanline(store / "x" / "b.0003.exr")
        expected.add(str(share / "x" / "b.0003.exr"))
        catalog.wait_paths(expected)
        # (twice, at times: a second scan can find it before the first deletion is journaled)
        assert {e["path"] for e in daemon.seen("file.deleted")} == {str(share / "x" / "b.0002.exr")}
    finally:
        if os.path.ismount(share):
            _mount(["umount", str(share)])
        assert daemon.stop() == 0


def test_settling_file_below_an_unmounted_share_is_not_vanished(
    tmp_path: Path, store: Path
) -> None:
    # issue 12, case 15: a file still settling when the share under it is unmounted got
    # ENOENT from the settler's stat and was journaled as deleted. In process, so that the
    # moment of the unmount is certain: a real mount, the real walk, the real settler.
    renders = tmp_path / "renders"
    share = renders / "share"
    share.mkdir(parents=True)
    frame = write_scanline(store / "c.0001.exr")
    assert _mount(["mount", "--bind", str(store), str(share)]) is None
    try:
        # The walk meets share/ on another device than renders/: a mount point.
        scanner = PollScanner(str(renders), lambda name: True, lambda directory: {})
        assert {change.path for change in scanner.scan()} == {str(share / frame.name)}
        now = [0.0]
        settler = Settler(quiet_seconds=1.0, max_wait_seconds=60.0, recheck_initial=1.0,
                          recheck_max=4.0, clock=lambda: now[0])  # fmt: skip
        settler.observe(str(share / frame.name))
        assert settler.poll() == []  # first look: a signature, now the quiet period
        assert _mount(["umount", str(share)]) is None
        now[0] = 2.0
        [item] = settler.poll()
        assert isinstance(item, Unreadable), item
        assert (item.error.errno, item.error.filename) == (errno.ENODEV, str(share))
        assert str(share / frame.name) in settler  # still pending: looked at again later
        assert _mount(["mount", "--bind", str(store), str(share)]) is None
        now[0] = 4.0
        assert settler.poll() == []  # back: a fresh pair of agreeing stats is needed
        now[0] = 6.0
        assert [type(item) for item in settler.poll()] == [SettledFile]
    finally:
        if os.path.ismount(share):
            _mount(["umount", str(share)])


def test_settling_file_below_a_watch_root_gone_missing_is_not_vanished(tmp_path: Path) -> None:
    # Found by the 20x loop (test_lost_events' root removed and recreated, poll): the root
    # was renamed away (an unmounted share) while a file in it was settling; the settler's
    # stat said ENOENT and the file was journaled as deleted, its row removed from the
    # catalog. A missing watch root is unavailable, like a mount point below it. In process,
    # with the daemon's own Watches registering the root, so that the moment is certain.
    renders = tmp_path / "renders"
    frame = write_scanline(renders / "a.0001.exr")
    with _registered(renders):
        settler = _settler()
        settler.observe(str(frame))
        assert settler.poll() == []  # first look: a signature, now the quiet period
        renders.rename(tmp_path / "away")
        [item] = _poll_at(settler, 2.0)
        assert isinstance(item, Unreadable), item
        assert (item.error.errno, item.error.filename) == (errno.ENODEV, str(renders))
        assert "watch root is missing" in item.error.strerror
        assert str(frame) in settler  # still pending: looked at again later
        renders.mkdir()  # an ordinary directory, emptied: the file is gone after all
        assert [type(item) for item in _poll_at(settler, 4.0)] == [Vanished]


def test_settling_file_below_an_unmounted_watch_root_is_not_vanished(
    tmp_path: Path, store: Path
) -> None:
    # The same for a root that is a mount point itself: unmounted, it is an empty directory.
    renders = tmp_path / "renders"
    renders.mkdir()
    frame = write_scanline(store / "a.0001.exr")
    assert _mount(["mount", "--bind", str(store), str(renders)]) is None
    try:
        with _registered(renders):
            settler = _settler()
            settler.observe(str(renders / frame.name))
            assert settler.poll() == []
            assert _mount(["umount", str(renders)]) is None
            [item] = _poll_at(settler, 2.0)
            assert isinstance(item, Unreadable), item
            assert (item.error.errno, item.error.filename) == (errno.ENODEV, str(renders))
            assert "watch root is empty" in item.error.strerror
            assert _mount(["mount", "--bind", str(store), str(renders)]) is None  # back
            assert _poll_at(settler, 4.0) == []  # a fresh pair of agreeing stats is needed
            assert [type(item) for item in _poll_at(settler, 6.0)] == [SettledFile]
    finally:
        if os.path.ismount(renders):
            _mount(["umount", str(renders)])


@contextlib.contextmanager
def _registered(root: Path) -> Iterator[None]:
    """`root` as the daemon's one watch (Watches registers the roots process-wide)."""
    from exrwatchd.config import WatchConfig
    from exrwatchd.telemetry import NullMetrics
    from exrwatchd.watch import Inbox, Watches

    watches = Watches([WatchConfig(path=root)], Inbox(), rescan=lambda _: None,
                      metrics=NullMetrics())  # fmt: skip
    try:
        yield
    finally:
        watches.replace([])  # the process-wide memory of roots forgets this one


_CLOCK = [0.0]


def _settler() -> Settler:
    _CLOCK[0] = 0.0
    return Settler(quiet_seconds=1.0, max_wait_seconds=60.0, recheck_initial=1.0,
                   recheck_max=4.0, clock=lambda: _CLOCK[0])  # fmt: skip


def _poll_at(settler: Settler, moment: float) -> list[Any]:
    _CLOCK[0] = moment
    return settler.poll()
