"""The daemon's lifecycle, in one place: start-up, the settle loop, shutdown.

Threads, and what each owns:
- main: the settle loop. Owns the Settler and the set of paths being inspected; drains the
  observers' Inbox, hands settled files to workers, turns verdicts into journal writes.
- observers (watchdog inotify, or one poll thread per polled mount): feed the Inbox.
- reconciler: full scans (start, every rescan_interval, after lost events) and subtree
  walks (directories that appeared or vanished); feeds the Inbox.
- workers: inspect settled files (CPU-bound; see docs/benchmarks.md for threads vs
  processes).
- journal writer, sink loop: see shipper.py.
Signal handlers only set flags; the main loop does the work.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from exrwatchd.config import Config, WatchConfig
from exrwatchd.errors import ExrwatchdError
from exrwatchd.inspector import Verdict, inspect_settled
from exrwatchd.journal import Delete, Journal, Persist
from exrwatchd.logs import get_logger
from exrwatchd.reconcile import RootUnavailable, journal_known, reconcile
from exrwatchd.shipper import JournalWriter, SinkLoop
from exrwatchd.sinks.base import Sink
from exrwatchd.watch.filters import NameFilter
from exrwatchd.watch.mounts import choose_backend, is_network_fs, mount_fstype
from exrwatchd.watch.observers import Inbox, InotifyWatcher, PollWatcher
from exrwatchd.watch.settle import SettledFile, Settler, Vanished

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 78  # EX_CONFIG: systemd's Restart=on-failure will not help; the config must change

log = get_logger("exrwatchd.daemon")


class StartupError(ExrwatchdError):
    """The daemon cannot start (state_dir on a network file system, journal unusable...)."""


def open_journal(cfg: Config) -> Journal:
    state_dir = str(cfg.daemon.state_dir)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    fstype, mount_point = mount_fstype(state_dir)
    if is_network_fs(fstype):
        raise StartupError(
            f"daemon.state_dir {state_dir} is on a {fstype} mount ({mount_point}); the journal "
            "needs a local disk (SQLite WAL does not work on network file systems)"
        )
    return Journal.open(
        cfg.daemon.state_dir, max_attempts=cfg.sink.max_attempts,
        backoff_initial=cfg.sink.backoff_initial_seconds,
        backoff_max=cfg.sink.backoff_max_seconds,
    )  # fmt: skip


def build_sink(cfg: Config) -> Sink:
    if cfg.sink.kind == "local":
        from exrwatchd.sinks.local import LocalSink

        return LocalSink(cfg.daemon.state_dir / "catalog.db")
    raise StartupError(f"{cfg.source}: sink.kind = {cfg.sink.kind!r} is not available yet")


@dataclass
class _Watch:
    cfg: WatchConfig
    accept: NameFilter
    backend: str
    watcher: InotifyWatcher | PollWatcher | None = None


@dataclass
class Counters:
    detected: int = 0
    inspected: int = 0
    failed: int = 0
    incomplete: int = 0
    deleted: int = 0
    started_at: float = field(default_factory=time.time)


class Daemon:
    """`run()` until stopped. `once=True` makes it the one-shot `scan` command."""

    def __init__(self, cfg: Config, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.inbox = Inbox()
        self.stopping = threading.Event()
        self.force = False
        self.counters = Counters()
        self._rescan = queue.Queue[str | None]()  # roots (or subtrees) to reconcile
        self._scanning = threading.Event()
        self._work: queue.Queue[SettledFile | None] = queue.Queue(maxsize=cfg.daemon.queue_size)
        self._verdicts: queue.Queue[Verdict] = queue.Queue()
        self._inflight: set[str] = set()
        self._dirty: set[str] = set()
        self.settler = Settler(
            quiet_seconds=cfg.settle.quiet_seconds, max_wait_seconds=cfg.settle.max_wait_seconds,
            recheck_initial=cfg.settle.recheck_initial_seconds,
            recheck_max=cfg.settle.recheck_max_seconds, clock=clock,
        )  # fmt: skip
        self.watches = [_Watch(w, NameFilter(w.include, w.exclude), w.backend) for w in cfg.watch]
        self.journal: Journal | None = None
        self.writer: JournalWriter | None = None
        self.sink_loop: SinkLoop | None = None
        self._workers: list[threading.Thread] = []
        self._reconciler: threading.Thread | None = None

    # ---- start-up ---------------------------------------------------------------------

    def start(self, *, watch: bool = True) -> None:
        """Open the journal and sink, start the threads; `watch=False` for one-shot scans."""
        self.journal = open_journal(self.cfg)
        reset = self.journal.reset_inflight()
        if reset:
            log.info("journal.resumed", inflight_reset=reset)
        sink = build_sink(self.cfg)
        sink.open()
        self.sink_loop = SinkLoop(
            self.journal, sink, batch_size=self.cfg.sink.batch_size,
            batch_wait=self.cfg.sink.batch_wait_ms / 1000.0,
        )  # fmt: skip
        self.writer = JournalWriter(self.journal, on_commit=self.sink_loop.wake)
        self.writer.start()
        self.sink_loop.start()
        for i in range(self.cfg.daemon.workers):
            worker = threading.Thread(target=self._work_loop, name=f"worker-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)
        # Watch first, then reconcile: a file written during the first scan is seen by one
        # or the other (or both: the settle loop collapses them).
        if watch:
            for w in self.watches:
                self._start_watch(w)
        self._reconciler = threading.Thread(target=self._reconcile_loop, name="reconciler",
                                            daemon=True)  # fmt: skip
        self._reconciler.start()
        for w in self.watches:
            self._rescan.put(str(w.cfg.path))

    def _start_watch(self, watch: _Watch) -> None:
        root = str(watch.cfg.path)
        backend, reason = choose_backend(watch.cfg.backend, root)
        watch.backend = backend
        if backend == "inotify":
            watch.watcher = InotifyWatcher(
                root, self.inbox, watch.accept.accepts, recursive=watch.cfg.recursive,
                follow_symlinks=watch.cfg.follow_symlinks,
            )  # fmt: skip
        else:
            assert self.journal is not None
            watch.watcher = PollWatcher(
                root, self.inbox, watch.accept.accepts, recursive=watch.cfg.recursive,
                follow_symlinks=watch.cfg.follow_symlinks, interval=watch.cfg.poll_interval,
                known=journal_known(self.journal), on_error=self._walk_error,
            )  # fmt: skip
        try:
            watch.watcher.start()
        except OSError as exc:
            # A missing mount or exhausted inotify watches: keep going on rescans alone.
            log.error("watch.failed", path=root, backend=backend, error=str(exc),
                      error_type=type(exc).__name__)  # fmt: skip
            watch.watcher = None
            return
        log.info("watch.started", path=root, backend=backend, reason=reason)

    def _walk_error(self, path: str, exc: OSError) -> None:
        log.warning("watch.walk_error", path=path, error=exc.strerror or str(exc))

    # ---- threads ----------------------------------------------------------------------

    def _work_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            try:
                verdict = inspect_settled(item)
            except Exception as exc:  # a reader bug must not kill the worker or lose the file
                log.exception("file.failed", path=item.path, error=str(exc), stage="inspect",
                              error_type=type(exc).__name__)  # fmt: skip
                verdict = Verdict(item, "record", "failed", item.sig, None, str(exc), None)
            self._verdicts.put(verdict)
            self.inbox.wakeup.set()

    def _reconcile_loop(self) -> None:
        while True:
            root = self._rescan.get()
            if root is None:
                return
            self._scanning.set()
            try:
                self._reconcile_one(root)
            finally:
                if self._rescan.empty():
                    self._scanning.clear()
                self.inbox.wakeup.set()

    def _reconcile_one(self, root: str) -> None:
        assert self.journal is not None
        watch = next((w for w in self.watches if root == str(w.cfg.path)
                      or root.startswith(str(w.cfg.path) + os.sep)), None)  # fmt: skip
        if watch is None:
            return
        started = time.monotonic()
        log.info("scan.started", path=root)
        found = gone = 0
        try:
            for item in reconcile(
                root, self.journal, watch.accept.accepts, recursive=watch.cfg.recursive,
                follow_symlinks=watch.cfg.follow_symlinks, on_error=self._walk_error,
                is_watch_root=root == str(watch.cfg.path),
            ):  # fmt: skip
                if self.stopping.is_set():
                    return
                self.inbox.put(item.path, "gone" if item.kind == "gone" else "changed")
                found += item.kind == "changed"
                gone += item.kind == "gone"
        except RootUnavailable as exc:
            log.error("scan.root_unavailable", path=root, error=str(exc))
            return
        log.info("scan.finished", path=root, changed=found, gone=gone,
                 seconds=round(time.monotonic() - started, 3))  # fmt: skip

    # ---- the settle loop --------------------------------------------------------------

    def _drain_inbox(self) -> None:
        items, lost = self.inbox.drain()
        for reason in lost:
            log.warning("watch.events_lost", reason=reason)
        if lost:
            for watch in self.watches:
                self._rescan.put(str(watch.cfg.path))
        for path, kind in items.items():
            if kind == "subtree":
                self._rescan.put(path)
                continue
            if path not in self.settler:
                self.counters.detected += 1
                log.debug("file.detected", path=path, trigger=kind)
            self.settler.observe(path, kind)

    def _dispatch(self) -> None:
        free = self._work.maxsize - self._work.qsize()
        for item in self.settler.poll(limit=max(0, free)):
            if isinstance(item, Vanished):
                self._record_gone(item.path)
                continue
            if item.path in self._inflight:
                self._dirty.add(item.path)  # inspect again once the current look finishes
                continue
            log.info("file.settled", path=item.path, size=item.sig.size, attempt=item.attempt)
            self._inflight.add(item.path)
            self._work.put(item)

    def _record_gone(self, path: str) -> None:
        assert self.journal is not None and self.writer is not None
        self.counters.deleted += 1
        log.info("file.deleted", path=path)
        self.writer.put(Delete(path))
        self._settled(path)

    def _settled(self, path: str) -> None:
        for watch in self.watches:
            if isinstance(watch.watcher, PollWatcher):
                watch.watcher.settled(path)

    def _handle_verdicts(self) -> None:
        assert self.writer is not None
        while True:
            try:
                v = self._verdicts.get_nowait()
            except queue.Empty:
                return
            path = v.settled.path
            self._inflight.discard(path)
            if path in self._dirty:
                self._dirty.discard(path)
                self.settler.observe(path)
                continue
            if v.kind == "vanished":
                self._record_gone(path)
            elif v.kind == "changed":
                self.settler.observe(path)
            elif v.kind == "recheck" and self.settler.recheck(
                path, v.settled.first_seen, v.settled.attempt
            ):
                log.info("file.incomplete", path=path, reason=v.reason, attempt=v.settled.attempt,
                         will_recheck=True)  # fmt: skip
            else:
                self._persist(v)

    def _persist(self, v: Verdict) -> None:
        assert self.writer is not None
        path = v.settled.path
        if v.record is None:  # the reader itself crashed: record that, not nothing
            v = Verdict(v.settled, v.kind, "failed", v.sig, None, v.reason,
                        _crash_record(path, v.reason))  # fmt: skip
        if v.status == "complete":
            self.counters.inspected += 1
            log.info("file.inspected", path=path, header_hash=v.header_hash,
                     parts=len(v.record["parts"]))  # type: ignore[index]  # fmt: skip
        elif v.status == "incomplete":
            self.counters.incomplete += 1
            log.warning("file.incomplete", path=path, reason=v.reason, will_recheck=False)
        else:
            self.counters.failed += 1
            error = v.record.get("error") or {}  # type: ignore[union-attr]
            log.warning("file.failed", path=path, error=v.reason, stage="inspect",
                        error_type=error.get("kind"))  # fmt: skip
        self.writer.put(Persist(path, v.sig, v.header_hash, v.status, v.record))  # type: ignore[arg-type]
        self._settled(path)

    def idle(self) -> bool:
        """Nothing pending anywhere in memory (the outbox may still hold entries)."""
        return (
            not self._scanning.is_set() and self._rescan.empty() and len(self.inbox) == 0
            and len(self.settler) == 0 and not self._inflight and self._verdicts.empty()
            and self._work.empty()
        )  # fmt: skip

    def finished(self) -> bool:
        """Idle, and everything journaled has been delivered or dead-lettered."""
        if not self.idle() or self.writer is None or self.writer.pending():
            return False
        assert self.journal is not None
        stats = self.journal.stats()
        return stats.ready == 0 and stats.inflight == 0

    def loop_once(self, max_wait: float = 0.5) -> None:
        self._drain_inbox()
        self._handle_verdicts()
        self._dispatch()
        due = self.settler.next_due()
        wait = max_wait if due is None else min(max_wait, max(0.0, due - self.clock()))
        if wait > 0:
            self.inbox.wakeup.wait(wait)
        self.inbox.wakeup.clear()

    # ---- health, status -----------------------------------------------------------------

    def check_threads(self) -> str | None:
        """The reason something vital died, or None."""
        assert self.writer is not None and self.sink_loop is not None
        if not self.writer.alive():
            return f"journal writer died: {self.writer.error}"
        if not self.sink_loop.alive():
            return f"sink loop died: {self.sink_loop.error}"
        if not all(w.is_alive() for w in self._workers):
            return "a worker thread died"
        for watch in self.watches:
            if watch.watcher is not None and not watch.watcher.alive():
                return f"watcher for {watch.cfg.path} died"
        return None

    def write_status(self) -> None:
        assert self.journal is not None
        status = {
            "pid": os.getpid(), "updated_at": time.time(), "started_at": self.counters.started_at,
            "pending": len(self.settler), "queue_depth": self._work.qsize(),
            "inflight": len(self._inflight),
            "journal_queue": self.writer.pending() if self.writer else 0,
            "detected": self.counters.detected, "inspected": self.counters.inspected,
            "failed": self.counters.failed, "incomplete": self.counters.incomplete,
            "deleted": self.counters.deleted,
            "persisted": self.sink_loop.delivered if self.sink_loop else 0,
            "sink_unhealthy_since": self.sink_loop.unhealthy_since if self.sink_loop else None,
            "sink_last_error": self.sink_loop.last_error if self.sink_loop else None,
            "watches": [{"path": str(w.cfg.path), "backend": w.backend} for w in self.watches],
        }  # fmt: skip
        target = Path(self.cfg.daemon.state_dir) / "status.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        os.replace(tmp, target)

    # ---- lifecycle ----------------------------------------------------------------------

    def run(
        self, *, once: bool = False, progress: Callable[[Daemon], None] | None = None
    ) -> int:
        """The main loop. `once`: reconcile, inspect, persist, then return (`scan`)."""
        self.start(watch=not once)
        log.info("daemon.ready", watches=len(self.watches), workers=self.cfg.daemon.workers,
                 sink=self.cfg.sink.kind, state_dir=str(self.cfg.daemon.state_dir))  # fmt: skip
        try:
            code = self._main_loop(once, progress)
        except Exception as exc:
            log.exception("daemon.crashed", error=str(exc), error_type=type(exc).__name__)
            code = EXIT_FAILED
        self.shutdown()
        return code

    def _main_loop(self, once: bool, progress: Callable[[Daemon], None] | None) -> int:
        next_rescan = time.monotonic() + self.cfg.daemon.rescan_interval
        next_status = 0.0
        code = EXIT_OK
        while not self.stopping.is_set():
            self.loop_once()
            now = time.monotonic()
            if progress is not None:
                progress(self)
            if now >= next_status:
                self.write_status()
                next_status = now + 2.0
                dead = self.check_threads()
                if dead:
                    log.critical("daemon.unhealthy", reason=dead)
                    code = EXIT_FAILED  # let systemd restart us: restart finds all via the journal
                    break
            if now >= next_rescan:
                next_rescan = now + self.cfg.daemon.rescan_interval
                for watch in self.watches:
                    self._rescan.put(str(watch.cfg.path))
            if once and self.finished():
                break
        return code

    def shutdown(self) -> None:
        log.info("daemon.stopping", pending=len(self.settler), inflight=len(self._inflight))
        deadline = time.monotonic() + self.cfg.daemon.shutdown_timeout
        for watch in self.watches:
            if watch.watcher is not None:
                watch.watcher.stop()
        self._rescan.put(None)
        # Let in-flight inspections finish and reach the journal; drop nothing silently:
        # whatever is still pending is found again by the start-up reconciliation.
        while self._inflight and time.monotonic() < deadline and not self.force:
            self._handle_verdicts()
            time.sleep(0.01)
        self._handle_verdicts()
        for _ in self._workers:
            try:
                self._work.put_nowait(None)
            except queue.Full:
                break
        if self.writer is not None:
            self.writer.stop(timeout=max(1.0, deadline - time.monotonic()))
        if self.sink_loop is not None:
            self.sink_loop.stop(timeout=max(1.0, deadline - time.monotonic()))
        if self.journal is not None:
            self.journal.close()
        log.info("daemon.stopped", unfinished=len(self._inflight) + len(self.settler))

    def install_signal_handlers(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            if self.stopping.is_set() and signum == signal.SIGINT:
                self.force = True  # a second Ctrl-C: stop waiting for in-flight work
            self.stopping.set()
            self.inbox.wakeup.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


def _crash_record(path: str, reason: str | None) -> dict:
    from exrwatchd.exr.model import InspectError, Inspection
    from exrwatchd.inspector import make_record

    error = InspectError("internal", reason or "inspection crashed")
    return make_record(Inspection(path, None, None, False, None, None, error, ()))
