"""The local SQLite journal: per-path state and the outbox of records waiting for the sink.

(Seam types below are fixed; the Journal class is being written.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Op = Literal["upsert", "delete"]
PathStatus = Literal["complete", "incomplete", "failed", "deleted"]


@dataclass(frozen=True, slots=True)
class FileSig:
    """What a stat says about a file: enough to tell whether it changed."""

    size: int
    mtime_ns: int
    inode: int


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
class OutboxEntry:
    id: int
    path: str
    op: Op
    record: dict[str, Any] | None  # None for deletions
    attempts: int
    created_at: float  # unix seconds


@dataclass(frozen=True, slots=True)
class PathState:
    path: str
    sig: FileSig | None
    header_hash: str | None
    status: PathStatus
    error: str | None
    updated_at: float
