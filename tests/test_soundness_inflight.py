"""Issue 12, cases 3 and 6: what a path's verdict may overwrite, and when re-checks stop.

Case 3 runs the real settle loop (Pipeline, Settler, a worker thread, JournalWriter, Journal)
on real files; the worker is held after reading a header through the Pipeline's `inspect`
hook, so the deletion lands at a chosen moment. Case 6 runs the real `exrwatchd scan`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from exrgen import write_scanline

from exrwatchd.inspector import Verdict, inspect_settled
from exrwatchd.journal import Journal
from exrwatchd.pipeline import Pipeline
from exrwatchd.shipper import JournalWriter
from exrwatchd.watch.observers import Inbox
from exrwatchd.watch.settle import SettledFile, Settler


class HeldWorker:
    """The Pipeline's `inspect` hook: the real inspection, then the worker waits until the
    test releases it, so the test decides what happens between the read and the verdict."""

    def __init__(self) -> None:
        self.read = threading.Event()
        self.release = threading.Event()

    def __call__(self, item: SettledFile) -> Verdict:
        verdict = inspect_settled(item)
        self.read.set()
        self.release.wait(timeout=30)
        return verdict


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    journal = Journal.open(tmp_path / "state")
    yield journal
    journal.close()


def pipeline(journal: Journal, hook: HeldWorker) -> tuple[Pipeline, JournalWriter]:
    writer = JournalWriter(journal, on_commit=lambda _count: None)
    writer.start()
    settler = Settler(quiet_seconds=0.0, max_wait_seconds=60.0, recheck_initial=0.1,
                      recheck_max=1.0, clock=time.monotonic)  # fmt: skip
    p = Pipeline(settler, Inbox(), writer, 8, rescan=lambda _path: None,
                 settled=lambda _path: None, inspect=hook)  # fmt: skip
    p.start_workers(1)
    return p, writer


def turn_until(p: Pipeline, condition: Callable[[], bool], what: str) -> None:
    """Run the settle loop's turns until `condition` holds (the loop's own wakeups pace it)."""
    deadline = time.monotonic() + 20.0
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        p.step(time.monotonic, max_wait=0.05)


def test_a_deletion_during_the_header_read_is_not_overwritten_by_its_verdict(
    tmp_path: Path, journal: Journal
) -> None:
    # issue 12, case 3: a Vanished for a path in flight was journaled at once and the
    # worker's verdict, read before the deletion, journaled a Persist after it.
    frame = str(write_scanline(tmp_path / "renders" / "beauty.0001.exr"))
    hook = HeldWorker()
    p, writer = pipeline(journal, hook)
    try:
        p.inbox.put(frame, "closed")
        turn_until(p, hook.read.is_set, "the worker read the header of the live file")
        os.unlink(frame)
        p.inbox.put(frame, "gone")
        # The settler stats the path and finds it gone while the worker still holds it.
        turn_until(p, lambda: len(p.inbox) == 0 and frame not in p.settler,
                   "the deletion observed by the settle loop")  # fmt: skip
        hook.release.set()
        turn_until(p, p.idle, "the verdict handled and everything handed to the writer")
    finally:
        hook.release.set()
        p.stop_workers(1)
        assert writer.stop(timeout=10), "the journal writer did not finish"
    # Not live in the journal (a tombstone, or no row: the deletion was journaled alone),
    # and the sink is told to delete it, not to upsert it.
    state = journal.path_state(frame)
    assert state is None or state.status == "deleted", state
    assert [e.op for e in journal.claim(10) if e.path == frame] == ["delete"]
