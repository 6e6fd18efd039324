"""A full disk under the journal, in-process: telling it from other failures, the journal
writer and the sink loop waiting it out (pipeline/diskfull.py), status.json written over in
place. The real thing (a full tmpfs, RLIMIT_FSIZE on the daemon) is in test_faults.py."""

from __future__ import annotations

import errno
import json
import resource
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from harness import wait_for
from structlog.testing import capture_logs

from exrwatchd.cli.status import render_status
from exrwatchd.filesig import FileSig
from exrwatchd.journal import (
    Delete,
    Journal,
    JournalError,
    OutboxEntry,
    Persist,
)
from exrwatchd.pipeline import DiskFull, JournalWriter, SinkLoop, full_reason
from exrwatchd.pipeline.diskfull import LOW_SPACE
from exrwatchd.sinks import Delivery, Outcome, SinkUnavailable
from exrwatchd.telemetry import write_status_file


def sqlite_error(code: int, message: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


def journal_error(cause: BaseException) -> JournalError:
    """A JournalError as SharedConnection raises it: chained to what SQLite said."""
    try:
        raise JournalError(f"journal.db: write failed: {cause}") from cause
    except JournalError as exc:
        return exc


FULL = sqlite_error(13, "database or disk is full")  # SQLITE_FULL
IOERR_WRITE = sqlite_error(778, "disk I/O error")  # SQLITE_IOERR_WRITE: EFBIG, or a real EIO


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


def named(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == event]


# --------------------------------------------------------------------------- full_reason


def test_sqlite_full_and_full_errnos_are_a_full_disk(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    assert "SQLITE_FULL" in str(full_reason(journal_error(FULL), path))
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        assert full_reason(journal_error(OSError(code, "full")), path) is not None
    reason = full_reason(journal_error(FULL), path)
    assert reason is not None and "bytes free on" in reason and str(tmp_path) in reason


def test_other_errors_are_not(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    assert full_reason(journal_error(sqlite_error(5, "database is locked")), path) is None
    assert full_reason(journal_error(sqlite_error(11, "malformed")), path) is None
    assert full_reason(journal_error(OSError(errno.EIO, "I/O error")), path) is None
    assert full_reason(ValueError("no"), path) is None


def test_an_io_error_is_a_full_disk_only_when_space_or_the_size_limit_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EFBIG reaches Python only as SQLITE_IOERR: plenty of space and no file size limit
    mean a real I/O error, which must still stop the writer."""
    path = tmp_path / "journal.db"
    path.write_bytes(b"\0" * 4096)
    monkeypatch.setattr(resource, "getrlimit", lambda _: (resource.RLIM_INFINITY,) * 2)
    monkeypatch.setattr("exrwatchd.pipeline.diskfull.free_bytes", lambda _: 10 * LOW_SPACE)
    assert full_reason(journal_error(IOERR_WRITE), path) is None
    monkeypatch.setattr("exrwatchd.pipeline.diskfull.free_bytes", lambda _: 100)
    assert "I/O error" in str(full_reason(journal_error(IOERR_WRITE), path))
    monkeypatch.setattr("exrwatchd.pipeline.diskfull.free_bytes", lambda _: 10 * LOW_SPACE)
    monkeypatch.setattr(resource, "getrlimit", lambda _: (8192, resource.RLIM_INFINITY))
    assert "RLIMIT_FSIZE 8192" in str(full_reason(journal_error(IOERR_WRITE), path))
    big_limit = 100 * LOW_SPACE  # far above the journal's size: not the limit
    monkeypatch.setattr(resource, "getrlimit", lambda _: (big_limit, resource.RLIM_INFINITY))
    assert full_reason(journal_error(IOERR_WRITE), path) is None


# --------------------------------------------------------------------------- DiskFull


def test_loud_once_then_once_a_minute_with_backoff(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    now = [1000.0]
    full = DiskFull(tmp_path / "journal.db", writer="w", backoff=(1.0, 30.0),
                    clock=lambda: now[0])  # fmt: skip
    delays = []
    for _ in range(8):
        delays.append(full.failed(journal_error(FULL)))
        now[0] += 10.0
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    loud = named(logs, "journal.disk_full")
    assert [e["full_for_seconds"] for e in loud] == [0.0, 60.0]
    assert loud[0]["log_level"] == "error" and loud[0]["path"] == str(tmp_path / "journal.db")
    assert "free_bytes" in loud[0] and "SQLITE_FULL" in loud[0]["reason"]
    assert full.describe() is not None and "cannot be written" in str(full.describe())
    assert full.recovered(written=3)
    back = named(logs, "journal.disk_space_recovered")
    assert len(back) == 1 and back[0]["full_for_seconds"] == 80.0 and back[0]["written"] == 3
    assert full.describe() is None and full.since_wall is None
    assert not full.recovered()
    assert full.failed(journal_error(FULL)) == 1.0  # a new episode starts over
    assert full.failed(journal_error(sqlite_error(5, "locked"))) is None


# --------------------------------------------------------------------------- the writer


class FlakyJournal:
    """Journal.write that fails with `error` the first `failures` times."""

    def __init__(self, path: Path, failures: int, error: BaseException) -> None:
        self.path = path
        self.failures = failures
        self.error = error
        self.batches: list[list[Any]] = []
        self.attempts = 0

    def write(self, items: Sequence[Any]) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise journal_error(self.error)
        self.batches.append(list(items))


def fast(full: DiskFull) -> None:
    full.backoff = (0.01, 0.02)


def items(n: int) -> list[Persist | Delete]:
    return [Delete(f"/r/f{i}.exr") for i in range(n)]


def test_the_writer_keeps_its_batch_and_writes_it_once_space_returns(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    journal = FlakyJournal(tmp_path / "journal.db", failures=3, error=FULL)
    commits: list[int] = []
    writer = JournalWriter(journal, on_commit=commits.append, max_delay=0.2)  # type: ignore[arg-type]
    fast(writer._full)
    writer.start()
    for item in items(5):
        assert writer.offer(item)
    wait_for(lambda: journal.batches, 10, "the batch written")
    assert writer.alive() and writer.error is None
    assert [len(b) for b in journal.batches] == [5] and commits == [5]  # once, whole
    assert journal.attempts == 4
    assert writer.disk_full is None and writer.disk_full_since is None
    assert len(named(logs, "journal.disk_full")) == 1
    assert len(named(logs, "journal.disk_space_recovered")) == 1
    assert writer.stop(5)


def test_the_writer_reports_the_disk_full_while_it_lasts(tmp_path: Path) -> None:
    journal = FlakyJournal(tmp_path / "journal.db", failures=10**9, error=FULL)
    writer = JournalWriter(journal, on_commit=lambda _: None, capacity=10)  # type: ignore[arg-type]
    fast(writer._full)
    writer.offer(Delete("/r/first.exr"))
    writer.start()
    wait_for(lambda: writer.disk_full, 10, "the writer to report the disk full")
    assert "SQLITE_FULL" in str(writer.disk_full) and writer.disk_full_since is not None
    # the bounded queue fills behind the held batch: the settle loop sees backpressure
    assert all(writer.offer(item) for item in items(10))
    # pending: the held batch (first.exr) and the 10 queued behind it
    assert writer.pending() == 11 and not writer.offer(Delete("/r/more.exr"))
    assert writer.alive()
    assert writer.stop(5)


def test_stopping_on_a_full_disk_abandons_what_is_held_at_once(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    journal = FlakyJournal(tmp_path / "journal.db", failures=10**9, error=FULL)
    writer = JournalWriter(journal, on_commit=lambda _: None, capacity=10, batch_size=4)  # type: ignore[arg-type]
    writer._full.backoff = (30.0, 30.0)  # it would wait long: stop must not
    for item in items(8):
        writer.offer(item)
    writer.start()  # takes 4, fails
    wait_for(lambda: writer.disk_full, 10, "the disk full")
    for item in items(4):
        writer.offer(item)
    assert writer.stop(5)
    assert not writer.alive() and writer.error is None
    abandoned = named(logs, "journal.abandoned")
    assert len(abandoned) == 1 and abandoned[0]["verdicts"] == 12


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_any_other_journal_error_still_stops_the_writer(tmp_path: Path) -> None:
    journal = FlakyJournal(tmp_path / "journal.db", failures=1, error=sqlite_error(11, "bad"))
    writer = JournalWriter(journal, on_commit=lambda _: None)  # type: ignore[arg-type]
    writer.start()
    writer.offer(Delete("/r/a.exr"))
    wait_for(lambda: not writer.alive(), 10, "the writer to die")
    assert isinstance(writer.error, JournalError)


# --------------------------------------------------------------------------- the sink loop


class RecordingSink:
    name = "recording"

    def __init__(self) -> None:
        self.written: list[str] = []

    def open(self) -> None: ...

    def health(self) -> str | None:
        return None

    def write(self, batch: Sequence[OutboxEntry]) -> list[Delivery]:
        self.written += [e.path for e in batch]
        return [Delivery(e.id, Outcome.DELIVERED) for e in batch]

    def close(self) -> None: ...


def failing(journal: Journal, method: str, times: int) -> Callable[[], int]:
    """Make journal.`method` fail `times` times with SQLITE_FULL; returns the call count."""
    real = getattr(journal, method)
    calls = [0]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] <= times:
            raise journal_error(FULL)
        return real(*args, **kwargs)

    setattr(journal, method, flaky)
    return lambda: calls[0]


@pytest.mark.parametrize("method", ["claim_stored", "ack"])
def test_the_sink_loop_waits_out_a_full_journal(
    tmp_path: Path, logs: list[dict[str, Any]], method: str
) -> None:
    journal = Journal.open(tmp_path)
    paths = [f"/r/f{i}.exr" for i in range(3)]
    journal.write([Persist(p, FileSig(1, 1, 1), "h", "complete", {"path": p}) for p in paths])
    calls = failing(journal, method, 3)
    sink = RecordingSink()
    loop = SinkLoop(journal, sink, batch_size=10, batch_wait=0.0)  # type: ignore[arg-type]
    fast(loop._full)
    loop.start()
    try:
        wait_for(lambda: loop.delivered == 3, 10, lambda: f"{loop.delivered} delivered")
        assert calls() >= 4 and loop.alive() and loop.error is None
        stats = journal.stats()
        assert (stats.ready, stats.inflight) == (0, 0)
        assert loop.unhealthy_since is None and loop.last_error is None
        # an ack that failed was for entries the sink had: they went again, harmlessly
        assert set(sink.written) == set(paths)
        assert [e["writer"] for e in named(logs, "journal.disk_full")] == ["sink"]
        assert len(named(logs, "journal.disk_space_recovered")) == 1
    finally:
        loop.stop(5)
        journal.close()


def test_a_sink_loop_stopped_on_a_full_journal_leaves_entries_in_flight(
    tmp_path: Path,
) -> None:
    """They go out again after the next start (reset_inflight)."""
    journal = Journal.open(tmp_path)
    journal.write([Persist("/r/a.exr", FileSig(1, 1, 1), "h", "complete", {"path": "/r/a.exr"})])
    failing(journal, "ack", 10**9)
    loop = SinkLoop(journal, RecordingSink(), batch_size=10, batch_wait=0.0)  # type: ignore[arg-type]
    loop._full.backoff = (30.0, 30.0)
    loop.start()
    wait_for(lambda: loop.last_error, 10, "the sink loop to report the full journal")
    assert "cannot be written" in str(loop.last_error) and loop.unhealthy_since is not None
    stopping = threading.Event()
    threading.Thread(target=lambda: (loop.stop(5), stopping.set())).start()
    assert stopping.wait(3) and not loop.alive() and loop.error is None
    assert journal.stats().inflight == 1
    assert journal.reset_inflight() == 1
    journal.close()


# --------------------------------------------------------------------------- status.json


def test_status_json_is_written_over_in_place_when_no_new_file_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_status_file(tmp_path, {"pid": 1, "note": "x" * 100})
    size = (tmp_path / "status.json").stat().st_size
    assert size % 4096 == 0 and size >= 100 + 4096  # padded: room for the next one

    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    write_status_file(tmp_path, {"pid": 2, "journal_disk_full": "no space left"})
    assert (tmp_path / "status.json").stat().st_size == size
    assert json.loads((tmp_path / "status.json").read_text())["pid"] == 2
    assert not (tmp_path / "status.tmp").exists()
    with pytest.raises(OSError, match="No space"):  # too big for the old file: say so
        write_status_file(tmp_path, {"pid": 3, "note": "y" * 2 * size})
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: (_ for _ in ()).throw(
        OSError(errno.EACCES, "Permission denied")))  # fmt: skip
    with pytest.raises(PermissionError):  # not a full disk: no in-place write
        write_status_file(tmp_path, {"pid": 4})


def test_exrwatchd_status_says_the_journal_disk_is_full(tmp_path: Path) -> None:
    status = {"state_dir": str(tmp_path), "journal": None, "daemon": {
        "pid": 1, "running": True, "age_seconds": 1.0, "pending": 5, "queue_depth": 0,
        "inflight": 0, "inspected": 1, "incomplete": 0, "failed": 0, "deleted": 0,
        "persisted": 1, "sink_healthy": True, "sink_last_error": None,
        "journal_disk_full": "journal /s/journal.db cannot be written: no space left",
        "health": "journal /s/journal.db cannot be written: no space left",
    }}  # fmt: skip
    text = render_status(status)
    assert "journal: DISK FULL: journal /s/journal.db cannot be written" in text
    assert text.startswith("exrwatchd: running, DEGRADED")  # `status` exits 1


class DownSink(RecordingSink):
    """The whole sink unreachable for its first `down` writes (what an outage looks like to
    the sink loop: SinkUnavailable, not per-entry failures)."""

    def __init__(self, down: int) -> None:
        super().__init__()
        self.down = down

    def write(self, batch: Sequence[OutboxEntry]) -> list[Delivery]:
        if self.down > 0:
            self.down -= 1
            raise SinkUnavailable("catalog unreachable")
        return super().write(batch)


def test_a_long_sink_outage_counts_no_attempts(tmp_path: Path) -> None:
    # Many more failed tries than max_attempts: nothing may end as a dead letter.
    journal = Journal.open(tmp_path, max_attempts=2)
    paths = [f"/r/f{i}.exr" for i in range(3)]
    journal.write([Persist(p, FileSig(1, 1, 1), "h", "complete", {"path": p}) for p in paths])
    sink = DownSink(down=8)
    loop = SinkLoop(journal, sink, batch_size=10, batch_wait=0.0,  # type: ignore[arg-type]
                    unavailable_backoff=(0.01, 0.02))  # fmt: skip
    loop.start()
    try:
        wait_for(lambda: loop.delivered == 3, 10, lambda: f"{loop.delivered} delivered")
        assert sink.down == 0 and sorted(sink.written) == sorted(paths)
        stats = journal.stats()
        assert (stats.ready, stats.inflight, stats.dead) == (0, 0, 0)
        assert loop.unhealthy_since is None
    finally:
        loop.stop(5)
        journal.close()


def test_the_writer_outlasts_a_journal_locked_past_busy_timeout(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    # An operator's long transaction on journal.db: the writer's write times out (here after
    # 50 ms instead of 10 s), says so, and writes the same batch once the lock is gone.
    journal = Journal.open(tmp_path)
    with journal._locked("test") as conn:
        conn.execute("PRAGMA busy_timeout = 50")
    writer = JournalWriter(journal, on_commit=lambda _: None, max_delay=0.01)  # type: ignore[arg-type]
    holder = sqlite3.connect(journal.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    writer.start()
    try:
        assert writer.offer(Delete("/r/a.exr"))
        wait_for(lambda: named(logs, "journal.busy"), 10, "the writer to report the lock")
        assert writer.alive() and writer.written == 0
        holder.rollback()
        wait_for(lambda: writer.written == 1, 10, "the batch written after the lock")
        assert writer.error is None and journal.path_state("/r/a.exr") is None
        assert journal.stats().ready == 1  # the deletion is queued for the sink, once
    finally:
        holder.close()
        writer.stop(5)
        journal.close()
