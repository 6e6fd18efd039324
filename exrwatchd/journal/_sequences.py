"""Frame sequences in the journal: which frames each sequence has, kept in the same
transaction as the paths they come from, and the sequence rows queued for the sinks.

Why here and not in the sinks: the journal sees every path of every sequence and commits
them atomically, so the sequences are right after any crash, restart or reconciliation
(a frame row lives and dies with its path row), and both sinks just store what they get.
The pure logic (keys, summaries, events) is exrwatchd/sequences/.

Summaries are refreshed at most once per REFRESH_DELAY per sequence, not per batch: a
10,000-frame sequence landing in 500-file batches would otherwise be re-read 20 times
(measured: 125 us per file of journal writer time for 20 such sequences), and frames a farm
writes slightly out of order would log gaps that the next batch fills.

Keys: a frame row's `seq` is the sequence its own spelling names (`b.%04d.exr` for
b.1000.exr), a function of the path alone. Which sequence it joins also depends on its
neighbours (b.999.exr makes it a frame of `b.%03d.exr`), so a refresh regroups the whole
family (same directory, head and tail; every width) of each due key, and `sequences` and the
outbox are keyed by the grouped sequence. Family members are found by a range scan: every
key of a family starts with `sequence:<dir>/<head>%0`, and a head's own `%` are doubled, so
no other head's key can start with that.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from exrwatchd import _json
from exrwatchd.journal._sql import DROP_SUPERSEDED, INSERT_OUTBOX
from exrwatchd.journal.types import Delete, Persist, Rechecking
from exrwatchd.sequences import (
    SEQUENCE_KEY_PREFIX,
    Frame,
    FrameStatus,
    SequenceEvent,
    SequenceKey,
    changes,
    frame_pattern,
    group_frames,
    parse_frame_path,
    sequence_path,
    split_pattern,
    summarize,
    summary_from_record,
    summary_record,
)

#: Seconds between a sequence's first changed frame and the refresh of its summary.
REFRESH_DELAY = 2.0
#: Sequences refreshed per journal transaction, so one write never stalls on thousands.
REFRESH_LIMIT = 64

UPSERT_FRAME = """
    INSERT INTO frames (path, seq, frame, status, layout) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (path) DO UPDATE SET
        seq = excluded.seq, frame = excluded.frame, status = excluded.status,
        layout = excluded.layout
"""
# Being written: the frame keeps its layout (a re-render's old one) until its verdict.
MARK_IN_PROGRESS = """
    INSERT INTO frames (path, seq, frame, status, layout) VALUES (?, ?, ?, 'in_progress', NULL)
    ON CONFLICT (path) DO UPDATE SET status = 'in_progress'
"""
DELETE_FRAME = "DELETE FROM frames WHERE path = ?"
# The first change sets the due time; later ones within the delay do not push it back.
MARK_DUE = "INSERT INTO sequences_due (seq, due_at) VALUES (?, ?) ON CONFLICT (seq) DO NOTHING"
SELECT_DUE = "SELECT seq FROM sequences_due WHERE due_at <= ? LIMIT ?"
COUNT_DUE = "SELECT count(*) FROM sequences_due"
DELETE_DUE = "DELETE FROM sequences_due WHERE seq = ?"
DUE_NOW_IF_FAR = "UPDATE sequences_due SET due_at = ? WHERE due_at > ?"
SELECT_FRAMES = "SELECT frame, path, status, layout FROM frames WHERE seq >= ? AND seq < ?"
SELECT_SUMMARIES = "SELECT seq, summary FROM sequences WHERE seq >= ? AND seq < ?"
# At start nothing is waited for any more (the reconciliation finds those files again): an
# in-progress frame goes back to what its path row says, or away without one.
RESET_IN_PROGRESS = (
    """
    INSERT INTO sequences_due (seq, due_at)
    SELECT seq, ? FROM frames WHERE status = 'in_progress' ON CONFLICT (seq) DO NOTHING
    """,
    """
    DELETE FROM frames WHERE status = 'in_progress' AND NOT EXISTS (
        SELECT 1 FROM paths AS p WHERE p.path = frames.path AND p.status <> 'deleted')
    """,
    """
    UPDATE frames SET status = (
        SELECT CASE p.status WHEN 'failed' THEN 'error' ELSE p.status END
        FROM paths AS p WHERE p.path = frames.path)
    WHERE status = 'in_progress'
    """,
)
# Summaries from before the notation field (and before padding was a minimum width): due now.
MARK_OLD_DUE = """
    INSERT INTO sequences_due (seq, due_at)
    SELECT seq, ? FROM sequences WHERE summary NOT LIKE '%"notation":%'
    ON CONFLICT (seq) DO NOTHING
