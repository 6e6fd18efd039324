"""The settle rule: when has a file stopped changing long enough to be inspected?

A path is handed on only when it has been quiet for `quiet_seconds` and two stats that far
apart agree on (size, mtime_ns, inode). IN_CLOSE_WRITE shortens the wait for local writers
but is never trusted alone: the two agreeing stats are still required. Files that inspect as
incomplete come back here and are re-checked with exponential backoff until
`max_wait_seconds` from their first sighting (or not at all when nothing has written to
them for that long already).

Pure state plus an injectable clock and stat function: no threads, no sleeping. The daemon
calls `poll()` in a loop and sleeps until `next_due()`.
"""

from __future__ import annotations

import errno
import heapq
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from exrwatchd.filesig import FileSig, is_gone, sig_of
from exrwatchd.watch._poll_walk import unmounted_above

EventKind = Literal["changed", "closed", "gone"]


@dataclass(frozen=True, slots=True)
class SettledFile:
    """Quiet and stable: ready for inspection."""

    path: str
    sig: FileSig
    first_seen: float  # clock time of the first event of this episode
    attempt: int  # 0 for the first inspection, n for the n-th re-check of an incomplete file


@dataclass(frozen=True, slots=True)
class Vanished:
    """The path no longer exists (deleted, or renamed away before it settled)."""

    path: str


@dataclass(frozen=True, slots=True)
class Unreadable:
    """The path could not be stat'ed (EACCES, EIO, ESTALE, ...): not gone, looked at again
    with backoff until `max_wait_seconds`, then left to the next reconciliation."""

    path: str
    error: OSError


@dataclass(slots=True)
class _Pending:
    first_seen: float
    due: float
    sig: FileSig | None = None  # None until the first stat
    quiet_from: float = 0.0  # when `sig` was first seen unchanged
    attempt: int = 0
    closed: bool = False
    seq: int = 0
    unreadable: int = 0  # stats in a row that failed with something other than ENOENT


