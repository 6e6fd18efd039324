"""The hook loop: the thread between the journal's hook_outbox and the [[hook]]s.

Modelled on the sink loop (sink_loop.py): it claims due rows a few at a time, delivers each
(hook_delivery.py) and acknowledges it: delivered rows leave the journal, failed ones back
off (jittered exponential, on the monotonic clock: Journal.hook_fail) and are dead-lettered
after the hook's `max_attempts` or at once when retrying cannot help. A full disk or a
locked journal is waited out (diskfull.durably), never a reason to drop a row.

A hook never slows inspection or shipping: this thread is its own, and nothing else waits
for it. Rows are written by the journal writer in the same transaction as their cause
(journal/_hooks.py), so a crash loses none: rows left in flight are due again at the next
start. Within the loop, hooks are served one row at a time: a hook that hangs holds up the
other hooks for at most its `timeout_seconds` per row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from exrwatchd import _json
from exrwatchd._cpus import unpin_this_thread
from exrwatchd.config import HookConfig
from exrwatchd.journal import HookDelivery, Journal, JournalError
from exrwatchd.logs import get_logger
from exrwatchd.pipeline.diskfull import STOPPED, DiskFull, durably
from exrwatchd.pipeline.hook_delivery import Outcome, deliver

log = get_logger("exrwatchd.hooks")

T = TypeVar("T")

#: Rows claimed per turn: small, since each may take up to its hook's timeout, and rows
#: claimed but not yet delivered when the daemon stops wait for the next start.
CLAIM_LIMIT = 8
#: Seconds between looks at the journal when nothing was due.
IDLE_WAIT = 0.5


class HookLoop:
    """One thread that delivers hook rows, acknowledging each."""

    def __init__(self, journal: Journal, hooks: Iterable[HookConfig]) -> None:
        self._journal = journal
        self._hooks = {h.name: h for h in hooks}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hooks", daemon=True)
        self._full = DiskFull(journal.path, writer="hooks")
        self.error: BaseException | None = None
        # Only ever added to, by this thread; the daemon's telemetry (daemon/reporting.py)
        # reads them into exrwatchd_hook_deliveries_total, whose outcomes these keys are.
        self.counts = {"delivered": 0, "retried": 0, "dead_lettered": 0}

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def wake(self, _count: int = 0) -> None:
        self._wake.set()

    def set_hooks(self, hooks: Iterable[HookConfig]) -> None:
        """A reload: rows are delivered with the hooks' new settings from the next one on."""
        self._hooks = {h.name: h for h in hooks}

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        unpin_this_thread()  # its commands inherit its CPUs: they get them all
        try:
            while not self._stop.is_set():
                batch = self._durably(lambda: self._journal.hook_claim(CLAIM_LIMIT))
                if batch is None:
                    break
                if not batch:
                    self._wake.wait(IDLE_WAIT)
                    self._wake.clear()
                    continue
                for row in batch:
                    if self._stop.is_set():
                        break  # the rest stay in flight: due again at the next start
                    self._deliver(row)
        except BaseException as exc:
            if isinstance(exc, JournalError) and self._stop.is_set():
                return  # closed under a delivery that outlived shutdown: its row goes again
            self.error = exc
            log.critical("hook.loop_failed", error=str(exc), error_type=type(exc).__name__)
            raise

    def _durably(self, call: Callable[[], T]) -> T | None:
        result = durably(call, self._full, self._stop)
        if result is STOPPED:
            return None
        self._full.recovered()
        return result  # type: ignore[return-value]

    def _deliver(self, row: HookDelivery) -> None:
        hook = self._hooks.get(row.hook)
        fields = _about(row)
        if hook is None:
            outcome = Outcome("dead", f"hook {row.hook!r} is no longer configured")
            max_attempts = 1
        else:
            started = time.monotonic()
            try:
                outcome = deliver(hook, row.payload.encode("utf-8"))
            except Exception as exc:  # a bug in one delivery must not stop every hook
                outcome = Outcome("retry", f"{type(exc).__name__}: {exc}")
            fields["seconds"] = round(time.monotonic() - started, 3)
            max_attempts = hook.max_attempts
        if outcome.status is not None:
            fields["status"] = outcome.status
        if outcome.output:
            fields["output"] = outcome.output
        if outcome.result == "delivered":
            if self._durably(lambda: self._journal.hook_ack([row.id])) is None:
                return
            self.counts["delivered"] += 1
            level = log.info if outcome.output else log.debug
            level("hook.output" if outcome.output else "hook.delivered", **fields)
            return
        error = outcome.error or outcome.result
        dead = self._durably(
            lambda: self._journal.hook_fail(
                row.id, error, max_attempts=max_attempts, permanent=outcome.result == "dead"
            )
        )
        if dead is None:
            return
        self.counts["dead_lettered" if dead else "retried"] += 1
        attempt = row.attempts + 1
        log.warning("hook.failed", error=error, attempt=attempt, dead_letter=dead, **fields)


def _about(row: HookDelivery) -> dict[str, object]:
    """What a log line says about a row: the hook, the event and its subject, never the
    hook's URL (webhook URLs often hold a key) or headers."""
    try:
        event = _json.loads(row.payload)
    except ValueError:
        event = {}
    fields: dict[str, object] = {"hook": row.hook, "hook_event": event.get("event"),
                                 "event_id": event.get("id")}  # fmt: skip
    for key in ("path", "sequence"):
        if key in event:
            fields[key] = event[key]
    return fields
