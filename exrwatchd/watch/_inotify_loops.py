"""Recursive inotify watches that follow symlinks without walking into symlink loops, say when
the inotify limits are reached, and leave walking new directories to the daemon.

watchdog (7.x) adds the watches of a recursive, symlink-following tree with
``os.walk(followlinks=True)``, which has no loop detection. A link back to a parent directory
makes it walk the same directories again and again down to the kernel's limit of 40 links per
path; with two such links that is 2**40 paths, so start-up (or a directory moved in) never
ends, holding the lock that stopping the observer needs; and every revisit re-points the
directory's watch at the longer path, so its events arrive under bogus paths
(``renders/a/up/a/up/.../x.exr``). Here each directory is watched once, under the first path
it was reached by, and never walked again through another: what ``find -L`` does.

Only used when following symlinks; with older watchdog versions (no InotifyWatchGroup, and
no recursive symlink following either) and with 7.1.1's rebuilt watch group (see below) the
plain observer is used.

Every watch group here also says when a directory cannot be watched for want of watches
(ENOSPC, ENOMEM, EMFILE: the user's inotify limits): watchdog raises that for the root only
and swallows it for every directory below, at start and in its own thread for directories
created later, so a tree past the limit was left half blind without a word.

And none walks a directory that appears in the tree (moved in, moved within, created) to
report what is in it: the daemon's reconciler walks it, once, against the journal.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from watchdog.events import DirCreatedEvent, DirModifiedEvent, DirMovedEvent
from watchdog.observers.inotify import InotifyObserver

try:
    from watchdog.observers.inotify import GroupedInotifyEvent, InotifyEmitter, InotifyWatchGroup
    from watchdog.observers.inotify_c import InotifyEvent
    from watchdog.observers.inotify_move_event_grouper import PathedInotifyEvent

    from exrwatchd.watch._inotify_drain import DrainedInotifyObserver
except ImportError:  # pragma: no cover - watchdog < 7
    InotifyWatchGroup = None  # type: ignore[assignment,misc]

# The classes below override private parts of watchdog 7.1.0's InotifyWatchGroup. 7.1.1 keeps
# its watches in a tree of directory nodes instead, and the two dicts overridden here became
# read-only views of that tree: written to, they register nothing, and not one event would
# arrive. With that layout the plain observer is used, as with watchdog < 7 (it works, without
# the fixes here); pyproject.toml keeps pip installs on 7.1.0.
if InotifyWatchGroup is not None and isinstance(
    getattr(InotifyWatchGroup, "_active_callbacks_by_path", None), property
):  # pragma: no cover - watchdog >= 7.1.1
    InotifyWatchGroup = None  # type: ignore[assignment,misc]

DirKey = tuple[int, int]  # (st_dev, st_ino)

#: The observers of `inotify_observer` call its `on_overflow`; watchdog's plain observer (other
#: versions) only logs an overflow, before it rebuilds the watches.
REPORTS_OVERFLOW = InotifyWatchGroup is not None

#: Errors of inotify_init/inotify_add_watch that mean the user's inotify limits are used up
#: (watches, instances, or the kernel memory behind them), not that a directory is wrong.
LIMIT_ERRNOS = frozenset({errno.ENOSPC, errno.ENOMEM, errno.EMFILE})


def inotify_observer(
    *, follow_symlinks: bool, on_limit: Callable[[OSError], None],
    on_overflow: Callable[[], None],
) -> InotifyObserver:  # fmt: skip
    """An InotifyObserver that calls `on_limit` when a directory of its tree cannot be
    watched for want of watches, and `on_overflow` when the kernel's queue overflowed, once
    the tree's watches are rebuilt (where `REPORTS_OVERFLOW`; else watchdog only logs it);
    its symlink-following watches walk every directory once. Raises OSError (EMFILE) when no
    inotify instance is left."""
    if InotifyWatchGroup is None:
        return InotifyObserver()
    # Its kernel queue is read by a thread that does nothing else: see _inotify_drain.
    observer = DrainedInotifyObserver()
    emitter = _LoopSafeEmitter if follow_symlinks else _LimitAwareEmitter
    # watchdog has no parameter for it
    observer._emitter_class = partial(emitter, on_limit=on_limit, on_overflow=on_overflow)
    return observer


if InotifyWatchGroup is not None:

    @dataclass
    class _LimitAwareWatchGroup(InotifyWatchGroup):  # type: ignore[misc,valid-type]
        on_limit: Callable[[OSError], None] | None = None
        on_overflow: Callable[[], None] | None = None

        def on_queue_overflow(self) -> None:
            """watchdog's (the tree's watches removed and added again), then `on_overflow`.

            The daemon answers an overflow with a walk of the tree, which finds what was made
            before the walk; what is made after must reach it through inotify. watchdog only
            logs an overflow, and before it rebuilds the watches: a file made between that
            line and the rebuild had its events come under a watch then removed, so they were
            dropped, and the walk, started on the log line, could pass its directory first.
            Told after the rebuild, the walk starts when every new file has a watch to report
            it. (And watchdog logs two lines per overflow, which were two walks.)"""
            super().on_queue_overflow()
            if self.on_overflow is not None and self.is_active:
                self.on_overflow()

        def _recursive_simulate(self, src_path: bytes) -> list[InotifyEvent]:
            """None: watchdog's walk of a directory just created, to report what is already
            in it, would be the daemon's own "subtree" walk of that directory done twice
            (see _LimitAwareEmitter.build_and_queue_event). That walk starts after the
            directory's watches are added, so a file is either found by it or reported by
            inotify."""
            return []

        def _add_callback(self, path: bytes) -> None:
            """watchdog's, except that running out of watches is reported, never swallowed."""
            try:
                wd = self._inotify_fd.add_callback(path, self.event_mask, self._callback, self._id)
            except OSError as exc:
                if exc.errno in LIMIT_ERRNOS:
                    if self.on_limit is not None:
                        self.on_limit(exc)
                    # While the tree is first walked (in start()), stop there: start() fails.
                    # Later (watchdog's thread, a new directory) raising would kill that thread.
                    if not self._is_active:
                        raise
                    return
                # Descendants may vanish or turn unreadable during the walk (as watchdog).
                if path == self.path:
                    raise
                return
            self._active_callbacks_by_path[path] = wd
            self._active_callbacks_by_watch[wd] = path

    class _LoopSafeWatchGroup(_LimitAwareWatchGroup):
        def __post_init__(self) -> None:
            self._wd_of_dir: dict[DirKey, int] = {}  # watched directories, by identity
            self._dir_of_wd: dict[int, DirKey] = {}
            super().__post_init__()

        def _watch_once(self, path: bytes) -> bool:
            """Watch the directory at `path`; False when it already is, under another path
            (a link to it: never walk it again), or cannot be watched."""
            try:
                st = os.stat(path)
            except OSError:
                if path == self.path:
                    raise
                return False
            key = (st.st_dev, st.st_ino)
            wd = self._wd_of_dir.get(key)
            if wd is not None and wd in self._active_callbacks_by_watch:
                return False
            self._add_callback(path)
            wd = self._active_callbacks_by_path.get(path)
            if wd is None:
                return False
            self._wd_of_dir[key] = wd
            self._dir_of_wd[wd] = key
            return True

        def _add_all_callbacks(self, path: bytes) -> None:
            if not self.follow_symlink:
                super()._add_all_callbacks(path)
                return
            if not self._watch_once(path) or not self.is_recursive:
                return
            for root, dirnames, _ in os.walk(path, followlinks=True):
                dirnames[:] = [d for d in dirnames if self._watch_once(os.path.join(root, d))]

        def _remove_watch_internally(self, wd: int) -> None:  # type: ignore[override]
            super()._remove_watch_internally(wd)
            key = self._dir_of_wd.pop(wd, None)
            if key is not None and self._wd_of_dir.get(key) == wd:
                del self._wd_of_dir[key]

    class _LimitAwareEmitter(InotifyEmitter):  # type: ignore[misc,valid-type]
        group: type[_LimitAwareWatchGroup] = _LimitAwareWatchGroup

        def __init__(
            self, *args: object, on_limit: Callable[[OSError], None],
            on_overflow: Callable[[], None], **kwargs: object,
        ) -> None:  # fmt: skip
            super().__init__(*args, **kwargs)
            self._on_limit = on_limit
            self._on_overflow = on_overflow

        def build_and_queue_event(
            self, event: GroupedInotifyEvent, *, full_events: bool = False
        ) -> None:
            """watchdog's, except that a directory moved in, or moved within the tree, is
            reported alone, not walked.

            watchdog walks such a directory and queues an event per file and sub-directory.
            The daemon walks it anyway: the directory's event is a "subtree" request to the
            reconciler, which compares what it finds with the journal. Walked twice, every
            file was reported twice, and a catch-up inspected a fifth of its files again.
            (For a directory created in the tree, see _LimitAwareWatchGroup._recursive_simulate.)
            """
            if isinstance(event, PathedInotifyEvent):
                if event.ev.is_moved_to and event.ev.is_directory and not full_events:
                    path = self._decode_path(event.path)
                    self.queue_event(DirCreatedEvent(path))
                    self.queue_event(DirModifiedEvent(os.path.dirname(path)))
                    return
            elif event[0].ev.is_directory:  # a move within the tree: (from, to)
                src, dest = (self._decode_path(e.path) for e in event)
                self.queue_event(DirMovedEvent(src, dest))
                self.queue_event(DirModifiedEvent(os.path.dirname(src)))
                self.queue_event(DirModifiedEvent(os.path.dirname(dest)))
                return
            super().build_and_queue_event(event, full_events=full_events)

        def on_thread_start(self) -> None:
            self._inotify = self.group(
                self._inotify_fd,
                os.fsencode(self.watch.path),
                is_recursive=self.watch.is_recursive,
                event_mask=self.get_event_mask_from_filter(),
                follow_symlink=self.watch.follow_symlink,
                on_limit=self._on_limit,
                on_overflow=self._on_overflow,
            )

    class _LoopSafeEmitter(_LimitAwareEmitter):
        group = _LoopSafeWatchGroup
