"""The mtime-pruning poller, on real temporary trees.

No sleeps and no mocks: directory mtimes are set with os.utime to explicit nanosecond values, so
"unchanged" and "changed" never depend on the clock. The one thing a local disk cannot show, a
directory whose times look unchanged although its entries changed (an NFS client's attribute
cache), is produced by `looks_unchanged`, which edits the scanner's memory of those times.
`Journal` below plays the daemon's journal: it records every change it is given and answers
`known(directory)` like `Journal.paths_in_dir` would.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from exrwatchd.config import DEFAULT_EXCLUDE
from exrwatchd.filesig import FileSig
from exrwatchd.watch import NameFilter
from exrwatchd.watch.poll import RACY_NS, Change, PollScanner

OLD = 1_600_000_000_000_000_000  # 2020-09-13, far outside the racy window
LATER = OLD + 1_000_000_000


def _modes_are_enforced() -> bool:
    """False for root (CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH): it lists any directory."""
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o000)
        try:
            os.listdir(tmp)
        except PermissionError:
            return True
        finally:
            os.chmod(tmp, 0o700)
    return False


needs_eacces = pytest.mark.skipif(
    not _modes_are_enforced(),
    reason="running as root (or with CAP_DAC_OVERRIDE): every directory is readable, "
    "so EACCES cannot happen",
)


class Journal:
    """Per-directory file signatures, updated from reported changes."""

    def __init__(self) -> None:
        self.dirs: dict[str, dict[str, FileSig]] = {}
        self.asked: list[str] = []

    def known(self, directory: str) -> Mapping[str, FileSig]:
        self.asked.append(directory)
        return self.dirs.get(directory, {})

    def subdirs(self, directory: str) -> Iterable[str]:
        prefix = directory.rstrip("/") + "/"
        return {d[len(prefix) :].split("/")[0] for d in self.dirs if d.startswith(prefix)}

    def apply(self, changes: Iterable[Change]) -> list[Change]:
        changes = list(changes)
        for c in changes:
            directory, name = os.path.split(c.path)
            if c.kind == "deleted":
                self.dirs.get(directory, {}).pop(name, None)
            else:
                assert c.sig is not None
                self.dirs.setdefault(directory, {})[name] = c.sig
        return changes


class Errors(list[tuple[str, OSError]]):
    def __call__(self, path: str, exc: OSError) -> None:
        self.append((path, exc))


def kinds(changes: Iterable[Change], root: Path) -> set[tuple[str, str]]:
    return {(c.kind, os.path.relpath(c.path, root)) for c in changes}


def touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def set_mtime(path: Path | str | bytes, ns: int) -> None:
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


def freeze(root: Path, ns: int = OLD) -> None:
    """Give every directory (and file) under root the same old mtime."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            set_mtime(os.path.join(dirpath, name), ns)
        for name in dirnames:
            set_mtime(os.path.join(dirpath, name), ns)
    set_mtime(root, ns)


def rewrite(path: Path, data: bytes) -> None:
    """Rewrite in place: same inode, and the parent directory does not change."""
    parent = os.stat(path.parent)
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()
    after = os.stat(path.parent)
    assert (after.st_mtime_ns, after.st_ctime_ns) == (parent.st_mtime_ns, parent.st_ctime_ns)


def looks_unchanged(s: PollScanner, directory: Path) -> None:
    """Make `s` see `directory` as unchanged since its last listing, as an NFS client with
    cached directory attributes would. (A local directory's ctime cannot be put back, so this
    edits the scanner's memory of the directory's times instead.)"""
    st = os.stat(directory)
    _mtime, _ctime, names = s._dirs[str(directory)]
    s._dirs[str(directory)] = (st.st_mtime_ns, st.st_ctime_ns, names)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "renders"
    for shot in ("sh010", "sh020"):
        for layer in ("beauty", "depth"):
            for frame in (1001, 1002):
                touch(root / shot / layer / f"{shot}_{layer}.{frame}.exr", b"x" * frame)
    touch(root / "sh010" / "notes.txt")
    touch(root / "sh010" / "beauty" / "sh010_beauty.1003.exr.tmp")
    touch(root / "sh010" / "beauty" / ".hidden.exr")
    touch(root / "top.EXR")
    (root / "empty").mkdir()
    freeze(root)
    return root


