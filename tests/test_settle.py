"""The settle rule, driven by a scripted clock and file table (pure logic, no disk)."""

from __future__ import annotations

from exrwatchd.filesig import FileSig
from exrwatchd.watch import SettledFile, Settler, Vanished


class World:
    """A clock and a file table the test moves forward by hand."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.files: dict[str, FileSig] = {}
        self.stats = 0

    def stat(self, path: str) -> FileSig | None:
        self.stats += 1
        return self.files.get(path)

    def write(self, path: str, size: int) -> None:
        self.files[path] = FileSig(size, int(self.now * 1e9), 1)


def settler(world: World, quiet: float = 2.0, max_wait: float = 60.0) -> Settler:
    return Settler(
        quiet_seconds=quiet, max_wait_seconds=max_wait, recheck_initial=1.0, recheck_max=8.0,
        clock=lambda: world.now, stat=world.stat,
    )  # fmt: skip


class TestSettle:
    def test_settles_after_two_agreeing_stats_a_quiet_period_apart(self) -> None:
        w = World()
        s = settler(w)
        w.write("/a.exr", 10)
        s.observe("/a.exr")
        assert s.poll() == []  # first look
        w.now += 1.9
        assert s.poll() == [] and s.next_due() == 1002.0
        w.now = 1002.0
        [done] = s.poll()
        assert isinstance(done, SettledFile) and done.path == "/a.exr" and done.sig.size == 10
        assert len(s) == 0

    def test_a_growing_file_never_settles_while_it_grows(self) -> None:
        w = World()
        s = settler(w)
        s.observe("/slow.exr")
        for size in range(1, 20):
            w.write("/slow.exr", size)
            assert s.poll() == []
            w.now += 1.5  # writes come faster than the quiet period
        last_write = w.now - 1.5
        w.now = last_write + 2.0
        [done] = s.poll()  # one quiet period after the last change, never earlier
        assert isinstance(done, SettledFile) and done.sig.size == 19

    def test_duplicate_events_collapse(self) -> None:
        w = World()
        s = settler(w)
        w.write("/a.exr", 1)
        for _ in range(1000):
            s.observe("/a.exr")
        s.poll()
        assert w.stats == 1 and len(s) == 1

    def test_close_write_shortens_the_wait_but_still_needs_two_stats(self) -> None:
        w = World()
        s = settler(w)
        w.write("/a.exr", 5)
        s.observe("/a.exr", "closed")
        assert s.poll() == []
        w.now += 0.2
        assert [type(x) for x in s.poll()] == [SettledFile]
        assert w.stats == 2

    def test_vanished_before_settling(self) -> None:
        w = World()
        s = settler(w)
        w.write("/tmp.exr", 5)
        s.observe("/tmp.exr")
        s.poll()
        del w.files["/tmp.exr"]
        s.observe("/tmp.exr", "gone")
        assert s.poll() == [Vanished("/tmp.exr")]

    def test_incomplete_rechecks_back_off_until_max_wait(self) -> None:
        w = World()
        s = settler(w, quiet=0.0, max_wait=30.0)
        w.write("/a.exr", 5)
        first_seen = w.now
        delays = []
        attempt = 0
        while s.recheck("/a.exr", first_seen, attempt):
            due = s.next_due()
            assert due is not None
            delays.append(due - w.now)
            w.now = due
            [settled] = s.poll()  # with quiet 0 both agreeing stats happen in one poll
            assert isinstance(settled, SettledFile)
            attempt = settled.attempt
        assert delays[:5] == [1.0, 2.0, 4.0, 8.0, 8.0]  # doubles, capped at recheck_max
        assert w.now - first_seen >= 30.0

    def test_backpressure_limit_keeps_the_rest_pending(self) -> None:
        w = World()
        s = settler(w, quiet=0.0)
        for i in range(10):
            w.write(f"/{i}.exr", 1)
            s.observe(f"/{i}.exr")
        s.poll(limit=0)
        assert len(s.poll(limit=3)) == 3
        assert len(s) == 7
        assert len(s.poll(limit=100)) == 7