"""
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
    conn: sqlite3.Connection, items: Iterable[Persist | Delete | Rechecking], now: float
) -> None:
    """Record the frames among `items` (one per path) and mark their sequences due.

    `now` is the journal's monotonic time, the clock of due times."""
    due: set[bytes] = set()
    upserts, deletes, in_progress = [], [], []
    for item in items:
        name = parse_frame_path(item.path)
        if name is None:
            continue
        key = os.fsencode(item.path)
        seq = os.fsencode(sequence_path(name.key.directory, name.key.pattern))
        due.add(seq)
        if isinstance(item, Delete):
            deletes.append((key,))
            continue
        if isinstance(item, Rechecking):
            in_progress.append((key, seq, name.frame))
            continue
        layout = item.record.get("layout_key") if item.record else None
        status = frame_status(item.status, item.record)
        upserts.append((key, seq, name.frame, status.value, layout))
    conn.executemany(DELETE_FRAME, deletes)
    conn.executemany(UPSERT_FRAME, upserts)
    conn.executemany(MARK_IN_PROGRESS, in_progress)
    conn.executemany(MARK_DUE, [(seq, now + REFRESH_DELAY) for seq in due])


def refresh(
    conn: sqlite3.Connection, now: float, due_now: float, *, force: bool = False
) -> tuple[list[tuple[Any, ...]], list[SequenceEvent]]:
    """Bring due sequences (every marked one with `force`) up to date.

    `now` is wall-clock time (the summaries' update time), `due_now` the journal's monotonic
    time, which says which sequences are due and when their entries are.

    Returns the outbox rows to insert for the sequences that changed (`INSERT_OUTBOX`
    parameters; the caller drops their superseded entries first) and the events to log once
    the transaction commits.
    """
    limit, until = (-1, float("inf")) if force else (REFRESH_LIMIT, due_now)
    seqs = [row[0] for row in conn.execute(SELECT_DUE, (until, limit))]
    entries: list[tuple[Any, ...]] = []
    events: list[SequenceEvent] = []
    moment = datetime.fromtimestamp(now, tz=UTC)
    families: dict[tuple[bytes, bytes], SequenceKey] = {}
    for seq in seqs:
        conn.execute(DELETE_DUE, (seq,))
        family = _family(seq)
        if family is not None:
            families.setdefault(_bounds(family), family)
    for bounds, family in families.items():
        stored = _stored(conn, bounds, family)
        grouped = _grouped(conn, bounds, family)
        for key in sorted(stored.keys() | grouped.keys(), key=_sort_key):
            record = stored.get(key)
            before = None if record is None else summary_from_record(record)
            after = summarize(key, grouped[key]) if key in grouped else None
            if after == before and (record is None or "notation" in record):
                continue
            seq = os.fsencode(sequence_path(key.directory, key.pattern))
            if after is None:
                conn.execute(DELETE_SUMMARY, (seq,))
                record_text = None
            else:
                record_text = _json.dumps(summary_record(after, moment))
                conn.execute(UPSERT_SUMMARY, (seq, record_text))
            entries.append((seq, "sequence", due_now, now, now, record_text))
            events += changes(before, after)
    return entries, events


def due(conn: sqlite3.Connection, now: float, *, force: bool = False) -> bool:
    """Whether refresh(conn, _, now, force=force) has anything to do (`now`: monotonic)."""
    limit = float("inf") if force else now
    return conn.execute(SELECT_DUE, (limit, 1)).fetchone() is not None


