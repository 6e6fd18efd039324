"""The journal: durable writes, outbox collapse and claiming, backoff, crashes, odd paths."""

from __future__ import annotations

import gc
import json
import os
import random
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exrwatchd.errors import ExrwatchdError
from exrwatchd.filesig import FileSig
from exrwatchd.journal import (
    Delete,
    Journal,
    JournalError,
    OutboxEntry,
    Persist,
    Rechecking,
)

T0 = 1_700_000_000.0


class FakeClock:
    """A clock that moves only when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.db"


@pytest.fixture
def journal(tmp_path: Path, clock: FakeClock) -> Iterator[Journal]:
    with Journal.open(tmp_path / "state", clock=clock, rng=random.Random(7)) as j:
        yield j


def persist(path: str, version: int = 1, **record: Any) -> Persist:
    rec: dict[str, Any] = {"path": path, "version": version, "error": None, **record}
    return Persist(path, FileSig(size=100 + version, mtime_ns=version, inode=42), "h", "complete",
                   rec)  # fmt: skip


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached before the deadline"


def one(entries: list[OutboxEntry]) -> OutboxEntry:
    assert len(entries) == 1, entries
    return entries[0]


class TestWriteLock:
    """Another connection (the sink process's, the writer's) holding the write lock is waited
    out, for up to the busy timeout; then the error names the file."""

    @staticmethod
    def _held(db: Path) -> sqlite3.Connection:
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        return other

    def _write_behind_the_lock(
        self, journal: Journal, db: Path, monkeypatch: pytest.MonkeyPatch
    ) -> tuple[sqlite3.Connection, threading.Thread]:
        """Another connection takes the write lock, then a thread writes /r/a.exr; returns
        once that write has found the lock held (and is trying again)."""
        from exrwatchd.journal import _conn

        other = self._held(db)
        refused = threading.Event()
        pause = _conn._pause_for_write_lock

        def pause_and_tell() -> None:
            refused.set()
            pause()

        monkeypatch.setattr(_conn, "_pause_for_write_lock", pause_and_tell)
        writer = threading.Thread(target=journal.write, args=([persist("/r/a.exr")],))
        writer.start()
        assert refused.wait(10), "the write never found the lock held"
        return other, writer

    def test_a_held_lock_is_waited_out(self, journal: Journal, db: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
        other, writer = self._write_behind_the_lock(journal, db, monkeypatch)
        other.execute("COMMIT")  # what the other process does when its transaction ends
        writer.join(10)
        assert not writer.is_alive()
        assert one(journal.claim(10)).path == "/r/a.exr"
        other.close()

    def test_reads_go_on_while_a_write_waits_for_the_lock(
        self, journal: Journal, db: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # status.json, the metrics and the reconciler read while the writer waits (up to the
        # busy timeout, 10 s) behind another connection's write lock. They used to wait with
        # it, the settle loop among them: test_faults' full-disk stop timed out on it.
        journal.write([persist("/r/known.exr")])
        other, writer = self._write_behind_the_lock(journal, db, monkeypatch)
        read: dict[str, Any] = {}
        reader = threading.Thread(target=lambda: read.update(
            stats=journal.stats(paths=False), known=journal.paths_in_dir("/r")))  # fmt: skip
        reader.start()
        reader.join(5)  # half the busy timeout: the lock is held for longer than that
        done = not reader.is_alive()
        other.execute("COMMIT")
        writer.join(10)
        reader.join(10)
        other.close()
        assert done, "reading waited for the write that waits for the lock"
        assert read["stats"].ready == 1 and set(read["known"]) == {"known.exr"}

    def test_a_lock_held_past_the_busy_timeout_fails_naming_the_file(
        self, journal: Journal, db: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from exrwatchd.journal import _conn

        monkeypatch.setattr(_conn, "BUSY_TIMEOUT_MS", 200)
        other = self._held(db)
        started = time.monotonic()
        with pytest.raises(JournalError, match=f"{db}: write failed: database is locked"):
            journal.write([persist("/r/a.exr")])
        assert time.monotonic() - started >= 0.2
        other.execute("ROLLBACK")
        other.close()
        journal.write([persist("/r/a.exr")])  # the connection is still usable


class TestDurability:
    def test_write_survives_reopen(self, db: Path) -> None:
        with Journal.open(db.parent) as j:
            j.write([persist("/srv/a.exr", 3), Delete("/srv/gone.exr")])
        with Journal(db) as again:
            entries = again.claim(10)
            state = again.path_state("/srv/a.exr")
        assert [(e.path, e.op) for e in entries] == [("/srv/a.exr", "upsert"),
                                                     ("/srv/gone.exr", "delete")]  # fmt: skip
        assert entries[0].record is not None and entries[0].record["version"] == 3
        assert entries[1].record is None
        assert state is not None and state.sig == FileSig(103, 3, 42)

    def test_crashed_process_loses_nothing(self, db: Path) -> None:
        # A real process that writes, claims and dies without closing anything.
        script = textwrap.dedent("""
            import os, sys
            from pathlib import Path
            from exrwatchd.journal import Journal, Persist
            j = Journal.open(Path(sys.argv[1]))
            j.write([Persist(f"/srv/{i}.exr", None, None, "failed", {"i": i}) for i in range(50)])
            assert len(j.claim(10)) == 10
            os._exit(0)
        """)
        subprocess.run([sys.executable, "-c", script, str(db.parent)], check=True, timeout=60)
        with Journal(db) as j:
            assert j.stats().inflight == 10
            assert j.reset_inflight() == 10
            entries = j.claim(100)
        assert sorted(e.record["i"] for e in entries if e.record) == list(range(50))

    def test_reset_inflight_after_dropped_object(self, db: Path, clock: FakeClock) -> None:
        j = Journal.open(db.parent, clock=clock)
        j.write([persist("/srv/a.exr"), persist("/srv/b.exr")])
        claimed = j.claim(1)
        del j  # no ack, no close: as if the daemon died mid-delivery
        gc.collect()
        with Journal(db, clock=clock) as again:
            assert [e.path for e in again.claim(10)] == ["/srv/b.exr"]
            assert again.claim(10) == []  # both in flight now, nothing claimable
            assert again.reset_inflight() == 2
            retaken = again.claim(10)
        assert [e.id for e in retaken] == [claimed[0].id, retaken[1].id]
        assert {e.path for e in retaken} == {"/srv/a.exr", "/srv/b.exr"}

    def test_failed_batch_writes_nothing(self, journal: Journal) -> None:
        with pytest.raises(TypeError):
            journal.write([persist("/srv/a.exr"), persist("/srv/b.exr", bad=object())])
        assert journal.stats().outbox_total == 0
        assert journal.path_state("/srv/a.exr") is None


class TestFiles:
    def test_modes(self, tmp_path: Path) -> None:
        old = os.umask(0o022)
        try:
            with Journal.open(tmp_path / "var" / "exrwatchd") as j:
                j.write([persist("/srv/a.exr")])
                files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in j.path.parent.iterdir()}
                assert stat.S_IMODE(j.path.parent.stat().st_mode) == 0o700
        finally:
            os.umask(old)
        assert files == {"journal.db": 0o600, "journal.db-wal": 0o600, "journal.db-shm": 0o600}
        assert os.umask(old) == old  # the journal put the process umask back

    def test_wal_mode(self, journal: Journal) -> None:
        with sqlite3.connect(journal.path) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    def test_garbage_file(self, db: Path) -> None:
        db.parent.mkdir()
        db.write_bytes(b"definitely not sqlite\n" * 500)
        with pytest.raises(JournalError) as caught:
            Journal(db)
        message = str(caught.value)
        assert str(db) in message
        assert "journal.db is not a valid SQLite database" in message
        assert "move it aside and restart; the daemon rebuilds state by rescanning" in message
        assert isinstance(caught.value, ExrwatchdError)

    def test_damaged_pages(self, db: Path) -> None:
        with Journal.open(db.parent) as j:
            j.write([persist(f"/srv/{i:05}.exr", blob="x" * 500) for i in range(2000)])
        data = bytearray(db.read_bytes())
        page = 4096
        assert len(data) > 20 * page
        data[4 * page : 12 * page] = os.urandom(8 * page)  # leave the header page alone
        db.write_bytes(bytes(data))
        with pytest.raises(JournalError, match="is not a valid SQLite database"):
            Journal(db)

    def test_newer_schema_refused(self, db: Path) -> None:
        Journal.open(db.parent).close()
        with sqlite3.connect(db) as raw:
            raw.execute("PRAGMA user_version = 99")
        with pytest.raises(JournalError, match=r"schema version 99, newer") as caught:
            Journal(db)
        assert str(db) in str(caught.value)

    def test_a_version_4_journal_ships_its_waiting_records_after_the_upgrade(
        self, db: Path
    ) -> None:
        """Schema 4 stored each record as JSON text; schema 5 stores new ones compressed.
        Entries that waited through the upgrade ship with their records whole, beside new
        ones, and the number tells an older exrwatchd to refuse the file."""
        with Journal.open(db.parent) as j:
            j.write([persist("/srv/old.exr", channels=["R", "G", "B"] * 500)])
        with sqlite3.connect(db) as raw:  # as version 4 left it
            (stored,) = raw.execute("SELECT record FROM outbox").fetchone()
            raw.execute("UPDATE outbox SET record = ?", (zlib.decompress(stored).decode(),))
            raw.execute("PRAGMA user_version = 4")
        with Journal(db) as j:
            j.write([persist("/srv/new.exr", 2, channels=["Z"] * 1500)])
            records = {e.path: e.record for e in j.claim(10)}
        assert records == {
            "/srv/old.exr": {"path": "/srv/old.exr", "version": 1, "error": None,
                             "channels": ["R", "G", "B"] * 500},
            "/srv/new.exr": {"path": "/srv/new.exr", "version": 2, "error": None,
                             "channels": ["Z"] * 1500},
        }  # fmt: skip
        with sqlite3.connect(db) as raw:
            assert raw.execute("PRAGMA user_version").fetchone() == (5,)
            stored_as = dict(raw.execute("SELECT path, typeof(record) FROM outbox"))
        assert stored_as == {b"/srv/old.exr": "text", b"/srv/new.exr": "blob"}

    def test_foreign_database_refused(self, db: Path) -> None:
        db.parent.mkdir()
        with sqlite3.connect(db) as raw:
            raw.execute("CREATE TABLE photos (id INTEGER)")
        with pytest.raises(JournalError, match="not an exrwatchd journal"):
            Journal(db)

    def test_closed(self, db: Path) -> None:
        j = Journal.open(db.parent)
        j.close()
        j.close()
        with pytest.raises(JournalError, match="closed"):
            j.stats()


class TestCollapse:
    def test_ready_entry_replaced(self, journal: Journal) -> None:
        journal.write([persist("/srv/a.exr", 1)])
        journal.write([persist("/srv/a.exr", 2)])
        assert journal.stats().ready == 1
        entry = one(journal.claim(10))
        assert entry.record is not None and entry.record["version"] == 2
        assert entry.attempts == 0

    def test_replacement_resets_attempts_and_backoff(self, journal: Journal) -> None:
        journal.write([persist("/srv/a.exr", 1)])
        journal.retry([(one(journal.claim(1)).id, "timeout")])
        assert journal.claim(1) == []  # backing off
        journal.write([persist("/srv/a.exr", 2)])
        entry = one(journal.claim(1))  # due at once
        assert entry.attempts == 0 and entry.record is not None and entry.record["version"] == 2

    def test_inflight_entry_untouched(self, journal: Journal) -> None:
        journal.write([persist("/srv/a.exr", 1)])
        first = one(journal.claim(10))
        journal.write([persist("/srv/a.exr", 2)])
        journal.write([persist("/srv/a.exr", 3)])
        stats = journal.stats()
        assert (stats.inflight, stats.ready) == (1, 1)
        assert journal.claim(10) == []  # waits behind the one in flight
        journal.ack([first.id])
        later = one(journal.claim(10))
        assert later.record is not None and later.record["version"] == 3

    def test_last_item_in_batch_wins(self, journal: Journal) -> None:
        journal.write([
            persist("/srv/a.exr", 1), persist("/srv/b.exr", 1), Delete("/srv/a.exr"),
            persist("/srv/a.exr", 2), Delete("/srv/b.exr"),
        ])  # fmt: skip
        entries = journal.claim(10)
        assert [(e.path, e.op) for e in entries] == [("/srv/a.exr", "upsert"),
                                                     ("/srv/b.exr", "delete")]  # fmt: skip
        assert entries[0].record is not None and entries[0].record["version"] == 2
        assert journal.path_state("/srv/b.exr") is None  # never persisted, so no tombstone

    def test_a_catch_up_sized_batch_is_journaled_whole_and_in_order(
        self, journal: Journal
    ) -> None:
        # 301 items: the writer's statements take rows in chunks (128, 128, 32, 8, 4, 1).
        frames = [f"/srv/shot/f.{n:04}.exr" for n in range(301)]
        journal.write([persist(path, 1) for path in frames])
        # A second batch supersedes every other waiting entry and deletes one frame.
        journal.write([*(persist(path, 2) for path in frames[::2]), Delete(frames[7])])
        assert all(journal.path_state(p) is not None for p in frames)
        assert journal.path_state(frames[7]).status == "deleted"  # type: ignore[union-attr]
        entries = journal.claim(1000)
        assert sorted(e.path for e in entries) == frames  # one entry per path, none lost
        # Oldest first: the untouched odd frames of the first batch, then the second batch.
        expected = [(p, "upsert", 1) for p in frames[1::2] if p != frames[7]]
        expected += [(p, "upsert", 2) for p in frames[::2]] + [(frames[7], "delete", None)]
        assert [(e.path, e.op, e.record and e.record["version"]) for e in entries] == expected

    def test_delete_leaves_tombstone(self, journal: Journal, clock: FakeClock) -> None:
        journal.write([persist("/srv/a.exr")])
        clock.now += 5
        journal.write([Delete("/srv/a.exr")])
        state = journal.path_state("/srv/a.exr")
        assert state is not None
        assert (state.status, state.updated_at, state.sig) == (
            "deleted",
            T0 + 5,
            FileSig(101, 1, 42),
        )
        assert journal.paths_in_dir("/srv") == {}
        assert one(journal.claim(10)).op == "delete"

    def test_error_message_kept_on_path(self, journal: Journal) -> None:
        error = {"kind": "not_exr", "message": "bad magic"}
        journal.write([Persist("/srv/x.exr", None, None, "failed", {"error": error})])
        state = journal.path_state("/srv/x.exr")
        assert state is not None and (state.status, state.error) == ("failed", "bad magic")

    def test_new_write_clears_dead_letter(self, journal: Journal) -> None:
        journal.write([persist("/srv/a.exr", 1)])
        journal.reject([(one(journal.claim(1)).id, "schema mismatch")])
        assert journal.stats().dead == 1
        journal.write([persist("/srv/a.exr", 2)])
        assert (journal.stats().dead, journal.stats().ready) == (0, 1)

    def test_failure_of_superseded_entry_drops_it(self, journal: Journal) -> None:
        journal.write([persist("/srv/a.exr", 1), persist("/srv/b.exr", 1)])
        a1, b1 = journal.claim(10)
        journal.write([persist("/srv/a.exr", 2), persist("/srv/b.exr", 2)])
        assert journal.retry([(a1.id, "timeout")]) == []
        assert journal.reject([(b1.id, "bad")]) == []
        assert journal.stats().outbox_total == 2
        versions = {e.path: e.record["version"] for e in journal.claim(10) if e.record}
        assert versions == {"/srv/a.exr": 2, "/srv/b.exr": 2}


class TestClaim:
    def test_one_per_path_and_never_behind_inflight(self, journal: Journal) -> None:
        journal.write([persist(f"/srv/{i % 3}.exr", i) for i in range(9)])
        journal.write([persist("/srv/0.exr", 10)])
        first = journal.claim(100)
        assert sorted(e.path for e in first) == ["/srv/0.exr", "/srv/1.exr", "/srv/2.exr"]
        journal.write([persist("/srv/0.exr", 11), persist("/srv/3.exr", 11)])
        assert [e.path for e in journal.claim(100)] == ["/srv/3.exr"]

    def test_oldest_due_first_and_limit(self, journal: Journal, clock: FakeClock) -> None:
        for i in range(5):
            journal.write([persist(f"/srv/{i}.exr")])
            clock.now += 1
        assert [e.path for e in journal.claim(2)] == ["/srv/0.exr", "/srv/1.exr"]
        assert [e.path for e in journal.claim(2)] == ["/srv/2.exr", "/srv/3.exr"]
        assert journal.claim(0) == []

    def test_entry_waits_until_due(self, journal: Journal, clock: FakeClock) -> None:
        journal.write([persist("/srv/a.exr")])
        assert journal.defer_all(30) == 1
        clock.now += 29.9
        assert journal.claim(1) == []
        clock.now += 0.1
        assert one(journal.claim(1)).path == "/srv/a.exr"

    def test_random_workload_keeps_order_and_exclusion(self, journal: Journal) -> None:
        """Per path: never two in flight, and deliveries arrive in version order."""
        rnd = random.Random(1)
        version: dict[str, int] = {}
        delivered: dict[str, list[int]] = {}
        inflight: dict[int, OutboxEntry] = {}
        for _ in range(400):
            batch = []
            for _ in range(rnd.randint(0, 6)):
                path = f"/srv/{rnd.randint(0, 9)}.exr"
                version[path] = version.get(path, 0) + 1
                batch.append(persist(path, version[path]))
            journal.write(batch)
            claimed = journal.claim(rnd.randint(1, 5))
            busy = {e.path for e in inflight.values()}
            assert len({e.path for e in claimed}) == len(claimed)
            assert not busy & {e.path for e in claimed}
            inflight.update((e.id, e) for e in claimed)
            for entry in list(inflight.values()):
                if rnd.random() < 0.5:
                    continue
                del inflight[entry.id]
                if rnd.random() < 0.8:
                    journal.ack([entry.id])
                    assert entry.record is not None
                    delivered.setdefault(entry.path, []).append(entry.record["version"])
                else:
                    journal.retry([(entry.id, "flaky")])
                    journal.defer_all(-1e9)  # make retried entries due again at once
        for versions in delivered.values():
            assert versions == sorted(set(versions))


class TestRetry:
    def test_backoff_grows_and_is_capped(self, db: Path, clock: FakeClock) -> None:
        j = Journal.open(db.parent, clock=clock, rng=random.Random(3), max_attempts=12,
                         backoff_initial=1.0, backoff_max=40.0)  # fmt: skip
        expected_rng = random.Random(3)
        j.write([persist("/srv/a.exr")])
        delays = []
        for attempt in range(1, 12):
            entry = one(j.claim(1))
            assert entry.attempts == attempt - 1
            failed_at = clock.now
            assert j.retry([(entry.id, f"timeout {attempt}")]) == []
            cap = min(40.0, 2.0 ** (attempt - 1))
            delay = cap * expected_rng.uniform(0.5, 1.0)
            assert cap / 2 <= delay <= cap
            clock.now = failed_at + delay - 1e-3
            assert j.claim(1) == []
            clock.now = failed_at + delay
            delays.append(delay)
        assert delays[5] > delays[0] * 8  # 32 s cap vs 1 s cap
        assert max(delays) <= 40.0
        assert all(d >= 20.0 for d in delays[6:])  # capped at 40 s, jittered down to 20 s
        entry = one(j.claim(1))
        assert j.retry([(entry.id, "timeout 12")]) == [entry.id]  # the 12th failure kills it
        [dead] = j.dead_letters()
        assert (dead.path, dead.op, dead.attempts, dead.last_error) == (
            "/srv/a.exr",
            "upsert",
            12,
            "timeout 12",
        )
        clock.now += 1e6
        assert j.claim(1) == []
        j.close()

    def test_reject_is_dead_at_once(self, journal: Journal, clock: FakeClock) -> None:
        journal.write([persist("/srv/a.exr"), persist("/srv/b.exr")])
        a, b = journal.claim(10)
        clock.now += 2
        assert journal.reject([(a.id, "400 bad schema")]) == [a.id]
        journal.ack([b.id])
        [dead] = journal.dead_letters()
        assert (dead.id, dead.attempts, dead.last_error, dead.updated_at) == (
            a.id,
            1,
            "400 bad schema",
            T0 + 2,
        )
        assert journal.claim(10) == []

    def test_failures_for_entries_not_in_flight_are_ignored(self, journal: Journal) -> None:
        journal.write([persist("/srv/a.exr")])
        assert journal.retry([(12345, "who?")]) == []
        entry = one(journal.claim(1))
        journal.ack([entry.id])
        assert journal.reject([(entry.id, "late")]) == []
        assert journal.stats().outbox_total == 0

    def test_requeue_dead(self, journal: Journal) -> None:
        journal.write([persist("/srv/a.exr"), persist("/srv/b.exr"), persist("/srv/c.exr")])
        entries = journal.claim(10)
        journal.reject([(e.id, "nope") for e in entries])
        assert journal.requeue_dead("/srv/b.exr") == 1
        assert one(journal.claim(10)).path == "/srv/b.exr"
        assert journal.requeue_dead() == 2
        requeued = journal.claim(10)
        assert sorted(e.path for e in requeued) == ["/srv/a.exr", "/srv/c.exr"]
        assert all(e.attempts == 0 for e in requeued)

    def test_reset_inflight_drops_superseded(self, journal: Journal) -> None:
        journal.write([persist("/srv/a.exr", 1), persist("/srv/b.exr", 1)])
        journal.claim(10)
        journal.write([persist("/srv/a.exr", 2)])
        assert journal.reset_inflight() == 2
        versions = {e.path: e.record["version"] for e in journal.claim(10) if e.record}
        assert versions == {"/srv/a.exr": 2, "/srv/b.exr": 1}


class TestPaths:
    ODD_NAMES = (
        b"/srv/caf\xe9/frame\n0001.exr",  # latin-1 directory, newline in the name
        b"/srv/\xff\xfe/\x80.exr",
        b"/srv/ok/na\xefve.exr",
    )

    def test_odd_bytes_round_trip(self, db: Path, clock: FakeClock) -> None:
        paths = [os.fsdecode(raw) for raw in self.ODD_NAMES]
        with Journal.open(db.parent, clock=clock) as j:
            j.write([persist(p, extra=p) for p in paths])
        with Journal(db, clock=clock) as j:
            entries = j.claim(10)
            assert [e.path for e in entries] == paths
            assert [e.record["extra"] for e in entries if e.record] == paths
            for raw, path in zip(self.ODD_NAMES, paths, strict=True):
                state = j.path_state(path)
                assert state is not None and os.fsencode(state.path) == raw
                directory, name = os.path.split(path)
                assert list(j.paths_in_dir(directory)) == [name]
            assert sorted(j.known_dirs("/srv")) == sorted(os.path.dirname(p) for p in paths)
            j.retry([(entries[0].id, f"cannot write {paths[0]}")])
            stats = j.stats()
        assert stats.last_error_path == paths[0]
        assert stats.last_error == "cannot write /srv/caf\\udce9/frame\n0001.exr"
        with sqlite3.connect(db) as raw_db:  # the record: compressed JSON, surrogates escaped
            (stored,) = raw_db.execute("SELECT record FROM outbox LIMIT 1").fetchone()
        assert zlib.decompress(stored).isascii()

    def test_dirs_on_a_few_thousand_paths(self, journal: Journal) -> None:
        expected_dirs = []
        batch: list[Persist | Delete] = []
        for i in range(1500):
            directory = f"/mnt/show/seq{i // 100:02}/shot{i:04}"
            expected_dirs.append(directory)
            batch += [persist(f"{directory}/f.{n:04}.exr") for n in range(2)]
        batch += [persist("/mnt/show/top.exr"), persist("/mnt/showreel/x.exr"),
                  persist("/mnt/show-b/x.exr"), persist("/mnt/shoW/x.exr"),
                  persist("/mnt/show/seq00/gone/x.exr")]  # fmt: skip
        journal.write(batch)
        journal.write([Delete("/mnt/show/seq00/gone/x.exr")])

        in_shot = journal.paths_in_dir("/mnt/show/seq03/shot0342/")
        assert sorted(in_shot) == ["f.0000.exr", "f.0001.exr"]
        assert in_shot["f.0001.exr"].path == "/mnt/show/seq03/shot0342/f.0001.exr"
        assert list(journal.paths_in_dir("/mnt/show")) == ["top.exr"]
        assert journal.paths_in_dir("/mnt/show/seq00/gone") == {}

        dirs = list(journal.known_dirs("/mnt/show"))
        assert dirs == ["/mnt/show", *sorted(expected_dirs)]
        assert list(journal.known_dirs("/mnt/show/seq01/")) == sorted(
            d for d in expected_dirs if d.startswith("/mnt/show/seq01/")
        )
        assert list(journal.known_dirs("/mnt/showreel")) == ["/mnt/showreel"]
        assert list(journal.known_dirs("/mnt/sho")) == []
        assert len(list(journal.known_dirs("/"))) == len(expected_dirs) + 4

    def test_known_dirs_does_not_confuse_prefixes(self, journal: Journal) -> None:
        journal.write([persist("/a/b/1.exr"), persist("/a/bc/2.exr"), persist("/a/b-c/3.exr"),
                       persist("/a/b/d/4.exr"), persist("/a/b.exr")])  # fmt: skip
        assert list(journal.known_dirs("/a/b")) == ["/a/b", "/a/b/d"]
        assert list(journal.known_dirs("/a")) == ["/a", "/a/b", "/a/b-c", "/a/b/d", "/a/bc"]

    def test_purge_tombstones(self, journal: Journal, clock: FakeClock) -> None:
        journal.write([persist("/srv/a.exr"), persist("/srv/b.exr")])
        journal.ack([e.id for e in journal.claim(10)])
        journal.write([Delete("/srv/a.exr"), Delete("/srv/b.exr")])
        clock.now += 100
        journal.ack([one(journal.claim(1)).id])  # a's delete delivered, b's still waiting
        assert journal.purge_tombstones(older_than_seconds=200) == 0
        assert journal.purge_tombstones(older_than_seconds=50) == 1
        assert journal.path_state("/srv/a.exr") is None
        b = journal.path_state("/srv/b.exr")
        assert b is not None and b.status == "deleted"


class TestStats:
    def test_numbers(self, journal: Journal, clock: FakeClock) -> None:
        assert journal.stats().oldest_ready_age is None
        journal.write([persist(f"/srv/{i}.exr") for i in range(6)])
        journal.write(
            [
                Persist(
                    "/srv/bad.exr",
                    None,
                    None,
                    "failed",
                    {"error": {"kind": "not_exr", "message": "bad"}},
                ),
                Persist("/srv/half.exr", None, None, "incomplete", {"error": None}),
            ]
        )
        journal.write([Delete("/srv/5.exr")])
        clock.now += 10
        journal.write([persist("/srv/new.exr")])
        claimed = journal.claim(4)  # 0..3
        journal.reject([(claimed[0].id, "rejected!")])
        clock.now += 5
        journal.retry([(claimed[1].id, "503")])
        stats = journal.stats()
        assert (stats.ready, stats.inflight, stats.dead, stats.outbox_total) == (6, 2, 1, 9)
        assert stats.paths_by_status == {"complete": 6, "incomplete": 1, "failed": 1,
                                         "deleted": 1}  # fmt: skip
        assert stats.oldest_ready_age == 15.0  # /srv/4.exr, written at T0
        assert (stats.last_error, stats.last_error_path, stats.last_error_at) == (
            "503",
            "/srv/1.exr",
            T0 + 15,
        )
        assert (stats.frames_in_progress, stats.hooks) == (0, {"ready": 0, "inflight": 0,
                                                               "dead": 0})  # fmt: skip

    def test_frames_in_progress_and_hook_rows(self, journal: Journal) -> None:
        from exrwatchd.config import HookConfig

        journal.write([persist(f"/srv/s/b.{n:04d}.exr") for n in (1, 2)])
        # notes.exr is not a frame: not counted
        rechecked = ("/srv/s/b.0003.exr", "/srv/s/b.0004.exr", "/srv/s/notes.exr")
        journal.write([Rechecking(path) for path in rechecked])
        assert journal.stats().frames_in_progress == 2
        # The daemon's own periodic stats skip the frames' scan, as they skip the paths'.
        assert journal.stats(paths=False).frames_in_progress == 0
        journal.write([persist("/srv/s/b.0003.exr")])
        assert journal.stats().frames_in_progress == 1

        journal.set_hooks([HookConfig("a", ("file.incomplete",))])
        journal.write([Persist(f"/srv/{n}.exr", None, None, "incomplete", {"error": None})
                       for n in ("x", "y", "z")])  # fmt: skip
        first, _ = journal.hook_claim(2)
        assert journal.hook_fail(first.id, "exit 1", max_attempts=1, permanent=False)
        for stats in (journal.stats(), journal.stats(paths=False)):
            assert stats.hooks == {"ready": 1, "inflight": 1, "dead": 1}


class TestConcurrency:
    BATCH = 200
    BATCHES = 25

    def test_second_journal_reads_and_claims_while_first_writes(self, db: Path) -> None:
        writer = Journal.open(db.parent)
        other = Journal(db)  # e.g. the CLI, or here a sink in another connection
        errors: list[BaseException] = []
        done = threading.Event()

        def write_all(tag: str) -> None:
            try:
                for b in range(self.BATCHES):
                    writer.write([persist(f"/srv/{tag}/{b}/{i}.exr")
                                  for i in range(self.BATCH)])  # fmt: skip
                    # The same object from another thread, as the reconciler does.
                    assert len(writer.paths_in_dir(f"/srv/{tag}/{b}")) == self.BATCH
            except BaseException as e:
                errors.append(e)
            finally:
                done.set()

        # Round 1: the other connection only reads; it never sees half a batch.
        thread = threading.Thread(target=write_all, args=("one",))
        thread.start()
        seen = []
        while not done.is_set():
            seen.append(other.stats().outbox_total)
        thread.join()
        assert not errors
        assert seen == sorted(seen)
        assert all(n % self.BATCH == 0 for n in seen)
        assert other.stats().ready == self.BATCH * self.BATCHES

        # Round 2: the other connection claims and acks while writes continue.
        done.clear()
        thread = threading.Thread(target=write_all, args=("two",))
        thread.start()
        acked = 0

        def drained() -> bool:
            nonlocal acked
            entries = other.claim(300)
            other.ack([e.id for e in entries])
            acked += len(entries)
            return done.is_set() and acked == 2 * self.BATCH * self.BATCHES

        wait_until(drained, timeout=60)
        thread.join()
        assert not errors
        assert writer.stats().outbox_total == 0
        writer.close()
        other.close()


class TestThroughput:
    ROUNDS, BATCHES, PER_BATCH = 3, 8, 500

    def test_report_write_rate(self, db: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Printed, not asserted: shared CI machines are too noisy for a threshold."""
        record = sample_record()
        size = len(json.dumps(record))
        rows = self.BATCHES * self.PER_BATCH
        best_write = best_encode = float("inf")  # best of a few rounds, to dodge noise
        with Journal.open(db.parent) as j:
            for r in range(self.ROUNDS):
                batches = [
                    [Persist(f"/mnt/r{r}/seq{b:02}/f.{i:04}.exr", FileSig(size, i, i), "ab" * 16,
                             "complete", record) for i in range(self.PER_BATCH)]
                    for b in range(self.BATCHES)
                ]  # fmt: skip
                start = time.perf_counter()
                for batch in batches:
                    j.write(batch)
                best_write = min(best_write, time.perf_counter() - start)
                start = time.perf_counter()
                for _ in range(rows):
                    json.dumps(record, ensure_ascii=True, separators=(",", ":"))
                best_encode = min(best_encode, time.perf_counter() - start)
            # frame sequences are summarised later (REFRESH_DELAY): no entries for them yet
            assert j.stats().ready == self.ROUNDS * rows
        with capsys.disabled():
            print(f"\njournal write: {rows / best_write:,.0f} rows/s ({self.PER_BATCH}-item "
                  f"batches, {size} B records); JSON encoding alone: "
                  f"{rows / best_encode:,.0f} records/s")  # fmt: skip


