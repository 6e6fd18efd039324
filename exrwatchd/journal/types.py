"""The values exrwatchd/journal/store.py takes and returns, and how they map to journal rows.

exrwatchd.journal re-exports the public names here; import them from there. The row
functions mirror the column order of the statements in exrwatchd/journal/_sql.py.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from exrwatchd.filesig import FileSig
from exrwatchd.journal._rows import clean_text, decode_record, encode_record

Op = Literal["upsert", "delete", "sequence"]
PathStatus = Literal["complete", "incomplete", "failed", "deleted"]

LIVE_STATUSES = frozenset({"complete", "incomplete", "failed"})
ALL_STATUSES: tuple[PathStatus, ...] = ("complete", "incomplete", "failed", "deleted")


@dataclass(frozen=True, slots=True)
class Persist:
    """A finished inspection of `path`, to be recorded and shipped."""

    path: str
    sig: FileSig | None
    header_hash: str | None
    status: PathStatus
    record: dict[str, Any]  # the JSON record (docs/architecture.md)


@dataclass(frozen=True, slots=True)
class Delete:
    """`path` is gone (deleted or moved out of the tree)."""

    path: str


@dataclass(frozen=True, slots=True)
class Rechecking:
    """Not a verdict: `path` inspected incomplete and the daemon waits for the rest of it.
    A frame of a sequence shows as in progress until its verdict; nothing is shipped."""

    path: str


@dataclass(frozen=True, slots=True)
class RefreshSequences:
    """Not a path: asks the journal writer to bring due frame sequences up to date (all of
    them with `force`), so they settle even when no new frames arrive."""

    force: bool = False


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    path: str
    op: Op
    record: dict[str, Any] | None  # None for deletions
    attempts: int
    created_at: float  # unix seconds


@dataclass(frozen=True, slots=True)
class ClaimedEntry:
    """A claimed outbox entry with its record still as the journal stores it (compressed
    JSON): `entry()` decodes it. The sink loop decodes after the claim's transaction, so
    decoding does not hold the journal's write lock, and a damaged record fails alone."""

    id: int
    path: str
    op: Op
    stored: bytes | str | None
    attempts: int
    created_at: float

    def entry(self) -> OutboxEntry:
        """The OutboxEntry; ValueError, naming the path, if its record cannot be decoded
        (damaged on disk)."""
        try:
            record = None if self.stored is None else decode_record(self.stored)
        except (ValueError, zlib.error) as exc:
            raise ValueError(f"{self.path}: the record cannot be read back from the journal "
                             f"({exc})") from exc  # fmt: skip
        return OutboxEntry(self.id, self.path, self.op, record, self.attempts, self.created_at)


