"""Poll one watched tree with os.scandir, pruning unchanged directories by their mtime.

Why not watchdog's PollingObserver: it keeps a `DirectorySnapshot` of every path and its
`os.stat_result` (two dicts over the whole tree) and re-stats every file on every poll. At a
million files that is hundreds of MB and a full stat walk each interval; the issue asks for
neither.

What this scanner remembers is O(directories): for every directory it listed, its mtime and
ctime and the names of its subdirectories. What it knows about files comes from the caller's
`known(directory)` (the journal, on disk), asked one directory at a time, plus a small set of
"hot" files (written recently and not yet settled) bounded by how many files are in flight.

A scan visits every directory. A directory whose mtime and ctime are unchanged since it was last
listed is *pruned*: its files are neither listed nor stat'ed, and its subdirectories (remembered
from the last listing) are stat'ed to be visited in turn, because a change deep down does not
change the mtime of its ancestors. Any other directory is listed: accepted files are stat'ed
and compared with `known(directory)` overlaid with the hot set. The ctime is there for tools
that put a directory's mtime back after changing it (`rsync -a`, `tar`, `cp -a`): nothing can
set a ctime, so the change still shows.

What pruning cannot see, and how it is covered:

- An in-place rewrite does not change the directory. Files the daemon marked hot (`mark_hot`)
  are re-stat'ed on every scan wherever they are; the rest is caught by the periodic full pass
  (every `full_every`-th scan lists every directory).
- NFS caches directory attributes (acdirmax, 60 s by default): a directory may look unchanged
  for up to that long after a file appeared in it, so detection takes up to the poll interval
  plus the attribute cache time.
- Two changes within one timestamp tick: a directory changed just before it was listed may
  show the same mtime after a later change. A directory whose mtime is within `RACY_NS` of the
  scan's start is not trusted for pruning and is listed again next scan ("racy git" rule).
- File systems whose directory times do not follow their contents (some FUSE object-store
  mounts report a fixed mtime): only the full pass sees changes there; use `full_every=1`.

Changes are at-least-once: a directory's times are remembered only after every change found in
it was yielded, so a scan abandoned half-way repeats those changes next time rather than losing
them. Changes are reported relative to `known()`, so a file the journal has not yet recorded is
reported again by every listing of its directory until it is recorded or marked hot.

Errors (unreadable directories, stat failures, symlink loops) go to `on_error(path, exc)` and
never turn into deletions: a directory that cannot be read keeps its files, and so does a
mount point below the root that turns up empty or missing (unmounted; see MountPoints).

The system calls themselves (listing a directory, stat'ing subdirectories, pushing them onto
the walk) live in exrwatchd/watch/_poll_walk.py; this module decides what to visit and what
changed.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass

from exrwatchd.filesig import FileSig, sig_of
from exrwatchd.watch._poll_walk import (
    MOUNT_POINTS,
    S_IFMT,
    S_IFREG,
    Change,
    ChangeKind,
    Child,
    ancestors,
    deleted_changes,
    descend,
    expected_files,
    list_dir,
    missing_mounts,
    mount_emptied,
    stat_root,
    stat_sig,
    stat_subdirs,
)

__all__ = ["RACY_NS", "Change", "ChangeKind", "PollScanner", "ScanStats"]

#: A directory whose mtime is this close to the start of the scan that listed it (or later) is
#: listed again next scan: another change in the same mtime tick would not move its mtime.
#: Covers coarse timestamps (1 s on some servers, 2 s on FAT/SMB) and a little clock skew.
RACY_NS = 2_000_000_000

_UNTRUSTED = -1  # a cached mtime that never matches: list the directory next scan
_DirEntry = tuple[int, int, tuple[str, ...]]  # mtime_ns, ctime_ns, subdirectory names
_NO_NAMES: tuple[str, ...] = ()


@dataclass(slots=True)
class ScanStats:
    """What the current (or last) scan did; reset at the start of every scan."""

    full: bool = False
    dirs_listed: int = 0  # directories read with os.scandir
    dirs_pruned: int = 0  # directories skipped because their mtime was unchanged
    files_statted: int = 0  # accepted files stat'ed while listing
    hot_statted: int = 0  # hot files stat'ed in directories that were not listed
    errors: int = 0
    changes: int = 0


class PollScanner:
    """A stateful poller for one tree. Call `scan()` once per poll interval.

    `known(directory)` returns what the journal knows about the files directly in `directory`
    (base name -> FileSig). Directory strings are the absolute root joined with entry names, the
    same strings that prefix every `Change.path`.

    `known_subdirs(directory)`, optional, names the subdirectories of `directory` under which the
    journal knows files. The scanner's memory starts empty at every start of the daemon; with this
    hook, a directory removed while the daemon was down is reported as deleted files at the first
    listing of its parent. Without it, the daemon must reconcile such paths itself.

    `mark_hot` and `settled` may be called from other threads and from inside a loop over
    `scan()`; a scan works on a snapshot of the hot set.
    """

    def __init__(
        self,
        root: str,
        accept: Callable[[str], bool],
        known: Callable[[str], Mapping[str, FileSig]],
        *,
        recursive: bool = True,
        follow_symlinks: bool = False,
        full_every: int = 10,
        on_error: Callable[[str, OSError], None] | None = None,
        known_subdirs: Callable[[str], Iterable[str]] | None = None,
    ) -> None:
        if full_every < 1:
            raise ValueError(f"full_every must be at least 1, got {full_every}")
        self.root = os.path.abspath(root)
        self.accept = accept
        self.known = known
        self.known_subdirs = known_subdirs
        self.recursive = recursive
        self.follow_symlinks = follow_symlinks
        self.full_every = full_every
        self.on_error = on_error
        self.stats = ScanStats()
        self.scans = 0
        self._since_full: int | None = None  # None: never scanned, the first scan is full
        # directory -> (mtime_ns when last listed or _UNTRUSTED, ctime_ns, subdirectory names)
        self._dirs: dict[str, _DirEntry] = {}
        # directory -> {base name: last reported FileSig, or None when last seen absent}
        self._hot: dict[str, dict[str, FileSig | None]] = {}
        self._hot_lock = threading.Lock()
        self._blind: set[str] = set()  # unmounted mount points met by the current scan

    # -- hot files -------------------------------------------------------------------------

    def mark_hot(self, path: str, sig: FileSig | None = None) -> None:
        """Re-stat `path` on every scan until `settled(path)`, even where pruning would skip it.

        `sig` is what was last reported for it (pass `change.sig`); without it the file is
        stat'ed now, and later changes are reported relative to that.
        """
        if sig is None:
            sig = stat_sig(path, self.follow_symlinks)
        directory, name = os.path.split(path)
        with self._hot_lock:
            self._hot.setdefault(directory, {})[name] = sig

    def settled(self, path: str) -> None:
        """Stop re-stat'ing `path` on every scan (it is recorded in the journal now)."""
        directory, name = os.path.split(path)
        with self._hot_lock:
            names = self._hot.get(directory)
            if names is not None and name in names:
                self._hot_drop(directory, names, name)

    @property
    def hot_count(self) -> int:
        with self._hot_lock:
            return sum(len(names) for names in self._hot.values())

    @property
    def dirs_known(self) -> int:
        """How many directories the scanner remembers (its memory is proportional to this)."""
        return len(self._dirs)

    def _hot_in(self, directory: str) -> dict[str, FileSig | None] | None:
        with self._hot_lock:
            names = self._hot.get(directory)
            return dict(names) if names else None

    def _hot_set(self, directory: str, name: str, sig: FileSig | None) -> None:
        """Record what was reported for a hot file; drop it once reported deleted."""
        with self._hot_lock:
            names = self._hot.get(directory)
            if names is None or name not in names:
                return  # settled meanwhile
            if sig is None:
                self._hot_drop(directory, names, name)
            else:
                names[name] = sig

    def _hot_drop(self, directory: str, names: dict[str, FileSig | None], name: str) -> None:
        """Forget hot `name` of `directory` (whose names are `names`); the caller holds the lock."""
        del names[name]
        if not names:
            del self._hot[directory]

    # -- scanning --------------------------------------------------------------------------

    def scan(self, full: bool = False) -> Generator[Change, None, None]:
        """Changes since the last scan. `full` lists every directory (no pruning)."""
        since = self._since_full
        if full or since is None or since >= self.full_every - 1:
            full_pass, self._since_full = True, 0
        else:
            full_pass, self._since_full = False, since + 1
        self.scans += 1
        stats = self.stats = ScanStats(full=full_pass)
        racy_after = time.time_ns() - RACY_NS
        self._blind = set()

        root = self.root
        st = stat_root(root, self._error)
        if st is None:
            return

        follow = self.follow_symlinks
        # The directories above the root count as walked: a link back to one of them (a
        # rescan of a subtree holding `up -> ..`, or of such a link itself) would walk the
        # tree again under ever longer paths.
        above = ancestors(root)
        if (st.st_dev, st.st_ino) in above:
            self._error(root, OSError(errno.ELOOP, "a link to a directory above it (loop)"))
            return
        seen = {(st.st_dev, st.st_ino), *above}
        listed: set[str] = set()
        stack: list[Child] = [(root, st)]
        while stack:
            directory, dst = stack.pop()
            prev = self._dirs.get(directory)
            if (
                not full_pass
                and prev is not None
                and prev[0] == dst.st_mtime_ns
                and prev[1] == dst.st_ctime_ns
            ):
                children = stat_subdirs(directory, prev[2], follow, self._error, strict=True)
                if children is not None:  # else: the cache is inconsistent, list it after all
                    stats.dirs_pruned += 1
                    descend(children, stack, seen, self._error)
                    continue
            yield from self._list(directory, dst, prev, stack, seen, listed, racy_after)
        yield from self._scan_hot(listed)

    def _error(self, path: str, exc: OSError) -> None:
        self.stats.errors += 1
        if self.on_error is not None:
            self.on_error(path, exc)

    def _list(
        self,
        directory: str,
        dst: os.stat_result,
        prev: _DirEntry | None,
        stack: list[Child],
        seen: set[tuple[int, int]],
        listed: set[str],
        racy_after: int,
    ) -> Iterator[Change]:
        stats = self.stats
        stats.dirs_listed += 1
        follow = self.follow_symlinks
        hot = self._hot_in(directory)
        expected = expected_files(self.known(directory), hot)
        prefix = directory if directory.endswith("/") else directory + "/"
        # A name the journal knows passed `accept` when it was recorded. Once this scanner has
        # listed the directory completely with every name checked (prev is None: its first
        # listing here; the filter may have changed since the journal was written, and a known
        # name the filter now rejects is reported deleted), known names skip the name match,
        # the largest cost of a steady-state listing after the stat itself.
        listing = list_dir(
            directory, prefix, expected, self.accept,
            strict=prev is None, follow=follow, nofollow_dir=not (follow or directory == self.root),
            recursive=self.recursive, error=self._error,
        )  # fmt: skip
        stats.files_statted += listing.files_statted
        complete, children = listing.complete, listing.children
        knew = bool(expected) or (prev is not None and bool(prev[2]))
        if complete and mount_emptied(directory, listing, knew, self._error):
            complete, children = False, []
            self._blind.add(directory)
        MOUNT_POINTS.note(dst, children)

        changes = [
            (name, Change(kind, prefix + name, sig_of(st))) for kind, name, st in listing.found
        ]
        gone: list[str] = []
        names: tuple[str, ...] = _NO_NAMES
        if complete:
            changes += deleted_changes(prefix, expected, listing.matched)
            names, gone = self._subdirs_after(directory, prefix, listing.kept, prev)
        elif prev is not None:
            names = prev[2]  # keep visiting what we knew was below
            children = stat_subdirs(directory, names, follow, self._error, strict=False) or []

        for name, change in changes:
            stats.changes += 1
            yield change
            if hot is not None and name in hot:
                self._hot_set(directory, name, change.sig)
        for name in gone:
            yield from self._forget(prefix + name)

        # Only now, with every change yielded, may the directory be pruned next time.
        mtime = dst.st_mtime_ns
        if not complete or mtime >= racy_after:
            mtime = _UNTRUSTED
        if complete or prev is not None:
            self._dirs[directory] = (mtime, dst.st_ctime_ns, names)
        if complete:
            listed.add(directory)
        descend(children, stack, seen, self._error)

    def _subdirs_after(
        self, directory: str, prefix: str, kept: list[str], prev: _DirEntry | None
    ) -> tuple[tuple[str, ...], list[str]]:
        """After a complete listing: (the subdirectory names to remember, those gone since
        the last listing). A mount point that went missing is not gone: it is remembered,
        visited and reported again until it is back."""
        names = tuple(kept) if kept else _NO_NAMES
        before: set[str] = set(prev[2]) if prev is not None else set()
        if prev is None and self.recursive and self.known_subdirs is not None:
            before.update(self.known_subdirs(directory))
        if not before:
            return names, []
        gone = sorted(before.difference(names))
        missing = missing_mounts(prefix, gone, self._error)
        if missing:
            gone = [name for name in gone if name not in missing]
            names += tuple(missing)
            self._blind.update(prefix + name for name in missing)
        return names, gone

    def _forget(self, top: str) -> Iterator[Change]:
        """`top` is gone: every file known in it or below is deleted."""
        join = os.path.join
        visited = []
        stack = [top]
        while stack:
            directory = stack.pop()
            visited.append(directory)
            entry = self._dirs.get(directory)
            subdirs: set[str] = set(entry[2]) if entry is not None else set()
            if self.known_subdirs is not None:
                subdirs.update(self.known_subdirs(directory))
            known = self.known(directory)
            for name in known:
                self.stats.changes += 1
                yield Change("deleted", join(directory, name), None)
            hot = self._hot_in(directory)
            if hot:
                for name, hsig in hot.items():
                    if hsig is not None and name not in known:
                        self.stats.changes += 1
                        yield Change("deleted", join(directory, name), None)
                    self._hot_set(directory, name, None)
            stack.extend(join(directory, name) for name in sorted(subdirs, reverse=True))
        for directory in visited:  # forgotten only once every deletion was yielded
            self._dirs.pop(directory, None)

    def _scan_hot(self, listed: set[str]) -> Iterator[Change]:
        """Re-stat hot files in directories this scan did not list."""
        with self._hot_lock:
            todo = [(d, list(names.items())) for d, names in self._hot.items() if d not in listed]
        join = os.path.join
        for directory, items in todo:
            for name, last in items:
                path = join(directory, name)
                self.stats.hot_statted += 1
                try:
                    st = os.stat(path, follow_symlinks=self.follow_symlinks)
                except (FileNotFoundError, NotADirectoryError):
                    if any(path.startswith(b + "/") for b in self._blind):
                        continue  # under an unmounted mount point: not deleted
                    st = None
                except OSError as exc:
                    self._error(path, exc)
                    continue
                sig = None if st is None or st.st_mode & S_IFMT != S_IFREG else sig_of(st)
                if sig == last:  # FileSig equality: size, mtime and inode, as listings compare
                    continue
                kind: ChangeKind = (
                    "deleted" if sig is None else "created" if last is None else "modified"
                )
                change = Change(kind, path, sig)
                self.stats.changes += 1
                yield change
                self._hot_set(directory, name, change.sig)
