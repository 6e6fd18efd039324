"""The daemon's watched trees: one observer per [[watch]], started, revived and replaced.

Each watch gets the backend its mount calls for (watch/mounts.py) and logs which and why. A
watcher that dies (its root vanished, an internal error) is restarted once its root is back,
followed by a rescan of what it missed; one that cannot start is retried a minute later.
A tree inotify cannot wholly watch (the user's inotify limits) is polled meanwhile.
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
from exrwatchd.watch._inotify_loops import LIMIT_ERRNOS
from exrwatchd.watch._poll_walk import MOUNT_POINTS, mount_unavailable
from exrwatchd.watch.filters import NameFilter
from exrwatchd.watch.mounts import choose_backend
from exrwatchd.watch.observers import Inbox, InotifyWatcher, PollWatcher
from exrwatchd.watch.reconcile import RootUnavailable, check_root, journal_known
from exrwatchd.watch.tree import count_dirs

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
    # Polled because inotify ran out: (errno, the limit's value then); None otherwise.
    blocked: tuple[int, int | None] | None = None

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
        MOUNT_POINTS.watch_roots(w.root for w in self.items)
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

    def _inotify(self, watch: Watch) -> InotifyWatcher:
        return InotifyWatcher(
            watch.root, self._inbox, watch.accept, recursive=watch.cfg.recursive,
            follow_symlinks=watch.cfg.follow_symlinks,
        )  # fmt: skip

    def _poller(self, watch: Watch) -> PollWatcher:
        assert self._journal is not None
        root = watch.root
        return PollWatcher(
            root, self._inbox, watch.accept, recursive=watch.cfg.recursive,
            follow_symlinks=watch.cfg.follow_symlinks, interval=watch.cfg.poll_interval,
            known=journal_known(self._journal), on_error=self.walk_error,
            guard=lambda: self._root_problem(root),
        )  # fmt: skip

    def _start(self, watch: Watch) -> None:
        root = watch.root
        backend, reason = choose_backend(watch.cfg.backend, root)
        watch.backend = backend
        watch.watcher, watch.blocked = None, None
        try:
            # inotify_init (in the constructor) fails with EMFILE past max_user_instances.
            watch.watcher = self._inotify(watch) if backend == "inotify" else self._poller(watch)
            watch.watcher.start()
        except OSError as exc:
            if isinstance(watch.watcher, InotifyWatcher):
                watch.watcher.stop()  # the watches it did add count against the limit
            watch.watcher = None
            if backend == "inotify" and exc.errno in LIMIT_ERRNOS:
                self._fall_back(watch, exc)
                return
            # A missing mount: keep going on rescans alone, and try again in a minute.
            log.error("watch.failed", path=root, backend=backend, error=str(exc),
                      error_type=type(exc).__name__, retry_in_seconds=RETRY_SECONDS)  # fmt: skip
            watch.retry_at = time.monotonic() + RETRY_SECONDS
            return
        log.info("watch.started", path=root, backend=backend, reason=reason)

    def _fall_back(self, watch: Watch, exc: OSError) -> None:
        """inotify cannot watch all of the tree (out of watches or instances): poll it, so a
        frame is still found within poll_interval, not at the next rescan, until
        _retry_inotify finds that inotify can cover it again."""
        err = exc.errno or 0
        limit, value = inotify_limit(err)
        dirs = count_dirs(watch.root, follow_symlinks=watch.cfg.follow_symlinks)
        log.error("watch.failed", path=watch.root, backend="inotify", error=str(exc),
                  error_type=type(exc).__name__, errno=errno.errorcode.get(err, str(err)),
                  limit=limit, limit_value=value,
                  directories=dirs if watch.cfg.recursive else 1, fallback="poll",
                  poll_interval=watch.cfg.poll_interval,
                  retry_in_seconds=RETRY_SECONDS)  # fmt: skip
        watch.backend, watch.blocked = "poll", (err, value)
        watch.retry_at = time.monotonic() + RETRY_SECONDS
        watch.watcher = self._poller(watch)
        watch.watcher.start()
        log.info("watch.started", path=watch.root, backend="poll",
                 reason=f"inotify cannot cover it: {exc.strerror} ({limit} = {value})")  # fmt: skip

    def _retry_inotify(self, watch: Watch) -> None:
        """Hand a polled tree back to inotify: a minute after the last try, or at once when
        the limit it ran into changed (an operator raised the sysctl)."""
        assert watch.blocked is not None and watch.watcher is not None
        err, value = watch.blocked
        limit, now_value = inotify_limit(err)
        if time.monotonic() < watch.retry_at and now_value == value:
            return
        watch.retry_at = time.monotonic() + RETRY_SECONDS
        watch.blocked = (err, now_value)
        polled = watch.watcher.watched_dirs() if isinstance(watch.watcher, PollWatcher) else 0
        if err == errno.ENOSPC and now_value is not None and polled > now_value:
            # Cannot fit: a try would only take every watch left for a moment, and other
            # roots' new directories could fail to get one meanwhile.
            return
        watcher = None
        try:
            watcher = self._inotify(watch)
            watcher.start()
        except OSError as exc:
            if watcher is not None:
                watcher.stop()
            log.debug("watch.still_polling", path=watch.root, error=str(exc))
            return
        poller, watch.watcher = watch.watcher, watcher
        poller.stop()
        watch.backend, watch.blocked = "inotify", None
        why = f"{limit} raised to {now_value}" if now_value != value else "a retry"
        log.info("watch.started", path=watch.root, backend="inotify",
                 reason=f"inotify covers the tree again ({why})")  # fmt: skip
        # Between the poller's last scan and the new watches, files may have landed.
        self._metrics.rescans("watcher_restart")
        self._rescan(watch.root)

    def revive(self) -> None:
        """Restart watchers that died or never started, then rescan what they missed.

        An observer dies when its root vanishes (an unmount, a deleted directory) or on an
        internal error; either way events were lost, so a rescan follows a restart.
        """
        for watch in self.items:
            if isinstance(watch.watcher, InotifyWatcher) and watch.watcher.limit_error:
                # A directory created since could not be watched: the tree is half blind.
                watch.watcher.stop()
                self._fall_back(watch, watch.watcher.limit_error)
                continue
            if watch.blocked is not None and watch.watcher is not None and watch.watcher.alive():
                self._retry_inotify(watch)
                continue
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
        MOUNT_POINTS.watch_roots(w.root for w in kept)
        for root in added + changed:
            self._rescan(root)
        return added, list(current), changed


#: The settings behind each inotify error: the host's, and the user namespace's (the lower one
#: applies; outside containers they are one and the same).
_LIMITS = {
    errno.ENOSPC: ("fs.inotify.max_user_watches", "user.max_inotify_watches"),
    errno.EMFILE: ("fs.inotify.max_user_instances", "user.max_inotify_instances"),
}


def inotify_limit(err: int) -> tuple[str, int | None]:
    """The limit an inotify error ran into, and its value now (None: unreadable, or
    ENOMEM: the kernel's memory, no setting)."""
    names = _LIMITS.get(err)
    if names is None:
        return "kernel memory", None
    found: list[tuple[int, str]] = []
    for name in names:
        try:
            with open("/proc/sys/" + name.replace(".", "/"), encoding="ascii") as f:
                found.append((int(f.read()), name))
        except (OSError, ValueError):
            continue
    if not found:
        return names[0], None
    value, name = min(found)
    return name, value
