"""The file system side of exrwatchd/watch/poll.py's walk: listing and stat'ing directories.

PollScanner decides what to visit and what changed; the functions here make the system
calls. `stat_root` checks the watched root, `list_dir` reads one directory (its files
against what the scanner expects there, and its subdirectories), `stat_subdirs` stats the
subdirectories remembered for a pruned one, `descend` pushes subdirectories onto the walk.
Every OSError worth reporting goes to the `error(path, exc)` callback; none is raised.
`exrwatchd.filesig.is_gone` says which errors mean a path is gone (ENOENT, ENOTDIR; nothing
else), and `MOUNT_POINTS` remembers the mount points below the roots, so that an unmounted
one (empty, or missing) is reported unavailable (ENODEV) instead of emptied.

exrwatchd.watch.poll re-exports ChangeKind; import it from there.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from exrwatchd.filesig import FileSig, is_gone, sig_of

ChangeKind = Literal["created", "modified", "deleted"]
OnError = Callable[[str, OSError], None]
Child = tuple[str, os.stat_result]  # a subdirectory's path and stat

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
S_IFMT = stat_mod.S_IFMT(0o177777)
S_IFREG = stat_mod.S_IFREG
S_IFDIR = stat_mod.S_IFDIR


class MountPoints:
    """Directories below watch roots seen on another device than their parent: mount points;
    and the watch roots themselves, which are treated alike.

    Once unmounted, a mount point is an ordinary empty directory (or none at all); only this
    memory says it is unavailable rather than emptied. Every walk of the process (pollers,
    reconciliations) adds what it sees; a restart forgets.

    The watch roots are here too (`watch_roots`): a root that is missing is unavailable, not
    emptied, so a file below it found missing is not gone, whoever looks (the settler too:
    docs/architecture.md, "only ENOENT means gone"). A root that is empty is unavailable only
    if it is a mount point itself; an ordinary directory emptied file by file was emptied
    (the reconciler still refuses to take a whole empty root for deleted files: check_root).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: set[str] = set()
        self._roots: frozenset[str] = frozenset()

    def watch_roots(self, roots: Iterable[str]) -> None:
        """The watch roots now (at start and at each reload); those that are mount points
        now are remembered as such."""
        self._roots = frozenset(roots)  # replaced whole: readers see the old set or the new
        mounted = [root for root in self._roots if os.path.ismount(root)]
        with self._lock:
            self._paths.update(mounted)

    def is_root(self, path: str) -> bool:
        return path in self._roots

    def empty_means_unmounted(self, path: str) -> bool:
        """Whether `path` (a mount point or a watch root) listed empty is unavailable."""
        return path in self._paths

    def note(self, parent: os.stat_result, children: list[Child]) -> None:
        for path, st in children:
            if st.st_dev != parent.st_dev and path not in self._paths:
                with self._lock:
                    self._paths.add(path)

    def __contains__(self, path: str) -> bool:
        return path in self._paths or path in self._roots

    def above(self, path: str) -> list[str]:
        """The mount points and watch roots at or above `path`, nearest first."""
        with self._lock:
            paths = self._paths | self._roots
        if not paths:
            return []
        out = []
        while True:
            if path in paths:
                out.append(path)
            up = os.path.dirname(path)
            if up == path:
                return out
            path = up


#: Shared by every PollScanner, so a reconciliation knows what the poller has seen.
MOUNT_POINTS = MountPoints()


def _unmounted(what: str, path: str) -> OSError:
    kind = "watch root" if MOUNT_POINTS.is_root(path) else "mount point"
    return OSError(errno.ENODEV, f"{kind} is {what} (unmounted?); its files are kept", path)


def mount_unavailable(path: str) -> OSError | None:
    """Why mount point `path` cannot be trusted now (missing, empty or unreadable), or None."""
    try:
        with os.scandir(path) as entries:
            if next(entries, None) is not None or not MOUNT_POINTS.empty_means_unmounted(path):
                return None
        what = "empty"
    except OSError as exc:
        if not is_gone(exc):
            return exc
        what = "missing"
    return _unmounted(what, path)


def unmounted_above(path: str) -> OSError | None:
    """For a `path` found missing (ENOENT): the problem of an unavailable mount point above
    it (its `filename`), which means the path is not gone after all; None when there is none."""
    for mount in MOUNT_POINTS.above(path):
        problem = mount_unavailable(mount)
        if problem is not None:
            return problem
    return None


