"""WAL checkpoints on a thread of their own (exrwatchd/_wal.py), for the journal and the
local catalog: real SQLite files, the real Journal and LocalSink.

The writers' own automatic checkpoints wait until 10,000 pages (the backstop), so a -wal
file that stays near the thread's 1,000 frames over many batches shows it at work.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import exrgen
import pytest
from harness import wait_for
from test_local_sink import make_record, upsert

from exrwatchd._wal import THRESHOLD_FRAMES, Checkpointer
from exrwatchd.journal import Journal, Persist
from exrwatchd.sinks import CATALOG_FILENAME, LocalSink

FRAME = 4096 + 24  # a page and its frame header


def _batches_keep_the_wal_small(
    wal: Path, checkpointer: Checkpointer, write_batch: Callable[[int], None], batches: int
) -> None:
    """Write `batches` batches, each once the checkpointer has looked at the previous one:
    the -wal file, reused once checkpointed, must stay within the threshold and two
    batches. On its own the writer would let it grow to BACKSTOP_PAGES."""
    batch_bytes = 0
    for n in range(batches):
        turns = checkpointer.turns
        write_batch(n)
        batch_bytes = batch_bytes or wal.stat().st_size  # the first batch, into a new file
        wait_for(lambda turns=turns: checkpointer.turns > turns, 10.0, "the checkpointer to look")
    bound = THRESHOLD_FRAMES * FRAME + 2 * batch_bytes
    assert batch_bytes * batches > 2 * bound, "batches too small to tell"
    assert checkpointer.runs >= 2
    assert wal.stat().st_size <= bound, (
        f"{wal} is {wal.stat().st_size} bytes after {batches} batches of {batch_bytes}"
    )


def test_the_journal_wal_is_checkpointed_by_its_own_thread(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    # About two pages of record per entry once compressed (journal schema 5): random text,
    # which zlib cannot shrink the way it shrinks a run of one letter.
    padding = random.Random(0).randbytes(6000).hex()

    def write_batch(n: int) -> None:
        journal.write([Persist(f"/srv/shot/f.{n:03d}.{i:04d}.exr", None, None, "failed",
                               {"n": n, "padding": padding}) for i in range(200)])  # fmt: skip

    checkpointer = journal._checkpointer
    try:
        _batches_keep_the_wal_small(tmp_path / "journal.db-wal", checkpointer, write_batch, 20)
    finally:
        journal.close()
    assert not checkpointer.running, "close() left the thread running"


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> dict:
    frame = exrgen.write_multipart(tmp_path_factory.mktemp("frames") / "f.exr")
    return make_record(frame)


def test_the_catalog_wal_is_checkpointed_by_its_own_thread(tmp_path: Path, record: dict) -> None:
    sink = LocalSink(tmp_path / CATALOG_FILENAME)
    sink.open()

    def write_batch(n: int) -> None:
        entries = [upsert({**record, "path": f"/srv/shot/f.{n:03d}.{i:04d}.exr"})
                   for i in range(300)]  # fmt: skip
        assert {d.outcome.name for d in sink.write(entries)} == {"DELIVERED"}

    checkpointer = sink._checkpointer
    assert checkpointer is not None
    try:
        _batches_keep_the_wal_small(tmp_path / f"{CATALOG_FILENAME}-wal", checkpointer,
                                    write_batch, 12)  # fmt: skip
        assert sink.count("files") == 12 * 300
    finally:
        sink.close()
    assert not checkpointer.running, "close() left the thread running"


def test_a_database_it_cannot_open_leaves_the_writer_to_checkpoint(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path / "missing" / "x.db", name="test-checkpoint")
    checkpointer.nudge()  # must not raise: the writer's own checkpoints take over
    checkpointer.nudge()
    assert (checkpointer.turns, checkpointer.runs, checkpointer.running) == (0, 0, False)
    checkpointer.close()
