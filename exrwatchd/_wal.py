"""WAL checkpoints on a thread of their own, so a commit does not wait for one.

SQLite checkpoints a WAL database in the connection that commits past 1,000 pages: that
commit first copies the whole WAL into the database file (read every frame, write every
page, fsync). In the sink process that was 12% of the sink thread's time, on the one
thread a catch-up waits for. A `Checkpointer` does the same copy from a connection and a
thread of its own, where it overlaps the next batch, on the other core when one is free.
The checkpoint is one C call that lets go of the GIL for its whole length, so the thread
does not take turns with the committing thread row by row (as a second Python thread
running `executemany` would: docs/benchmarks.md, "WAL checkpoints off the committing
thread").

Guarantees:
- Durability is SQLite's own: a checkpoint only copies frames that are committed, and it
  fsyncs the WAL before and the database after (the checkpointer's `synchronous=FULL`).
- The same policy as SQLite's own: a checkpoint once the WAL holds 1,000 frames (told by
  the -wal file's frame headers), so a trickle of commits costs no more fsyncs than
  before, and a WAL that cannot reach 1,000 frames (a file size limit, a full disk) is
  left as it was.
- The WAL stays bounded if the thread falls behind or fails: the writing connection keeps
  automatic checkpoints at `BACKSTOP_PAGES`, ten times the thread's threshold.
- A checkpoint never blocks a writer or a reader (PASSIVE); one that finds the checkpoint
  lock taken, or a full disk, is simply tried again at the next nudge.
"""

from __future__ import annotations

import contextlib
import sqlite3
import struct
import threading
from pathlib import Path

__all__ = ["BACKSTOP_PAGES", "THRESHOLD_FRAMES", "Checkpointer", "wal_holds_frames"]

#: The writing connection's own `wal_autocheckpoint`, for when the thread is behind or gone.
BACKSTOP_PAGES = 10_000

#: Frames not yet copied that make a checkpoint worth it: SQLite's own default
#: (SQLITE_DEFAULT_WAL_AUTOCHECKPOINT), so what is checkpointed when stays as it was.
THRESHOLD_FRAMES = 1_000

# The WAL file's own headers (https://sqlite.org/fileformat2.html#walformat), big-endian:
# the file header (32 bytes) holds the page size and two salts, and every frame's header
# (24 bytes, before its page) holds the salts of the generation it was written in. When a
# writer starts the WAL over after a checkpoint it changes the salts, so frame n belongs to
# the current generation when its salts are the file header's. SQLite's Python module has
# no wal_hook (which would tell the frames of each commit), and the -shm file, which also
# counts them, must not be opened here: closing any descriptor of a file drops every POSIX
# lock the process holds on it, SQLite's WAL locks included. Nobody locks the -wal file.
_WAL_HEADER = struct.Struct(">IIIIII")  # magic, version, page size, sequence, salt-1, salt-2
_WAL_HEADER_SIZE = 32  # and two checksums
_WAL_MAGIC = (0x377F0682, 0x377F0683)
_FRAME_HEADER_SIZE = 24


def wal_holds_frames(wal: Path, count: int) -> bool:
    """Whether the WAL at `wal` holds at least `count` frames of its current generation
    (False when that cannot be told: no file, another format)."""
    try:
        with open(wal, "rb") as f:
            header = f.read(_WAL_HEADER_SIZE)
            if len(header) < _WAL_HEADER_SIZE:
                return False
            magic, _, page_size, _, _, _ = _WAL_HEADER.unpack_from(header)
            if magic not in _WAL_MAGIC or not page_size:
                return False
            f.seek(_WAL_HEADER_SIZE + (count - 1) * (_FRAME_HEADER_SIZE + page_size) + 8)
            salts = f.read(8)
    except OSError:
        return False
    return salts == header[16:24]


class Checkpointer:
    """Checkpoints the WAL of the database at `path`, when nudged after a commit and
    the WAL holds `THRESHOLD_FRAMES`, as the committing connection would have."""

    def __init__(self, path: Path, *, name: str) -> None:
        self.path = path
        self._wal = path.with_name(path.name + "-wal")
        #: Nudges looked at, and checkpoints run (for tests and benchmarks).
        self.turns = 0
        self.runs = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._conn: sqlite3.Connection | None = None
        self._started = self._gave_up = False
        self._starting = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def nudge(self) -> None:
        """A commit happened. The first nudge opens the checkpointing connection and starts
        the thread, so a database that is only read costs neither."""
        if not self._started:
            with self._starting:
                if not (self._started or self._gave_up or self._stop.is_set()):
                    self._start()
        self._wake.set()

    def _start(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA synchronous = FULL")
            self._conn = conn
            self._thread.start()
        except (sqlite3.Error, RuntimeError):  # RuntimeError: no thread to be had
            self._gave_up = True  # the writer's own checkpoints take over (BACKSTOP_PAGES)
            return
        self._started = True

    @property
    def running(self) -> bool:
        """Whether its thread is alive."""
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop the thread (after a checkpoint under way) and close its connection."""
        with self._starting:
            self._stop.set()
        self._wake.set()
        if self._started:
            self._thread.join()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self) -> None:
        assert self._conn is not None
        while True:
            self._wake.wait()
            if self._stop.is_set():
                return
            self._wake.clear()
            if wal_holds_frames(self._wal, THRESHOLD_FRAMES):
                # A busy checkpoint lock, a full disk, an I/O error: the next nudge tries
                # again, and meanwhile the writer's backstop keeps the WAL bounded.
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.runs += 1
            self.turns += 1