def stat_sig(path: str, follow: bool) -> FileSig | None:
    """The signature of the regular file at `path`; None when it is not one, or not there."""
    try:
        st = os.stat(path, follow_symlinks=follow)
    except OSError:
        return None
    if st.st_mode & S_IFMT != S_IFREG:
        return None
    return sig_of(st)


@dataclass(frozen=True, slots=True)
class Change:
    """A file under the watched root was created, modified or deleted since it was last known."""

    kind: ChangeKind
    path: str
    sig: FileSig | None  # None for "deleted"


@dataclass(slots=True)
class Listing:
    """What one `list_dir` found."""

    complete: bool  # False: the directory could not be opened, or failed half-way through
    found: list[tuple[ChangeKind, str, os.stat_result]]  # created and modified files, by name
    matched: list[str]  # expected names that are present (or could not be stat'ed)
    kept: list[str]  # names of subdirectories (those that could not be stat'ed included)
    children: list[Child]  # subdirectories to visit, when recursive
    files_statted: int


def list_dir(
    directory: str,
    prefix: str,
    expected: Mapping[str, FileSig],
    accept: Callable[[str], bool],
    *,
    strict: bool,
    follow: bool,
    nofollow_dir: bool,
    recursive: bool,
    error: OnError,
) -> Listing:
    """List `directory` (`prefix` is it with a trailing slash) and stat its accepted files.

    A file not in `expected` is created, one whose stat differs from its FileSig modified.
    A name in `expected` skips `accept` unless `strict`. With `nofollow_dir` the directory
    itself is not opened through a symlink.
    """
    get = expected.get
    # The hot loop: one is_dir (d_type), one accept, one is_file (d_type), one fstatat per
    # accepted file; no object is built for a file that did not change. Listing through a
    # directory fd makes each stat relative to it (fstatat), as find does, instead of
    # resolving the whole path again for every file.
    found: list[tuple[ChangeKind, str, os.stat_result]] = []  # (kind, name, stat)
    matched: list[str] = []
    subdirs: list[os.DirEntry[str]] = []
    kept: list[str] = []
    children: list[Child] = []
    nfiles = 0
    complete = True
    fd = _open_dir(directory, nofollow_dir, error)
    if fd is None:
        complete = False
    else:
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=follow):
                            subdirs.append(entry)
                            continue
                        name = entry.name
                        sig = get(name)
                        if (sig is None or strict) and not accept(name):
                            continue
                        if not entry.is_file(follow_symlinks=follow):
                            continue
                        st = entry.stat(follow_symlinks=follow)
                    except FileNotFoundError:
                        continue  # removed since readdir: absent
                    except OSError as exc:
                        error(prefix + entry.name, exc)
                        if entry.name in expected:  # state unknown: never report it deleted
                            matched.append(entry.name)
                        continue
                    nfiles += 1
                    if sig is None:
                        found.append(("created", name, st))
                        continue
                    matched.append(name)
                    if (
                        sig.mtime_ns != st.st_mtime_ns
                        or sig.size != st.st_size
                        or sig.inode != st.st_ino
                    ):
                        found.append(("modified", name, st))
            if recursive:
                kept, children = _stat_subdirs_found(subdirs, prefix, follow, error)
        except OSError as exc:
            # An I/O error half-way through (NFS): the listing is incomplete.
            error(directory, exc)
            complete = False
        finally:
            os.close(fd)
    return Listing(complete, found, matched, kept, children, nfiles)


def _open_dir(directory: str, nofollow_dir: bool, error: OnError) -> int | None:
    """A directory fd to list `directory` through, or None (reported) when it cannot be opened."""
    try:
        return os.open(directory, (DIR_FLAGS | os.O_NOFOLLOW) if nofollow_dir else DIR_FLAGS)
    except OSError as exc:
        # Unreadable (EACCES), or vanished since its parent was listed: nothing is deleted
        # on the strength of a listing that did not happen.
        error(directory, exc)
        return None


