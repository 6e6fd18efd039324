"""What an upsert does to a path's rows, decided once for every sink.

Given the files row a sink already holds for a path (or none) and the newly built one:
- SKIP: the stored row was written from this very inspection (a replay after an
  ambiguous commit, or a resent outbox entry): change nothing, so replays are exact no-ops;
- AUDIT: same header (and embedding version) and same pixel stats: only the audit columns
  move;
- REPLACE: a new path or a changed header: delete every row of the file, insert the new set.
  Also for the same header with other pixel stats (a re-render that changed the pixels
  only, or pixel stats switched on or off): the stats live in the children too, and
  rewriting the file's rows is the one write both sinks already make atomically. That
  REPLACE keeps ``inspection_timestamp``, which dates the header, not the pixels.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

#: What a re-inspection with an unchanged header updates (plus inspection_count + 1).
AUDIT_COLUMNS = (
    "size_bytes", "mtime", "inode", "is_complete", "incomplete_reason",
    "error_kind", "error_message", "last_inspected", "last_inspection_id",
)  # fmt: skip

#: The columns of a stored files row that `plan` needs.
PLAN_COLUMNS = (
    "file_id", "file_path_normalized", "header_hash", "last_inspection_id",
    "inspection_count", "embedding_version", "inspection_timestamp", "pixel_stats_digest",
)  # fmt: skip


class Action(enum.Enum):
    SKIP = "skip"
    AUDIT = "audit"
    REPLACE = "replace"


def plan(stored: Mapping[str, Any] | None, new: Mapping[str, Any]) -> Action:
    if stored is None:
        return Action.REPLACE
    if stored["last_inspection_id"] == new["last_inspection_id"]:
        return Action.SKIP
    if (
        stored["header_hash"] is not None
        and stored["header_hash"] == new["header_hash"]
        and stored["embedding_version"] == new["embedding_version"]
        and stored["pixel_stats_digest"] == new["pixel_stats_digest"]
    ):
        return Action.AUDIT
    return Action.REPLACE


def replaced_files_row(stored: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The files row to insert on REPLACE: the inspection count carries on."""
    count = 1 if stored is None else int(stored["inspection_count"]) + 1
    row = dict(new, inspection_count=count)
    if (
        stored is not None
        and stored["header_hash"] is not None
        and stored["header_hash"] == new["header_hash"]
        and stored["embedding_version"] == new["embedding_version"]
        and stored["inspection_timestamp"] is not None
    ):
        row["inspection_timestamp"] = stored["inspection_timestamp"]  # only the pixels changed
    return row


def audited_files_values(stored: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The columns an AUDIT changes, with their new values."""
    values = {column: new[column] for column in AUDIT_COLUMNS}
    values["inspection_count"] = int(stored["inspection_count"]) + 1
    return values
