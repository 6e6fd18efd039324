"""Sources of file events: inotify through watchdog, and a poll thread over PollScanner.

Both report through one small `Inbox`, which collapses events per path, so a burst of
duplicate events costs one entry per path no matter how many arrive. Anything that hints at
lost events (an inotify queue overflow, an observer error) is reported as `lost`, and the
daemon answers with a rescan: the design never depends on every event arriving.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Literal

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from exrwatchd.filesig import FileSig
from exrwatchd.watch._inotify_loops import REPORTS_OVERFLOW, inotify_observer
from exrwatchd.watch.poll import PollScanner

InboxKind = Literal["changed", "closed", "gone", "subtree"]

#: Files modified within this window are re-stat'ed on every poll until they settle.
HOT_WINDOW_NS = 10 * 60 * 1_000_000_000


class Inbox:
    """Thread-safe, collapsing hand-off from observers to the settle loop.

    Holds at most one entry per path, the latest event (so the close that follows a
    create is what the settle loop sees, and it can use the shorter wait), except that a
    directory's "subtree" walk is never replaced; plus the reasons events were lost.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, InboxKind] = {}
        self._lost: list[str] = []
        self.wakeup = threading.Event()

    def put(self, path: str, kind: InboxKind) -> None:
        with self._lock:
            if self._items.get(path) != "subtree":
                self._items[path] = kind
        self.wakeup.set()

    def lost(self, reason: str) -> None:
        with self._lock:
            self._lost.append(reason)
        self.wakeup.set()

    def drain(self) -> tuple[dict[str, InboxKind], list[str]]:
        with self._lock:
            items, self._items = self._items, {}
            lost, self._lost = self._lost, []
        return items, lost

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class _Handler(FileSystemEventHandler):
    """Translates watchdog events into inbox entries, filtering names on the way."""

    def __init__(self, inbox: Inbox, accept: Callable[[str], bool]) -> None:
        self._inbox = inbox
        self._accept = accept

    def _file(self, path: str, kind: InboxKind) -> None:
        if self._accept(os.path.basename(path)):
            self._inbox.put(path, kind)

    def dispatch(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        if isinstance(event, FileMovedEvent):
            # A temp name renamed to *.exr is a new file; the old name is gone.
            self._file(src, "gone")
            self._file(os.fsdecode(event.dest_path), "changed")
        elif isinstance(event, FileClosedEvent):
            self._file(src, "closed")
        elif isinstance(event, FileCreatedEvent | FileModifiedEvent | FileAttribEvent):
            self._file(src, "changed")
        elif isinstance(event, FileDeletedEvent):
            self._file(src, "gone")
        elif isinstance(event, DirMovedEvent):
            # Everything under the old name is gone, everything under the new one is new.
            self._inbox.put(src, "subtree")
            self._inbox.put(os.fsdecode(event.dest_path), "subtree")
        elif isinstance(event, DirCreatedEvent | DirDeletedEvent):
            # Files can land in a new directory before its watch exists; walk it.
            self._inbox.put(src, "subtree")


class _OverflowAlarm(logging.Handler):
    """watchdog reports its failures, and (where the observer does not, REPORTS_OVERFLOW) a
    kernel queue overflow, only as log records; turn them into `lost`."""

    def __init__(self, inbox: Inbox) -> None:
        super().__init__(level=logging.WARNING)
        self._inbox = inbox

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or (
            not REPORTS_OVERFLOW and "overflow" in str(record.msg).lower()
        ):
            self._inbox.lost(f"inotify: {record.getMessage()}")


# The kernel only queues what is subscribed. Not IN_MODIFY: it fires on every write() call,
# so a renderer writing a frame in many chunks would flood the queue (and overflow it) for
# nothing: a file that is pending is re-stat'ed by the settle rule anyway, and a file
# rewritten in place announces the end with IN_CLOSE_WRITE. Not IN_OPEN/IN_CLOSE_NOWRITE:
# our own inspections would trigger them. Periodic rescans cover whatever this misses.
_SUBSCRIBED = (
    FileCreatedEvent, FileClosedEvent, FileDeletedEvent, FileMovedEvent,
    DirCreatedEvent, DirDeletedEvent, DirMovedEvent,
)  # fmt: skip

_WATCHDOG_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")


class InotifyWatcher:
    """One watchdog InotifyObserver for one watched tree.

    Construction raises OSError (EMFILE) when no inotify instance is left; `start` raises when
    the root cannot be watched, or any directory below it for want of watches; `limit_error`
    tells that one created later could not be, so the tree is no longer wholly watched.
    """

    def __init__(
        self, root: str, inbox: Inbox, accept: Callable[[str], bool], *, recursive: bool,
        follow_symlinks: bool,
    ) -> None:  # fmt: skip
        self.root = root
        self._inbox = inbox
        self.limit_error: OSError | None = None
        # watchdog walks into symlink loops when following links, and swallows the errors of
        # watches past the limit: see _inotify_loops.
        self._observer = inotify_observer(
            follow_symlinks=follow_symlinks, on_limit=self._limit_reached,
            on_overflow=self._overflowed,
        )  # fmt: skip
        self._observer.daemon = True
        self._observer.schedule(
            _Handler(inbox, accept), root, recursive=recursive, follow_symlink=follow_symlinks,
            event_filter=list(_SUBSCRIBED),
        )  # fmt: skip
        self._alarm = _OverflowAlarm(inbox)

    def start(self) -> None:
        for name in _WATCHDOG_LOGGERS:
            logging.getLogger(name).addHandler(self._alarm)
        self._observer.start()

    def _overflowed(self) -> None:
        # From watchdog's thread, once the tree's watches are rebuilt (_inotify_loops).
        self._inbox.lost("inotify: the kernel's event queue overflowed; events were lost")

    def _limit_reached(self, exc: OSError) -> None:
        # From start() or watchdog's threads; Watches.revive() reads it (the first one).
        if self.limit_error is None:
            self.limit_error = exc

    def alive(self) -> bool:
        # Where the kernel's queue has a reader of its own (_inotify_drain), it must run too.
        reading = getattr(self._observer, "reading", None)
        return (
            self._observer.is_alive()
            and all(e.is_alive() for e in self._observer.emitters)
            and (reading is None or reading())
        )

    def stop(self) -> None:
        """Also after a failed start: closing the inotify instance gives its watches back."""
        for name in _WATCHDOG_LOGGERS:
            logging.getLogger(name).removeHandler(self._alarm)
        self._observer.stop()
        if self._observer.ident is not None:  # never started when start() failed
            self._observer.join(timeout=5)


class PollWatcher:
    """A thread that runs PollScanner every `interval` seconds and feeds the inbox."""

    def __init__(
        self, root: str, inbox: Inbox, accept: Callable[[str], bool], *, recursive: bool,
        follow_symlinks: bool, interval: float, known: Callable[[str], Mapping[str, FileSig]],
        on_error: Callable[[str, OSError], None], guard: Callable[[], str | None] | None = None,
    ) -> None:  # fmt: skip
        self.root = root
        # Why not to trust a scan right now (an empty root that used to hold files looks
        # exactly like an unmounted share); the poller skips that round rather than
        # report every file deleted.
        self._guard = guard
        self._on_error = on_error
        self._inbox = inbox
        self._interval = interval
        self._scanner = PollScanner(
            root, accept, known, recursive=recursive, follow_symlinks=follow_symlinks,
            on_error=on_error,
        )  # fmt: skip
        self._stop = threading.Event()
        self._settled: list[str] = []
        self._settled_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"poll:{root}", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def watched_dirs(self) -> int:
        """Directories the poller knows (and prunes by mtime)."""
        return self._scanner.dirs_known

    def settled(self, path: str) -> None:
        """The daemon is done with `path`: the scanner may stop re-stat'ing it."""
        with self._settled_lock:
            self._settled.append(path)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._settled_lock:
                    done, self._settled = self._settled, []
                for path in done:
                    self._scanner.settled(path)
                reason = self._guard() if self._guard else None
                if reason is not None:
                    self._on_error(self.root, OSError(0, reason))
                    self._stop.wait(self._interval)
                    continue
                recent = time.time_ns() - HOT_WINDOW_NS
                for change in self._scanner.scan():
                    if self._stop.is_set():
                        return
                    if change.kind == "deleted":
                        self._inbox.put(change.path, "gone")
                        continue
                    # Only files written lately can still be growing in place (which does not
                    # touch the directory's mtime): keep those under watch. A first scan of a
                    # big backlog must not make every old file "hot" and undo the pruning.
                    if change.sig is not None and change.sig.mtime_ns >= recent:
                        self._scanner.mark_hot(change.path, change.sig)
                    self._inbox.put(change.path, "changed")
                self._stop.wait(self._interval)
        except BaseException as exc:  # a dead poller must be noticed, not silent
            self.error = exc
            self._inbox.lost(f"poll {self.root}: {type(exc).__name__}: {exc}")
            raise

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
