"""The local catalog's file: noticing that it was deleted or replaced under an open sink.

SQLite keeps writing to the inode it opened, so a catalog.db unlinked (or renamed over)
while the daemon runs would swallow every later row where nobody can read it. LocalSink
remembers the (st_dev, st_ino) of the file it opened and compares the path's with it (one
stat, once per sink-loop turn and in health()); pipeline.resend_if_lost acts on it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

Identity = tuple[int, int]


def identity_of(fd: int) -> Identity:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def lost_reason(path: Path, opened: Identity | None) -> str | None:
    """Why `path` is no longer the file `opened`: "deleted" or "replaced"; "missing" when
    nothing was opened and there is no file; None otherwise, or when the stat fails (the
    next write reports that problem itself)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing" if opened is None else "deleted"
    except OSError:
        return None
    if opened is None or (st.st_dev, st.st_ino) == opened:
        return None
    return "replaced"


class LostCatalog:
    """LocalSink's part that notices a lost catalog file and opens a new one."""

    path: Path
    _conn: sqlite3.Connection | None
    _identity: Identity | None
    _lost: str | None  # lost, `resend` done, the new file not opened yet

    def open(self) -> None: ...  # LocalSink's

    def close(self) -> None: ...  # LocalSink's

    def lost(self) -> str | None:
        """Why the catalog file is no longer the one this sink has open: "deleted" or
        "replaced"; "missing" when it is not open and there is none; else None."""
        return lost_reason(self.path, self._identity if self._conn is not None else None)

    def recover_lost(self, resend: Callable[[str], None]) -> str | None:
        """If the catalog was lost (see `lost`): call `resend(reason)`, which must see to it
        that everything is sent again, then open the file now at the path (creating it).
        Returns the reason, or None when nothing was lost. When the open fails
        (SinkUnavailable), the next call tries it again without another `resend`."""
        reason = self._lost or self.lost()
        if reason is None:
            return None
        if self._lost is None:
            resend(reason)
            self._lost = reason
        # A -wal the old file left behind is no danger: SQLite deletes the -wal of a
        # database of zero pages rather than replay it (test_local_sink checks).
        self.close()
        self.open()
        self._lost = None
        return reason
