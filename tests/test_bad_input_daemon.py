"""Bad input through the running daemon: never a crash, a hang or a lost file.

The "Bad input" suite of the issue, end to end: every case is dropped into a directory
watched by a real `exrwatchd run` process (inotify backend, short settle timings so
incomplete files are recorded quickly), and each test waits, with deadlines, until every
file has its row in catalog.db: an error record (error_kind and error_message set) or a
complete/incomplete verdict that is the right one. Each test then checks that the daemon is
still alive, still catalogs a good file dropped afterwards, and stops with exit 0 on SIGTERM.

Reader-level versions of these cases are in test_hostile.py; the verdicts asserted here for
truncated and corpus files are the reader's own (`inspect_path` on the same bytes), so what is
tested is that the daemon delivers them, to the right path, whatever the input.

Choices a reader of these tests should know:
- A 2^31-line data window is a valid header whose offset table cannot be there: the row is
  incomplete, with the reason (it is not an error record).
- Mode 000 as root: root reads any file, so the daemon runs without CAP_DAC_OVERRIDE and
  CAP_DAC_READ_SEARCH (setpriv); the interpreter may live under /root, out of reach of an
  unprivileged uid. Skipped, saying why, when that is not possible.
- Symlink loops with follow_symlinks: every real file gets one row, at its real path (never
  one through a loop). A link that loops onto itself is not a file, like a dangling link:
  no row (the inotify backend logs it as file.deleted).
- A file that vanishes before it is inspected has no row; one is made to vanish while it
  waits for a busy worker, the others before they settle.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import corpus_exr_files, corpus_location, corpus_path
from exrgen import truncated_copies, truncation_points, write_scanline
from harness import ROOT, Catalog, DaemonProcess, wait_for, write_config
from test_hostile import attr, tiny_exr

from exrwatchd.exr import inspect_path

#: Short timings: a file settles 0.2 s after its last change, and one that stays incomplete
#: (or keeps a transient error: empty, truncated header) is recorded as such after 1 s.
SETTLE = {
    "quiet_seconds": 0.2,
    "max_wait_seconds": 1.0,
    "recheck_initial_seconds": 0.1,
    "recheck_max_seconds": 0.4,
}

#: Seconds within which both 100,000-attribute files must have their rows.
MANY_BOUND = 30.0

COLUMNS = (
    "file_id, file_path, is_complete, incomplete_reason, error_kind, error_message, header_hash"
)


class Row(NamedTuple):
    file_id: str
    file_path: str
    is_complete: int
    incomplete_reason: str | None
    error_kind: str | None
    error_message: str | None
    header_hash: str | None


def shown(path: bytes) -> str:
    """How docs/catalog.md says `file_path` shows a path: as is when it is valid UTF-8, else
    with each undecodable byte as a ``\\udcXX`` escape."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")


def file_id(path: bytes) -> str:
    """docs/catalog.md: the first 32 hex digits of the sha256 of the path's real bytes."""
    return hashlib.sha256(os.path.normpath(path)).hexdigest()[:32]