def sample_record() -> dict[str, Any]:
    """About 3 KB of JSON, shaped like an inspect --json record with embeddings."""
    rnd = random.Random(0)
    channels = [{"name": n, "type": "HALF", "x_sampling": 1, "y_sampling": 1, "p_linear": False,
                 "view": None} for n in ("R", "G", "B", "A", "Z", "N.x", "N.y", "N.z")]  # fmt: skip
    return {
        "path": "/mnt/show/seq01/shot0010/beauty.0001.exr",
        "size_bytes": 12_345_678,
        "mtime": "2026-01-02T03:04:05.678901Z",
        "header_hash": "ab" * 16,
        "complete": True,
        "incomplete_reason": None,
        "frame_number": 1,
        "error": None,
        "parts": [
            {
                "index": 0,
                "name": None,
                "type": "scanlineimage",
                "view": None,
                "compression": "zip",
                "data_window": [0, 0, 2047, 1079],
                "display_window": [0, 0, 2047, 1079],
                "pixel_aspect_ratio": 1.0,
                "line_order": "increasing_y",
                "tiles": None,
                "chunk_count": 68,
                "channels": channels,
                "attributes": {"owner": {"type": "string", "value": "lighting"}},
            }
        ],
        "embedding_version": 1,
        "metadata_embedding": [round(rnd.uniform(-1, 1), 6) for _ in range(96)],
        "channel_fingerprint": [round(rnd.uniform(-1, 1), 6) for _ in range(32)],
        "inspection_id": "0192f8a4-3c5e-7d3a-9b1e-2f4c6d8e0a1b",
        "inspected_at": "2026-01-02T03:04:06.000000Z",
        "inode": 424242,
    }


