"""The scrape-time gauges: the daemon's `Snapshot` and the collector that reads it.

`Metrics` (metrics.py) registers a `_SnapshotCollector` on its registry; the
gauges (queue depths, outbox counts, sink and watcher health) are read from the daemon's
`Snapshot` callback only when someone scrapes. exrwatchd.telemetry.metrics re-exports `Snapshot`,
`WatchState` and `OUTBOX_STATES`; import them from there. This module never imports
exrwatchd.telemetry.metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from exrwatchd import __version__
from exrwatchd.logs import get_logger

# The logger name of the module these lines came from, so log events keep their logger.
log = get_logger("exrwatchd.metrics")

#: Label vocabulary of exrwatchd_outbox_entries and exrwatchd_hook_entries (the other
#: vocabularies are in _labels.py).
OUTBOX_STATES = ("ready", "inflight", "dead")


class WatchState(NamedTuple):
    """One `[[watch]]` entry, in config order. A plain `(path, backend, dirs)` tuple works."""

    path: str  # never exported as a label; the metrics use the entry's index
    backend: str  # "inotify" or "poll"
    watched_dirs: int | None = None  # directories under watch; None when not known
    alive: bool = True  # False when the watcher died or could not start


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the daemon holds right now; built by its callback at each scrape.

    The callback runs on an HTTP thread, concurrently with the daemon: it should only read
    (lengths, sizes, a journal `stats()`), never block on the settle loop.
    """

    queue_depth: int  # settled files waiting for a worker
    pending: int  # files settling
    inflight: int  # files being inspected
    outbox_ready: int  # journaled, waiting for the sink
    outbox_dead: int  # dead letters
    oldest_pending_age_seconds: float | None  # oldest ready outbox entry; None when none
    watches: Sequence[WatchState | tuple[str, str, int | None]] = ()
    sink_healthy: bool = True
    sink_unhealthy_seconds: float | None = None  # None (or 0) while healthy
    outbox_inflight: int = 0  # claimed by the sink loop, not yet acknowledged
    journal_queue: int = 0  # verdicts waiting for the journal writer
    pixel_queue: int = 0  # complete files waiting for the pixel lane
    journal_disk_full_seconds: float | None = None  # None while the journal can be written
    healthy: bool = True  # what /healthz says: False when it answers 503
    hooks_ready: int = 0  # hook deliveries waiting (backing off included)
    hooks_inflight: int = 0  # hook deliveries being made
    hooks_dead: int = 0  # hook dead letters


class _SnapshotCollector(Collector):
    """Gauges read from the daemon's snapshot callback, only when scraped."""

    def __init__(self, snapshot: Callable[[], Snapshot] | None) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterator[Metric]:
        # Names only, for the registry's duplicate check: never calls the snapshot.
        yield InfoMetricFamily("exrwatchd_build", _BUILD_DOC)
        yield GaugeMetricFamily("exrwatchd_snapshot_ok", _SNAPSHOT_OK_DOC)
        for name, doc, _ in _SCALARS:
            yield GaugeMetricFamily(name, doc)
        for name, doc, labels in _LABELLED:
            yield GaugeMetricFamily(name, doc, labels=labels)

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("exrwatchd_build", _BUILD_DOC)
        info.add_metric([], {"version": __version__})
        yield info
        if self._snapshot is None:
            return
        try:
            snap = self._snapshot()
        except Exception as exc:  # a scrape must still show the counters
            log.warning("metrics.snapshot_failed", error=str(exc), error_type=type(exc).__name__)
            yield GaugeMetricFamily("exrwatchd_snapshot_ok", _SNAPSHOT_OK_DOC, value=0)
            return
        yield GaugeMetricFamily("exrwatchd_snapshot_ok", _SNAPSHOT_OK_DOC, value=1)
        for name, doc, read in _SCALARS:
            yield GaugeMetricFamily(name, doc, value=read(snap))
        outbox, count, up, dirs, hooks = (GaugeMetricFamily(name, doc, labels=labels)
                                          for name, doc, labels in _LABELLED)  # fmt: skip
        states = (snap.outbox_ready, snap.outbox_inflight, snap.outbox_dead)
        for state, value in zip(OUTBOX_STATES, states, strict=True):
            outbox.add_metric([state], value)
        states = (snap.hooks_ready, snap.hooks_inflight, snap.hooks_dead)
        for state, value in zip(OUTBOX_STATES, states, strict=True):
            hooks.add_metric([state], value)
        backends: dict[str, int] = {}
        for index, raw in enumerate(snap.watches):
            w = WatchState(*raw)
            backends[w.backend] = backends.get(w.backend, 0) + 1
            up.add_metric([str(index), w.backend], 1 if w.alive else 0)
            if w.watched_dirs is not None:
                dirs.add_metric([str(index), w.backend], w.watched_dirs)
        for backend, n in sorted(backends.items()):
            count.add_metric([backend], n)
        yield from (outbox, count, up, dirs, hooks)


_BUILD_DOC = "exrwatchd version."
_SNAPSHOT_OK_DOC = "1 when the gauges could be read at this scrape, 0 when the callback failed."

_SCALARS: tuple[tuple[str, str, Callable[[Snapshot], float]], ...] = (
    ("exrwatchd_queue_depth", "Settled files waiting for a worker.", lambda s: s.queue_depth),
    ("exrwatchd_pending_files", "Files settling (waiting to be quiet).", lambda s: s.pending),
    ("exrwatchd_inflight_files", "Files being inspected.", lambda s: s.inflight),
    ("exrwatchd_journal_queue_items", "Verdicts waiting for the journal writer.",
     lambda s: s.journal_queue),
    ("exrwatchd_pixel_queue_depth",
     "Complete files waiting for the pixel lane (0 when pixel stats are off).",
     lambda s: s.pixel_queue),
    ("exrwatchd_oldest_pending_age_seconds",
     "Age of the oldest outbox entry waiting for delivery; 0 when there is none.",
     lambda s: s.oldest_pending_age_seconds or 0.0),
    ("exrwatchd_sink_healthy", "1 while the sink accepts writes, else 0.",
     lambda s: 1 if s.sink_healthy else 0),
    ("exrwatchd_sink_unhealthy_seconds", "How long the sink has been failing; 0 when healthy.",
     lambda s: 0.0 if s.sink_healthy else s.sink_unhealthy_seconds or 0.0),
    ("exrwatchd_journal_disk_full_seconds", "How long the journal has been unwritable for "
     "lack of disk space; 0 while it can be written.",
     lambda s: s.journal_disk_full_seconds or 0.0),
    ("exrwatchd_healthy", "1 while /healthz answers 200, 0 while it answers 503.",
     lambda s: 1 if s.healthy else 0),
)  # fmt: skip

_LABELLED: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("exrwatchd_outbox_entries", "Journal outbox entries, by state.", ("state",)),
    ("exrwatchd_watches", "Configured watches, by backend.", ("backend",)),
    ("exrwatchd_watch_up", "1 while the watcher of a [[watch]] entry runs; `watch` is the "
     "entry's index in the config file.", ("watch", "backend")),
    ("exrwatchd_watched_directories", "Directories under watch, per [[watch]] entry.",
     ("watch", "backend")),
    ("exrwatchd_hook_entries", "[[hook]] deliveries in the journal, by state (the same "
     "states as the outbox's).", ("state",)),
)  # fmt: skip
