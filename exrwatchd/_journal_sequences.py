"""Frame sequences in the journal: which frames each sequence has, kept in the same
transaction as the paths they come from, and the sequence rows queued for the sinks.

Why here and not in the sinks: the journal sees every path of every sequence and commits
them atomically, so the sequences are right after any crash, restart or reconciliation
(a frame row lives and dies with its path row), and both sinks just store what they get.
The pure logic (keys, summaries, events) is exrwatchd/sequences.py.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from exrwatchd import _json
from exrwatchd._journal_types import Delete, Persist
from exrwatchd.catalog.sequence_rows import sequence_path, summary_from_record, summary_record
from exrwatchd.sequences import (
    Frame,
    FrameStatus,
    SequenceEvent,
    SequenceKey,
    SequenceSummary,
    changes,
    parse_frame_path,
    summarize,
)

UPSERT_FRAME = """
    INSERT INTO frames (path, seq, frame, status, layout) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (path) DO UPDATE SET
        seq = excluded.seq, frame = excluded.frame, status = excluded.status,
        layout = excluded.layout
"""
DELETE_FRAME = "DELETE FROM frames WHERE path = ?"
SELECT_FRAMES = "SELECT frame, path, status, layout FROM frames WHERE seq = ?"
SELECT_SUMMARY = "SELECT summary FROM sequences WHERE seq = ?"
UPSERT_SUMMARY = """
    INSERT INTO sequences (seq, summary) VALUES (?, ?)
    ON CONFLICT (seq) DO UPDATE SET summary = excluded.summary
"""
DELETE_SUMMARY = "DELETE FROM sequences WHERE seq = ?"
SELECT_ALL_SUMMARIES = "SELECT summary FROM sequences ORDER BY seq"

_STATUS = {"complete": FrameStatus.COMPLETE, "incomplete": FrameStatus.INCOMPLETE,
           "failed": FrameStatus.ERROR}  # fmt: skip


def _unhealthy(record: Mapping[str, Any]) -> bool:
    stats = record.get("pixel_stats")
    if not isinstance(stats, Mapping):
        return False
    return any(stats.get(flag) is True for flag in ("has_nan", "has_inf", "is_constant"))


def frame_status(status: str, record: Mapping[str, Any] | None) -> FrameStatus:
    """The sequence status of a journaled path: its journal status, or unhealthy when a
    complete frame's pixel checks flagged it."""
    frame = _STATUS[status]
    if frame is FrameStatus.COMPLETE and record is not None and _unhealthy(record):
        return FrameStatus.UNHEALTHY
    return frame


def track(
    conn: sqlite3.Connection, items: Iterable[Persist | Delete], now: float
) -> tuple[list[tuple[Any, ...]], list[SequenceEvent]]:
    """Update the frames of `items` (one per path) and the summaries of their sequences.

    Returns the outbox rows to insert for the sequences that changed (`INSERT_OUTBOX`
    parameters; the caller drops their superseded entries first) and the events to log
    once the transaction commits.
    """
    touched: dict[bytes, SequenceKey] = {}
    upserts, deletes = [], []
    for item in items:
        name = parse_frame_path(item.path)
        if name is None:
            continue
        key = os.fsencode(item.path)
        seq = os.fsencode(sequence_path(name.key.directory, name.key.pattern))
        touched[seq] = name.key
        if isinstance(item, Delete):
            deletes.append((key,))
            continue
        layout = item.record.get("layout_key") if item.record else None
        status = frame_status(item.status, item.record)
        upserts.append((key, seq, name.frame, status.value, layout))
    if deletes:
        conn.executemany(DELETE_FRAME, deletes)
    if upserts:
        conn.executemany(UPSERT_FRAME, upserts)
    entries: list[tuple[Any, ...]] = []
    events: list[SequenceEvent] = []
    moment = datetime.fromtimestamp(now, tz=UTC)
    for seq, key in touched.items():
        before = _stored(conn, seq)
        after = _summary(conn, seq, key)
        if after == before:
            continue
        if after is None:
            conn.execute(DELETE_SUMMARY, (seq,))
            record_text = None
        else:
            record_text = _json.dumps(summary_record(after, moment))
            conn.execute(UPSERT_SUMMARY, (seq, record_text))
        entries.append((seq, "sequence", now, now, now, record_text))
        events += changes(before, after)
    return entries, events


def _stored(conn: sqlite3.Connection, seq: bytes) -> SequenceSummary | None:
    row = conn.execute(SELECT_SUMMARY, (seq,)).fetchone()
    return None if row is None else summary_from_record(_json.loads(row[0]))


def _summary(conn: sqlite3.Connection, seq: bytes, key: SequenceKey) -> SequenceSummary | None:
    frames = [Frame(number, os.fsdecode(path), FrameStatus(status), layout)
              for number, path, status, layout in conn.execute(SELECT_FRAMES, (seq,))]  # fmt: skip
    return summarize(key, frames) if frames else None


def summaries(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every stored sequence record, ordered by directory and pattern."""
    return [_json.loads(row[0]) for row in conn.execute(SELECT_ALL_SUMMARIES)]


def backfill(conn: sqlite3.Connection) -> None:
    """Frames and sequences of a journal from before version 2, from its live paths.

    Layouts are unknown for those (records are not kept once shipped), so the structure
    check starts with the next frames inspected; gaps, counts and states are right at once.
    """
    import time

    from exrwatchd._journal_sql import DROP_SUPERSEDED, INSERT_OUTBOX

    items = [Persist(os.fsdecode(path), None, None, status, {})
             for path, status in conn.execute(
                 "SELECT path, status FROM paths WHERE status <> 'deleted'")]  # fmt: skip
    entries, _ = track(conn, items, time.time())
    conn.executemany(DROP_SUPERSEDED, [(e[0],) for e in entries])
    conn.executemany(INSERT_OUTBOX, entries)