class TestResendAll:
    """The catalog was lost: live paths marked for re-inspection, deletions and sequence
    summaries queued again (Journal.resend_all)."""

    def test_live_paths_look_changed_and_tombstones_stay(self, journal: Journal) -> None:
        journal.write([persist(f"/r/sh/f.{i:04d}.exr") for i in range(12)])
        journal.write([Delete("/r/sh/f.0000.exr")])
        journal.ack([e.id for e in journal.claim(100)])
        before = journal.path_state("/r/sh/f.0003.exr")
        assert before is not None and before.sig is not None
        assert journal.resend_all(step=5) == 11  # three slices and the rest
        after = journal.path_state("/r/sh/f.0003.exr")
        assert after is not None and after.sig is not None and after.status == "complete"
        # size -1: no file has it, so a reconciliation sees the file changed, and a file
        # deleted meanwhile is still seen gone (the path stays known)
        assert after.sig.size == -1 and after.sig.mtime_ns == before.sig.mtime_ns
        gone = journal.path_state("/r/sh/f.0000.exr")
        assert gone is not None and gone.status == "deleted" and gone.sig == FileSig(101, 1, 42)
        assert "f.0003.exr" in journal.paths_in_dir("/r/sh")
        assert journal.resend_all() == 0  # already marked
        assert all(e.op == "sequence" for e in journal.claim(100))  # no path entries

    def test_a_newer_inspection_clears_the_mark(self, journal: Journal) -> None:
        journal.write([persist("/r/a.exr")])
        journal.resend_all()
        journal.write([persist("/r/a.exr", 2)])
        state = journal.path_state("/r/a.exr")
        assert state is not None and state.sig == FileSig(102, 2, 42)

    def test_deletions_queued_again_for_a_replaced_catalog(self, journal: Journal) -> None:
        journal.write([persist("/r/a.exr"), persist("/r/b.exr"), persist("/r/c.exr")])
        journal.write([Delete("/r/a.exr"), Delete("/r/b.exr")])
        journal.ack([e.id for e in journal.claim(100)])
        journal.write([persist("/r/b.exr", 2)])  # back again: its upsert waits, no delete
        journal.write([Delete("/r/b.exr")])  # and gone again: its delete waits
        assert journal.resend_all(deletes=True, step=1) == 1
        entries = journal.claim(100)
        assert sorted((e.path, e.op) for e in entries if e.op != "sequence") == [
            ("/r/a.exr", "delete"), ("/r/b.exr", "delete")]  # fmt: skip

    def test_sequence_summaries_queued_again(self, journal: Journal) -> None:
        summary = {"directory": "/r/sh", "pattern": "beauty.%04d.exr", "frames": 3}
        with journal._transaction("test") as conn:  # a summary the journal keeps, shipped
            conn.execute("INSERT INTO sequences (seq, summary) VALUES (?, ?)",
                         (b"seq:/r/sh/beauty.%04d.exr", json.dumps(summary)))  # fmt: skip
        journal.resend_all()
        again = [e for e in journal.claim(100) if e.op == "sequence"]
        assert [(e.path, e.record) for e in again] == [("seq:/r/sh/beauty.%04d.exr", summary)]
        journal.resend_all()  # queued again behind the one in flight, not beside it
        assert journal.stats().ready == 1 and journal.claim(100) == []

    def test_durable_on_an_acknowledgements_only_connection(self, db: Path) -> None:
        with Journal.open(db.parent) as j:
            j.write([persist("/r/a.exr")])
            j.acknowledgements_only()
            j.resend_all()
            with j._locked("test") as conn:  # restored afterwards: NORMAL is 1
                assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
