"""The kernel's inotify queue is emptied while the events already read wait to be handled.

A local writer makes events faster than watchdog's thread handles them whenever that thread
gets less than a core (the main process pinned to one CPU, a busy box). Handling is stalled
here for certain: the test holds the lock of the tree's watch group, which watchdog's thread
takes for every event. Meanwhile more events happen than the kernel queues
(`fs.inotify.max_queued_events`, read, never changed).
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import termios
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from harness import wait_for
from watchdog.observers.inotify_c import InotifyFD

from exrwatchd.watch import _inotify_loops
from exrwatchd.watch._inotify_drain import READ_SIZE
from exrwatchd.watch.observers import Inbox, InotifyWatcher


def _max_queued_events() -> int:
    try:
        return int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    except OSError:
        return 0


pytestmark = [
    pytest.mark.skipif(
        _inotify_loops.InotifyWatchGroup is None,
        reason="watchdog other than 7.1.0: the plain observer reads its own queue",
    ),
    pytest.mark.skipif(
        not 0 < _max_queued_events() <= 65536, reason="inotify queue limit unknown or huge"
    ),
]


def _queued_bytes(watcher: InotifyWatcher) -> int:
    """What the kernel holds for the watcher's inotify instance, not yet read (FIONREAD)."""
    fd = watcher._observer._inotify_fd._inotify_fd
    size = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, size, True)
    return size[0]


@contextmanager
def _handling_stalled(watcher: InotifyWatcher) -> Iterator[None]:
    (emitter,) = watcher._observer.emitters
    with emitter._inotify._lock:
        yield


@contextmanager
def _watching(root: Path, inbox: Inbox) -> Iterator[InotifyWatcher]:
    watcher = InotifyWatcher(
        str(root), inbox, lambda name: name.endswith(".exr"), recursive=True,
        follow_symlinks=False,
    )  # fmt: skip
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.stop()


def _write_files(root: Path, count: int, *, first: int = 0) -> list[str]:
    paths = [str(root / f"f{i:05d}.exr") for i in range(first, first + count)]
    for path in paths:
        with open(path, "wb"):  # IN_CREATE, then IN_CLOSE_WRITE
            pass
    return paths