def scanner(root: Path, journal: Journal, **kw: object) -> PollScanner:
    return PollScanner(str(root), NameFilter(), journal.known, **kw)  # type: ignore[arg-type]


ALL_EXRS = {
    ("created", f"{shot}/{layer}/{shot}_{layer}.{frame}.exr")
    for shot in ("sh010", "sh020")
    for layer in ("beauty", "depth")
    for frame in (1001, 1002)
} | {("created", "top.EXR")}
N_DIRS = 1 + 1 + 2 + 4  # root, empty, two shots, four layers


class TestFirstScanAndPruning:
    def test_first_scan_reports_every_accepted_file_created(self, tree: Path) -> None:
        j = Journal()
        s = scanner(tree, j)
        changes = j.apply(s.scan())
        assert kinds(changes, tree) == ALL_EXRS
        assert len(changes) == len(ALL_EXRS)  # nothing twice
        c = next(c for c in changes if c.path.endswith("sh020_depth.1002.exr"))
        st = os.stat(c.path)
        assert c.sig == FileSig(1002, st.st_mtime_ns, st.st_ino)
        assert s.stats.full and s.stats.dirs_listed == N_DIRS and s.stats.files_statted == 9
        assert s.dirs_known == N_DIRS

    def test_unchanged_tree_rescan_lists_nothing(self, tree: Path) -> None:
        j = Journal()
        s = scanner(tree, j)
        j.apply(s.scan())
        j.asked.clear()
        assert list(s.scan()) == []
        assert not s.stats.full
        assert s.stats.dirs_listed == 0 and s.stats.files_statted == 0
        assert s.stats.dirs_pruned == N_DIRS
        assert j.asked == []  # the journal is not even asked

    def test_new_file_in_deep_directory_lists_only_that_directory(self, tree: Path) -> None:
        j = Journal()
        s = scanner(tree, j)
        j.apply(s.scan())
        touch(tree / "sh020" / "depth" / "sh020_depth.1003.exr", b"new")
        set_mtime(tree / "sh020" / "depth", LATER)
        j.asked.clear()
        changes = list(s.scan())
        assert kinds(changes, tree) == {("created", "sh020/depth/sh020_depth.1003.exr")}
        assert s.stats.dirs_listed == 1 and s.stats.dirs_pruned == N_DIRS - 1
        assert s.stats.files_statted == 3  # the three frames of that one directory
        assert j.asked == [str(tree / "sh020" / "depth")]

    def test_unchanged_known_tree_after_restart_reports_nothing(self, tree: Path) -> None:
        j = Journal()
        j.apply(scanner(tree, j).scan())
        s = scanner(tree, j)  # a new process: empty memory, the journal knows everything
        assert list(s.scan()) == []
        assert s.stats.full and s.stats.files_statted == 9

    def test_explicit_full_scan_lists_everything(self, tree: Path) -> None:
        j = Journal()
        s = scanner(tree, j)
        j.apply(s.scan())
        assert list(s.scan(full=True)) == []
        assert s.stats.full and s.stats.dirs_listed == N_DIRS

    def test_recently_changed_directory_is_not_trusted_for_pruning(self, tree: Path) -> None:
        # A second change within the same mtime tick would not move the mtime: a directory
        # whose mtime is close to the scan is listed again next time.
        j = Journal()
        s = scanner(tree, j)
        j.apply(s.scan())
        touch(tree / "sh010" / "beauty" / "sh010_beauty.1004.exr")
        set_mtime(tree / "sh010" / "beauty", time.time_ns() + 10 * RACY_NS)  # now, or later
        j.apply(s.scan())
        assert s.stats.dirs_listed == 1
        assert list(s.scan()) == []
        assert s.stats.dirs_listed == 1  # still not trusted
        set_mtime(tree / "sh010" / "beauty", LATER)
        assert list(s.scan()) == []
        assert s.stats.dirs_listed == 1  # mtime changed again: listed, and now old enough
        assert list(s.scan()) == []
        assert s.stats.dirs_listed == 0

    def test_known_names_the_filter_now_rejects_are_deleted_by_a_new_scanner(
        self, tree: Path
    ) -> None:
        j = Journal()
        j.apply(scanner(tree, j).scan())
        # The configuration changed: depth passes are excluded now.
        s = PollScanner(str(tree), NameFilter(exclude=[*DEFAULT_EXCLUDE, "*depth*"]), j.known)
        assert kinds(j.apply(s.scan()), tree) == {
            ("deleted", f"{shot}/depth/{shot}_depth.{frame}.exr")
            for shot in ("sh010", "sh020")
            for frame in (1001, 1002)
        }
        assert list(s.scan(full=True)) == []

    def test_known_names_are_matched_once_per_directory(self, tree: Path) -> None:
        j = Journal()
        j.apply(scanner(tree, j).scan())
        seen: list[str] = []
        name_filter = NameFilter()

        def accept(name: str) -> bool:
            seen.append(name)
            return name_filter(name)

        s = PollScanner(str(tree), accept, j.known)
        assert list(s.scan()) == []
        assert "sh010_beauty.1001.exr" in seen  # the first listing checks every name
        seen.clear()
        assert list(s.scan(full=True)) == []
        assert "sh010_beauty.1001.exr" not in seen  # known, and already checked
        assert "notes.txt" in seen  # unknown names are always checked

    def test_non_recursive_sees_only_the_top(self, tree: Path) -> None:
        j = Journal()
        s = scanner(tree, j, recursive=False)
        assert kinds(j.apply(s.scan()), tree) == {("created", "top.EXR")}
        assert s.stats.dirs_listed == 1
        assert list(s.scan()) == [] and s.stats.dirs_listed == 0


