"""A one-line progress display for `exrwatchd scan` on a terminal."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from exrwatchd.daemon import Daemon


class Progress:
    """Redraws at most every `interval` seconds: found, inspected, persisted, rate, ETA."""

    def __init__(self, stream: TextIO, interval: float = 0.25) -> None:
        self._stream = stream
        self._interval = interval
        self._started = time.monotonic()
        self._last = 0.0

    def _line(self, daemon: Daemon) -> str:
        if daemon.pipeline is None:
            return "starting"
        c = daemon.pipeline.counters
        persisted = daemon.sink_loop.delivered if daemon.sink_loop else 0
        done = c.inspected + c.failed + c.incomplete
        elapsed = max(1e-6, time.monotonic() - self._started)
        rate = done / elapsed
        remaining = max(0, c.detected - done)
        eta = f"{remaining / rate:5.0f}s" if rate > 0 and remaining else "    -"
        return (f"found {c.detected:>9,}  inspected {done:>9,}  persisted {persisted:>9,}  "
                f"{rate:8,.0f}/s  eta {eta}")  # fmt: skip

    def __call__(self, daemon: Daemon) -> None:
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._stream.write("\r" + self._line(daemon))
            self._stream.flush()

    def finish(self, daemon: Daemon) -> None:
        self._stream.write("\r" + self._line(daemon) + "\n")
        self._stream.flush()
