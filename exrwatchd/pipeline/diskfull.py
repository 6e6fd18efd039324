"""A full disk under the journal: telling it from other write failures, and riding it out.

A full file system (ENOSPC), a quota (EDQUOT) or the file size limit (RLIMIT_FSIZE: EFBIG;
Python ignores SIGXFSZ, so the write fails instead of killing the process) all end when
space returns, so the journal's writers wait for it instead of dying: SQLite rolls the
failed transaction back, and the same batch is written again later.

SQLite says SQLITE_FULL only for some of these; EFBIG, and ENOSPC met while growing the
-shm file, come back as a generic SQLITE_IOERR, and Python does not expose the errno. An
I/O error therefore counts as "disk full" only when the file system is nearly full or a
journal file has reached RLIMIT_FSIZE; any other I/O error still stops the writer.

`durably` is the one "journal locked or disk full -> wait" loop both writers of the journal
(the journal writer and the sink loop) run their writes in.
"""

from __future__ import annotations

import errno
import resource
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from exrwatchd.journal import JournalError
from exrwatchd.logs import get_logger

log = get_logger("exrwatchd.diskfull")

#: Below this many free bytes an SQLite I/O error is taken for a full disk.
LOW_SPACE = 1 << 20
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_SQLITE_FULL, _SQLITE_IOERR = 13, 10
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def free_bytes(path: Path) -> int | None:
    """Free bytes on the file system of `path`'s directory; None if it cannot be read."""
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return None


def _size_limit() -> int | None:
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _at_size_limit(path: Path, limit: int) -> bool:
    # A failing write lands at the limit; the margin covers the last, partial frame.
    for name in (path, path.with_name(path.name + "-wal")):
        try:
            if name.stat().st_size + LOW_SPACE >= limit:
                return True
        except OSError:
            continue
    return False


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def full_reason(exc: BaseException, path: Path) -> str | None:
    """Why writing `path` (an SQLite file) failed for want of space, or None if it did not."""
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.errno in _FULL_ERRNOS:
            return _explain(path, errno.errorcode.get(cause.errno or 0, "ENOSPC"))
        if not isinstance(cause, sqlite3.Error):
            continue
        code = (getattr(cause, "sqlite_errorcode", None) or 0) & 0xFF
        if code == _SQLITE_FULL:
            return _explain(path, "SQLITE_FULL")
        if code == _SQLITE_IOERR:
            limit = _size_limit()
            if limit is not None and _at_size_limit(path, limit):
                return f"file size limit reached (RLIMIT_FSIZE {limit} bytes)"
            free = free_bytes(path)
            if free is not None and free < LOW_SPACE:
                return _explain(path, "I/O error")
    return None


def _explain(path: Path, what: str) -> str:
    free = free_bytes(path)
    where = f"{free} bytes free on {path.parent}" if free is not None else str(path.parent)
    return f"no space left ({what}; {where})"