class Rig:
    """A watched directory, its state directory and config, and the daemon once started."""

    def __init__(self, tmp: Path, *, backend: str = "inotify", follow_symlinks: bool = False):
        self.tmp = tmp
        self.watch = tmp / "renders"
        self.watch.mkdir()
        self.state = tmp / "state"
        self.config = write_config(
            tmp / "config.toml",
            self.state,
            [{"path": str(self.watch), "backend": backend, "poll_interval": 0.2,
              "follow_symlinks": follow_symlinks}],
            settle=SETTLE,
        )  # fmt: skip
        self.catalog = Catalog(self.state)
        self.daemon: DaemonProcess | None = None

    def start(self, daemon: DaemonProcess | None = None) -> DaemonProcess:
        self.daemon = daemon or DaemonProcess(self.config, self.state)
        self.daemon.wait_event("daemon.ready", timeout=20)
        self.daemon.wait_event("scan.finished", timeout=20)
        return self.daemon

    def path(self, *parts: str | bytes) -> bytes:
        return os.path.join(os.fsencode(self.watch), *map(os.fsencode, parts))

    def rows(self) -> dict[str, Row]:
        return {r[1]: Row(*r) for r in self.catalog.query(f"SELECT {COLUMNS} FROM files")}

    def wait_rows(self, expected: set[str], timeout: float) -> dict[str, Row]:
        """Wait until the files table holds exactly `expected` (file_path values)."""
        self.catalog.wait_paths(expected, timeout=timeout)
        return self.rows()

    def alive(self) -> None:
        assert self.daemon is not None
        assert self.daemon.proc.poll() is None, (
            f"daemon exited with {self.daemon.proc.returncode}:\n{self.daemon.tail()}"
        )

    def still_works_then_stops(self, name: str = "after.0001.exr") -> None:
        """Alive; a good file dropped now gets a complete row; SIGTERM exits 0; no crash."""
        assert self.daemon is not None
        self.alive()
        good = self.watch / name
        put(good, good_exr())
        row = wait_for(
            lambda: self.rows().get(str(good)), 20,
            lambda: f"a row for {good} dropped after the bad input:\n{self.daemon.tail()}",
        )  # fmt: skip
        assert row.is_complete == 1 and row.error_kind is None, row
        self.alive()
        assert self.daemon.stop(signal.SIGTERM, timeout=30) == 0, self.daemon.tail()
        assert self.daemon.seen("daemon.stopping")
        assert_no_crash(self.daemon)


def assert_no_crash(daemon: DaemonProcess) -> None:
    tracebacks = [line for line in daemon.raw_lines if "Traceback" in line]
    assert not tracebacks, "\n".join(tracebacks[:5])
    loud = [e for e in daemon.events if e.get("level") in ("error", "critical")]
    assert not loud, loud[:5]
    internal = daemon.seen("file.failed", error_type="internal")
    assert not internal, internal[:5]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    if r.daemon is not None:
        r.daemon.kill()


_GOOD: list[bytes] = []


def good_exr() -> bytes:
    """A small valid, complete file (written once by exrgen, then kept in memory)."""
    if not _GOOD:
        with tempfile.TemporaryDirectory() as scratch:
            _GOOD.append(write_scanline(Path(scratch) / "good.exr").read_bytes())
    return _GOOD[0]


