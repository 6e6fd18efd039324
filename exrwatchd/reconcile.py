"""Reconciliation: make the journal agree with the disk, whatever events were lost.

Runs at start, every `rescan_interval`, after any sign of lost events (inotify overflow, a
dead observer) and for directories that appeared or vanished. It walks the tree with a
full PollScanner pass, comparing (size, mtime_ns, inode) with what the journal knows one
directory at a time, so memory follows the directory being read, never the tree. Files the
journal knows in directories that no longer exist are reported gone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from exrwatchd.journal import FileSig, Journal
from exrwatchd.watch.poll import PollScanner


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
    if is_watch_root:
        check_root(root, journal)
    elif not os.path.isdir(root):
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
        if os.path.isdir(directory):
            continue
        for name in journal.paths_in_dir(directory):
            yield Found(os.path.join(directory, name), "gone")