class TestInPlaceRewrites:
    def test_rewrite_of_non_hot_file_waits_for_the_periodic_full_pass(self, tree: Path) -> None:
        j = Journal()
        s = scanner(tree, j, full_every=3)
        j.apply(s.scan())  # scan 0: full
        f = tree / "sh010" / "depth" / "sh010_depth.1001.exr"
        rewrite(f, b"rewritten")
        assert list(s.scan()) == [] and not s.stats.full  # scan 1: pruned, cannot see it
        assert list(s.scan()) == [] and not s.stats.full  # scan 2
        changes = j.apply(s.scan())  # scan 3: the periodic full pass
        assert s.stats.full
        assert kinds(changes, tree) == {("modified", "sh010/depth/sh010_depth.1001.exr")}
        assert changes[0].sig is not None and changes[0].sig.size == 9
        assert list(s.scan()) == [] and not s.stats.full

    def test_replaced_file_with_the_directory_mtime_put_back_is_found(self, tree: Path) -> None:
        # rsync -a: new content under a temporary name, renamed over the old file, and the
        # directory's mtime set back to the source's. The ctime still moves.
        j = Journal()
        s = scanner(tree, j)
        j.apply(s.scan())
        d = tree / "sh020" / "depth"
        before = os.stat(d).st_mtime_ns
        touch(d / ".sh020_depth.1001.exr.Xa81Qz", b"re-rendered").rename(d / "sh020_depth.1001.exr")
        set_mtime(d, before)
        assert kinds(s.scan(), tree) == {("modified", "sh020/depth/sh020_depth.1001.exr")}
        assert not s.stats.full and s.stats.dirs_listed == 1

    def test_hot_file_rewritten_in_place_is_found_by_the_next_pruned_scan(self, tree: Path) -> None:
        j = Journal()
        s = scanner(tree, j)
        f = tree / "sh020" / "beauty" / "sh020_beauty.1002.exr"
        for c in s.scan():
            if c.path == str(f):
                s.mark_hot(c.path, c.sig)  # the daemon: created, not settled yet
            # ...and the journal does not know it until it settles
        rewrite(f, b"more data")
        changes = list(s.scan())
        assert [(c.kind, c.path) for c in changes] == [("modified", str(f))]
        assert changes[0].sig is not None and changes[0].sig.size == 9
        assert s.stats.dirs_listed == 0 and s.stats.hot_statted == 1
        assert list(s.scan()) == []  # unchanged since reported: not reported again
        rewrite(f, b"even more data")
        assert [c.kind for c in s.scan()] == ["modified"]
        s.settled(str(f))
        assert s.hot_count == 0
        rewrite(f, b"after settle")
        assert list(s.scan()) == [] and s.stats.hot_statted == 0

    def test_hot_set_overrides_the_journal_when_its_directory_is_listed(self, tree: Path) -> None:
        # The journal records a file only after it settles; meanwhile a listing of its directory
        # must not report it "created" again and again.
        j = Journal()
        s = scanner(tree, j)
        j.apply(s.scan())
        new = touch(tree / "sh010" / "beauty" / "sh010_beauty.1005.exr", b"1")
        set_mtime(new.parent, LATER)
        [c] = s.scan()
        assert c.kind == "created"
        s.mark_hot(c.path, c.sig)
        set_mtime(new.parent, LATER + 1)  # another writer touched the directory
        assert list(s.scan()) == [] and s.stats.dirs_listed == 1
        new.write_bytes(b"12")
        set_mtime(new.parent, LATER + 2)
        [c2] = s.scan()
        assert (c2.kind, c2.path) == ("modified", str(new)) and s.stats.hot_statted == 0

    def test_mark_hot_without_sig_takes_a_baseline_now(self, tree: Path) -> None:
        s = scanner(tree, Journal())
        list(s.scan())
        f = tree / "sh010" / "beauty" / "sh010_beauty.1001.exr"
        s.mark_hot(str(f))
        assert list(s.scan()) == []
        rewrite(f, b"changed")
        assert [c.kind for c in s.scan()] == ["modified"]

    def test_hot_file_that_vanishes_is_deleted_and_dropped(self, tree: Path) -> None:
        j = Journal()
        s = scanner(tree, j)
        j.apply(s.scan())
        f = tree / "sh020" / "depth" / "sh020_depth.1001.exr"
        s.mark_hot(str(f))
        f.unlink()
        looks_unchanged(s, f.parent)  # NFS attribute cache
        assert kinds(s.scan(), tree) == {("deleted", "sh020/depth/sh020_depth.1001.exr")}
        assert s.stats.dirs_listed == 0 and s.hot_count == 0

    def test_hot_file_marked_before_it_exists_is_reported_when_it_appears(self, tree: Path) -> None:
        s = scanner(tree, Journal())
        list(s.scan())
        f = tree / "sh010" / "depth" / "sh010_depth.1009.exr"
        s.mark_hot(str(f))  # e.g. an inotify event from another watcher, or a render manager
        assert list(s.scan()) == []
        touch(f, b"abc")
        looks_unchanged(s, f.parent)
        assert kinds(s.scan(), tree) == {("created", "sh010/depth/sh010_depth.1009.exr")}
        assert list(s.scan()) == []


