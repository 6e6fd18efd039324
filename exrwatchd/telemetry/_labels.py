"""The closed label vocabularies, histogram buckets and the label guard of exrwatchd's
metrics (metrics.py uses all of it).

Label values come from these closed sets: anything else is counted as "other", so a caller
passing an error message or a path by mistake cannot grow the series count.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter

OTHER = "other"

#: Label vocabularies. Values outside them are counted under "other" (see _Labelled).
EVENT_KINDS = ("changed", "closed", "gone", "subtree")
INSPECTION_STATUSES = ("complete", "incomplete", "failed")
#: InspectError kinds (README "Error kinds", plus "internal" for a crashed inspection).
ERROR_KINDS = (
    "vanished", "unreadable", "not_a_file", "empty", "not_exr", "unsupported",
    "truncated_header", "bad_attribute", "bad_header", "too_large", "internal",
    "crashed_inspector",
)  # fmt: skip
DEAD_LETTER_REASONS = ("rejected", "max_attempts")
LOST_REASONS = ("inotify_overflow", "inotify_error", "poller_died")
RESCAN_TRIGGERS = ("start", "interval", "lost_events", "subtree", "watcher_restart",
                   "catalog_lost")  # fmt: skip
SCAN_FOUND_KINDS = ("changed", "gone")
#: How a [[hook]] delivery attempt ended (pipeline/hook_loop.py).
HOOK_OUTCOMES = ("delivered", "retried", "dead_lettered")
#: errno names of paths found unreadable (watch.unreadable); ENODEV: an unmounted mount point.
UNREADABLE_ERRNOS = ("EACCES", "EPERM", "EIO", "ESTALE", "ENOTCONN", "ETIMEDOUT", "ENODEV")
# UNHEALTHY_REASONS (exrwatchd_unhealthy_files_total) comes from exr/report.py: "nan", "inf",
# "constant", the reasons the pixel lane records.
# OUTBOX_STATES (exrwatchd_outbox_entries) is with the gauges in _snapshot.py.

# Buckets, in seconds unless named otherwise. Settling takes at least quiet_seconds (2 s by
# default) and end-to-end adds the inspection and one sink batch, so both are dense from
# 1 s to 10 s; rechecked incomplete files can take up to max_wait_seconds (1 h).
INSPECTION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
LATENCY_BUCKETS = (
    0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0,
    300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
IO_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
SCAN_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0)

#: At most this many paths wait between `journaled` and `delivered` for the end-to-end
#: histogram; beyond it (a long sink outage) new paths are simply not measured.
MAX_TRACKED = 100_000


# ---- label guard ----------------------------------------------------------------------


class _Labelled:
    """One-label counter children, cached; values outside `allowed` become "other".

    The cache makes the hot path one dict lookup (prometheus-client's `labels()` takes a
    lock and validates on every call). Every allowed value is created up front, so each
    series exists (at 0) from the first scrape and `rate()`/`increase()` see the first
    increment.
    """

    __slots__ = ("_children",)

    def __init__(self, metric: Counter, allowed: Iterable[str]) -> None:
        self._children = {value: metric.labels(value) for value in (*allowed, OTHER)}

    def __getitem__(self, value: str) -> Counter:
        child = self._children.get(value)
        return child if child is not None else self._children[OTHER]


def lost_reason(text: str) -> str:
    """A label value for an `Inbox.lost()` text ("inotify: queue overflow", "poll /x: ...")."""
    if text in LOST_REASONS:
        return text
    head = text[:64].lower()
    if head.startswith("inotify"):
        return "inotify_overflow" if "overflow" in text.lower() else "inotify_error"
    if head.startswith("poll"):
        return "poller_died"
    return OTHER
