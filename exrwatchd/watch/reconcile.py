"""Reconciliation: make the journal agree with the disk, whatever events were lost.

Runs at start, every `rescan_interval`, after any sign of lost events (inotify overflow, a
dead observer) and for directories that appeared or vanished. It walks the tree with a
full PollScanner pass, comparing (size, mtime_ns, inode) with what the journal knows one
directory at a time, so memory follows the directory being read, never the tree. Files the
journal knows in directories that no longer exist (ENOENT, ENOTDIR) are reported gone; not
those in directories that cannot be read now, nor under a mount point that is unmounted.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from exrwatchd.filesig import FileSig, is_gone
from exrwatchd.journal import Journal
from exrwatchd.logs import get_logger
from exrwatchd.telemetry import NullMetrics
from exrwatchd.watch._poll_walk import unmounted_above
from exrwatchd.watch.poll import PollScanner

log = get_logger("exrwatchd.reconcile")


@dataclass(frozen=True, slots=True)
class Found:
    path: str
    kind: str  # "changed" (new or different from the journal) | "gone"


def journal_known(journal: Journal) -> Callable[[str], Mapping[str, FileSig]]:
    """What the journal knows about one directory, as the scanner wants it."""

    def known(directory: str) -> Mapping[str, FileSig]:
        return {
            name: state.sig
            for name, state in journal.paths_in_dir(directory).items()
            if state.sig is not None
        }

    return known


class RootUnavailable(Exception):
    """The watch root is missing or empty while the journal knows files under it."""


def check_root(root: str, journal: Journal) -> None:
    # An unmounted NFS share looks like a missing or empty directory. Reporting every file
    # under it as deleted would wipe the catalog, so refuse instead and let the caller log.
    try:
        with os.scandir(root) as entries:
            empty = next(entries, None) is None
    except OSError as exc:
        raise RootUnavailable(f"{root}: {exc.strerror}") from None
    if empty and next(journal.known_dirs(root), None) is not None:
        raise RootUnavailable(
            f"{root} is empty but the journal knows files under it (unmounted?); "
            "not treating them as deleted"
        )


def _dir_gone(directory: str, on_error: Callable[[str, OSError], None]) -> bool:
    """Whether `directory` is really gone. Never from os.path.isdir(), which says False for
    EACCES, EIO, ESTALE too: only ENOENT/ENOTDIR mean gone, and not even they when a mount
    point above it (an unmounted share) is the reason."""
    try:
        st = os.stat(directory)
    except OSError as exc:
        if not is_gone(exc):
            return False  # the walk reported the directory above that it could not read
        problem = unmounted_above(directory)
        if problem is not None:
            on_error(str(problem.filename), problem)
            return False
        return True
    return not stat.S_ISDIR(st.st_mode)


def _ignore(path: str, exc: OSError) -> None:
    pass


def reconcile(
    root: str,
    journal: Journal,
    accept: Callable[[str], bool],
    *,
    recursive: bool = True,
    follow_symlinks: bool = False,
    on_error: Callable[[str, OSError], None] | None = None,
    is_watch_root: bool = True,
) -> Iterator[Found]:
    """Every path under `root` whose state differs from the journal's.

    For a watch root, raises RootUnavailable (before yielding anything) when it is missing
    or suspiciously empty. A subdirectory that is gone simply means its files are gone.
    """
    report = on_error or _ignore
    if is_watch_root:
        check_root(root, journal)
    elif _dir_gone(root, report):
        for directory in journal.known_dirs(root):
            for name in journal.paths_in_dir(directory):
                yield Found(os.path.join(directory, name), "gone")
        return
    scanner = PollScanner(
        root, accept, journal_known(journal), recursive=recursive,
        follow_symlinks=follow_symlinks, on_error=on_error,
    )  # fmt: skip
    for change in scanner.scan(full=True):
        yield Found(change.path, "gone" if change.kind == "deleted" else "changed")
    for directory in journal.known_dirs(root):
        if not recursive and directory != root:
            continue
        if not _dir_gone(directory, report):
            continue
        for name in journal.paths_in_dir(directory):
            yield Found(os.path.join(directory, name), "gone")


class WatchedRoot(Protocol):
    """What the reconciler needs to know of a watch (daemon._Watch satisfies it)."""

    @property
    def root(self) -> str: ...

    @property
    def accept(self) -> Callable[[str], bool]: ...

    @property
    def recursive(self) -> bool: ...

    @property
    def follow_symlinks(self) -> bool: ...


class Reconciler:
    """A thread that reconciles roots and subtrees on request and feeds what it finds to
    `found(path, kind)`. Requests for the same tree collapse while they wait."""

    def __init__(
        self, journal: Journal, watches: Callable[[], Sequence[WatchedRoot]],
        found: Callable[[str, str], None], *, on_error: Callable[[str, OSError], None],
        metrics: NullMetrics, done: Callable[[], None],
        scanned: Callable[[str], None] | None = None,
    ) -> None:  # fmt: skip
        self._journal = journal
        self._scanned = scanned  # told the root of each finished scan
        self._watches = watches
        self._found = found
        self._on_error = on_error
        self._metrics = metrics
        self._done = done
        self._requests: queue.Queue[str | None] = queue.Queue()
        self._scanning = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self, path: str) -> None:
        self._requests.put(path)

    def busy(self) -> bool:
        return self._scanning.is_set() or not self._requests.empty()

    def stop(self) -> None:
        self._stopping.set()
        self._requests.put(None)

    def _run(self) -> None:
        while True:
            root = self._requests.get()
            if root is None:
                return
            self._scanning.set()
            try:
                self._one(root)
            finally:
                if self._requests.empty():
                    self._scanning.clear()
                self._done()

    def _one(self, root: str) -> None:
        watch = next((w for w in self._watches() if root == w.root
                      or root.startswith(w.root + os.sep)), None)  # fmt: skip
        if watch is None:
            return  # a watch removed by a reload, or a tree no longer watched
        started = time.monotonic()
        log.info("scan.started", path=root)
        changed = gone = 0
        try:
            for item in reconcile(
                root, self._journal, watch.accept, recursive=watch.recursive,
                follow_symlinks=watch.follow_symlinks, on_error=self._on_error,
                is_watch_root=root == watch.root,
            ):  # fmt: skip
                if self._stopping.is_set():
                    return
                self._found(item.path, item.kind)
                changed += item.kind == "changed"
                gone += item.kind == "gone"
        except RootUnavailable as exc:
            log.error("scan.root_unavailable", path=root, error=str(exc))
            self._metrics.scan_skipped()
            return
        self._metrics.scanned(time.monotonic() - started, changed, gone)
        if self._scanned is not None:
            self._scanned(root)
        log.info("scan.finished", path=root, changed=changed, gone=gone,
                 seconds=round(time.monotonic() - started, 3))  # fmt: skip