class TestDeletions:
    def test_deleted_file(self, tree: Path) -> None:
        j = Journal()
        s = scanner(tree, j)
        j.apply(s.scan())
        (tree / "sh010" / "beauty" / "sh010_beauty.1001.exr").unlink()
        set_mtime(tree / "sh010" / "beauty", LATER)
        changes = j.apply(s.scan())
        assert kinds(changes, tree) == {("deleted", "sh010/beauty/sh010_beauty.1001.exr")}
        assert changes[0].sig is None
        assert list(s.scan()) == []

    def test_removed_directory_deletes_every_file_below_it(self, tree: Path) -> None:
        j = Journal()
        s = scanner(tree, j)
        j.apply(s.scan())
        for p in sorted((tree / "sh020").rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        (tree / "sh020").rmdir()
        set_mtime(tree, LATER)
        changes = j.apply(s.scan())
        assert kinds(changes, tree) == {
            ("deleted", f"sh020/{layer}/sh020_{layer}.{frame}.exr")
            for layer in ("beauty", "depth")
            for frame in (1001, 1002)
        }
        assert s.dirs_known == N_DIRS - 3
        assert list(s.scan()) == []

    def test_stale_parent_times_are_caught_when_a_remembered_subdirectory_is_gone(
        self, tree: Path
    ) -> None:
        # NFS may show the parent's old mtime for up to a minute: a remembered subdirectory
        # that no longer exists makes the scanner list the parent after all.
        j = Journal()
        s = scanner(tree, j)
        j.apply(s.scan())
        for f in (tree / "empty").iterdir():
            f.unlink()
        (tree / "empty").rmdir()
        for f in (tree / "sh010" / "depth").iterdir():
            f.unlink()
        (tree / "sh010" / "depth").rmdir()
        looks_unchanged(s, tree)
        looks_unchanged(s, tree / "sh010")
        changes = j.apply(s.scan())
        assert kinds(changes, tree) == {
            ("deleted", "sh010/depth/sh010_depth.1001.exr"),
            ("deleted", "sh010/depth/sh010_depth.1002.exr"),
        }
        assert s.stats.dirs_listed == 2  # root and sh010, nothing else

    def test_directory_removed_while_the_daemon_was_down(self, tree: Path) -> None:
        j = Journal()
        j.apply(scanner(tree, j).scan())
        for f in (tree / "sh020" / "depth").iterdir():
            f.unlink()
        (tree / "sh020" / "depth").rmdir()
        # A new process remembers nothing; the journal says where it knows files.
        s = PollScanner(str(tree), NameFilter(), j.known, known_subdirs=j.subdirs)
        assert kinds(j.apply(s.scan()), tree) == {
            ("deleted", "sh020/depth/sh020_depth.1001.exr"),
            ("deleted", "sh020/depth/sh020_depth.1002.exr"),
        }

    def test_missing_root_reports_an_error_and_deletes_nothing(self, tree: Path) -> None:
        j = Journal()
        errors = Errors()
        s = scanner(tree, j, on_error=errors)
        j.apply(s.scan())
        tree.rename(tree.with_name("unmounted"))
        assert list(s.scan()) == []
        [(path, exc)] = errors
        assert path == str(tree) and exc.errno == errno.ENOENT

    def test_rename_within_the_tree_is_deleted_plus_created(self, tree: Path) -> None:
        j = Journal()
        s = scanner(tree, j)
        j.apply(s.scan())
        src = tree / "sh010" / "beauty" / "sh010_beauty.1001.exr"
        dst = tree / "sh020" / "beauty" / "moved.exr"
        inode = os.stat(src).st_ino
        src.rename(dst)
        (tree / "sh010" / "depth" / "sh010_depth.1001.exr").rename(
            tree / "sh010" / "depth" / "renamed.exr"
        )
        for d in ("sh010/beauty", "sh020/beauty", "sh010/depth"):
            set_mtime(tree / d, LATER)
        changes = j.apply(s.scan())
        assert kinds(changes, tree) == {
            ("deleted", "sh010/beauty/sh010_beauty.1001.exr"),
            ("created", "sh020/beauty/moved.exr"),
            ("deleted", "sh010/depth/sh010_depth.1001.exr"),
            ("created", "sh010/depth/renamed.exr"),
        }
        [moved] = [c for c in changes if c.path == str(dst)]
        assert moved.sig is not None and moved.sig.inode == inode

    def test_temp_name_renamed_into_place_is_created(self, tree: Path) -> None:
        j = Journal()
        s = scanner(tree, j)
        j.apply(s.scan())
        d = tree / "sh010" / "beauty"
        tmp = touch(d / "sh010_beauty.1003.exr.tmp", b"frame")  # ignored name, already there
        tmp.rename(d / "sh010_beauty.1003.exr")
        set_mtime(d, LATER)
        assert kinds(s.scan(), tree) == {("created", "sh010/beauty/sh010_beauty.1003.exr")}


class TestAbandonedScan:
    def test_changes_of_an_abandoned_scan_are_reported_again(self, tree: Path) -> None:
        j = Journal()
        s = scanner(tree, j)
        it = s.scan()
        first = next(it)
        it.close()  # the daemon stopped half-way (shutdown, exception)
        again = list(s.scan())  # nothing was lost: every directory is listed again
        assert first.path in {c.path for c in again}
        assert kinds(again, tree) == ALL_EXRS


class TestSymlinksAndErrors:
    def test_symlink_loop_is_reported_and_the_scan_ends(self, tree: Path) -> None:
        os.symlink("..", tree / "sh010" / "beauty" / "up")
        os.symlink(str(tree), tree / "sh020" / "root")
        freeze(tree)
        errors = Errors()
        j = Journal()
        s = scanner(tree, j, follow_symlinks=True, on_error=errors)
        assert kinds(j.apply(s.scan()), tree) == ALL_EXRS
        assert sorted(os.path.relpath(p, tree) for p, _ in errors) == [
            "sh010/beauty/up",
            "sh020/root",
        ]
        assert all(exc.errno == errno.ELOOP for _, exc in errors)
        errors.clear()
        assert list(s.scan()) == []  # pruned: still terminates, still reported
        assert len(errors) == 2

    def test_symlinks_are_not_followed_by_default(self, tree: Path) -> None:
        outside = touch(tree.parent / "outside" / "far.exr")
        os.symlink(outside.parent, tree / "link_dir")
        os.symlink(outside, tree / "link.exr")
        freeze(tree)
        errors = Errors()
        s = scanner(tree, Journal(), on_error=errors)
        assert kinds(s.scan(), tree) == ALL_EXRS
        assert errors == []
        followed = scanner(tree, Journal(), follow_symlinks=True)
        assert kinds(followed.scan(), tree) == ALL_EXRS | {
            ("created", "link_dir/far.exr"),
            ("created", "link.exr"),
        }

    @needs_eacces
    def test_unreadable_directory_is_an_error_not_a_deletion(self, tree: Path) -> None:
        j = Journal()
        errors = Errors()
        s = scanner(tree, j, on_error=errors)
        j.apply(s.scan())
        locked = tree / "sh010" / "depth"
        locked.chmod(0o000)
        try:
            set_mtime(locked, LATER)
            assert list(s.scan()) == []
            assert [(p, e.errno) for p, e in errors] == [(str(locked), errno.EACCES)]
            assert list(s.scan(full=True)) == []
        finally:
            locked.chmod(0o755)
        assert list(s.scan()) == []  # readable again: its files were never lost

    @needs_eacces
    def test_unreadable_directory_keeps_its_subdirectories_visited(self, tree: Path) -> None:
        j = Journal()
        errors = Errors()
        s = scanner(tree, j, on_error=errors)
        j.apply(s.scan())
        shot = tree / "sh020"
        shot.chmod(0o311)  # searchable, not listable
        try:
            touch(shot / "beauty" / "sh020_beauty.1003.exr")
            set_mtime(shot / "beauty", LATER)
            set_mtime(shot, LATER)
            assert kinds(s.scan(), tree) == {("created", "sh020/beauty/sh020_beauty.1003.exr")}
            assert [p for p, _ in errors] == [str(shot)]
        finally:
            shot.chmod(0o755)


class TestAwkwardNames:
    def test_spaces_newlines_and_undecodable_bytes(self, tree: Path) -> None:
        base = os.fsencode(tree)
        odd_dir = os.path.join(base, b"shot with spaces\nand a newline")
        os.mkdir(odd_dir)
        for raw in (
            b"frame 0001.exr",
            b"line\nbreak.exr",
            b"latin1-\xe9t\xe9.exr",
            b"\xff\xfe.exr",
        ):
            fd = os.open(os.path.join(odd_dir, raw), os.O_CREAT | os.O_WRONLY, 0o644)
            os.close(fd)
        freeze(tree)
        j = Journal()
        s = scanner(tree, j)
        changes = j.apply(s.scan())
        odd = [c.path for c in changes if "shot with spaces" in c.path]
        assert sorted(os.fsencode(p) for p in odd) == sorted(
            os.path.join(odd_dir, raw)
            for raw in (
                b"frame 0001.exr",
                b"line\nbreak.exr",
                b"latin1-\xe9t\xe9.exr",
                b"\xff\xfe.exr",
            )
        )
        for p in odd:
            assert os.path.exists(p)  # the str path (surrogate escapes) opens the file
        assert list(s.scan(full=True)) == []  # and matches the journal's keys next time
        os.unlink(os.path.join(odd_dir, b"\xff\xfe.exr"))
        set_mtime(odd_dir, LATER)
        [gone] = s.scan()
        assert gone.kind == "deleted" and os.fsencode(gone.path).endswith(b"/\xff\xfe.exr")


def test_full_every_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="full_every"):
        PollScanner(str(tmp_path), NameFilter(), lambda d: {}, full_every=0)


def test_root_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    f = touch(tmp_path / "a.exr")
    errors = Errors()
    s = PollScanner(str(f), NameFilter(), lambda d: {}, on_error=errors)
    assert list(s.scan()) == []
    assert errors[0][1].errno == errno.ENOTDIR
