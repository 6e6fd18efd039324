"""The sink loop's two threads: the sink thread writes batches, the sink-journal thread
claims the next one meanwhile and acknowledges the written ones. Real journal, real local
catalog; the sink's write is only held at a gate, to stop the loop in the middle of one."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from exrgen import write_scanline
from harness import wait_for

from exrwatchd.exr import inspect_path
from exrwatchd.journal import Journal, JournalError, OutboxEntry, Persist
from exrwatchd.pipeline import SinkLoop, make_record
from exrwatchd.sinks import Delivery, LocalSink


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


class GatedSink(LocalSink):
    """The real local catalog, its first write held until `go_on` is set."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.writing, self.go_on = threading.Event(), threading.Event()

    def write(self, batch: Sequence[OutboxEntry]) -> list[Delivery]:
        self.writing.set()
        self.go_on.wait(30)
        return super().write(batch)


def test_the_next_batch_is_claimed_while_one_is_written_and_a_stop_ships_both(
    tmp_path: Path,
) -> None:
    journal = journal_of(tmp_path, 30)
    sink = GatedSink(tmp_path / "state")
    sink.open()
    loop = SinkLoop(journal, sink, batch_size=10, batch_wait=0.0)
    loop.start()
    try:
        assert sink.writing.wait(10)
        # The first batch is being written: the second is claimed already, no more.
        wait_for(lambda: journal.stats().inflight == 20, 10, lambda: f"{journal.stats()}")
        loop.stop(0)  # asked to stop in the middle of the first write
        sink.go_on.set()
        loop.stop(10)
        assert not loop.alive() and loop.error is None
        # Both batches were written and acknowledged; the third was never claimed.
        stats = journal.stats()
        assert (stats.inflight, stats.ready, loop.delivered) == (0, 10, 20)
    finally:
        sink.go_on.set()
        loop.stop(10)
        sink.close()
        journal.close()
    assert catalogued(tmp_path) == 20


def test_a_failed_acknowledgement_stops_the_loop_and_leaves_its_entries_in_flight(
    tmp_path: Path,
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
    finally:
        loop.stop(10)
        sink.close()
        journal.close()
    assert catalogued(tmp_path) == 5
