"""Walk a directory tree with os.scandir, yielding the paths of accepted files (`inspect`).

A generator over an explicit stack: memory grows with the depth and width of the directory
frontier, never with the number of files. Symlinks are not followed unless asked; when they
are, directories already on the walk (by device and inode) are skipped, so loops end.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Callable, Iterator


def walk_files(
    root: str,
    accept: Callable[[str], bool],
    *,
    recursive: bool = True,
    follow_symlinks: bool = False,
    on_error: Callable[[str, OSError], None] | None = None,
    ordered: bool = False,
) -> Iterator[str]:
    """Paths of accepted regular files under `root` (or `root` itself when it is a file).
    `ordered`: each directory's files by name, then its subdirectories by name, depth first.

    No file is stat'ed: the directory entry's type says what is a regular file, and whoever
    reads the file takes its own fstat (a stat per file was half the walk's cost).
    """
    try:
        top = os.stat(root, follow_symlinks=True)
    except OSError as exc:
        if on_error:
            on_error(root, exc)
        return
    if stat_mod.S_ISREG(top.st_mode):
        yield root
        return
    seen_dirs = {(top.st_dev, top.st_ino)}
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                subdirs = []
                for entry in sorted(entries, key=lambda e: e.name) if ordered else entries:
                    try:
                        if entry.is_dir(follow_symlinks=follow_symlinks):
                            if recursive:
                                subdirs.append(entry)
                            continue
                        if accept(entry.name) and entry.is_file(follow_symlinks=follow_symlinks):
                            yield entry.path
                    except OSError as exc:
                        if on_error:
                            on_error(entry.path, exc)
        except OSError as exc:
            if on_error:
                on_error(directory, exc)
            continue
        for sub in reversed(subdirs):
            if follow_symlinks:
                try:
                    st = sub.stat(follow_symlinks=True)
                except OSError as exc:
                    if on_error:
                        on_error(sub.path, exc)
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen_dirs:
                    if on_error:
                        on_error(sub.path, OSError(40, "symlink loop: directory already walked"))
                    continue
                seen_dirs.add(key)
            stack.append(sub.path)


def count_dirs(root: str, *, follow_symlinks: bool = False) -> int:
    """Directories in the tree under `root`, itself included: the watches a recursive inotify
    watch needs. Reads directories only (stats links to them when following links, each
    directory counted once, so loops end); one that cannot be read counts, its subtree not."""
    seen: set[tuple[int, int]] = set()
    count, stack = 0, [root]
    while stack:
        directory = stack.pop()
        try:
            if follow_symlinks:
                st = os.stat(directory)
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            count += 1
            with os.scandir(directory) as entries:
                stack += [e.path for e in entries if e.is_dir(follow_symlinks=follow_symlinks)]
        except OSError:
            continue
    return count
