"""Workers take settled files a turn at a time (settle_loop.WORKER_TURN), and a slow file
holds up no more than its own worker's share of the queue.

Runs the real settle loop (Pipeline, Settler, worker threads, JournalWriter, Journal) on real
files; the first file a worker reads is held through the Pipeline's `inspect` hook, as a
read from a hung mount would be, so the test decides when it ends.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from exrgen import write_scanline
from harness import wait_for
from test_soundness_inflight import pipeline

from exrwatchd.journal import Journal
from exrwatchd.pipeline import Verdict, inspect_settled
from exrwatchd.watch import SettledFile

FRAMES = 10
WORKERS = 2


class FirstReadHeld:
    """Inspects for real; the first file it is given waits until the test releases it."""

    def __init__(self) -> None:
        self.held: str | None = None
        self.release = threading.Event()
        self.done: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, item: SettledFile) -> Verdict:
        with self._lock:
            hold = self.held is None
            if hold:
                self.held = item.path
        verdict = inspect_settled(item)
        if hold:
            self.release.wait(timeout=30)
        with self._lock:
            self.done.append(item.path)
        return verdict


def test_a_slow_read_holds_up_only_its_own_workers_share_of_the_queue(
    tmp_path: Path, journal: Journal
) -> None:
    frames = [str(write_scanline(tmp_path / "renders" / f"beauty.{n:04d}.exr"))
              for n in range(1, FRAMES + 1)]  # fmt: skip
    hook = FirstReadHeld()
    p, writer = pipeline(journal, hook, queue_size=100, workers=0)
    try:
        for frame in frames:
            p.inbox.put(frame, "closed")
        # Every frame queued before any worker runs: the first turn could take them all.
        wait_for(lambda: (p.step(time.monotonic, max_wait=0.01), p.work.qsize() == FRAMES)[1],
                 10, "all frames settled and queued for the workers")  # fmt: skip
        p.start_workers(WORKERS)
        # The held worker's turn is its first file plus its share of the nine behind it.
        held_turn = 1 + (FRAMES - 1) // WORKERS
        wait_for(lambda: len(hook.done) >= FRAMES - held_turn, 10,
                 lambda: f"files inspected while one read hangs: {hook.done}")  # fmt: skip
        assert hook.held not in hook.done
        hook.release.set()
        wait_for(lambda: (p.step(time.monotonic, max_wait=0.01), p.idle())[1], 10,
                 "every verdict handed to the journal writer")  # fmt: skip
    finally:
        hook.release.set()
        p.stop_workers(WORKERS)
        assert writer.stop(timeout=10), "the journal writer did not finish"
    assert sorted(hook.done) == frames
    assert {frame: journal.path_state(frame).status for frame in frames} == dict.fromkeys(
        frames, "complete"
    )
