"""An inotify instance whose kernel queue is emptied by a thread that does nothing else.

watchdog (7.1.0) reads the inotify file descriptor and handles what it read in one thread:
every event is parsed, its path built and its move paired, in Python, about 7 us each, before
the next read. A writer on the box makes events faster than that whenever this thread gets
less than a whole core: a local burst of 20,000 frames is 40,000 events in under a second,
and the kernel queues at most ``fs.inotify.max_queued_events`` (16,384 by default) before it
drops the rest and reports an overflow, which costs the daemon a full rescan of the tree.
With the main process on one CPU (``[daemon] cpu_affinity``), every such burst overflowed.

Here a second thread only reads: it wakes when the descriptor is readable, copies what the
kernel holds into memory, and sleeps again, holding the interpreter lock for a few
microseconds per read of up to `READ_SIZE` bytes. watchdog's thread parses and handles those
bytes in the order they were read, exactly as it did what it read itself. While that thread
has yet to take the last read, the reader waits up to `GATHER_SECONDS` before reading again,
so that a burst is read in a few large reads, not a wake-up of both threads per event.

The copy is bounded: past `BACKLOG_BYTES` not yet handled, the reader stops reading, the
kernel's queue fills, and the kernel reports its overflow as before; so memory stays bounded
and nothing is lost without the daemon hearing of it. A reader that fails says so on
watchdog's logger, at error (the watcher takes that for lost events, and a rescan follows),
and `reading()` turns false (the daemon starts a new observer).

watchdog has no setting for this. Used with the watch groups of _inotify_loops only (watchdog
7.1.0); see there.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver
from watchdog.observers.inotify import InotifyEmitter, InotifyObserver
from watchdog.observers.inotify_c import InotifyFD

_log = logging.getLogger("watchdog.observers.inotify_c")

#: Bytes asked of the kernel per read. An event is 16 bytes and its name padded to 16, so
#: this is some 4,000-8,000 events: one wake-up of the reader empties a 16,384-event queue
#: in two or three reads.
READ_SIZE = 256 * 1024

#: How long the reader lets events gather in the kernel's queue while the handler is busy:
#: a 16,384-event queue would take over a million events a second to fill in that time.
GATHER_SECONDS = 0.01

#: Read but not yet handled, at most; 8 MiB is 130,000-260,000 events, 10-20 kernel queues.
BACKLOG_BYTES = 8 * 1024 * 1024


class DrainedInotifyFD(InotifyFD):
    """watchdog's InotifyFD, with the kernel's queue read by a thread of its own."""

    backlog_limit: int = BACKLOG_BYTES
    """Read but not yet handled, at most (bytes); then the kernel's queue takes the rest."""

    def __init__(self) -> None:
        super().__init__()
        self._read: deque[bytes] = deque()
        self._read_bytes = 0
        self._read_done = False  # the reader has stopped (closed, or failed)
        self._read_changed = threading.Condition(threading.Lock())
        self._reader = threading.Thread(target=self._read_kernel_queue, name="inotify-reader")
        self._reader.daemon = True

    def start(self) -> None:
        self._reader.start()
        super().start()

    def close(self) -> None:
        super().close()
        with self._read_changed:  # a reader held back by the bound must see it
            self._read_changed.notify_all()

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        self._reader.join(timeout)

    def backlog(self) -> int:
        """Bytes read from the kernel that watchdog's thread has yet to handle."""
        with self._read_changed:
            return self._read_bytes

    def reading(self) -> bool:
        """Both threads run: the kernel's queue is read, and what was read is handled."""
        return self.is_alive() and self._reader.is_alive()

    def _read_kernel_queue(self) -> None:
        try:
            self._read_until_closed()
        except Exception:
            # Said on watchdog's logger, at error, like its own failures: the watcher turns
            # that into lost events, and a rescan; and `reading()` turns false, so the daemon
            # starts a new observer.
            _log.exception("reading the kernel's queue failed")
            with self._lock:  # no read is under way: close() releases the descriptor itself
                self._is_reading = False
        finally:
            with self._read_changed:  # what was read is still handled, then nothing waits
                self._read_done = True
                self._read_changed.notify_all()

    def _read_until_closed(self) -> None:
        while True:
            with self._read_changed:
                # Past the bound, leave events in the kernel's queue until some are handled.
                self._read_changed.wait_for(
                    lambda: self._read_bytes < self.backlog_limit or self._closed
                )
            # watchdog's read: waits for the descriptor or for close(), and returns b"" once
            # closed (having released the descriptor).
            chunk = super()._read_event_buffer(READ_SIZE)
            if not chunk:
                if self._closed:
                    return  # _read_kernel_queue marks the reading done
                continue
            with self._read_changed:
                self._read.append(chunk)
                self._read_bytes += len(chunk)
                self._read_changed.notify_all()
                # While watchdog's thread has yet to take what was read, let events gather
                # in the kernel's queue: one read then takes many, where reading at once
                # would wake both threads for every few events of a burst. An idle handler
                # takes a read at once, so a lone event is not held up.
                self._read_changed.wait_for(
                    lambda: not self._read or self._closed, timeout=GATHER_SECONDS
                )

    def _read_event_buffer(self, event_buffer_size: int) -> bytes:
        """What the reader thread read, in order, up to `READ_SIZE` at a time (whole events);
        b"" once the reader has stopped (closed, or failed) and all of it was handed out."""
        with self._read_changed:
            self._read_changed.wait_for(lambda: self._read or self._read_done)
            if not self._read:
                self._stopped_event.set()  # nothing more will come: run() returns
                return b""
            chunks = [self._read.popleft()]
            size = len(chunks[0])
            while self._read and size + len(self._read[0]) <= READ_SIZE:
                chunks.append(self._read.popleft())
                size += len(chunks[-1])
            self._read_bytes -= size
            self._read_changed.notify_all()
            return b"".join(chunks)


class DrainedInotifyObserver(InotifyObserver):
    """watchdog's InotifyObserver over a DrainedInotifyFD: one inotify instance per
    observer, stopped with it, as watchdog's own."""

    def __init__(self, *, timeout: float = DEFAULT_OBSERVER_TIMEOUT) -> None:
        # InotifyObserver.__init__ would start a plain InotifyFD (its own thread and
        # inotify instance) for nothing; it does no more than this with its own class.
        self._inotify_fd: DrainedInotifyFD = DrainedInotifyFD()
        self._inotify_fd.start()
        BaseObserver.__init__(self, InotifyEmitter, timeout=timeout, inotify_fd=self._inotify_fd)

    def reading(self) -> bool:
        """Its inotify instance's threads both run (DrainedInotifyFD.reading)."""
        return self._inotify_fd.reading()
