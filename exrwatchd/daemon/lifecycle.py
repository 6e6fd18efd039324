"""The daemon's lifecycle, in one place: start-up, the settle loop, shutdown.

Threads, and what each owns:
- main: the settle loop. Owns the Settler and the set of paths being inspected; drains the
  observers' Inbox, hands settled files to workers, turns verdicts into journal writes.
- observers (watchdog inotify, or one poll thread per polled mount): feed the Inbox.
- reconciler: full scans (start, every rescan_interval, after lost events) and subtree
  walks (directories that appeared or vanished); feeds the Inbox.
- workers: inspect settled files (docs/benchmarks.md: why threads, not processes).
- pixels-N (only with `[inspect] pixel_stats`): the pixel lane, pixel health of complete
  files before they are journaled (pipeline/pixel_lane.py).
- journal writer, sink loop, hook loop: see pipeline/journal_writer.py, sink_loop.py and
  hook_loop.py.
Signal handlers only set flags; the main loop does the work.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from collections.abc import Callable

from exrwatchd.config import Config, load_config
from exrwatchd.daemon import components
from exrwatchd.daemon.gc_tuning import tune_for_throughput
from exrwatchd.daemon.reload import plan_reload
from exrwatchd.daemon.reporting import Telemetry
from exrwatchd.daemon.sink_process import SinkProcess
from exrwatchd.errors import EXIT_FAILED, EXIT_OK, ConfigError, StartupError
from exrwatchd.journal import Journal, JournalError, RefreshSequences
from exrwatchd.logs import apply_logging, get_logger
from exrwatchd.pipeline import HookLoop, JournalWriter, Pipeline, SinkLoop, resend_if_lost
from exrwatchd.secrets import withdraw_from_environ
from exrwatchd.sinks import SinkUnavailable
from exrwatchd.watch import Inbox, Reconciler, Settler, Watches

#: Seconds shutdown waits, past its deadline if need be, for a pixel-lane thread to finish the
#: file it is reading (a 2K frame takes ~0.1-0.2 s; a huge multi-part file, seconds).
PIXEL_STOP_GRACE = 10.0

log = get_logger("exrwatchd.daemon")


class Daemon:
    """`run()` until stopped. `once=True` makes it the one-shot `scan` command."""

    def __init__(self, cfg: Config, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.inbox = Inbox()
        self.stopping = threading.Event()
        self.force = False
        self.stop_requested = False  # set by the signal handlers, like reload_requested
        self.reload_requested = False
        self.started_at = time.time()
        self.telemetry = Telemetry(self)
        self.settler = Settler(
            quiet_seconds=cfg.settle.quiet_seconds, max_wait_seconds=cfg.settle.max_wait_seconds,
            recheck_initial=cfg.settle.recheck_initial_seconds,
            recheck_max=cfg.settle.recheck_max_seconds, clock=clock,
        )  # fmt: skip
        self.watches = Watches(cfg.watch, self.inbox, rescan=self.request_rescan,
                               metrics=self.telemetry.metrics)  # fmt: skip
        self.journal: Journal | None = None
        self.writer: JournalWriter | None = None
        self.sink_loop: SinkLoop | SinkProcess | None = None
        self.hooks: HookLoop | None = None
        self.pipeline: Pipeline | None = None
        self._workers: list[threading.Thread] = []
        self._exit_now = False  # a pixel-lane thread is still inside OpenImageIO
        self._reconciler: Reconciler | None = None
        self._resends_seen = 0  # the sink loop's catalog_resets already rescanned for
        # Held while the sink loop is swapped (reload) or stopped (shutdown): the health
        # check skips the sink meanwhile, and a swap never starts a loop after shutdown.
        self._sink_swap = threading.Lock()
        self._sink_restart: threading.Thread | None = None
        self._withdrawn_env: dict[str, str] = {}  # credential variables, for reload()
        self._sink_cpu: int | None = None  # where the sink process runs (start pins it)

    # ---- start-up ---------------------------------------------------------------------

    def start(self, *, watch: bool = True) -> None:
        """Open the journal and sink, start the threads; `watch=False` for one-shot scans."""
        # Before any child process exists (the sink process, multiprocessing's resource
        # tracker): they would inherit the credentials; the sink process gets them through
        # its pipe instead.
        self._withdrawn_env = withdraw_from_environ(self.cfg.secrets())
        self._sink_cpu = components.pin_cpus(self.cfg).sink
        self.journal = components.open_journal(self.cfg)
        reset = self.journal.reset_inflight()
        if reset:
            log.info("journal.resumed", inflight_reset=reset)
        self.hooks = components.start_hooks(self.cfg, self.journal)
        self.sink_loop = self._new_sink_loop()
        self.writer = JournalWriter(self.journal, on_commit=self._wake_sink,
                                    metrics=self.telemetry.metrics)  # fmt: skip
        self.writer.start()
        self.sink_loop.start()  # type: ignore[union-attr]
        pixels = self.cfg.inspect
        self.pipeline = Pipeline(
            self.settler, self.inbox, self.writer, self.cfg.daemon.queue_size,
            rescan=self.request_rescan, settled=self.watches.settled,
            metrics=self.telemetry.metrics, clock=self.clock,
            pixel_workers=pixels.pixel_workers if pixels.pixel_stats else 0,
            pixel_queue_size=pixels.pixel_queue_size, unreadable=self.watches.walk_error,
            pixel_max_decoded_bytes=pixels.pixel_max_decoded_mb << 20,
        )  # fmt: skip
        self._workers = self.pipeline.start_workers(self.cfg.daemon.workers)
        if self.pipeline.lane is not None:
            self._workers += self.pipeline.lane.start()
        # Watch first, then reconcile: a file written during the first scan is seen by one
        # or the other (or both: the settle loop collapses them).
        if watch:
            self.watches.start_all(self.journal)
        self._reconciler = Reconciler(
            self.journal, lambda: list(self.watches), self._found,
            on_error=self.watches.walk_error,
            metrics=self.telemetry.metrics, done=self.inbox.wakeup.set,
            scanned=self.watches.unreadable.scanned,
        )  # fmt: skip
        self._reconciler.start()
        self.telemetry.metrics.rescans("start")
        self.request_rescan(None)
        if watch:
            self.telemetry.start()

    def _new_sink_loop(self) -> SinkLoop | SinkProcess:
        """Open the sink (here even when a child process ships: bad credentials, a missing
        bucket or a schema mismatch must fail loudly now) and the loop that feeds it."""
        assert self.journal is not None
        sink = components.build_sink(self.cfg)
        # Before open(), which would create a missing catalog.db empty: when the journal
        # counts files as delivered, they are marked for the start-up scan (or, on a
        # reload, this one) to send again.
        if resend_if_lost(sink, self.journal) and self._reconciler is not None:
            self.request_rescan(None)
        sink.open()
        if self._reconciler is None:  # at start, not on a reload: whose journal is this
            components.check_journal_identity(self.cfg, self.journal, sink)
        if self.cfg.daemon.sink_process:
            sink.close()
            return SinkProcess(self.cfg, self._sink_cpu)  # the effective config, not the file
        return SinkLoop(
            self.journal, sink, batch_size=self.cfg.sink.batch_size,
            batch_wait=self.cfg.sink.batch_wait_ms / 1000.0, on_batch=self.telemetry.on_batch,
        )  # fmt: skip

    def _wake_sink(self, count: int = 0) -> None:
        if self.sink_loop is not None:
            self.sink_loop.wake(count)

    def restart_sink(self) -> bool:
        """A reload changed the sink: open the new one, then stop the old loop and start the
        new. The outbox is on disk, so nothing in flight is lost; False keeps the old sink.
        Runs on a thread of its own (restart_sink_later)."""
        try:
            new = self._new_sink_loop()
        except (SinkUnavailable, OSError) as exc:
            log.error("config.sink_unchanged", error=str(exc),
                      reason="the new sink settings do not work; keeping the old ones")  # fmt: skip
            return False
        timeout = self.cfg.daemon.shutdown_timeout
        with self._sink_swap:
            if self.stopping.is_set():  # shut down meanwhile: the old loop is stopped
                new.discard()
                return False
            if self.sink_loop is not None:
                self.sink_loop.stop(timeout=timeout)
            self.sink_loop = new
            self._resends_seen = 0
            new.start()
        log.info("sink.restarted", sink=self.cfg.sink.kind)
        return True

    def _restart_sink_later(self, old: Config) -> None:
        """Restart the sink off the main loop: opening VAST can take a minute (timeouts, the
        SDK's retries) and stopping the old loop up to shutdown_timeout, while nothing on
        the main loop may block for more than a moment (the watchdog, the settle loop).
        Restarts run one after another, in the order of the reloads that asked for them."""
        previous = self._sink_restart

        def restart() -> None:
            if previous is not None:
                previous.join()
            if not self.stopping.is_set() and not self.restart_sink():
                self.cfg = dataclasses.replace(self.cfg, sink=old.sink, vast=old.vast)

        self._sink_restart = threading.Thread(target=restart, name="sink-restart", daemon=True)
        self._sink_restart.start()

    def reload(self) -> bool:
        """Apply the config file as it is now (SIGHUP; the plan is daemon/reload.py's). An
        invalid file changes nothing: the daemon keeps running the old configuration."""
        old = self.cfg
        try:
            new = load_config(old.source, {**os.environ, **self._withdrawn_env})
            new.require_watches()
        except ConfigError as exc:
            # SIGHUP is also logrotate's "reopen your log file", whatever state the config
            # file is in: reopen it with the running configuration, then say why.
            self._apply_logging(old)
            log.error("config.reload_failed", error=str(exc), keeping="the running configuration")
            return False
        for warning in new.warnings:
            log.warning("config.warning", message=warning)
        plan = plan_reload(old, new)
        cfg = plan.config
        self._apply_logging(cfg)
        settle = cfg.settle
        self.settler.retime(
            quiet_seconds=settle.quiet_seconds, max_wait_seconds=settle.max_wait_seconds,
            recheck_initial=settle.recheck_initial_seconds, recheck_max=settle.recheck_max_seconds,
        )  # fmt: skip
        added, removed, changed = self.watches.replace(cfg.watch)
        components.apply_hooks(cfg, self.journal, self.hooks)
        self.cfg = cfg
        if plan.sink_changed:
            self._restart_sink_later(old)
        log.info("config.reloaded", added_watches=added, removed_watches=removed,
                 changed_watches=changed, sink_restarted=plan.sink_changed,
                 needs_restart=list(plan.needs_restart) or None)  # fmt: skip
        return True

    def _apply_logging(self, cfg: Config) -> None:
        """Logging as `cfg` says, in this process and the sink's; the log file is reopened."""
        apply_logging(cfg.log.format, cfg.log.level, cfg.secrets(), cfg.log.file,
                      cfg.log.rate_limit, cfg.log.burst)  # fmt: skip
        if isinstance(self.sink_loop, SinkProcess):  # its own process: its own log stream
            self.sink_loop.apply_logging(cfg.log)

    def request_rescan(self, path: str | None) -> None:
        """Reconcile `path` (a subtree), or every watch root when None."""
        assert self._reconciler is not None
        if path is not None:
            self._reconciler.request(path)
            return
        for w in self.watches:
            self._reconciler.request(w.root)

    def _found(self, path: str, kind: str) -> None:
        self.inbox.put(path, "gone" if kind == "gone" else "changed")

    # ---- threads ----------------------------------------------------------------------

    def idle(self) -> bool:
        """Nothing pending in memory: no scan running, nothing settling or inspecting."""
        return (
            self._reconciler is not None and not self._reconciler.busy()
            and self.pipeline is not None and self.pipeline.idle()
        )  # fmt: skip

    def finished(self) -> bool:
        """Idle, and everything journaled has been delivered or dead-lettered."""
        if not self.idle() or self.writer is None or self.writer.pending():
            return False
        assert self.journal is not None
        if self.journal.sequences_pending():
            # Summaries wait REFRESH_DELAY for more frames; a one-shot scan does not.
            self.writer.offer(RefreshSequences(force=True))
            return False
        stats = self.journal.stats(paths=False)
        return stats.ready == 0 and stats.inflight == 0

    # ---- health, status -----------------------------------------------------------------

    def check_threads(self) -> str | None:
        """The reason something vital died, or None."""
        assert self.writer is not None and self.sink_loop is not None
        if not self.writer.alive():
            return f"journal writer died: {self.writer.error}"
        if self._sink_swap.acquire(blocking=False):  # not while a reload swaps it
            try:
                if not self.sink_loop.alive():
                    return f"sink loop died: {self.sink_loop.error}"
            finally:
                self._sink_swap.release()
        if self.hooks is not None and not self.hooks.alive():
            return f"hook loop died: {self.hooks.error}"
        if not all(w.is_alive() for w in self._workers):
            return "a worker thread died"
        return None

    # ---- lifecycle ----------------------------------------------------------------------

    def run(self, *, once: bool = False, progress: Callable[[Daemon], None] | None = None) -> int:
        """The main loop. `once`: reconcile, inspect, persist, then return (`scan`)."""
        try:
            self.start(watch=not once)
        except (OSError, JournalError, SinkUnavailable) as exc:
            self.shutdown()
            message = (f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError)
                       and exc.filename else str(exc))  # fmt: skip
            raise StartupError(message, transient=components.is_transient_start_error(exc)) from exc
        tune_for_throughput()
        log.info("daemon.ready", watches=len(self.watches), workers=self.cfg.daemon.workers,
                 sink=self.cfg.sink.kind, state_dir=str(self.cfg.daemon.state_dir),
                 pixel_stats=self.cfg.inspect.pixel_stats)  # fmt: skip
        if not once:
            self.telemetry.ready()
        try:
            code = self._main_loop(once, progress)
        except Exception as exc:
            log.exception("daemon.crashed", error=str(exc), error_type=type(exc).__name__)
            code = EXIT_FAILED
        self.shutdown()
        if self._exit_now:
            # Interpreter finalisation under a thread inside OpenImageIO aborts the process;
            # everything is journaled or closed by now, so skip it.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code

    def _main_loop(self, once: bool, progress: Callable[[Daemon], None] | None) -> int:
        next_rescan = time.monotonic() + self.cfg.daemon.rescan_interval
        next_status = 0.0
        code = EXIT_OK
        alive = True
        assert self.pipeline is not None
        while not self.stop_requested and not self.stopping.is_set():
            self.pipeline.step(self.clock)
            self.telemetry.pump()
            if self.reload_requested:
                self.reload_requested = False
                self.telemetry.reloading()
                self.reload()
                self.telemetry.ready()
            now = time.monotonic()
            self.telemetry.watchdog(now, alive)
            if progress is not None:
                progress(self)
            if now >= next_status:
                self.telemetry.write_status()
                next_status = now + 2.0
                self._rescan_if_resent()
                if self.writer is not None:  # sequences settle even when no frame arrives
                    self.writer.offer(RefreshSequences())
                if not once:
                    self.watches.revive()
                dead = self.check_threads()
                alive = dead is None
                if dead:
                    log.critical("daemon.unhealthy", reason=dead)
                    code = EXIT_FAILED  # let systemd restart us: restart finds all via the journal
                    break
            if now >= next_rescan:
                next_rescan = now + self.cfg.daemon.rescan_interval
                self.telemetry.metrics.rescans("interval")
                self.request_rescan(None)
            if once and self.finished():
                break
        return code

    def _rescan_if_resent(self) -> None:
        """The sink found its catalog lost and had the journal mark every live file: the
        reconciliation that inspects them again (the marks are durable, so a crash before it
        leaves the start-up scan to do it)."""
        assert self.sink_loop is not None
        resends = self.sink_loop.catalog_resets
        if resends > self._resends_seen:
            self.telemetry.metrics.rescans("catalog_lost")
            self.request_rescan(None)
        self._resends_seen = resends

    def shutdown(self) -> None:
        self.stopping.set()  # also when the loop ended on its own: no sink restart after this
        self.telemetry.stopping()
        self.telemetry.stop()
        p = self.pipeline
        inflight = set(p.inflight) if p else set()
        log.info("daemon.stopping", pending=len(self.settler), inflight=len(inflight))
        deadline = time.monotonic() + self.cfg.daemon.shutdown_timeout
        self.watches.stop_all()
        if self._reconciler is not None:
            self._reconciler.stop()
        if p is not None:
            p.finish(deadline, force=lambda: self.force)
            p.stop_workers(self.cfg.daemon.workers)
            if p.lane is not None:
                # Past the deadline too: each lane thread ends its current file first.
                grace = max(PIXEL_STOP_GRACE, deadline - time.monotonic())
                reading = p.lane.stop(timeout=grace)
                if reading:
                    log.error("daemon.pixel_reads_unfinished", threads=reading, waited=grace)
                    self._exit_now = True
        if self.writer is not None:
            self.writer.stop(timeout=max(1.0, deadline - time.monotonic()))
        if self.sink_loop is not None:
            # A swap in progress (reload) ends first; after it none starts (stopping is set).
            with self._sink_swap:
                self.sink_loop.stop(timeout=max(1.0, deadline - time.monotonic()))
        if self.hooks is not None:  # rows it did not get to stay in the journal
            self.hooks.stop(timeout=max(1.0, deadline - time.monotonic()))
        if self.journal is not None:
            self.journal.close()
        log.info("daemon.stopped", unfinished_inspections=len(p.inflight) if p else 0,
                 left_settling=len(self.settler))  # fmt: skip