def _stat_subdirs_found(
    subdirs: list[os.DirEntry[str]], prefix: str, follow: bool, error: OnError
) -> tuple[list[str], list[Child]]:
    """(names of the subdirectories still there, those of them that can be visited)."""
    kept: list[str] = []
    children: list[Child] = []
    for entry in subdirs:
        try:
            cst = entry.stat(follow_symlinks=follow)
        except FileNotFoundError:
            continue  # removed since readdir: gone
        except OSError as exc:
            error(prefix + entry.name, exc)
            kept.append(entry.name)  # still there, just not visitable now
            continue
        kept.append(entry.name)
        children.append((prefix + entry.name, cst))
    return kept, children


def mount_emptied(directory: str, listing: Listing, knew: bool, error: OnError) -> bool:
    """True, reported, when `directory` is a mount point that used to hold files (`knew`) and
    lists empty: unmounted, like a watch root that turns up empty; nothing in it is deleted."""
    if not knew or listing.found or listing.matched or listing.kept:
        return False
    if not MOUNT_POINTS.empty_means_unmounted(directory):
        return False
    error(directory, _unmounted("empty", directory))
    return True


def missing_mounts(prefix: str, gone: list[str], error: OnError) -> list[str]:
    """The subdirectories in `gone` that are mount points (reported): missing, not deleted."""
    missing = [name for name in gone if prefix + name in MOUNT_POINTS]
    for name in missing:
        error(prefix + name, _unmounted("missing", prefix + name))
    return missing


def stat_root(root: str, error: OnError) -> os.stat_result | None:
    """Stat the watched root; None, reported, when it is missing or not a directory."""
    try:
        st = os.stat(root)
    except OSError as exc:
        # A missing root is far more often an unmounted share than a deleted tree:
        # report it, delete nothing.
        error(root, exc)
        return None
    if st.st_mode & S_IFMT != S_IFDIR:
        error(root, NotADirectoryError(errno.ENOTDIR, "watched root is not a directory"))
        return None
    return st


def ancestors(path: str) -> set[tuple[int, int]]:
    """(device, inode) of every directory above `path` (absolute and normalized), up to /."""
    keys = set()
    parent = os.path.dirname(path)
    while True:
        try:
            st = os.stat(parent)
        except OSError:
            break
        keys.add((st.st_dev, st.st_ino))
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    return keys


def stat_subdirs(
    directory: str, names: tuple[str, ...], follow: bool, error: OnError, *, strict: bool
) -> list[Child] | None:
    """Stat remembered subdirectories. With `strict`, None when one is gone or no longer a
    directory (the parent changed after all: NFS attribute caching, a coarse mtime)."""
    out = []
    for name in names:
        path = os.path.join(directory, name)
        try:
            st = os.stat(path, follow_symlinks=follow)
        except (FileNotFoundError, NotADirectoryError):
            if strict:
                return None
            continue
        except OSError as exc:
            error(path, exc)
            continue
        if st.st_mode & S_IFMT != S_IFDIR:
            if strict:
                return None
            continue
        out.append((path, st))
    return out


def descend(
    children: list[Child], stack: list[Child], seen: set[tuple[int, int]], error: OnError
) -> None:
    """Push subdirectories, skipping any directory already on this walk (by device and
    inode): symlink loops when following symlinks, bind-mount loops always."""
    for item in reversed(children):
        st = item[1]
        key = (st.st_dev, st.st_ino)
        if key in seen:
            error(
                item[0],
                OSError(errno.ELOOP, "directory already on the walk (loop or duplicate link)"),
            )
            continue
        seen.add(key)
        stack.append(item)


def expected_files(
    known: Mapping[str, FileSig], hot: dict[str, FileSig | None] | None
) -> Mapping[str, FileSig]:
    """What a listing should find: the journal's files, with what this scanner last
    reported (`hot`) winning over them."""
    if not hot:
        return known
    merged = dict(known)
    for name, hsig in hot.items():
        if hsig is None:
            merged.pop(name, None)
        else:
            merged[name] = hsig
    return merged


def deleted_changes(
    prefix: str, expected: Mapping[str, FileSig], matched: list[str]
) -> list[tuple[str, Change]]:
    """The expected files a complete listing did not find."""
    if len(matched) >= len(expected):
        return []
    present = set(matched)
    return [(name, Change("deleted", prefix + name, None)) for name in expected
            if name not in present]  # fmt: skip