def due_now_if_far(conn: sqlite3.Connection, now: float) -> None:
    """At start: refreshes due further ahead than REFRESH_DELAY are due now (their times
    come from before a reboot, or from the wall clock of an earlier version), and so are
    summaries an earlier version wrote (no notation; padding read as an exact width). Frames
    in progress are not any more: see RESET_IN_PROGRESS."""
    conn.execute(DUE_NOW_IF_FAR, (now, now + REFRESH_DELAY))
    conn.execute(MARK_OLD_DUE, (now,))
    conn.execute(RESET_IN_PROGRESS[0], (now,))
    for statement in RESET_IN_PROGRESS[1:]:
        conn.execute(statement)


def pending(conn: sqlite3.Connection) -> int:
    """How many sequences wait for a refresh."""
    return int(conn.execute(COUNT_DUE).fetchone()[0])


def _key(seq: bytes) -> SequenceKey:
    directory, pattern = os.path.split(os.fsdecode(seq).removeprefix(SEQUENCE_KEY_PREFIX))
    return SequenceKey(directory, pattern)


def _family(seq: bytes) -> SequenceKey | None:
    """The family of a key: its directory and pattern with the width left out (`%0`)."""
    key = _key(seq)
    try:
        head, _, tail = split_pattern(key.pattern)
    except ValueError:
        return None  # not written by this module: nothing to regroup
    return SequenceKey(key.directory, frame_pattern(head, 0, tail))


def _in_family(key: SequenceKey, family: SequenceKey) -> bool:
    head, _, tail = split_pattern(key.pattern)
    return key.directory == family.directory and frame_pattern(head, 0, tail) == family.pattern


def _bounds(family: SequenceKey) -> tuple[bytes, bytes]:
    """Keys from `lo` (included) to `hi` (excluded): those of `family`, and of others the
    range cannot tell apart (a subdirectory named like a pattern; another tail)."""
    head, _, _ = split_pattern(family.pattern)
    lo = os.fsencode(sequence_path(family.directory, head.replace("%", "%%") + "%0"))
    return lo, lo[:-1] + b"1"


def _sort_key(key: SequenceKey) -> tuple[str, str]:
    return key.directory, key.pattern


def _stored(
    conn: sqlite3.Connection, bounds: tuple[bytes, bytes], family: SequenceKey
) -> dict[SequenceKey, dict[str, Any]]:
    """The stored records of the sequences of `family`."""
    out = {}
    for seq, text in conn.execute(SELECT_SUMMARIES, bounds):
        key = _key(seq)
        if _in_family(key, family):
            out[key] = _json.loads(text)
    return out


def _grouped(
    conn: sqlite3.Connection, bounds: tuple[bytes, bytes], family: SequenceKey
) -> dict[SequenceKey, list[Frame]]:
    """The frames of `family`, grouped into sequences (see sequences.group_frames)."""
    frames = [Frame(number, os.fsdecode(path), FrameStatus(status), layout)
              for number, path, status, layout in conn.execute(SELECT_FRAMES, bounds)]  # fmt: skip
    return {key: found for key, found in group_frames(frames).items() if _in_family(key, family)}


def summaries(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every stored sequence record, ordered by directory and pattern."""
    return [_json.loads(row[0]) for row in conn.execute(SELECT_ALL_SUMMARIES)]


def backfill(conn: sqlite3.Connection) -> None:
    """Frames and sequences of a journal from before version 2, from its live paths.

    Layouts are unknown for those (records are not kept once shipped), so the structure
    check starts with the next frames inspected; gaps, counts and states are right at once.
    """
    items = [Persist(os.fsdecode(path), None, None, status, {})
             for path, status in conn.execute(
                 "SELECT path, status FROM paths WHERE status <> 'deleted'")]  # fmt: skip
    now, due = time.time(), time.monotonic()
    track(conn, items, due)
    entries, _ = refresh(conn, now, due, force=True)
    conn.executemany(DROP_SUPERSEDED, [(e[0],) for e in entries])
    conn.executemany(INSERT_OUTBOX, entries)