def test_events_past_the_kernel_queue_are_kept_while_handling_is_stalled(tmp_path: Path) -> None:
    files = _max_queued_events()  # two events each: twice what the kernel holds
    inbox = Inbox()
    seen: dict[str, str] = {}
    lost: list[str] = []
    with _watching(tmp_path, inbox) as watcher:
        with _handling_stalled(watcher):
            written: list[str] = []
            # A quarter of the kernel's queue at a time, each read out before the next.
            for first in range(0, files, files // 8):
                written += _write_files(tmp_path, files // 8, first=first)
                wait_for(
                    lambda: _queued_bytes(watcher) == 0,
                    timeout=30,
                    describe="the kernel's queue read while handling is stalled",
                )

        def all_seen() -> bool:
            items, reasons = inbox.drain()
            seen.update(items)
            lost.extend(reasons)
            return len(seen) == len(written) or bool(lost)

        wait_for(all_seen, timeout=60, describe="every file reported")
    assert lost == []
    assert seen == dict.fromkeys(written, "closed")


def _past_every_bound() -> int:
    """Files (two events of 32 bytes each) that are more events than a stalled handler can
    hold (one read taken, up to READ_SIZE), the reader (the bound, then one read more), and
    the kernel's queue, with a 64 KiB bound."""
    held = (READ_SIZE + 64 * 1024 + READ_SIZE) // 32 + _max_queued_events()
    return held // 2 + 1000


def test_the_backlog_is_bounded_and_past_it_the_overflow_is_reported(tmp_path: Path) -> None:
    inbox = Inbox()
    with _watching(tmp_path, inbox) as watcher:
        fd = watcher._observer._inotify_fd
        fd.backlog_limit = 64 * 1024  # some 2,000 events of these names, then the kernel's
        with _handling_stalled(watcher):
            _write_files(tmp_path, _past_every_bound())
            wait_for(lambda: fd.backlog() >= fd.backlog_limit, timeout=30,
                     describe="the reader up to its bound")  # fmt: skip
            assert fd.backlog() <= fd.backlog_limit + READ_SIZE
        reasons: list[str] = []

        def overflow_reported() -> bool:
            reasons.extend(inbox.drain()[1])
            return bool(reasons)

        wait_for(overflow_reported, timeout=60, describe="the kernel's overflow reported as lost")
    assert any("overflow" in reason for reason in reasons), reasons


def test_stopping_with_the_reader_held_back_ends_both_threads(tmp_path: Path) -> None:
    inbox = Inbox()
    watcher = InotifyWatcher(
        str(tmp_path), inbox, lambda name: True, recursive=True, follow_symlinks=False
    )
    watcher.start()
    fd = watcher._observer._inotify_fd
    fd.backlog_limit = 1  # one read, then the reader waits for handling to catch up
    stopper = threading.Thread(target=watcher.stop)
    made = iter(range(100_000))

    def a_read_held_back() -> bool:
        # The stalled handler takes the first read it finds: the reader's next is held.
        _write_files(tmp_path, 1, first=next(made))
        return fd.backlog() > 0

    with _handling_stalled(watcher):
        wait_for(a_read_held_back, timeout=30, describe="a read held back")
        stopper.start()  # waits for the group lock, which watchdog's stop takes
    stopper.join(timeout=30)
    assert not stopper.is_alive(), "stop() hung"
    assert not fd.is_alive()
    assert not fd._reader.is_alive()


def test_a_reader_that_fails_is_reported_and_the_watcher_is_dead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing real makes reading an inotify descriptor fail on a healthy box: watchdog's poll
    of it is made to raise EIO once the reader has started. The failure must not leave a
    watcher that looks alive and hears nothing, nor the descriptor open after stop()."""
    inbox = Inbox()
    instances_before = _inotify_instances()
    with _watching(tmp_path, inbox) as watcher:
        wait_for(watcher.alive, timeout=10, describe="the watcher running")

        def failing_poll(self: object) -> bool:
            raise OSError(errno.EIO, "Input/output error")

        # watchdog's read polls the descriptor once it has marked a read under way.
        monkeypatch.setattr(InotifyFD, "_check_inotify_fd", failing_poll)
        _write_files(tmp_path, 1)  # wakes the reader, whose next read fails
        wait_for(lambda: not watcher.alive(), timeout=30, describe="the watcher seen dead")
        reasons = inbox.drain()[1]
        assert any("reading the kernel's queue failed" in r for r in reasons), reasons
        monkeypatch.undo()
    assert _inotify_instances() == instances_before, "stop() left the inotify descriptor open"


def _inotify_instances() -> int:
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd) == "anon_inode:inotify"
        except OSError:  # closed meanwhile (the listing's own descriptor, say)
            continue
    return count


class _MakesAFileWhenTold(Inbox):
    """An Inbox that, told of lost events, makes a file in the watched tree at once: what a
    writer does while the daemon starts the rescan that the lost events call for."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def lost(self, reason: str) -> None:
        if not self.path.exists():
            self.path.write_bytes(b"")
        super().lost(reason)


def test_after_an_overflow_is_reported_every_new_file_is_seen(tmp_path: Path) -> None:
    """On an overflow watchdog rebuilds the tree's watches. The daemon answers the report with
    a walk of the tree, which finds what was made before it; so what is made once the report
    is out must be seen by inotify. Reported before the rebuild, such a file's events came
    under a watch about to be removed, and were dropped: the file was never catalogued.
    And one overflow is one report (one walk of the whole tree), not two."""
    late = tmp_path / "made-on-report.exr"
    inbox = _MakesAFileWhenTold(late)
    seen: dict[str, str] = {}
    reasons: list[str] = []
    with _watching(tmp_path, inbox) as watcher:
        fd = watcher._observer._inotify_fd
        fd.backlog_limit = 64 * 1024
        with _handling_stalled(watcher):
            _write_files(tmp_path, _past_every_bound())  # the kernel's queue overflows

        def late_file_seen() -> bool:
            items, lost = inbox.drain()
            seen.update(items)
            reasons.extend(lost)
            return str(late) in seen

        wait_for(
            late_file_seen, timeout=30,
            describe=lambda: f"{late.name} reported (lost: {reasons}, exists: {late.exists()})",
        )  # fmt: skip
    assert len(reasons) == 1, reasons
    assert seen[str(late)] == "closed"
