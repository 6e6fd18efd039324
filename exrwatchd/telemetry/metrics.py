"""Prometheus metrics and the health endpoint: optional, off unless `[metrics] listen` is set.

`Metrics` holds the counters and histograms the daemon updates at each stage, on its own
private `CollectorRegistry`; gauges (queue depths, outbox counts, sink and watcher health)
are read from a `Snapshot` callback only when someone scrapes. `NullMetrics` has the same
methods and does nothing, so call sites never test whether metrics are on.

Every update is one dict lookup plus one prometheus-client increment (about a microsecond;
tests/test_metrics.py prints the numbers). Label values come from closed vocabularies:
anything else is counted as "other", so a caller passing an error message or a path by
mistake cannot grow the series count. Metric names, labels and sample queries are in
docs/metrics.md.

`MetricsServer` serves `/metrics` (the registry, as Prometheus text or OpenMetrics) and
`/healthz` (200 "ok", or 503 and the reason) on a daemon thread; `health_reason` builds
that reason. They live in http.py, the label vocabularies and buckets in _labels.py, the
scrape-time gauges (`Snapshot`, `WatchState` and their collector) in _snapshot.py; import
them from exrwatchd.telemetry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from exrwatchd.exr.report import UNHEALTHY_REASONS
from exrwatchd.telemetry._labels import (
    BATCH_SIZE_BUCKETS,
    DEAD_LETTER_REASONS,
    ERROR_KINDS,
    EVENT_KINDS,
    HOOK_OUTCOMES,
    INSPECTION_BUCKETS,
    INSPECTION_STATUSES,
    IO_BUCKETS,
    LATENCY_BUCKETS,
    LOST_REASONS,
    MAX_TRACKED,
    OTHER,
    RESCAN_TRIGGERS,
    SCAN_BUCKETS,
    SCAN_FOUND_KINDS,
    UNREADABLE_ERRNOS,
    _Labelled,
    lost_reason,
)
from exrwatchd.telemetry._snapshot import (
    OUTBOX_STATES,
    Snapshot,
    WatchState,
    _SnapshotCollector,
)
from exrwatchd.telemetry.http import MetricsServer, health_reason, parse_listen

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "DEAD_LETTER_REASONS",
    "ERROR_KINDS",
    "EVENT_KINDS",
    "HOOK_OUTCOMES",
    "INSPECTION_BUCKETS",
    "INSPECTION_STATUSES",
    "IO_BUCKETS",
    "LATENCY_BUCKETS",
    "LOST_REASONS",
    "MAX_TRACKED",
    "OTHER",
    "OUTBOX_STATES",
    "RESCAN_TRIGGERS",
    "SCAN_BUCKETS",
    "SCAN_FOUND_KINDS",
    "UNHEALTHY_REASONS",
    "UNREADABLE_ERRNOS",
    "Metrics",
    "MetricsServer",
    "NullMetrics",
    "Snapshot",
    "WatchState",
    "health_reason",
    "lost_reason",
    "parse_listen",
]

# The `*_created` series (one per counter and histogram child) double the output and say
# nothing `process_start_time_seconds` does not. exrwatchd is the only prometheus-client
# user in its process, so this process-wide switch is ours to flip.
disable_created_metrics()

# ---- metrics --------------------------------------------------------------------------


class NullMetrics:
    """Metrics switched off: the same methods as `Metrics`, each doing nothing."""

    enabled = False

    def event(self, kind: str) -> None:
        """One inbox entry of `kind` (changed, closed, gone, subtree) reached the settle loop."""

    def events_lost(self, reason: str) -> None:
        """Events were lost; `reason` is the Inbox.lost() text or a LOST_REASONS value."""

    def rescans(self, trigger: str) -> None:
        """A reconciliation was requested (start, interval, lost_events, subtree, ...)."""

    def settle_seconds(self, seconds: float) -> None:
        """First event to settled (a first attempt handed to a worker)."""

    def inspection_seconds(self, seconds: float) -> None:
        """One inspection by a worker, whatever its verdict."""

    def inspected(self, status: str) -> None:
        """A verdict went to the journal: complete, incomplete or failed."""

    def failed(self, reason: str) -> None:
        """A failed verdict's error kind (not_exr, truncated_header, ...)."""

    def journaled(self, path: str, first_seen: float) -> None:
        """`path` went to the journal; `first_seen` is its first event (Metrics' clock)."""

    def journal_commit(self, seconds: float, size: int) -> None:
        """The journal writer committed `size` items in one transaction."""

    def sink_batch(self, seconds: float, size: int) -> None:
        """The sink answered for a batch of `size` entries."""

    def persisted(self, n: int) -> None:
        """`n` outbox entries were delivered."""

    def delivered(self, paths: Iterable[str]) -> None:
        """Observe end-to-end latency for delivered paths seen by `journaled`."""

    def end_to_end_seconds(self, seconds: float) -> None:
        """First event to persisted, when the caller measured it itself."""

    def sink_retry(self, n: int = 1) -> None:
        """`n` entries will be retried (the sink asked, or was unavailable)."""

    def dead_lettered(self, reason: str, n: int = 1) -> None:
        """`n` entries were dead-lettered: rejected, or max_attempts."""

    def scanned(self, seconds: float, changed: int, gone: int) -> None:
        """A reconciliation finished and found `changed` and `gone` paths."""

    def scan_skipped(self) -> None:
        """A reconciliation was skipped: its root looked unmounted (scan.root_unavailable)."""

    def unreadable(self, errno_name: str) -> None:
        """A path was found unreadable (watch.unreadable): EACCES, EIO, ESTALE, ..."""

    def pixel_seconds(self, seconds: float) -> None:
        """The pixel lane spent `seconds` on one file (reading it, or finding it changed)."""

    def unhealthy(self, reason: str) -> None:
        """A journaled record's pixels are unhealthy for `reason` (nan, inf, constant)."""

    def pixel_stats_unavailable(self) -> None:
        """OpenImageIO could not read a journaled complete file's pixels."""

    def hook_outcome(self, outcome: str, n: int = 1) -> None:
        """`n` [[hook]] delivery attempts ended `outcome`: delivered, retried, dead_lettered."""


