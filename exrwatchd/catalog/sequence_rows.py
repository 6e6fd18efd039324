"""Rows of the `sequences` table, from the records the journal queues for them.

A sequence record is `exrwatchd.sequences.SequenceSummary` as JSON plus its update time
(`summary_record`); the journal queues one whenever a sequence changes, and None when its
last frame is gone. Validated here like file records: a malformed one is rejected, not
stored half-right.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from exrwatchd.catalog._convert import (
    RecordError,
    as_bool,
    as_int,
    as_str,
    as_time,
    display_text,
    need,
)
from exrwatchd.catalog.rows import normalize_path, path_bytes
from exrwatchd.sequences import SEQUENCE_KEY_PREFIX, notation, summary_from_record


def sequence_id_for(key_path: str) -> str:
    """sha256 of the normalized `directory/pattern` bytes, first 32 hex characters."""
    key_path = key_path.removeprefix(SEQUENCE_KEY_PREFIX)
    return hashlib.sha256(path_bytes(normalize_path(key_path))).hexdigest()[:32]


def _frames(record: Mapping[str, Any], key: str) -> list[int]:
    value = need(record, key, "sequence")
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise RecordError(f"sequence {key} must be a list of frame numbers")
    return value


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _notation(record: Mapping[str, Any]) -> str:
    try:
        return display_text(notation(summary_from_record(record)))  # as directory/pattern
    except (ValueError, TypeError, KeyError) as exc:  # a pattern that is not one, a bad range
        raise RecordError(f"sequence record cannot be written as a notation: {exc}") from None


def sequence_row(key_path: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The `sequences` row of a record queued under `key_path`. RecordError if malformed."""
    if not isinstance(record, Mapping):
        raise RecordError(f"sequence record must be an object, got {type(record).__name__}")
    missing = need(record, "missing", "sequence")
    if not isinstance(missing, list) or not all(
        isinstance(r, list) and len(r) == 2 and all(isinstance(v, int) for v in r) for r in missing
    ):
        raise RecordError("sequence missing must be a list of [first, last] pairs")
    incomplete, unhealthy = _frames(record, "incomplete"), _frames(record, "unhealthy")
    odd_layout = _frames(record, "odd_layout")
    # Absent from records queued before frames in progress were tracked.
    in_progress = _frames(record, "in_progress") if "in_progress" in record else []
    # In the column order of SEQUENCES, so sql_row takes the values as they are.
    return {
        "sequence_id": sequence_id_for(key_path),
        "directory": as_str(need(record, "directory", "sequence"), "sequence directory"),
        "pattern": as_str(need(record, "pattern", "sequence"), "sequence pattern"),
        "first_frame": as_int(need(record, "first", "sequence"), "sequence first"),
        "last_frame": as_int(need(record, "last", "sequence"), "sequence last"),
        "frame_count": as_int(need(record, "count", "sequence"), "sequence count"),
        "missing_count": sum(b - a + 1 for a, b in missing),
        "missing_ranges": _json(missing),
        "incomplete_frames": _json(incomplete),
        "unhealthy_frames": _json(unhealthy),
        "structure_consistent": as_bool(
            need(record, "structure_consistent", "sequence"), "sequence structure_consistent"
        ),
        "layout_key": as_str(need(record, "layout", "sequence"), "sequence layout", nullable=True),
        "odd_layout_frames": _json(odd_layout),
        "is_whole": not (missing or incomplete or unhealthy or odd_layout or in_progress),
        "last_update": as_time(need(record, "updated_at", "sequence"), "sequence updated_at"),
        # Made here, not taken from the record: records queued before it existed lack it.
        "notation": _notation(record),
        "in_progress_frames": _json(in_progress),
    }
