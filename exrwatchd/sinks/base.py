"""What every sink is: open, health, write(batch) -> one Delivery per entry, close.

A sink never decides what leaves the journal: it reports, per outbox entry, whether the entry
was DELIVERED (durably applied: the journal may drop it), should be RETRIED (a transient
problem: keep it and try again later, in order) or is REJECTED (the entry itself can never be
applied: retrying is pointless; the journal sets it aside with the error). When the sink as a
whole cannot work (its database is unreachable, corrupt or read-only) `write` raises
`SinkUnavailable` instead, and the caller backs off while the journal keeps recording.

Guarantee, for every sink: at-least-once from the journal plus an idempotent sink (a replayed
inspection_id changes nothing; a newer record for the same path replaces that path's rows)
gives exactly one current row set per path. Each sink's docstring states its own guarantee.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from exrwatchd.errors import ExrwatchdError
from exrwatchd.journal import OutboxEntry


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # applied and durable: the entry may leave the outbox
    RETRY = "retry"  # not applied because of a transient problem: try again later
    REJECT = "reject"  # can never be applied (malformed record...): set it aside


@dataclass(frozen=True, slots=True)
class Delivery:
    """What happened to one outbox entry. `error` says why for RETRY and REJECT."""

    entry_id: int
    outcome: Outcome
    error: str | None = None


class SinkUnavailable(ExrwatchdError):
    """The sink as a whole cannot work right now: the caller backs off and keeps journaling.

    No entry of the batch was applied (its transaction was rolled back or never began).
    """


@runtime_checkable
class Sink(Protocol):
    """A catalog destination. Calls come from one thread at a time unless a sink says more."""

    name: str

    def open(self) -> None:
        """Connect and create the tables if needed. Raises SinkUnavailable."""

    def health(self) -> str | None:
        """None when the sink can take writes, else a short reason for operators."""

    def write(self, batch: Sequence[OutboxEntry]) -> list[Delivery]:
        """Apply `batch` in order; one Delivery per entry, same order. May raise
        SinkUnavailable (then nothing of the batch was applied)."""

    def close(self) -> None:
        """Release connections; safe to call twice."""

    def recorded_journal(self) -> str | None:
        """The id of the journal the catalog records it is written from (issue 12, case 7):
        "" for a catalog with rows but no record (made before journals had ids), None for
        none (an empty catalog, or a sink that keeps no record)."""

    def record_journal(self, journal_id: str) -> None:
        """Record, durably, that the catalog is written from journal `journal_id`."""

    def catalog_paths(self) -> Iterator[str]:
        """Every path the files table holds, as the journal spells it (a journal rebuild)."""
