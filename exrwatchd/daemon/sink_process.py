"""The sink loop in a child process, so that shipping runs on its own core.

Python threads share one core (the GIL). Shipping (reading outbox entries back, building
catalog rows, writing them) costs about as much CPU per file as watching, settling,
inspecting and journaling together, so on its own process the daemon's throughput roughly
doubles (docs/benchmarks.md). Nothing else changes: the child talks to the parent only
through the journal (SQLite in WAL mode serialises the two writers) plus a wake-up event,
and reports its counters through shared memory. It runs on the parent's effective
configuration, never the file (edited since, it may name another state_dir): the first
message on its command pipe is that Config, credentials included (config/handoff.py), which
is why the parent takes them out of the environment the child inherits (Daemon.start).

The child dies with its parent (PR_SET_PDEATHSIG), so a `kill -9` of the daemon can never
leave an orphan shipping next to the restarted one.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import multiprocessing
import os
import pickle
import queue
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized, SynchronizedString
from typing import TYPE_CHECKING, Any

from exrwatchd._cpus import pin_process
from exrwatchd.config import Config, LogConfig, config_from_bytes, config_to_bytes

if TYPE_CHECKING:  # the child imports these itself, after spawning (see _child_main)
    from exrwatchd.pipeline import SinkLoop

_PR_SET_PDEATHSIG = 1
_ERROR_BYTES = 1024
_WAKE, _STOP = b"w", b"s"
_LOG = b"l"  # + a pickled LogConfig: apply it (a reload; the log file reopened)


@dataclass(frozen=True, slots=True)
class _Shared:
    """What the child shares with its parent: the read end of the command pipe, the counters
    in shared memory, and the queue of batch reports."""

    commands: Connection
    delivered: Synchronized[int]
    resends: Synchronized[int]
    unhealthy: Synchronized[float]
    last_error: SynchronizedString
    reports: Any  # multiprocessing.Queue of pipeline.BatchReport (not subscriptable at run time)
    parent_pid: int  # the daemon's: the child's getppid() may already be another's
    cpu: int | None  # the CPU the child pins itself to (exrwatchd._cpus), None: any

    def publish(self, loop: SinkLoop) -> None:
        """Copy the loop's counters where the parent reads them."""
        self.delivered.value = loop.delivered
        self.resends.value = loop.catalog_resets
        self.unhealthy.value = math.nan if loop.unhealthy_since is None else loop.unhealthy_since
        self.last_error.value = (loop.last_error or "").encode("utf-8", "replace")[
            : _ERROR_BYTES - 1
        ]

    def publish_error(self, error: BaseException) -> None:
        """The reason the loop died, which the parent reports as the reason the sink died."""
        self.last_error.value = f"{type(error).__name__}: {error}".encode("utf-8", "replace")[
            : _ERROR_BYTES - 1
        ]


