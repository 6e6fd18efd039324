"""The sink loop against a real journal and a real local catalog: what a failed
acknowledgement and a record damaged on disk do to it."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import structlog
from exrgen import write_scanline
from harness import wait_for

from exrwatchd.exr import inspect_path
from exrwatchd.journal import Journal, JournalError, Persist
from exrwatchd.logs import configure_logging
from exrwatchd.pipeline import SinkLoop, make_record
from exrwatchd.sinks import LocalSink


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging(stream=out)
    yield out
    structlog.reset_defaults()


def journal_of(tmp_path: Path, frames: int) -> Journal:
    journal = Journal.open(tmp_path / "state")
    template = write_scanline(tmp_path / "t.exr").read_bytes()
    (tmp_path / "shot").mkdir()
    for i in range(frames):
        frame = tmp_path / "shot" / f"a.{i:04d}.exr"
        frame.write_bytes(template)
        result = inspect_path(str(frame))
        journal.write([Persist(str(frame), result.stat, result.header_hash, "complete",
                               make_record(result))])  # fmt: skip
    return journal


def catalogued(tmp_path: Path) -> int:
    sink = LocalSink(tmp_path / "state")
    sink.open()
    try:
        return sink.count("files")
    finally:
        sink.close()


def test_a_failed_acknowledgement_stops_the_loop_and_leaves_its_entries_in_flight(
    tmp_path: Path, log_lines: io.StringIO
) -> None:
    journal = journal_of(tmp_path, 5)
    sink = LocalSink(tmp_path / "state")
    sink.open()

    def ack(ids: Sequence[int]) -> None:
        raise JournalError(f"{journal.path}: ack failed: database disk image is malformed")

    journal.ack = ack  # type: ignore[method-assign]
    loop = SinkLoop(journal, sink, batch_size=10, batch_wait=0.0)
    loop.start()
    try:
        wait_for(lambda: not loop.alive(), 10, "the sink loop to stop")
        assert isinstance(loop.error, JournalError) and "malformed" in str(loop.error)
        # Written to the catalog, never acknowledged: shipped again after the next start.
        assert (journal.stats().inflight, loop.delivered) == (5, 0)
        # Why, for the operator: in JSON lines only, the thread's traceback included.
        logged = [json.loads(line) for line in log_lines.getvalue().splitlines()]
        failed = [line for line in logged if line["event"] == "sink.loop_failed"]
        died = [line for line in logged if line["event"] == "python.thread_exception"]
        assert [line["error_type"] for line in failed + died] == ["JournalError"] * 2
        assert died[0]["thread"] == "sink" and "malformed" in died[0]["exception"]
    finally:
        loop.stop(10)
        sink.close()
        journal.close()
    assert catalogued(tmp_path) == 5


def test_a_record_the_journal_cannot_read_back_is_a_dead_letter_and_the_rest_ship(
    tmp_path: Path,
) -> None:
    """A record damaged on disk (a bad sector, a restored copy) ends as a dead letter with the
    reason, instead of stopping the loop with every file behind it."""
    journal = journal_of(tmp_path, 3)
    damaged = str(tmp_path / "shot" / "a.0001.exr")
    with sqlite3.connect(journal.path) as db:
        db.execute("UPDATE outbox SET record = ? WHERE path = ?",
                   (b"\x78\x01garbage", os.fsencode(damaged)))  # fmt: skip
    sink = LocalSink(tmp_path / "state")
    sink.open()
    loop = SinkLoop(journal, sink, batch_size=10, batch_wait=0.0)
    loop.start()
    try:
        wait_for(lambda: loop.delivered == 2, 10, lambda: f"{loop.delivered} delivered")
        wait_for(lambda: journal.stats().dead == 1, 10, lambda: f"{journal.stats()}")
        assert loop.alive() and loop.error is None
        [dead] = journal.dead_letters()
        assert dead.path == damaged
        assert "record cannot be read back from the journal" in str(dead.last_error)
    finally:
        loop.stop(10)
        sink.close()
        journal.close()
    assert catalogued(tmp_path) == 2