def put(path: str | bytes | os.PathLike[str], data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


# --------------------------------------------------------------------------- generated


def test_hostile_files_and_names(rig: Rig, tmp_path: Path) -> None:
    """Zero bytes, not EXR, truncated, 2^31 windows, 100,000 attributes, awkward names, and
    files that vanish before they can be inspected: each gets the right row, or none."""
    daemon = rig.start()
    many = tiny_exr(b"".join(attr(f"a{i:06d}", "int", struct.pack("<i", i))
                             for i in range(100_000)))  # fmt: skip
    cases: dict[bytes, bytes] = {
        b"zero.exr": b"",
        b"text.exr": b"this is not an OpenEXR file\n" * 4,
        b"png.exr": b"\x89PNG\r\n\x1a\n" + b"\0" * 100,
        b"tall.exr": tiny_exr(window=(0, 0, 0, 2**31 - 1)),  # 2^31 scan lines
        b"wide.exr": tiny_exr(window=(-(2**31), 0, 2**31 - 1, 0)),  # 2^32 pixels wide
        b"with space.0001.exr": tiny_exr(),
        b"new\nline.0002.exr": tiny_exr(),
        b"bad\xff\xfe.0003.exr": tiny_exr(),
        b"n" * 251 + b".exr": tiny_exr(),  # a 255-byte name
        os.path.join(b"d" * 255, b"f" * 251 + b".exr"): tiny_exr(),  # two 255-byte components
    }
    # Truncated copies of a real file: in the magic, the header, the offset table, the data.
    source = write_scanline(tmp_path / "src" / "cut.exr", compression="none", size=(16, 8))
    for cut in truncated_copies(source, tmp_path / "cuts"):
        cases[os.path.join(b"cuts", os.fsencode(cut.name))] = cut.read_bytes()
    assert sum(k.startswith(b"cuts/") for k in cases) == len(truncation_points(source)) == 6

    # The 100,000-attribute file first, twice: both workers are busy with it for a while,
    # so a small file that settles meanwhile waits in the queue and vanishes from there.
    started = time.monotonic()
    put(rig.path(b"many.exr"), many)
    put(rig.path(b"many2.exr"), many)
    late = rig.path(b"late_vanish.0001.exr")
    put(late, tiny_exr())
    daemon.wait_event("file.settled", timeout=20, path=os.fsdecode(late))
    os.unlink(late)
    vanished = [late]
    for i in range(10):  # created and deleted at once: gone before they can settle
        quick = rig.path(f"vanish.{i:04d}.exr")
        put(quick, tiny_exr())
        os.unlink(quick)
        vanished.append(quick)
    for name, data in cases.items():
        os.makedirs(os.path.dirname(rig.path(name)), exist_ok=True)
        put(rig.path(name), data)

    # 100,000 attributes: recorded within a bound time (about 3 s on a laptop for both).
    many_paths = [shown(rig.path(b"many.exr")), shown(rig.path(b"many2.exr"))]
    wait_for(lambda: set(many_paths) <= set(rig.rows()), MANY_BOUND, "100,000 attributes")
    assert time.monotonic() - started < MANY_BOUND
    expected = {shown(rig.path(name)) for name in cases} | set(many_paths)
    rows = rig.wait_rows(expected, timeout=30)
    rig.alive()

    def row(name: bytes) -> Row:
        return rows[shown(rig.path(name))]

    # Errors carry a kind and a message; zero bytes and a truncated header were re-checked
    # until max_wait_seconds, then recorded as errors (not dropped, not "complete").
    assert row(b"zero.exr")[2:6] == (0, None, "empty", "file is empty (0 bytes)")
    for name in (b"text.exr", b"png.exr"):
        assert row(name).error_kind == "not_exr" and row(name).is_complete == 0
        assert "not an OpenEXR file" in row(name).error_message

    # A 2^31-line data window: incomplete, and the reason says why (no error: the header is
    # valid); the part keeps its exact window. 2^32 pixels wide: same, with its own reason.
    tall = row(b"tall.exr")
    assert (tall.is_complete, tall.error_kind) == (0, None)
    assert "2147483648 chunks" in tall.incomplete_reason
    wide = row(b"wide.exr")
    assert (wide.is_complete, wide.error_kind) == (0, None) and wide.incomplete_reason
    parts = {
        r[0]: r[1:]
        for r in rig.catalog.query("SELECT file_path, data_window, width, height FROM parts")
    }
    assert parts[tall.file_path] == ("[0,0,0,2147483647]", 1, 2**31)
    assert parts[wide.file_path] == ("[-2147483648,0,2147483647,0]", 2**32, 1)

    # 100,000 attributes: a complete, lossless record.
    for name in (b"many.exr", b"many2.exr"):
        assert row(name).is_complete == 1 and row(name).error_kind is None
        (count,) = rig.catalog.query(
            "SELECT count(*) FROM attributes WHERE file_path = ?", row(name).file_path
        )[0]
        assert count == 100_008  # 8 required attributes + 100,000

    # Names: the row exists, complete, and the path round-trips to the real bytes; a name
    # that is not UTF-8 is shown with \udcXX escapes and keyed by its real bytes.
    for name in (b"with space.0001.exr", b"new\nline.0002.exr", b"n" * 251 + b".exr",
                 os.path.join(b"d" * 255, b"f" * 251 + b".exr")):  # fmt: skip
        r = row(name)
        assert r.is_complete == 1 and os.fsencode(r.file_path) == rig.path(name), r
        assert r.file_id == file_id(rig.path(name))
    bad = row(b"bad\xff\xfe.0003.exr")
    assert bad.is_complete == 1
    assert bad.file_path == os.fsdecode(rig.path(b"")) + "bad\\udcff\\udcfe.0003.exr"
    assert bad.file_id == file_id(rig.path(b"bad\xff\xfe.0003.exr"))
    frames = dict(rig.catalog.query("SELECT file_path, frame_number FROM files"))
    assert frames[bad.file_path] == 3 and frames[row(b"new\nline.0002.exr").file_path] == 2

    # Truncated anywhere: never complete; an error with its message, or incomplete with
    # its reason; and the same verdict the reader gives for those bytes.
    for name in (name for name in cases if name.startswith(b"cuts/")):
        r = row(name)
        assert r.is_complete == 0, r
        assert (r.error_kind and r.error_message) or r.incomplete_reason, r
        assert_reader_verdict(r, rig.path(name))

    # Vanished: each one was seen going, and none has a row.
    for path in vanished:
        daemon.wait_event("file.deleted", timeout=10, path=os.fsdecode(path))
    rig.still_works_then_stops()
    assert not {shown(p) for p in vanished} & set(rig.rows())


def assert_reader_verdict(row: Row, path: bytes) -> None:
    """The row says what the reader says of the file's bytes."""
    result = inspect_path(os.fsdecode(path))
    kind = result.error.kind if result.error else None
    assert (row.error_kind, bool(row.is_complete)) == (kind, result.complete), (row, result)
    assert row.header_hash == result.header_hash
    assert row.incomplete_reason == result.incomplete_reason


# --------------------------------------------------------------------------- mode 000

#: The capabilities that let root read any file regardless of its mode bits.
SETPRIV = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all"]


class DaemonWithoutDacOverride(DaemonProcess):
    """The daemon as root, but without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so that
    mode bits apply to it as to any user (the interpreter lives under /root, so running it
    as an unprivileged uid is not possible everywhere)."""

    def __init__(self, config: Path, state_dir: Path) -> None:  # as DaemonProcess, via setpriv
        self.config = config
        self.state_dir = state_dir
        self.events = []
        self.raw_lines = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [*SETPRIV, sys.executable, "-m", "exrwatchd", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


def mode_000_blocks(tmp: Path) -> str | None:
    """None when a daemon started by this test cannot read a mode-000 file; else why not."""
    if os.geteuid() != 0:
        return None
    if shutil.which("setpriv") is None:
        return "running as root, and setpriv (to drop CAP_DAC_OVERRIDE) is not installed"
    probe = tmp / "probe.exr"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        result = subprocess.run(
            [*SETPRIV, sys.executable, "-c", f"open({str(probe)!r}, 'rb')"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    finally:
        probe.unlink()
    if "PermissionError" not in result.stderr:
        return f"running as root, and dropping CAP_DAC_OVERRIDE did not help: {result.stderr}"
    return None


def test_unreadable_file(rig: Rig, tmp_path: Path) -> None:
    """Mode 000: an error record 'unreadable' with the OS's reason, and no crash."""
    reason = mode_000_blocks(tmp_path)
    if reason is not None:
        pytest.skip(f"mode 000 cannot be tested here: {reason}")
    rig.start(DaemonWithoutDacOverride(rig.config, rig.state) if os.geteuid() == 0 else None)
    staging = tmp_path / "staging"
    staging.mkdir()
    locked = staging / "locked.0001.exr"
    locked.write_bytes(tiny_exr())
    locked.chmod(0)
    target = rig.watch / locked.name
    os.rename(locked, target)  # arrives already unreadable
    rows = rig.wait_rows({str(target)}, timeout=20)
    row = rows[str(target)]
    assert (row.is_complete, row.error_kind, row.header_hash) == (0, "unreadable", None)
    assert os.strerror(errno.EACCES) in row.error_message
    rig.still_works_then_stops()


# --------------------------------------------------------------------------- symlinks


def make_loops(directory: Path) -> None:
    """Two links back up (to the parent and to the directory itself): walking it while
    following links without loop detection never ends (2 ** depth paths)."""
    os.symlink("..", directory / "up")
    os.symlink(".", directory / "self")


@pytest.mark.parametrize("backend", ["inotify", "poll"])
def test_symlink_loops_with_follow_symlinks(tmp_path: Path, backend: str) -> None:
    """Directory loops present at start and moved in later, and symlinks that loop onto
    themselves: the daemon starts, every real file is recorded once, at its real path, the
    looping links themselves are not files (no row, as for a dangling link), and it stops."""
    rig = Rig(tmp_path, backend=backend, follow_symlinks=True)
    try:
        w = rig.watch
        (w / "a").mkdir()
        put(w / "a" / "x.0001.exr", tiny_exr())
        make_loops(w / "a")
        os.symlink("self_at_start.exr", w / "self_at_start.exr")
        daemon = rig.start()
        rig.wait_rows({str(w / "a" / "x.0001.exr")}, timeout=20)

        # A directory with loops moved in, a new file at the top, and file-level loops.
        staging = tmp_path / "staging" / "b"
        staging.mkdir(parents=True)
        put(staging / "y.0001.exr", tiny_exr())
        make_loops(staging)
        os.rename(staging, w / "b")
        put(w / "z.0001.exr", tiny_exr())
        os.symlink("self.exr", w / "self.exr")
        os.symlink("q.exr", w / "p.exr")
        os.symlink("p.exr", w / "q.exr")
        (w / "c").mkdir()  # loops made inside a watched directory, then a file below them
        make_loops(w / "c")
        put(w / "c" / "v.0001.exr", tiny_exr())

        real = {str(w / "a" / "x.0001.exr"), str(w / "b" / "y.0001.exr"),
                str(w / "z.0001.exr"), str(w / "c" / "v.0001.exr")}  # fmt: skip
        rows = rig.wait_rows(real, timeout=20)
        assert all(r.is_complete == 1 for r in rows.values()), rows
        if backend == "inotify":  # the poller never takes them for files in the first place
            for name in ("self.exr", "p.exr", "q.exr"):
                daemon.wait_event("file.deleted", timeout=10, path=str(w / name))
        rig.still_works_then_stops()
        paths = set(rig.rows())
        assert paths == real | {str(w / "after.0001.exr")}, sorted(paths)
    finally:
        if rig.daemon is not None:
            rig.daemon.kill()


# --------------------------------------------------------------------------- corpus


def corpus_or_skip() -> Path:
    root = corpus_path()
    if root is None:
        pytest.skip(f"reference corpus not found at {corpus_location()} (set EXRWATCHD_CORPUS)")
    return root


@pytest.mark.corpus
def test_damaged_and_truncated_corpus_files(rig: Rig) -> None:
    """All 186 entries of Damaged/ and truncated copies of every other corpus file at six
    offsets: one row each, with the reader's verdict for those bytes; never complete when
    truncated."""
    corpus = corpus_or_skip()
    damaged = sorted(p for p in (corpus / "Damaged").iterdir() if p.is_file())
    assert len(damaged) == 186  # README.rst included: one more file that is not an EXR
    originals = corpus_exr_files(corpus)
    assert originals
    rig.start()
    expected: dict[str, str] = {}  # catalog path -> what it is
    for source in damaged:
        target = rig.watch / "damaged" / f"{source.name}.exr"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(source, target)
        expected[str(target)] = "damaged"
    for source in originals:
        relative = source.relative_to(corpus).parent
        for cut in truncated_copies(source, rig.watch / "truncated" / relative):
            expected[str(cut)] = "truncated"
    assert sum(v == "truncated" for v in expected.values()) >= 5 * len(originals)

    rows = rig.wait_rows(set(expected), timeout=60)
    rig.alive()
    kinds: dict[str, int] = {}
    for path, what in expected.items():
        row = rows[path]
        assert row.error_message if row.error_kind else row.error_message is None, row
        if what == "truncated":
            assert row.is_complete == 0, row
            assert row.error_kind or row.incomplete_reason, row
        assert_reader_verdict(row, os.fsencode(path))
        key = row.error_kind or ("complete" if row.is_complete else "incomplete")
        kinds[f"{what}:{key}"] = kinds.get(f"{what}:{key}", 0) + 1
    # Of the 186 damaged files the reader takes 4 for complete, 14 for incomplete; the rest
    # are errors (bad_attribute, bad_header, truncated_header, not_exr).
    assert kinds.get("damaged:complete", 0) < 10, kinds
    assert rig.catalog.orphans() == 0
    rig.still_works_then_stops()