class Metrics(NullMetrics):
    """The daemon's metrics on a private registry. Thread-safe; every method is cheap.

    `snapshot` is called at scrape time for the gauges (None: no gauges). `clock` is the
    clock of the `first_seen` values passed to `journaled` (the daemon's monotonic clock).
    """

    enabled = True

    def __init__(
        self,
        snapshot: Callable[[], Snapshot] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        process: bool = True,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self.registry = CollectorRegistry()
        self._clock = clock
        self._max_tracked = max_tracked
        self._first_seen: dict[str, float] = {}
        r = self.registry

        def counter(name: str, doc: str, label: str, allowed: Iterable[str]) -> _Labelled:
            return _Labelled(Counter(name, doc, (label,), registry=r), allowed)

        self._events = counter(
            "exrwatchd_events_total", "Watch events reaching the settle loop, collapsed per "
            "path per drain.", "kind", EVENT_KINDS,
        )  # fmt: skip
        self._lost = counter(
            "exrwatchd_events_lost_total", "Signs that watch events were lost; each one "
            "triggers a full rescan.", "reason", LOST_REASONS,
        )  # fmt: skip
        self._rescans = counter(
            "exrwatchd_rescans_total", "Reconciliations requested, by trigger.", "trigger",
            RESCAN_TRIGGERS,
        )  # fmt: skip
        self._inspected = counter(
            "exrwatchd_inspections_total", "Verdicts journaled, by status.", "status",
            INSPECTION_STATUSES,
        )  # fmt: skip
        self._failed = counter(
            "exrwatchd_inspection_failures_total", "Failed verdicts journaled, by error kind.",
            "reason", ERROR_KINDS,
        )  # fmt: skip
        self._dead = counter(
            "exrwatchd_dead_letters_total", "Outbox entries dead-lettered.", "reason",
            DEAD_LETTER_REASONS,
        )  # fmt: skip
        self._unhealthy = counter(
            "exrwatchd_unhealthy_files_total", "Complete files journaled with unhealthy pixels, "
            "by reason (a file with NaN and Inf counts under both).", "reason",
            UNHEALTHY_REASONS,
        )  # fmt: skip
        self._unreadable = counter(
            "exrwatchd_unreadable_total", "Paths found unreadable (not deleted), once each "
            "time one turns unreadable, by errno.", "errno", UNREADABLE_ERRNOS,
        )  # fmt: skip
        self._scan_found = counter(
            "exrwatchd_scan_found_total", "Paths reconciliation found changed or gone.",
            "kind", SCAN_FOUND_KINDS,
        )  # fmt: skip
        self._hooks = counter(
            "exrwatchd_hook_deliveries_total", "[[hook]] delivery attempts, by outcome.",
            "outcome", HOOK_OUTCOMES,
        )  # fmt: skip
        self._persisted = Counter(
            "exrwatchd_persisted_total", "Outbox entries delivered to the sink.", registry=r
        )
        self._journaled = Counter(
            "exrwatchd_journaled_total", "Items committed to the journal.", registry=r
        )
        self._retries = Counter(
            "exrwatchd_sink_retries_total", "Outbox entries put back for a later retry.",
            registry=r,
        )  # fmt: skip
        self._pixel_unavailable = Counter(
            "exrwatchd_pixel_stats_unavailable_total", "Complete files whose pixels "
            "OpenImageIO could not read (sub-sampled channels, damaged data).", registry=r,
        )  # fmt: skip
        self._skipped = Counter(
            "exrwatchd_scans_skipped_total", "Reconciliations skipped because the root "
            "looked unmounted or emptied.", registry=r,
        )  # fmt: skip
        self._inspection = Histogram(
            "exrwatchd_inspection_seconds", "Time a worker spent inspecting one file.",
            buckets=INSPECTION_BUCKETS, registry=r,
        )  # fmt: skip
        self._settle = Histogram(
            "exrwatchd_settle_seconds", "First event to settled (first attempts only).",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self._end_to_end = Histogram(
            "exrwatchd_end_to_end_seconds", "First event to delivered by the sink.",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self._journal_commit = Histogram(
            "exrwatchd_journal_commit_seconds", "One journal transaction (write and fsync).",
            buckets=IO_BUCKETS, registry=r,
        )  # fmt: skip
        self._sink_seconds = Histogram(
            "exrwatchd_sink_batch_seconds", "One sink write of a batch.",
            buckets=IO_BUCKETS, registry=r,
        )  # fmt: skip
        self._sink_size = Histogram(
            "exrwatchd_sink_batch_entries", "Outbox entries per sink batch.",
            buckets=BATCH_SIZE_BUCKETS, registry=r,
        )  # fmt: skip
        self._pixels = Histogram(
            "exrwatchd_pixel_stats_seconds", "Time a pixel-lane thread spent on one file.",
            buckets=INSPECTION_BUCKETS, registry=r,
        )  # fmt: skip
        self._scan = Histogram(
            "exrwatchd_scan_seconds", "One reconciliation of a root or subtree.",
            buckets=SCAN_BUCKETS, registry=r,
        )  # fmt: skip
        r.register(_SnapshotCollector(snapshot))
        if process:
            # Unprefixed (process_cpu_seconds_total, ...), the names stock dashboards query.
            ProcessCollector(registry=r)

    # -- watch inbox drain (settle loop) --------------------------------------------------

    def event(self, kind: str) -> None:
        self._events[kind].inc()

    def events_lost(self, reason: str) -> None:
        self._lost[lost_reason(reason)].inc()

    def rescans(self, trigger: str) -> None:
        self._rescans[trigger].inc()

    # -- settle, inspect ----------------------------------------------------------------

    def settle_seconds(self, seconds: float) -> None:
        self._settle.observe(seconds)

    def inspection_seconds(self, seconds: float) -> None:
        self._inspection.observe(seconds)

    def inspected(self, status: str) -> None:
        self._inspected[status].inc()

    def failed(self, reason: str) -> None:
        self._failed[reason].inc()

    # -- journal --------------------------------------------------------------------------

    def journaled(self, path: str, first_seen: float) -> None:
        # setdefault: the earliest undelivered event of a path wins, so a path that keeps
        # changing faster than it is delivered shows its real wait.
        if len(self._first_seen) < self._max_tracked:
            self._first_seen.setdefault(path, first_seen)

    def journal_commit(self, seconds: float, size: int) -> None:
        self._journal_commit.observe(seconds)
        self._journaled.inc(size)

    # -- sink -----------------------------------------------------------------------------

    def sink_batch(self, seconds: float, size: int) -> None:
        self._sink_seconds.observe(seconds)
        self._sink_size.observe(size)

    def persisted(self, n: int) -> None:
        if n:
            self._persisted.inc(n)

    def delivered(self, paths: Iterable[str]) -> None:
        if not self._first_seen:
            return
        now = self._clock()
        pop = self._first_seen.pop
        for path in paths:
            first = pop(path, None)
            if first is not None:
                self._end_to_end.observe(max(0.0, now - first))

    def end_to_end_seconds(self, seconds: float) -> None:
        self._end_to_end.observe(seconds)

    def sink_retry(self, n: int = 1) -> None:
        if n:
            self._retries.inc(n)

    def dead_lettered(self, reason: str, n: int = 1) -> None:
        if n:
            self._dead[reason].inc(n)

    # -- reconciler -----------------------------------------------------------------------

    def scanned(self, seconds: float, changed: int, gone: int) -> None:
        self._scan.observe(seconds)
        if changed:
            self._scan_found["changed"].inc(changed)
        if gone:
            self._scan_found["gone"].inc(gone)

    def scan_skipped(self) -> None:
        self._skipped.inc()

    def unreadable(self, errno_name: str) -> None:
        self._unreadable[errno_name].inc()

    # -- pixel lane -----------------------------------------------------------------------

    def pixel_seconds(self, seconds: float) -> None:
        self._pixels.observe(seconds)

    def unhealthy(self, reason: str) -> None:
        self._unhealthy[reason].inc()

    def pixel_stats_unavailable(self) -> None:
        self._pixel_unavailable.inc()

    # -- hooks ----------------------------------------------------------------------------

    def hook_outcome(self, outcome: str, n: int = 1) -> None:
        if n:
            self._hooks[outcome].inc(n)

    # -- output ---------------------------------------------------------------------------

    def render(self) -> bytes:
        """Everything, in the Prometheus text format (what /metrics serves to a scraper that
        asks for no other format)."""
        return generate_latest(self.registry)
