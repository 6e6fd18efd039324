"""The daemon's watched trees: one observer per [[watch]], started, revived and replaced.

Each watch gets the backend its mount calls for (watch/mounts.py) and logs which and why. A
watcher that dies (its root vanished, an internal error) is restarted once its root is back,
followed by a rescan of what it missed; one that cannot start is retried a minute later.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from exrwatchd.config import WatchConfig
from exrwatchd.filesig import is_gone
from exrwatchd.journal import Journal
from exrwatchd.logs import get_logger
from exrwatchd.telemetry import NullMetrics
from exrwatchd.watch._poll_walk import mount_unavailable
from exrwatchd.watch.filters import NameFilter
from exrwatchd.watch.mounts import choose_backend
from exrwatchd.watch.observers import Inbox, InotifyWatcher, PollWatcher
from exrwatchd.watch.reconcile import RootUnavailable, check_root, journal_known

log = get_logger("exrwatchd.watchers")

RETRY_SECONDS = 60.0

#: How many unreadable paths status.json lists (the count is always there).
STATUS_UNREADABLE = 20


class UnreadablePaths:
    """Paths the pollers, the reconciler or the settler could not read (any errno but ENOENT
    and ENOTDIR, which mean gone): logged once each (`watch.unreadable`), counted, shown by
    `exrwatchd status`, and looked at again after each reconciliation of their tree: those
    readable again (or gone) are forgotten (`watch.readable`). Called from several threads."""

    def __init__(self, metrics: NullMetrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._paths: dict[str, str] = {}  # path -> errno name

    def report(self, path: str, exc: OSError) -> None:
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        with self._lock:
            new = path not in self._paths
            self._paths[path] = name
        if new:
            log.warning("watch.unreadable", path=path, errno=name, error=exc.strerror or str(exc))
            self._metrics.unreadable(name)

    def scanned(self, root: str) -> None:
        """A reconciliation of `root` is over: forget what under it can be read again."""
        under = root.rstrip(os.sep) + os.sep
        with self._lock:
            mine = [(p, e) for p, e in self._paths.items() if p == root or p.startswith(under)]
        for path, name in mine:
            if _still_unreadable(path, name):
                continue
            with self._lock:
                self._paths.pop(path, None)
            log.info("watch.readable", path=path)

    def status(self) -> dict[str, str]:
        """path -> errno name, at most STATUS_UNREADABLE of them, sorted."""
        with self._lock:
            items = sorted(self._paths.items())
        return dict(items[:STATUS_UNREADABLE])

    def __len__(self) -> int:
        return len(self._paths)


def _still_unreadable(path: str, errno_name: str) -> bool:
    """Look again: a mount point must hold something, a directory must open; ENOENT counts as
    readable (nothing is left to read there; the walks decide what that means)."""
    if errno_name == "ENODEV":
        return mount_unavailable(path) is not None
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            os.close(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    except OSError as exc:
        return not is_gone(exc)
    return False


@dataclass
class Watch:
    cfg: WatchConfig
    accept_filter: NameFilter
    backend: str
    watcher: InotifyWatcher | PollWatcher | None = None
    retry_at: float = 0.0  # monotonic time before which a failed start is not retried

    @classmethod
    def of(cls, cfg: WatchConfig) -> Watch:
        return cls(cfg, NameFilter(cfg.include, cfg.exclude), cfg.backend)

    # What the reconciler reads (reconcile.WatchedRoot).
    @property
    def root(self) -> str:
        return str(self.cfg.path)

    @property
    def accept(self) -> Callable[[str], bool]:
        return self.accept_filter.accepts

    @property
    def recursive(self) -> bool:
        return self.cfg.recursive

    @property
    def follow_symlinks(self) -> bool:
        return self.cfg.follow_symlinks


class Watches:
    def __init__(
        self, configs: Sequence[WatchConfig], inbox: Inbox, *, rescan: Callable[[str], None],
        metrics: NullMetrics,
    ) -> None:  # fmt: skip
        self.items = [Watch.of(cfg) for cfg in configs]
        self._inbox = inbox
        self._rescan = rescan
        self._metrics = metrics
        self._journal: Journal | None = None
        self.unreadable = UnreadablePaths(metrics)

    def __iter__(self) -> Iterator[Watch]:
        return iter(list(self.items))

    def __len__(self) -> int:
        return len(self.items)

    def start_all(self, journal: Journal) -> None:
        self._journal = journal
        for watch in self.items:
            self._start(watch)

    def stop_all(self) -> None:
        for watch in self.items:
            if watch.watcher is not None:
                watch.watcher.stop()

    def settled(self, path: str) -> None:
        """The daemon is done with `path`: pollers may stop re-stat'ing it."""
        for watch in self.items:
            if isinstance(watch.watcher, PollWatcher):
                watch.watcher.settled(path)

    def walk_error(self, path: str, exc: OSError) -> None:
        if exc.errno not in (None, 0, errno.ELOOP) and not is_gone(exc):
            self.unreadable.report(path, exc)  # once, not at every poll
            return
        log.warning("watch.walk_error", path=path, error=exc.strerror or str(exc))

    def _root_problem(self, root: str) -> str | None:
        assert self._journal is not None
        try:
            check_root(root, self._journal)
        except RootUnavailable as exc:
            return str(exc)
        return None

    def _start(self, watch: Watch) -> None:
        root = watch.root
        backend, reason = choose_backend(watch.cfg.backend, root)
        watch.backend = backend
        if backend == "inotify":
            watch.watcher = InotifyWatcher(
                root, self._inbox, watch.accept, recursive=watch.cfg.recursive,
                follow_symlinks=watch.cfg.follow_symlinks,
            )  # fmt: skip
        else:
            assert self._journal is not None
            watch.watcher = PollWatcher(
                root, self._inbox, watch.accept, recursive=watch.cfg.recursive,
                follow_symlinks=watch.cfg.follow_symlinks, interval=watch.cfg.poll_interval,
                known=journal_known(self._journal), on_error=self.walk_error,
                guard=lambda: self._root_problem(root),
            )  # fmt: skip
        try:
            watch.watcher.start()
        except OSError as exc:
            # A missing mount or exhausted inotify watches: keep going on rescans alone,
            # and try again in a minute.
            log.error("watch.failed", path=root, backend=backend, error=str(exc),
                      error_type=type(exc).__name__, retry_in_seconds=RETRY_SECONDS)  # fmt: skip
            watch.watcher = None
            watch.retry_at = time.monotonic() + RETRY_SECONDS
            return
        log.info("watch.started", path=root, backend=backend, reason=reason)

    def revive(self) -> None:
        """Restart watchers that died or never started, then rescan what they missed.

        An observer dies when its root vanishes (an unmount, a deleted directory) or on an
        internal error; either way events were lost, so a rescan follows a restart.
        """
        for watch in self.items:
            if watch.watcher is not None and watch.watcher.alive():
                continue
            if watch.watcher is not None:
                log.error("watch.died", path=watch.root, backend=watch.backend)
                watch.watcher.stop()
                watch.watcher = None
            if time.monotonic() >= watch.retry_at and os.path.isdir(watch.cfg.path):
                self._start(watch)
                if watch.watcher is not None:
                    self._metrics.rescans("watcher_restart")
                    self._rescan(watch.root)

    def replace(self, configs: Sequence[WatchConfig]) -> tuple[list[str], list[str], list[str]]:
        """Switch to the watches in `configs` (a reload): (added, removed, changed) roots,
        each added or changed one reconciled."""
        current = {w.root: w for w in self.items}
        added, changed, kept = [], [], []
        for cfg in configs:
            watch = current.pop(str(cfg.path), None)
            if watch is not None and watch.cfg == cfg:
                kept.append(watch)
                continue
            if watch is not None:
                changed.append(watch.root)
                if watch.watcher is not None:
                    watch.watcher.stop()
            else:
                added.append(str(cfg.path))
            fresh = Watch.of(cfg)
            self._start(fresh)
            kept.append(fresh)
        for watch in current.values():
            if watch.watcher is not None:
                watch.watcher.stop()
            log.info("watch.stopped", path=watch.root, reason="removed from the config")
        self.items = kept
        for root in added + changed:
            self._rescan(root)
        return added, list(current), changed