def stat_sig(path: str) -> FileSig | None:
    """(size, mtime_ns, inode) of a regular file; None when it is missing or not a file (a
    symlink loop included).

    Raises OSError when the path cannot be read now (EACCES, EIO, ESTALE, ENOTCONN, ...):
    only ENOENT and ENOTDIR mean it is gone, and not even they below a mount point that is
    unmounted (ENODEV, its `filename` the mount point).
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None  # a symlink that never resolves: no file, like a dangling link
        if not is_gone(exc):
            raise
        unmounted = unmounted_above(path)
        if unmounted is not None:
            raise unmounted from None
        return None
    if (st.st_mode & 0o170000) != 0o100000:
        return None
    return sig_of(st)


class Settler:
    """Collapses events per path and says which paths are ready.

    Memory is one small entry per path in flight; events for a path already pending only
    move its timers, so a burst of duplicate events costs nothing extra.
    """

    def __init__(
        self,
        *,
        quiet_seconds: float,
        max_wait_seconds: float,
        recheck_initial: float,
        recheck_max: float,
        clock: Callable[[], float],
        stat: Callable[[str], FileSig | None] = stat_sig,
        close_quiet_seconds: float = 0.2,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.quiet = quiet_seconds
        self.max_wait = max_wait_seconds
        self.recheck_initial = recheck_initial
        self.recheck_max = recheck_max
        self.close_quiet = min(close_quiet_seconds, quiet_seconds)
        self._clock = clock
        self._stat = stat
        self._wall_clock = wall_clock  # only to compare with file mtimes, never to schedule
        self._pending: dict[str, _Pending] = {}
        self._heap: list[tuple[float, int, str]] = []  # (due, seq, path); stale items skipped
        self._seq = 0

    def retime(self, *, quiet_seconds: float, max_wait_seconds: float, recheck_initial: float,
               recheck_max: float) -> None:  # fmt: skip
        """New timings (a reload); paths already pending keep their schedule."""
        self.quiet = quiet_seconds
        self.max_wait = max_wait_seconds
        self.recheck_initial = recheck_initial
        self.recheck_max = recheck_max
        self.close_quiet = min(self.close_quiet, quiet_seconds)

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, path: str) -> bool:
        return path in self._pending

    def _schedule(self, path: str, entry: _Pending, due: float) -> None:
        self._seq += 1
        entry.due, entry.seq = due, self._seq
        heapq.heappush(self._heap, (due, self._seq, path))

    def observe(self, path: str, kind: EventKind = "changed") -> None:
        """An event for `path`: look at it now.

        The look restarts the quiet period if the file changed; the agreeing second look
        follows a quiet period later. Many events before the next poll cost one stat.
        """
        now = self._clock()
        entry = self._pending.get(path)
        if entry is None:
            entry = self._pending[path] = _Pending(first_seen=now, due=now)
        entry.closed = kind == "closed"
        self._schedule(path, entry, now)

    def recheck(self, path: str, first_seen: float, attempt: int,
                mtime_ns: int | None = None) -> bool:  # fmt: skip
        """An inspection found `path` incomplete. Schedule another look with backoff.

        Returns False when `max_wait_seconds` since `first_seen` has passed, or when the
        file's mtime (as inspected) is already that old: the caller records the file as
        incomplete and stops waiting for it.
        """
        now = self._clock()
        if now - first_seen >= self.max_wait:
            return False
        # Nothing has written to it for the whole give-up age (a frame cut short days ago,
        # found by a scan or after a restart): waiting from our first sighting would only
        # hold it, and a one-shot scan, for another max_wait. An mtime in the future (a
        # clock stepped back) proves nothing and keeps the rule above.
        if mtime_ns is not None and self._wall_clock() - mtime_ns / 1e9 >= self.max_wait:
            return False
        delay = min(self.recheck_max, self.recheck_initial * 2 ** max(0, attempt))
        entry = self._pending.get(path)
        if entry is None:
            entry = self._pending[path] = _Pending(first_seen=first_seen, due=now)
        entry.attempt = max(entry.attempt, attempt + 1)
        entry.first_seen = min(entry.first_seen, first_seen)
        entry.sig = None  # a fresh pair of agreeing stats is needed
        self._schedule(path, entry, now + delay)
        return True

    def next_due(self) -> float | None:
        """Clock time of the earliest scheduled check, or None when nothing is pending."""
        while self._heap:
            due, seq, path = self._heap[0]
            entry = self._pending.get(path)
            if entry is not None and entry.seq == seq:
                return due
            heapq.heappop(self._heap)
        return None

    def _unreadable(self, path: str, entry: _Pending, now: float) -> None:
        """Look at an unreadable path again later; give up (dropping it, never deleting it)
        after max_wait: the file is on disk, so a reconciliation finds it once readable."""
        if now - entry.first_seen >= self.max_wait:
            del self._pending[path]
            return
        delay = min(self.recheck_max, self.recheck_initial * 2**entry.unreadable)
        entry.sig, entry.unreadable = None, entry.unreadable + 1
        self._schedule(path, entry, now + delay)

    def poll(self, limit: int | None = None) -> list[SettledFile | Vanished | Unreadable]:
        """Check every path that is due; return those that settled or vanished, and those
        that could not be stat'ed (Unreadable: still pending, looked at again later).

        `limit` caps how many settled files are returned (backpressure: the rest stay
        pending, due now, and come out of a later poll). Once it is reached no further path
        is stat'ed: under backpressure the settle loop polls often, and re-stat'ing every
        due path each time burnt the CPU the journal writer needed to catch up.
        """
        now = self._clock()
        out: list[SettledFile | Vanished | Unreadable] = []
        settled = 0
        while self._heap and self._heap[0][0] <= now:
            if limit is not None and settled >= limit:
                break
            _, seq, path = heapq.heappop(self._heap)
            entry = self._pending.get(path)
            if entry is None or entry.seq != seq:
                continue
            try:
                sig = self._stat(path)
            except OSError as exc:
                out.append(Unreadable(path, exc))
                self._unreadable(path, entry, now)
                continue
            entry.unreadable = 0
            if sig is None:
                del self._pending[path]
                out.append(Vanished(path))
                continue
            if sig != entry.sig:
                entry.sig, entry.quiet_from = sig, now
                wait = self.close_quiet if entry.closed else self.quiet
                self._schedule(path, entry, now + wait)
                continue
            wait = self.close_quiet if entry.closed else self.quiet
            if now - entry.quiet_from < wait:
                self._schedule(path, entry, entry.quiet_from + wait)
                continue
            del self._pending[path]
            settled += 1
            out.append(SettledFile(path, sig, entry.first_seen, entry.attempt))
        return out
