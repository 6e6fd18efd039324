"""A directory that appears in a watched tree is walked once (issue 13), with real inotify.

The observer reports a directory moved in, created, or moved within the tree as one
"subtree" item, and the daemon's reconciler walks it against the journal. watchdog walks
such a directory too and reports every file in it: the same files found twice, and in a
catch-up (`bench/catchup_bench.py`: 20,000 files moved in at once) 22% of them were inspected,
journaled and shipped a second time, because the second report came after the first had
settled.

Each test ends with a sentinel file written at the root after the move. watchdog delivers
events in order through one queue, and generates a directory's per-file events in the same
step as the directory's own event, so once the sentinel is in the inbox everything the move
produced is there too: no waiting on the moment of a thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from exrgen import write_scanline
from harness import wait_for

from exrwatchd.watch import Inbox
from exrwatchd.watch.observers import InotifyWatcher


class Observed:
    """Everything the observer put into the inbox, collected across drains."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.items: dict[str, str] = {}

    def until(self, path: Path) -> dict[str, str]:
        def arrived() -> bool:
            self.items.update(self.inbox.drain()[0])
            return str(path) in self.items

        wait_for(arrived, 10, lambda: f"{path} in the inbox; have {sorted(self.items)}")
        return self.items


@pytest.fixture(params=[False, True], ids=["plain", "follow_symlinks"])
def watched(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, Observed]]:
    root = tmp_path / "renders"
    root.mkdir()
    inbox = Inbox()
    watcher = InotifyWatcher(str(root), inbox, lambda name: name.endswith(".exr"),
                             recursive=True, follow_symlinks=request.param)  # fmt: skip
    watcher.start()
    try:
        yield root, Observed(inbox)
    finally:
        watcher.stop()


def _shot(parent: Path) -> None:
    for d in ("a", "b", "b/c"):
        (parent / d).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            write_scanline(parent / d / f"f.{i:04d}.exr")


def _below(items: dict[str, str], directory: Path) -> dict[str, str]:
    return {p: k for p, k in items.items() if p.startswith(str(directory) + os.sep)}


def test_a_directory_moved_in_is_one_subtree_item(watched: tuple[Path, Observed],
                                                  tmp_path: Path) -> None:  # fmt: skip
    root, observed = watched
    staging = tmp_path / "staging" / "shot"
    _shot(staging)
    os.rename(staging, root / "shot")
    sentinel = write_scanline(root / "sentinel.exr")
    items = observed.until(sentinel)
    assert items.get(str(root / "shot")) == "subtree"
    assert _below(items, root / "shot") == {}  # per-file (and sub-directory) reports: a 2nd walk


def test_a_directory_moved_within_the_tree_is_two_subtree_items(
    watched: tuple[Path, Observed],
) -> None:
    root, observed = watched
    _shot(root / "old")
    observed.until(write_scanline(root / "sentinel.exr"))  # the files' own creation events
    observed.items.clear()
    os.rename(root / "old", root / "new")
    sentinel = write_scanline(root / "sentinel2.exr")
    items = observed.until(sentinel)
    assert items.get(str(root / "old")) == "subtree"
    assert items.get(str(root / "new")) == "subtree"
    assert _below(items, root / "old") == {}
    assert _below(items, root / "new") == {}
