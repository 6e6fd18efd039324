"""What the running daemon tells the outside: metrics, /healthz, status.json, systemd.

Reads the daemon's state through `DaemonState`, the narrow view it needs, so that this module
never imports the Daemon; changes nothing in it. Gauges are computed when scraped (or when
the status is written), from a Snapshot, so the hot paths only bump counters.
"""

from __future__ import annotations

import os
import time
from typing import Any, Protocol

from exrwatchd.config import Config
from exrwatchd.daemon.sink_process import SinkProcess
from exrwatchd.journal import Journal
from exrwatchd.logs import get_logger
from exrwatchd.pipeline import BatchReport, HookLoop, JournalWriter, Pipeline, SinkLoop, report_to
from exrwatchd.telemetry import (
    Metrics,
    MetricsServer,
    Notifier,
    NullMetrics,
    Snapshot,
    WatchdogPinger,
    WatchState,
    format_status,
    health_reason,
    write_status_file,
)
from exrwatchd.watch import Settler, Watches

log = get_logger("exrwatchd.telemetry")

#: A sink failing for longer than this makes /healthz answer 503.
SINK_UNHEALTHY_AFTER = 300.0


def _watched_dirs(watcher: object) -> int | None:
    # The poller knows its directories; watchdog keeps its inotify watches to itself.
    count = getattr(watcher, "watched_dirs", None)
    return count() if callable(count) else None


class DaemonState(Protocol):
    """What reporting reads of the running daemon (lifecycle.Daemon has it all)."""

    @property
    def cfg(self) -> Config: ...
    @property
    def started_at(self) -> float: ...
    @property
    def settler(self) -> Settler: ...
    @property
    def watches(self) -> Watches: ...
    @property
    def journal(self) -> Journal | None: ...
    @property
    def writer(self) -> JournalWriter | None: ...
    @property
    def sink_loop(self) -> SinkLoop | SinkProcess | None: ...
    @property
    def pipeline(self) -> Pipeline | None: ...
    @property
    def hooks(self) -> HookLoop | None: ...