@dataclass(frozen=True, slots=True)
class PathState:
    path: str
    sig: FileSig | None
    header_hash: str | None
    status: PathStatus
    error: str | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class JournalStats:
    """A consistent snapshot of the journal, for `exrwatchd status` and metrics."""

    ready: int
    inflight: int
    dead: int
    outbox_total: int
    paths_by_status: dict[PathStatus, int]  # every PathStatus is a key, zero included
    oldest_ready_age: float | None  # seconds since the oldest ready entry was written
    last_error: str | None  # most recent delivery error still on an outbox entry
    last_error_path: str | None
    last_error_at: float | None
    # Frames inspected incomplete that the daemon waits for (Rechecking): normal while a
    # farm writes, and `exrwatchd sequences` lists them.
    frames_in_progress: int
    hooks: dict[str, int]  # hook deliveries by state: ready, inflight, dead (every key)
    # Live paths marked to be read again (after a journal rebuild, a lost catalog, `reembed`)
    # that reconciliation has not inspected yet: until it has, an empty outbox is not the end.
    to_read_again: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An outbox entry that will not be retried until someone requeues it."""

    id: int
    path: str
    op: Op | Literal["hook"]  # "hook": an event for a [[hook]] (journal/_hooks.py)
    attempts: int
    last_error: str | None
    updated_at: float
    hook: str | None = None  # for op "hook": the hook's name and the event


# -- values -> statement parameters ---------------------------------------------------------


@dataclass(slots=True)
class WriteParams:
    """The parameters of one Journal.write, statement by statement."""

    path_rows: list[tuple[object, ...]]  # UPSERT_PATH
    tombstones: list[tuple[float, bytes]]  # TOMBSTONE_PATH
    keys: list[tuple[bytes]]  # DROP_SUPERSEDED
    entries: list[tuple[object, ...]]  # INSERT_OUTBOX


def write_params(items: Iterable[Persist | Delete], now: float, due: float) -> WriteParams:
    """The parameters for `items` (one per path); TypeError or ValueError if one is unfit.

    `now` is wall-clock time (kept for people), `due` the journal's monotonic time (when the
    entries are due)."""
    params = WriteParams([], [], [], [])
    for item in items:
        key = os.fsencode(item.path)
        params.keys.append((key,))
        if isinstance(item, Persist):
            if item.status not in LIVE_STATUSES:
                raise ValueError(f"Persist of {item.path!r} with status {item.status!r}")
            sig = item.sig
            params.path_rows.append((
                key, os.path.dirname(key),
                sig.size if sig else None, sig.mtime_ns if sig else None,
                sig.inode if sig else None,
                item.header_hash, item.status, _error_message(item.record), now,
            ))  # fmt: skip
            params.entries.append((key, "upsert", due, now, now, encode_record(item.record)))
        elif isinstance(item, Delete):
            params.tombstones.append((now, key))
            params.entries.append((key, "delete", due, now, now, None))
        else:
            raise TypeError(f"cannot journal {type(item).__name__}")
    return params


def _error_message(record: dict[str, Any]) -> str | None:
    error = record.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return None if message is None else clean_text(str(message))


# -- query rows -> values ---------------------------------------------------------------------


def claimed_entry(row: tuple[Any, ...]) -> ClaimedEntry:
    """A ClaimedEntry from a SELECT_CLAIMABLE row: the record left as stored."""
    id_, key, op, record, attempts, created_at = row
    return ClaimedEntry(id_, os.fsdecode(key), op, record, attempts, created_at)


def outbox_entry(row: tuple[Any, ...]) -> OutboxEntry:
    """An OutboxEntry from a SELECT_CLAIMABLE row: the record decoded."""
    return claimed_entry(row).entry()


def dead_letter(row: tuple[Any, ...]) -> DeadLetter:
    """A DeadLetter from a SELECT_DEAD row."""
    id_, key, op, attempts, error, updated_at = row
    return DeadLetter(id=id_, path=os.fsdecode(key), op=op, attempts=attempts,
                      last_error=error, updated_at=updated_at)  # fmt: skip


def path_state(row: tuple[Any, ...]) -> PathState:
    """A PathState from a row of PATH_COLUMNS."""
    key, size, mtime_ns, inode, header_hash, status, error, updated_at = row
    sig = None if size is None else FileSig(size=size, mtime_ns=mtime_ns, inode=inode)
    return PathState(
        path=os.fsdecode(key), sig=sig, header_hash=header_hash, status=status,
        error=error, updated_at=updated_at,
    )  # fmt: skip


def journal_stats(
    now: float,
    by_state: dict[str, int],
    path_rows: Sequence[tuple[str, int, int | None]],
    oldest: tuple[Any, ...] | None,
    error: tuple[Any, ...] | None,
    frames_in_progress: int = 0,
    hooks: dict[str, int] | None = None,
) -> JournalStats:
    """JournalStats from the COUNT_OUTBOX, COUNT_PATHS, OLDEST_READY and LAST_ERROR rows,
    the COUNT_FRAMES_IN_PROGRESS count and the hook rows by state (journal/_hooks.py)."""
    by_status = {status: count for status, count, _ in path_rows}
    return JournalStats(
        ready=by_state.get("ready", 0),
        inflight=by_state.get("inflight", 0),
        dead=by_state.get("dead", 0),
        outbox_total=sum(by_state.values()),
        paths_by_status={s: by_status.get(s, 0) for s in ALL_STATUSES},
        oldest_ready_age=None if oldest is None else max(0.0, now - oldest[0]),
        last_error=None if error is None else error[1],
        last_error_path=None if error is None else os.fsdecode(error[0]),
        last_error_at=None if error is None else error[2],
        frames_in_progress=frames_in_progress,
        hooks={state: (hooks or {}).get(state, 0) for state in ("ready", "inflight", "dead")},
        to_read_again=sum(marked or 0 for status, _, marked in path_rows if status != "deleted"),
    )
