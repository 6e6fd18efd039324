"""The periodic `progress` line: per-file work summed up, once per interval, at info.

Per-file events (`file.settled`, `file.inspected`, `sink.persisted`, `file.deleted`) are at
debug: at catch-up rates (thousands of files a second) one info line per file would cost more
CPU than reading the header, and journald's per-service rate limit (10,000 lines per 30 s by
default) would drop most of them, warnings included. At info an operator sees instead one line
per second while work is being done, and none while idle.

One thread owns each `ProgressLine` (the settle loop, the sink loop): no locks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from exrwatchd.logs import get_logger

__all__ = ["PROGRESS_INTERVAL", "ProgressLine"]

#: Seconds between two progress lines while work is being done.
PROGRESS_INTERVAL = 1.0


class ProgressLine:
    """Logs `event` with the counters that changed since its last line, at most once per
    interval; `gauges` (queue depths and the like) ride along as they are now."""

    def __init__(
        self, event: str, counts: Callable[[], Mapping[str, int]], *,
        gauges: Callable[[], Mapping[str, object]] | None = None,
        interval: float = PROGRESS_INTERVAL, logger_name: str = "exrwatchd.progress",
    ) -> None:  # fmt: skip
        self._event = event
        self._counts = counts
        self._gauges = gauges
        self._interval = interval
        self._log = get_logger(logger_name)
        self._last: dict[str, int] = dict(counts())
        self._last_at: float | None = None
        self._next_at = 0.0

    def tick(self, now: float) -> None:
        """Log a line if the interval has passed since the last one and anything changed."""
        if now < self._next_at:
            return
        self._next_at = now + self._interval
        self.flush(now)

    def flush(self, now: float) -> None:
        """Log what changed since the last line now, whatever the interval (at stop)."""
        current = dict(self._counts())
        changed = {k: v - self._last.get(k, 0) for k, v in current.items()
                   if v != self._last.get(k, 0)}  # fmt: skip
        since, self._last_at = self._last_at, now
        self._last = current
        if not changed:
            return
        fields: dict[str, object] = dict(changed)
        if since is not None:
            fields["interval_seconds"] = round(now - since, 3)
        if self._gauges is not None:
            fields.update(self._gauges())
        self._log.info(self._event, **fields)