class Telemetry:
    def __init__(self, daemon: DaemonState) -> None:
        self._daemon = daemon
        self.notifier = Notifier.from_env()
        self._pinger = WatchdogPinger(self.notifier.watchdog_interval)
        self._persisted_seen = 0
        self._status_error: str | None = None  # logged once until status.json works again
        self._last_persisted: float | None = None
        self._hook_outcomes: dict[str, int] = {}  # the hook loop's counts already counted
        listen = daemon.cfg.metrics.listen
        self.metrics: NullMetrics = Metrics(self.snapshot) if listen else NullMetrics()
        self._server: MetricsServer | None = None
        if listen and isinstance(self.metrics, Metrics):
            self._server = MetricsServer(listen, self.metrics, self.health)

    def start(self) -> None:
        if self._server is not None:
            self._server.start()
            host, port = self._server.address
            log.info("metrics.listening", address=f"{host}:{port}", paths=["/metrics", "/healthz"])

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    # ---- systemd ----------------------------------------------------------------------

    def ready(self) -> None:
        """READY=1: the journal is open, watchers run, the first reconciliation is queued."""
        self.notifier.ready(self._status_line())

    def reloading(self) -> None:
        self.notifier.reloading()

    def stopping(self) -> None:
        self.notifier.stopping()

    def watchdog(self, now: float, alive: bool) -> None:
        """WATCHDOG=1 at half of WatchdogSec, only while everything vital is alive: a dead
        thread stops the pings, and systemd restarts the service."""
        if self._pinger.due(now) and alive:
            self.notifier.watchdog()

    def _status_line(self) -> str:
        d = self._daemon
        sink = d.sink_loop
        if sink is not None and sink.delivered != self._persisted_seen:
            self._persisted_seen, self._last_persisted = sink.delivered, time.time()
        stats = d.journal.stats(paths=False) if d.journal is not None else None
        line = format_status(
            queue_depth=d.pipeline.work.qsize() if d.pipeline else 0, pending=len(d.settler),
            failed=stats.dead if stats else 0, last_persisted=self._last_persisted,
        )  # fmt: skip
        full_since = d.writer.disk_full_since if d.writer is not None else None
        if full_since is not None:
            line = f"JOURNAL DISK FULL for {time.time() - full_since:.0f}s, new work waits; {line}"
        return line

    def on_batch(self, report: BatchReport) -> None:
        report_to(self.metrics, report)

    def pump(self) -> None:
        """Move the sink process's batch reports and what the hook loop did since the last
        turn into the metrics (main loop, each turn)."""
        sink = self._daemon.sink_loop
        if isinstance(sink, SinkProcess):
            for report in sink.reports():
                report_to(self.metrics, report)
        hooks = self._daemon.hooks
        if hooks is not None:
            # The hook thread only ever adds to its counts; reading them here needs no lock.
            for outcome, total in list(hooks.counts.items()):
                seen = self._hook_outcomes.get(outcome, 0)
                if total != seen:
                    self.metrics.hook_outcome(outcome, max(0, total - seen))
                    self._hook_outcomes[outcome] = total

    def snapshot(self) -> Snapshot:
        d = self._daemon
        p, sink, journal = d.pipeline, d.sink_loop, d.journal
        stats = journal.stats(paths=False) if journal is not None else None
        unhealthy = sink.unhealthy_since if sink is not None else None
        full_since = d.writer.disk_full_since if d.writer is not None else None
        return Snapshot(
            queue_depth=p.work.qsize() if p else 0,
            pending=len(d.settler),
            inflight=len(p.inflight) if p else 0,
            outbox_ready=stats.ready if stats else 0,
            outbox_dead=stats.dead if stats else 0,
            oldest_pending_age_seconds=stats.oldest_ready_age if stats else None,
            watches=[WatchState(str(w.cfg.path), w.backend, _watched_dirs(w.watcher),
                                w.watcher is not None and w.watcher.alive())
                     for w in d.watches],
            sink_healthy=unhealthy is None,
            sink_unhealthy_seconds=None if unhealthy is None else time.monotonic() - unhealthy,
            outbox_inflight=stats.inflight if stats else 0,
            journal_queue=d.writer.pending() if d.writer else 0,
            pixel_queue=p.lane.depth() if p and p.lane else 0,
            journal_disk_full_seconds=None if full_since is None else time.time() - full_since,
            healthy=self.health() is None,
            hooks_ready=stats.hooks["ready"] if stats else 0,
            hooks_inflight=stats.hooks["inflight"] if stats else 0,
            hooks_dead=stats.hooks["dead"] if stats else 0,
        )  # fmt: skip

    def health(self) -> str | None:
        d = self._daemon
        sink = d.sink_loop
        unhealthy = None if sink is None or sink.unhealthy_since is None else (
            time.monotonic() - sink.unhealthy_since)  # fmt: skip
        dead = [str(w.cfg.path) for w in d.watches
                if w.watcher is None or not w.watcher.alive()]  # fmt: skip
        return health_reason(unhealthy, SINK_UNHEALTHY_AFTER, dead,
                             sink_error=sink.last_error if sink else None,
                             journal_error=d.writer.disk_full if d.writer else None)  # fmt: skip

    def status(self) -> dict[str, Any]:
        d = self._daemon
        assert d.pipeline is not None and d.writer is not None and d.sink_loop is not None
        p, c, sink = d.pipeline, d.pipeline.counters, d.sink_loop
        return {
            "pid": os.getpid(), "updated_at": time.time(), "started_at": d.started_at,
            # Which journal the daemon runs on: the start-up check compares it (issue 12, case 7).
            "journal_id": d.journal.journal_id if d.journal is not None else None,
            "pending": len(d.settler), "queue_depth": p.work.qsize(),
            "inflight": len(p.inflight), "journal_queue": d.writer.pending() + len(p.unwritten),
            "pixel_queue": p.lane.depth() if p.lane else 0,
            "detected": c.detected, "inspected": c.inspected, "failed": c.failed,
            "incomplete": c.incomplete, "deleted": c.deleted, "persisted": sink.delivered,
            "sink_unhealthy_since": sink.unhealthy_since, "sink_last_error": sink.last_error,
            "health": self.health(), "journal_disk_full": d.writer.disk_full,
            "journal_disk_full_since": d.writer.disk_full_since,
            "watches": [{"path": str(w.cfg.path), "backend": w.backend} for w in d.watches],
            "unreadable": d.watches.unreadable.status(),
            "unreadable_count": len(d.watches.unreadable),
        }  # fmt: skip

    def write_status(self) -> dict[str, Any]:
        """status.json for `exrwatchd status`, and STATUS= for `systemctl status`."""
        status = self.status()
        try:
            write_status_file(self._daemon.cfg.daemon.state_dir, status)
        except OSError as exc:  # a full disk: /healthz and STATUS= still tell
            if str(exc) != self._status_error:
                log.warning("status.write_failed", error=str(exc), state_dir=str(
                    self._daemon.cfg.daemon.state_dir))  # fmt: skip
            self._status_error = str(exc)
        else:
            self._status_error = None
        self.notifier.status(self._status_line())
        return status
