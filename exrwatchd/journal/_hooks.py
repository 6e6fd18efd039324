"""Hook deliveries in the journal: the events a write causes, queued for every [[hook]] that
wants them in the same transaction as the write, then claimed, acknowledged, retried and
dead-lettered by the hook loop (pipeline/hook_loop.py).

At-least-once: a row exists as soon as what caused it is durable, and leaves only when its
hook took it (or an operator sees it dead in `journal failed`). Unlike the outbox there is
no superseding: an event is a fact about a moment, not the state of a path. Each row's
payload carries the event's id, made once when the row is written, so every redelivery
(after a retry, a crash, `journal retry`) carries the same id and receivers de-duplicate.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exrwatchd import _json
from exrwatchd.config import HookConfig
from exrwatchd.journal._conn import SharedConnection
from exrwatchd.journal._rows import clean_text
from exrwatchd.journal.types import DeadLetter, Delete, Persist
from exrwatchd.sequences import SequenceEvent

INSERT = """
    INSERT INTO hook_outbox (hook, event, subject, state, attempts, next_attempt_at,
                             created_at, updated_at, payload)
    VALUES (?, ?, ?, 'ready', 0, ?, ?, ?, ?)
"""
SELECT_DUE = """
    SELECT id, hook, payload, attempts FROM hook_outbox
    WHERE state = 'ready' AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?
"""
MARK_INFLIGHT = "UPDATE hook_outbox SET state = 'inflight', updated_at = ? WHERE id = ?"
DELETE = "DELETE FROM hook_outbox WHERE id = ?"
SELECT_INFLIGHT = "SELECT attempts FROM hook_outbox WHERE id = ? AND state = 'inflight'"
SET_READY_LATER = """
    UPDATE hook_outbox SET state = 'ready', attempts = ?, last_error = ?, next_attempt_at = ?,
        updated_at = ?
    WHERE id = ?
"""
SET_DEAD = """
    UPDATE hook_outbox SET state = 'dead', attempts = ?, last_error = ?, updated_at = ?
    WHERE id = ?
"""
RESET_INFLIGHT = """
    UPDATE hook_outbox SET state = 'ready', next_attempt_at = ?, updated_at = ?
    WHERE state = 'inflight'
"""
DUE_NOW_IF_FAR = (
    "UPDATE hook_outbox SET next_attempt_at = ? WHERE state = 'ready' AND next_attempt_at > ?"
)
SELECT_DEAD = """
    SELECT id, subject, hook, event, attempts, last_error, updated_at FROM hook_outbox
    WHERE state = 'dead' ORDER BY updated_at DESC, id DESC LIMIT ?
"""
REQUEUE_DEAD = """
    UPDATE hook_outbox SET state = 'ready', attempts = 0, next_attempt_at = :due,
        updated_at = :now
    WHERE state = 'dead' AND (:path IS NULL OR subject = :path)
"""
COUNT = "SELECT state, count(*) FROM hook_outbox GROUP BY state"
STATES = ("ready", "inflight", "dead")


@dataclass(frozen=True, slots=True)
class HookDelivery:
    """One claimed row: the event `payload` (JSON text, sent as is) for hook `hook`."""

    id: int
    hook: str
    payload: str
    attempts: int  # failed attempts so far


def _timestamp(now: float) -> str:
    return datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _file_events(item: Persist) -> Iterable[tuple[str, dict[str, Any]]]:
    record = item.record or {}
    if item.status == "incomplete":
        error = record.get("error")
        reason = record.get("incomplete_reason") or (
            error.get("message") if isinstance(error, dict) else None)  # fmt: skip
        yield "file.incomplete", {"reason": reason}
    stats = record.get("pixel_stats")
    if isinstance(stats, dict) and stats.get("unhealthy"):
        yield "file.unhealthy", {"reasons": list(stats["unhealthy"])}


def queue(
    conn: sqlite3.Connection, hooks: Sequence[HookConfig], items: Iterable[Persist | Delete],
    sequence_events: Iterable[SequenceEvent], now: float, due: float,
) -> None:  # fmt: skip
    """Insert one row per (hook, event) for the events of this write (inside its transaction).

    File events: a final incomplete verdict (only those are journaled: rechecks are not), and
    a record whose pixel checks flagged it. Sequence events: those refresh() returned."""
    if not hooks:
        return
    when = _timestamp(now)
    rows: list[tuple[Any, ...]] = []

    def add(event: str, subject: str, where: str, about: dict[str, Any]) -> None:
        wanted = [h.name for h in hooks if h.matches(event, where)]
        if not wanted:
            return
        payload = _json.dumps({"id": str(uuid.uuid4()), "event": event, "time": when,
                               **about})  # fmt: skip
        key = os.fsencode(subject)
        rows.extend((name, event, key, due, now, now, payload) for name in wanted)

    for item in items:
        if isinstance(item, Persist):
            for event, facts in _file_events(item):
                add(event, item.path, item.path, {"path": item.path, "facts": facts})
    for ev in sequence_events:
        # The notation `exrwatchd sequences` prints: directory/pattern.
        sequence = os.path.join(ev.directory, ev.pattern)
        facts = {k: v for k, v in ev.fields().items() if k not in ("directory", "pattern")}
        add(ev.event, sequence, ev.directory, {"sequence": sequence, "directory": ev.directory,
                                               "pattern": ev.pattern, "facts": facts})  # fmt: skip
    conn.executemany(INSERT, rows)


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows by state: ready, inflight, dead (every key present). One pass over the
    (state, next_attempt_at) index."""
    found = dict(conn.execute(COUNT).fetchall())
    return {state: int(found.get(state, 0)) for state in STATES}


