"""The sink process collects garbage between batches only: cycles must still go, idle or busy."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from exrgen import write_scanline
from harness import wait_for

from exrwatchd.daemon.gc_tuning import FULL_EVERY, tune_for_batches
from exrwatchd.exr import inspect_path
from exrwatchd.journal import Journal, Persist
from exrwatchd.pipeline import SinkLoop, make_record
from exrwatchd.sinks import LocalSink


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    gc.enable()


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_a_cycle_made_during_a_batch_goes_between_batches() -> None:
    between_batches = tune_for_batches()
    node = _cycle()
    garbage = [[i] for i in range(100_000)]  # far past any automatic threshold
    del garbage
    assert node() is not None  # nothing collects inside a batch
    between_batches()
    assert node() is None


def test_an_old_cycle_goes_at_the_next_full_collection() -> None:
    between_batches = tune_for_batches()
    node = _cycle()
    between_batches()  # a young collection: the cycle is already unreachable, so it goes
    assert node() is None
    survivor = _Node()
    survivor.other = survivor
    kept = weakref.ref(survivor)
    for _ in range(3):  # reachable through batches: promoted to the oldest generation
        between_batches()
    del survivor
    for _ in range(FULL_EVERY - 5):  # turns 5 to 99
        between_batches()
    assert kept() is not None  # only the young generations were collected so far
    between_batches()  # turn 100: FULL_EVERY
    assert kept() is None


def test_the_sink_loop_collects_after_each_batch_and_when_idle(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "state")
    template = write_scanline(tmp_path / "t.exr").read_bytes()
    for i in range(30):
        frame = tmp_path / "shot" / f"a{i}.exr"
        frame.parent.mkdir(exist_ok=True)
        frame.write_bytes(template)
        result = inspect_path(str(frame))
        journal.write([Persist(str(frame), result.stat, result.header_hash, "complete",
                               make_record(result))])  # fmt: skip
    sink = LocalSink(tmp_path / "state")
    sink.open()
    turns: list[int] = []
    loop = SinkLoop(journal, sink, batch_size=10, batch_wait=0.0,
                    between_batches=lambda: turns.append(loop.delivered))  # fmt: skip
    loop.start()
    try:
        wait_for(lambda: loop.delivered == 30, 10, lambda: f"{loop.delivered} delivered")
        # After each of the three batches, then on idle turns (one a second).
        wait_for(lambda: turns.count(30) >= 3, 10, lambda: f"turns {turns}")
        assert turns[:3] == [10, 20, 30] and loop.error is None
    finally:
        loop.stop(5)
        sink.close()
        journal.close()