class SinkProcess:
    """Same surface as pipeline.SinkLoop (start, alive, wake, stop, counters)."""

    def __init__(self, cfg: Config, cpu: int | None = None) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that has threads
        # A pipe, not multiprocessing.Event: a parent killed while holding an Event's lock
        # would leave the child blocked forever, while a pipe simply reads EOF.
        self._commands, self._control = ctx.Pipe(duplex=False)
        self._shared = _Shared(
            self._commands,
            delivered=ctx.Value("q", 0, lock=False),  # type: ignore[arg-type]
            resends=ctx.Value("q", 0, lock=False),  # type: ignore[arg-type]
            unhealthy=ctx.Value("d", math.nan, lock=False),  # type: ignore[arg-type]
            last_error=ctx.Array("c", _ERROR_BYTES, lock=False),  # type: ignore[arg-type]
            # Per-batch reports for the parent's metrics; bounded, and dropped when full
            # (they are statistics, never data).
            reports=ctx.Queue(maxsize=1000),
            parent_pid=os.getpid(),
            cpu=cpu,
        )
        self._process = ctx.Process(target=_child_main, name="exrwatchd-sink", daemon=True,
                                    args=(self._shared,))  # fmt: skip
        self._cfg = cfg
        self._started = False
        self._error: BaseException | None = None

    @property
    def error(self) -> BaseException | str | None:
        """Why the process is gone (its own log holds the details: sink.loop_failed)."""
        if self._error is not None:
            return self._error
        code = self._process.exitcode
        if code is None:
            return None
        last = self.last_error or "none reported"
        return f"sink process exited with code {code}; last error: {last} (see sink.loop_failed)"

    def start(self) -> None:
        self._process.start()
        self._commands.close()  # the child's end; ours is _control
        # The config must be the child's first message (see _child_main); a wake-up from the
        # journal writer's thread can come before start() (restart_sink), and is dropped
        # until then: the loop's first turn claims whatever is ready anyway.
        self._send(config_to_bytes(self._cfg))
        self._started = True

    def alive(self) -> bool:
        return self._process.is_alive()

    def _send(self, command: bytes) -> None:
        with contextlib.suppress(OSError, ValueError):  # a dead child is noticed elsewhere
            self._control.send_bytes(command)

    def wake(self, _count: int = 0) -> None:
        if self._started:
            self._send(_WAKE)

    def apply_logging(self, log: LogConfig) -> None:
        """A reload: log as `log` says from now on, reopening its file (logrotate moved it)."""
        if self._started:
            self._send(_LOG + pickle.dumps(log))

    @property
    def delivered(self) -> int:
        return int(self._shared.delivered.value)

    @property
    def catalog_resets(self) -> int:
        """How often the child found its catalog lost and had everything marked to resend."""
        return int(self._shared.resends.value)

    @property
    def unhealthy_since(self) -> float | None:
        value = float(self._shared.unhealthy.value)
        return None if math.isnan(value) else value

    @property
    def last_error(self) -> str | None:
        text = bytes(self._shared.last_error.value).decode("utf-8", "replace")
        return text or None

    def reports(self) -> list[Any]:
        """The batch reports (pipeline.BatchReport) that arrived since the last call."""
        out = []
        while True:
            try:
                out.append(self._shared.reports.get_nowait())
            except queue.Empty:
                return out

    def discard(self) -> None:
        """Let go of a process that was never started (a reload's, after shutdown began)."""
        self._commands.close()
        self._control.close()

    def stop(self, timeout: float) -> None:
        self._send(_STOP)
        self._process.join(timeout=timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
        if self._process.exitcode not in (0, None, -signal.SIGTERM):
            self._error = RuntimeError(f"sink process exited with {self._process.exitcode}")


class _Flag:
    """Set by the SIGTERM handler: a plain attribute and no lock. A threading.Event takes a
    lock, and a second SIGTERM arriving while the handler holds it (the parent's death
    signal can come more than once) deadlocks the child for good."""

    __slots__ = ("raised",)

    def __init__(self) -> None:
        self.raised = False

    def set(self, *_: object) -> None:
        self.raised = True


def _child_main(shared: _Shared) -> None:
    parent = shared.parent_pid
    _die_with_parent(shared)
    if shared.cpu is not None:  # before the imports below: they are most of its start-up
        # The parent pinned itself in the same sandbox, so this fails only where a CPU went
        # away meanwhile; the sink then runs where it was started, which is merely slower.
        with contextlib.suppress(OSError):
            pin_process(shared.cpu)
    # Imported here, once the child is bound to its parent's life: the child starts from
    # scratch (spawn), and the parent need not load the sink's dependencies twice.
    from exrwatchd.daemon.components import build_sink, open_journal
    from exrwatchd.daemon.gc_tuning import tune_for_batches
    from exrwatchd.logs import apply_logging, get_logger
    from exrwatchd.pipeline import SinkLoop

    stopping = _Flag()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, stopping.set)
    try:
        cfg = config_from_bytes(shared.commands.recv_bytes())
    except (EOFError, OSError):
        os._exit(0)  # the parent died before handing the config over: nothing to ship for
    apply_logging(cfg.log.format, cfg.log.level, cfg.secrets(), cfg.log.file,
                  cfg.log.rate_limit, cfg.log.burst)  # fmt: skip
    journal = open_journal(cfg)
    journal.acknowledgements_only()
    sink = build_sink(cfg)
    sink.open()

    def report(batch: Any) -> None:
        with contextlib.suppress(queue.Full):
            shared.reports.put_nowait(batch)

    loop = SinkLoop(journal, sink, batch_size=cfg.sink.batch_size,
                    batch_wait=cfg.sink.batch_wait_ms / 1000.0, on_batch=report,
                    between_batches=tune_for_batches())  # fmt: skip
    loop.start()
    get_logger("exrwatchd.sink_process").info("sink.started", sink=sink.name, pid=os.getpid())

    def relog(log: LogConfig) -> None:
        try:
            apply_logging(log.format, log.level, cfg.secrets(), log.file, log.rate_limit, log.burst)
        except OSError as exc:  # keep the old stream: a log file is no reason to stop shipping
            get_logger("exrwatchd.sink_process").error("log.reopen_failed", error=str(exc))

    try:
        _serve(loop, shared, parent, stopping, relog)
    finally:
        loop.stop(timeout=max(1.0, cfg.daemon.shutdown_timeout))
        shared.publish(loop)
        if loop.error is not None:
            shared.publish_error(loop.error)
        sink.close()
        journal.close()
    # Everything that matters is committed and closed; skip interpreter teardown, which
    # could wait on multiprocessing's helper threads of a parent that is already gone.
    os._exit(0)


def _die_with_parent(shared: _Shared) -> None:
    # Reports are statistics: never let an unread queue hold this process at exit (its
    # feeder thread would block forever on a full pipe once the parent is gone).
    shared.reports.cancel_join_thread()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: _serve's getppid() check still notices an orphaned child
    if os.getppid() != shared.parent_pid:
        # The parent died before the death signal was armed (a kill -9 while this child
        # was starting): no signal will ever come.
        os._exit(0)


def _serve(
    loop: SinkLoop,
    shared: _Shared,
    parent: int,
    stopping: _Flag,
    relog: Callable[[LogConfig], None],
) -> None:
    """Pass the parent's wake-ups to the loop and its logging settings to `relog`, and publish
    the loop's counters, until told to stop, the loop dies or the parent is gone."""
    while not stopping.raised and loop.alive() and os.getppid() == parent:
        try:
            if shared.commands.poll(0.2):
                command = shared.commands.recv_bytes()
                if command == _STOP:
                    break
                if command.startswith(_LOG):
                    relog(pickle.loads(command[len(_LOG) :]))
                else:
                    loop.wake()
        except (EOFError, OSError):
            break  # the parent is gone
        shared.publish(loop)
