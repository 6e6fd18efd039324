"""The journal: a local SQLite file (WAL, synchronous=FULL) holding each watched path's state
and the outbox of records waiting for the sink. A record is committed here before any sink
sees it and leaves only when the sink acknowledges it (`Journal` in store.py; the values that
cross its boundary in types.py)."""

from exrwatchd.journal._conn import JournalError
from exrwatchd.journal._hooks import HookDelivery
from exrwatchd.journal.store import Journal
from exrwatchd.journal.types import (
    ClaimedEntry,
    DeadLetter,
    Delete,
    JournalStats,
    Op,
    OutboxEntry,
    PathState,
    PathStatus,
    Persist,
    Rechecking,
    RefreshSequences,
)

__all__ = [
    "ClaimedEntry",
    "DeadLetter",
    "Delete",
    "HookDelivery",
    "Journal",
    "JournalError",
    "JournalStats",
    "Op",
    "OutboxEntry",
    "PathState",
    "PathStatus",
    "Persist",
    "Rechecking",
    "RefreshSequences",
]