def reset(conn: sqlite3.Connection, now: float, due: float, far: float) -> None:
    """At start: rows left in flight by a crash are due now, and so are due times further
    ahead than `far` (from before a reboot, which restarts the monotonic clock)."""
    conn.execute(RESET_INFLIGHT, (due, now))
    conn.execute(DUE_NOW_IF_FAR, (due, far))


class JournalHooks(SharedConnection):
    """The hook loop's side of the hook_outbox (a mixin of Journal, store.py)."""

    _clock: Callable[[], float]
    _monotonic: Callable[[], float]
    _backoff: Callable[[int], float]
    _hooks: tuple[HookConfig, ...] = ()

    def set_hooks(self, hooks: Iterable[HookConfig]) -> None:
        """The hooks writes queue events for from now on (at start and on every reload)."""
        self._hooks = tuple(hooks)

    def hook_claim(self, limit: int) -> list[HookDelivery]:
        """Mark up to `limit` due rows 'inflight' and return them, oldest due first. Each must
        come back through hook_ack or hook_fail (or the reset at the next start)."""
        now, due = self._clock(), self._monotonic()
        with self._transaction("hook_claim") as conn:
            rows = conn.execute(SELECT_DUE, (due, limit)).fetchall()
            conn.executemany(MARK_INFLIGHT, [(now, row[0]) for row in rows])
        return [HookDelivery(*row) for row in rows]

    def hook_ack(self, ids: Sequence[int]) -> int:
        """The hook took them: delete the rows. Returns how many were there."""
        with self._transaction("hook_ack") as conn:
            return conn.executemany(DELETE, [(i,) for i in ids]).rowcount

    def hook_fail(self, id_: int, error: str, *, max_attempts: int, permanent: bool) -> bool:
        """A failed delivery: 'ready' again after a jittered exponential backoff, or 'dead'
        (permanent, or the `max_attempts`-th failure). True when dead-lettered."""
        now, due_now = self._clock(), self._monotonic()
        with self._transaction("hook_fail") as conn:
            row = conn.execute(SELECT_INFLIGHT, (id_,)).fetchone()
            if row is None:
                return False
            attempts = row[0] + 1
            if permanent or attempts >= max_attempts:
                conn.execute(SET_DEAD, (attempts, clean_text(error), now, id_))
                return True
            due = due_now + self._backoff(attempts)
            conn.execute(SET_READY_LATER, (attempts, clean_text(error), due, now, id_))
            return False

    def hook_counts(self) -> dict[str, int]:
        """Rows by state: ready, inflight, dead (every key present)."""
        with self._reading("hook_counts") as conn:
            return counts(conn)

    def hook_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Dead hook rows, most recently failed first (op 'hook', `hook` naming hook and
        event)."""
        with self._reading("hook_dead_letters") as conn:
            rows = conn.execute(SELECT_DEAD, (limit,)).fetchall()
        return [DeadLetter(id=id_, path=os.fsdecode(subject), op="hook", attempts=attempts,
                           last_error=error, updated_at=updated, hook=f"{hook} {event}")
                for id_, subject, hook, event, attempts, error, updated in rows]  # fmt: skip

    def requeue_dead_hooks(self, path: str | None = None) -> int:
        """Dead hook rows (all, or those about `path`) go back to 'ready', due now."""
        params = {"now": self._clock(), "due": self._monotonic(),
                  "path": None if path is None else os.fsencode(path)}  # fmt: skip
        with self._transaction("requeue_dead_hooks") as conn:
            return conn.execute(REQUEUE_DEAD, params).rowcount