class DiskFull:
    """One writer's disk-full episode: when it began, why, and how long to wait.

    `failed` logs `journal.disk_full` at error level on the first failure and then at most
    once a minute; `recovered` logs `journal.disk_space_recovered` when a write went through
    again. Tries back off from `backoff[0]` to `backoff[1]` seconds, and `wait` cuts a wait
    short once the free space grew (so recovery does not wait out a long backoff).
    """

    LOUD_INTERVAL = 60.0

    def __init__(
        self, path: Path, *, writer: str, backoff: tuple[float, float] = (1.0, 30.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.path = Path(path)
        self.writer = writer
        self.backoff = backoff
        self.reason: str | None = None
        self.since: float | None = None  # clock time
        self.since_wall: float | None = None  # time.time(), for status.json
        self._clock = clock
        self._failures = 0
        self._last_loud = 0.0
        self._space_then: tuple[int | None, int | None] = (None, None)

    def failed(self, exc: BaseException, **fields: Any) -> float | None:
        """Seconds to wait before trying again, or None when `exc` is not a full disk."""
        reason = full_reason(exc, self.path)
        if reason is None:
            return None
        now = self._clock()
        if self.since is None:
            self.since, self.since_wall = now, time.time()
        self._failures += 1
        if self._failures == 1 or now - self._last_loud >= self.LOUD_INTERVAL:
            self._last_loud = now
            log.error("journal.disk_full", path=str(self.path), reason=reason,
                      free_bytes=free_bytes(self.path), error=str(exc), writer=self.writer,
                      full_for_seconds=round(now - self.since, 1), attempts=self._failures,
                      **fields)  # fmt: skip
        self.reason = reason
        self._space_then = (free_bytes(self.path), _size_limit())
        low, high = self.backoff
        return min(high, low * 2 ** min(self._failures - 1, 16))

    def recovered(self, **fields: Any) -> bool:
        """A write went through: end the episode (and say so). False if there was none."""
        if self.since is None:
            return False
        log.warning("journal.disk_space_recovered", path=str(self.path), writer=self.writer,
                    full_for_seconds=round(self._clock() - self.since, 1),
                    free_bytes=free_bytes(self.path), attempts=self._failures,
                    **fields)  # fmt: skip
        self.reason = self.since = self.since_wall = None
        self._failures = 0
        return True

    def describe(self) -> str | None:
        """The episode for operators (status.json, /healthz, STATUS=), or None."""
        if self.reason is None or self.since is None:
            return None
        seconds = self._clock() - self.since
        return (f"journal {self.path} cannot be written: {self.reason}, for {seconds:.0f} s; "
                "new work waits until space returns")  # fmt: skip

    def wait(self, stop: threading.Event, delay: float) -> bool:
        """Sleep up to `delay` s, less once space returned. True when `stop` was set."""
        end = self._clock() + delay
        while (left := end - self._clock()) > 0:
            if stop.wait(min(1.0, left)):
                return True
            if self._space_returned():
                return False
        return stop.is_set()

    def _space_returned(self) -> bool:
        free, limit = self._space_then
        now_free, now_limit = free_bytes(self.path), _size_limit()
        if now_limit != limit and (now_limit is None or (limit is not None and now_limit > limit)):
            return True
        return free is not None and now_free is not None and now_free > free + LOW_SPACE


def locked_out(exc: BaseException) -> bool:
    """The journal was locked by another connection for longer than busy_timeout."""
    cause: BaseException | None = exc
    for _ in range(8):
        if cause is None:
            return False
        code = (getattr(cause, "sqlite_errorcode", None) or 0) & 0xFF
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


T = TypeVar("T")


class _Stopped:
    def __repr__(self) -> str:
        return "STOPPED"


#: What `durably` returns when told to stop while it waited.
STOPPED: Final = _Stopped()


def durably(
    call: Callable[[], T], full: DiskFull, stop: threading.Event, *,
    waiting: Callable[[], int] | None = None, on_full: Callable[[], None] | None = None,
) -> T | _Stopped:  # fmt: skip
    """`call()` (a journal write), waiting out a journal locked by another connection past
    busy_timeout (an operator's long transaction: not a reason to die) or a full disk;
    STOPPED if `stop` was set meanwhile. Any other error is raised. The caller ends the
    episode with `full.recovered()` once the call went through.

    `waiting` counts what waits behind the write (for the logs); `on_full` runs at each
    disk-full failure, before the wait.
    """
    while True:
        try:
            return call()
        except JournalError as exc:
            fields = {} if waiting is None else {"waiting": waiting()}
            if locked_out(exc):
                log.warning("journal.busy", path=str(full.path), error=str(exc), **fields)
                if stop.wait(0.1):
                    return STOPPED
                continue
            delay = full.failed(exc, **fields)
            if delay is None:
                raise
            if on_full is not None:
                on_full()
            if full.wait(stop, delay):
                return STOPPED
