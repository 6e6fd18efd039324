"""`exrwatchd journal stats | failed | retry | purge` on real journals, next to a live writer.

Every command test runs twice: in-process through `cli.journal.register()` on a fresh
argparse parser, and as a real subprocess (`python -m exrwatchd journal ...`). The
subprocess runs are skipped while cli/main.py does not register the command yet.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, wait_for, write_config

from exrwatchd.cli.journal import (
    Duration,
    parse_duration,
    register,
    shown,
)
from exrwatchd.filesig import FileSig
from exrwatchd.journal import (
    Delete,
    Journal,
    PathStatus,
    Persist,
)

DAY = 86400.0
NOW = time.time()  # the fixture journal is written relative to this, with a fake clock
# A latin-1 directory, a newline, a backslash, a space and a terminal escape sequence.
ODD = os.fsdecode(b"/srv/caf\xe9/new\nline \\ \x1b[31m.exr")
ODD_BROKEN = os.fsdecode(b"/srv/\xff\xfe/\ttab.exr")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def persist(path: str, status: PathStatus = "complete", error: str | None = None) -> Persist:
    record = {"path": path, "error": None if error is None else {"kind": "x", "message": error}}
    return Persist(path, FileSig(size=1, mtime_ns=1, inode=1), None, status, record)


def populate(state: Path) -> None:
    """A journal with every kind of entry, written over the last 30 days (see EXPECTED_STATS)."""
    clock = Clock(NOW - 30 * DAY)
    ok = [f"/srv/ok/{i}.exr" for i in range(5)]
    gone = ["/srv/old-gone.exr", "/srv/pending-gone.exr", "/srv/recent-gone.exr"]
    with Journal.open(
        state, clock=clock, max_attempts=3, backoff_initial=1.0, backoff_max=1.0
    ) as j:
        j.write(
            [
                persist(p)
                for p in [*ok, "/srv/dead/rejected.exr", "/srv/dead/exhausted.exr", ODD, *gone]
            ]
            + [
                persist("/srv/broken/not.exr", "failed", "not an OpenEXR file"),
                persist(ODD_BROKEN, "failed", "truncated header"),
                persist("/srv/half.exr", "incomplete"),
            ]
        )
        claimed = {e.path: e for e in j.claim(100)}
        odd_id = claimed[ODD].id  # stays in flight until the end
        j.reject([(claimed["/srv/dead/rejected.exr"].id, "400 bad schema")])
        j.retry([(claimed["/srv/dead/exhausted.exr"].id, "503 busy")])
        delivered = set(claimed) - {"/srv/dead/rejected.exr", "/srv/dead/exhausted.exr", ODD}
        j.ack([claimed[p].id for p in delivered])
        j.write([Delete("/srv/old-gone.exr")])  # its tombstone is 30 days old

        clock.now = NOW - 29 * DAY
        claimed = {e.path: e for e in j.claim(100)}
        assert set(claimed) == {"/srv/dead/exhausted.exr", "/srv/old-gone.exr"}
        j.ack([claimed["/srv/old-gone.exr"].id])
        j.retry([(claimed["/srv/dead/exhausted.exr"].id, "503 busy")])

        clock.now = NOW - 28 * DAY
        [exhausted] = j.claim(100)
        assert j.retry([(exhausted.id, "503 busy")]) == [exhausted.id]  # the third: dead
        j.write([Delete("/srv/pending-gone.exr")])  # 28 days old, never delivered

        clock.now = NOW - 2 * DAY
        j.write([Delete("/srv/recent-gone.exr")])
        claimed = {e.path: e for e in j.claim(100)}
        j.ack([claimed["/srv/recent-gone.exr"].id])
        j.retry([(claimed["/srv/pending-gone.exr"].id, "503 sink down")])

        clock.now = NOW - DAY
        j.write([persist("/srv/inflight.exr")])
        claimed = {e.path: e for e in j.claim(100)}
        assert set(claimed) == {"/srv/pending-gone.exr", "/srv/inflight.exr"}
        j.retry([(claimed["/srv/pending-gone.exr"].id, "503 sink down")])  # 2 of 3: ready
        j.write([persist("/srv/ready.exr")])
        clock.now += 60
        assert j.reject([(odd_id, f"cannot write {ODD}")]) == [odd_id]


EXPECTED_STATS = {
    "ready": 2,  # pending-gone (waiting for its third attempt), ready.exr
    "inflight": 1,  # inflight.exr
    "dead": 3,  # rejected, exhausted, ODD
    "outbox_total": 6,
    "paths_by_status": {"complete": 10, "incomplete": 1, "failed": 2, "deleted": 3},
}


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The populated state directory, built once and copied for each test."""
    state = tmp_path_factory.mktemp("template") / "state"
    populate(state)
    return state


@dataclasses.dataclass
class Setup:
    config: Path
    state: Path

    @property
    def db(self) -> Path:
        return self.state / "journal.db"

    def journal(self, **kw: Any) -> Journal:
        return Journal(self.db, **kw)


@pytest.fixture
def setup(tmp_path: Path, template: Path) -> Setup:
    state = tmp_path / "state"
    shutil.copytree(template, state)
    return Setup(write_config(tmp_path / "exrwatchd.toml", state, []), state)


# -- running the commands -------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Invoke = Callable[..., Result]


@functools.cache
def wired() -> str | None:
    """None when `exrwatchd journal` is a command of the real CLI, else why not."""
    proc = subprocess.run(
        [sys.executable, "-m", "exrwatchd", "journal", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode == 0:
        return None
    return (
        "`exrwatchd journal` is not registered in exrwatchd/cli/main.py yet (build_parser must "
        "call exrwatchd.cli.journal.register(sub)); these subprocess runs pass once it is"
    )


def in_process(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    parser = argparse.ArgumentParser(prog="exrwatchd")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    try:
        args = parser.parse_args(argv)
        code = int(args.func(args))
    except SystemExit as exc:  # argparse usage errors and --help
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def as_subprocess(*argv: str) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "exrwatchd", *argv], cwd=ROOT, capture_output=True, timeout=120
    )
    # Strict: the output must be valid UTF-8 whatever the names hold.
    return Result(proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8"))


@pytest.fixture(params=["in-process", "subprocess"])
def invoke(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> Invoke:
    if request.param == "subprocess":
        reason = wired()
        if reason:
            pytest.skip(reason)
        return as_subprocess
    return functools.partial(in_process, capsys)


@pytest.fixture
def journal_cmd(invoke: Invoke, setup: Setup) -> Invoke:
    """`exrwatchd journal --config <setup.config> ARGS...`"""
    return functools.partial(invoke, "journal", "--config", str(setup.config))


# -- stats ----------------------------------------------------------------------------------


class TestStats:
    def test_json_numbers(self, journal_cmd: Invoke, setup: Setup) -> None:
        result = journal_cmd("stats", "--json")
        assert result.code == 0, result.err
        stats = result.json()
        assert {k: stats[k] for k in EXPECTED_STATS} == EXPECTED_STATS
        assert stats["journal"] == str(setup.db)
        assert 28 * DAY <= stats["oldest_ready_age"] < 28 * DAY + 3600  # pending-gone's delete
        assert stats["last_error"] == f"cannot write {shown_in_db(ODD)}"
        assert stats["last_error_path"] == ODD  # exact, via the \udcXX escape
        assert stats["last_error_at"] == pytest.approx(NOW - DAY + 60)

    def test_human(self, journal_cmd: Invoke, setup: Setup) -> None:
        result = journal_cmd("stats")
        assert result.code == 0, result.err
        lines = result.out.splitlines()
        assert lines[:4] == [
            f"journal: {setup.db}",
            "outbox: 2 ready, 1 inflight, 3 dead (6 total)",
            "oldest ready: 28d 0h",
            "paths: 10 complete, 1 incomplete, 2 failed, 3 deleted",
        ]
        assert lines[4].startswith("last error: ") and shown(ODD) in lines[4]
        assert len(lines) == 5  # the newline in the name did not break the line
        assert "\x1b" not in result.out

    def test_config_after_the_command(self, invoke: Invoke, setup: Setup) -> None:
        result = invoke("journal", "stats", "--config", str(setup.config), "--json")
        assert result.code == 0, result.err
        assert result.json()["dead"] == 3

    def test_empty_journal(self, invoke: Invoke, tmp_path: Path) -> None:
        Journal.open(tmp_path / "state").close()
        config = write_config(tmp_path / "c.toml", tmp_path / "state", [])
        result = invoke("journal", "--config", str(config), "stats")
        assert result.code == 0, result.err
        assert "outbox: 0 ready, 0 inflight, 0 dead (0 total)" in result.out
        assert "oldest ready: -" in result.out and "last error: none" in result.out


# -- failed ---------------------------------------------------------------------------------


class TestFailed:
    def test_json_sections(self, journal_cmd: Invoke) -> None:
        result = journal_cmd("failed", "--json")
        assert result.code == 0, result.err
        out = result.json()
        assert set(out) == {"journal", "dead", "broken"}
        dead = out["dead"]
        assert dead["total"] == 3
        assert [(d["path"], d["op"], d["attempts"], d["last_error"]) for d in dead["entries"]] == [
            (ODD, "upsert", 1, f"cannot write {shown_in_db(ODD)}"),
            ("/srv/dead/exhausted.exr", "upsert", 3, "503 busy"),
            ("/srv/dead/rejected.exr", "upsert", 1, "400 bad schema"),
        ]  # most recent first; ODD exact
        assert dead["entries"][0]["updated_at"] == pytest.approx(NOW - DAY + 60)
        broken = out["broken"]
        assert broken["total"] == 2
        assert {(b["path"], b["status"], b["error"]) for b in broken["entries"]} == {
            ("/srv/broken/not.exr", "failed", "not an OpenEXR file"),
            (ODD_BROKEN, "failed", "truncated header"),
        }

    def test_kinds_and_limit(self, journal_cmd: Invoke) -> None:
        out = journal_cmd("failed", "--json", "--kind", "incomplete", "--limit", "5").json()
        assert set(out) == {"journal", "incomplete"}
        assert [e["path"] for e in out["incomplete"]["entries"]] == ["/srv/half.exr"]
        out = journal_cmd("failed", "--json", "--kind", "dead", "--limit", "1").json()
        assert set(out) == {"journal", "dead"}
        assert out["dead"]["total"] == 3
        assert [e["path"] for e in out["dead"]["entries"]] == [ODD]

    def test_human_table(self, journal_cmd: Invoke) -> None:
        result = journal_cmd("failed")
        assert result.code == 0, result.err
        lines = result.out.splitlines()
        # title, header, 3 rows, blank, title, header, 2 rows: one line per entry whatever
        # the names hold.
        assert len(lines) == 10, result.out
        assert lines[0].startswith("dead letters: 3, most recent first")
        assert lines[1].split() == ["FAILED", "AT", "ATTEMPTS", "OP", "PATH", "LAST", "ERROR"]
        assert shown(ODD) in lines[2]
        assert r"/srv/caf\udce9/new\nline \\ \x1b[31m.exr" in lines[2]
        assert "/srv/dead/exhausted.exr" in lines[3] and "503 busy" in lines[3]
        assert "/srv/dead/rejected.exr" in lines[4] and "400 bad schema" in lines[4]
        assert lines[6].startswith("broken files: 2, most recent first")
        assert any(r"/srv/\udcff\udcfe/\ttab.exr" in line for line in lines[8:])
        assert any(
            "/srv/broken/not.exr" in line and "not an OpenEXR file" in line for line in lines[8:]
        )
        assert "\x1b" not in result.out and "\t" not in result.out

    def test_human_limit_and_empty_sections(self, journal_cmd: Invoke) -> None:
        result = journal_cmd("failed", "--limit", "1", "--kind", "dead", "--kind", "broken")
        assert result.out.splitlines()[0].startswith("dead letters: 1 of 3")
        result = journal_cmd("retry", "--all")
        assert result.code == 0, result.err
        result = journal_cmd("failed", "--kind", "dead")
        assert result.out == "dead letters: none\n"


def shown_in_db(path: str) -> str:
    """How a name inside an error message is stored (exrwatchd.journal._rows.clean_text)."""
    return path.encode("utf-8", "backslashreplace").decode("utf-8")


# -- retry ----------------------------------------------------------------------------------


class TestRetry:
    def test_one_path_then_all(self, journal_cmd: Invoke, setup: Setup) -> None:
        result = journal_cmd("retry", "/srv/dead/exhausted.exr")
        assert result.code == 0, result.err
        assert result.out.startswith("requeued 1 dead letter for /srv/dead/exhausted.exr")
        stats = journal_cmd("stats", "--json").json()
        assert (stats["ready"], stats["dead"]) == (3, 2)

        result = journal_cmd("retry", "/srv/dead/exhausted.exr")
        assert result.code == 1
        assert "no dead letter for /srv/dead/exhausted.exr" in result.err

        result = journal_cmd("retry", "--all")
        assert result.code == 0, result.err
        assert result.out.startswith("requeued 2 dead letters")
        stats = journal_cmd("stats", "--json").json()
        assert (stats["ready"], stats["inflight"], stats["dead"]) == (5, 1, 0)

        # The daemon would now deliver them, attempts reset. The fixture's due times come
        # from its fake clock: claim on that clock.
        with setup.journal(clock=Clock(NOW)) as j:
            claimed = {e.path: e.attempts for e in j.claim(100)}
        assert claimed == {
            "/srv/dead/exhausted.exr": 0,
            "/srv/dead/rejected.exr": 0,
            ODD: 0,
            "/srv/pending-gone.exr": 2,
            "/srv/ready.exr": 0,
        }

        result = journal_cmd("retry", "--all")
        assert (result.code, result.out) == (0, "no dead letters: nothing to retry\n")

    def test_odd_path(self, journal_cmd: Invoke) -> None:
        result = journal_cmd("retry", ODD)
        assert result.code == 0, result.err
        assert shown(ODD) in result.out and "\n" not in result.out.rstrip("\n")
        assert journal_cmd("stats", "--json").json()["dead"] == 2

    def test_broken_file_is_not_a_dead_letter(self, journal_cmd: Invoke) -> None:
        result = journal_cmd("retry", "/srv/broken/not.exr")
        assert result.code == 1
        assert "no dead letter for /srv/broken/not.exr: it is a broken file" in result.err
        assert "not an OpenEXR file" in result.err

    def test_unknown_path(self, journal_cmd: Invoke) -> None:
        result = journal_cmd("retry", "/srv/never.exr")
        assert result.code == 1
        assert "the journal has never seen this path" in result.err
        assert journal_cmd("stats", "--json").json()["dead"] == 3

    @pytest.mark.parametrize("argv", [(), ("/srv/dead/rejected.exr", "--all")])
    def test_path_or_all_required(self, journal_cmd: Invoke, argv: tuple[str, ...]) -> None:
        result = journal_cmd("retry", *argv)
        assert result.code == 2
        assert "--all" in result.err


# -- purge ----------------------------------------------------------------------------------


class TestPurge:
    def test_delivered_tombstones_older_than(self, journal_cmd: Invoke, setup: Setup) -> None:
        result = journal_cmd("purge", "--done-older-than", "7d", "--dry-run")
        assert result.code == 0, result.err
        assert result.out.startswith("would remove 1 tombstone:")

        result = journal_cmd("purge", "--done-older-than", "7d")
        assert result.code == 0, result.err
        assert result.out.startswith("removed 1 tombstone: files deleted more than 7d ago")
        with setup.journal() as j:
            assert j.path_state("/srv/old-gone.exr") is None
            # undelivered deletion: kept whatever its age; recent: kept
            for path in ("/srv/pending-gone.exr", "/srv/recent-gone.exr"):
                state = j.path_state(path)
                assert state is not None and state.status == "deleted"

        assert journal_cmd("purge", "--done-older-than", "7d").out.startswith("removed 0 ")
        assert journal_cmd("purge", "--done-older-than", "36h").out.startswith("removed 1 ")
        stats = journal_cmd("stats", "--json").json()
        assert stats["paths_by_status"] == {
            "complete": 10,
            "incomplete": 1,
            "failed": 2,
            "deleted": 1,
        }
        assert stats["outbox_total"] == 6  # the outbox is never purged

    @pytest.mark.parametrize(
        ("duration", "removed"),
        [("31d", 0), ("29d", 1), ("4w", 1), ("696h", 1), ("2505600s", 1), ("1d", 2), ("0s", 2)],
    )
    def test_durations(self, journal_cmd: Invoke, duration: str, removed: int) -> None:
        result = journal_cmd("purge", "--done-older-than", duration)
        assert result.code == 0, result.err
        assert result.out.startswith(f"removed {removed} tombstone")

    @pytest.mark.parametrize(
        "bad",
        [
            "7",
            "7D",
            "1.5h",
            "-1d",
            "+1d",
            "7 d",
            " 7d",
            "d",
            "7dd",
            "1_0s",
            "\u0667d",
            "",
            "1y",
            "1000000000s",
            "99999w",
        ],
    )
    def test_bad_durations(self, journal_cmd: Invoke, bad: str) -> None:
        result = journal_cmd("purge", f"--done-older-than={bad}")  # "-1d" would be an option
        assert result.code == 2
        assert f"invalid duration {bad!r}" in result.err

    def test_required(self, journal_cmd: Invoke) -> None:
        result = journal_cmd("purge")
        assert result.code == 2 and "--done-older-than" in result.err

    def test_help_says_what_done_means(self, invoke: Invoke) -> None:
        result = invoke("journal", "purge", "--help")
        assert result.code == 0
        text = " ".join(result.out.split())
        assert "tombstones of deleted files whose deletion has reached the sink" in text
        assert "dead letters are undelivered data, never purged" in text


def test_parse_duration() -> None:
    assert [parse_duration(t).seconds for t in ("90s", "15m", "12h", "7d", "2w", "0s")] == [
        90,
        900,
        43200,
        604800,
        1209600,
        0,
    ]
    assert parse_duration("7d") == Duration("7d", 604800.0)
    with pytest.raises(argparse.ArgumentTypeError, match="invalid duration '7days'"):
        parse_duration("7days")


def test_shown() -> None:
    assert shown("/srv/plain/é 日本.exr") == "/srv/plain/é 日本.exr"
    assert shown("a\nb\tc\\d") == r"a\nb\tc\\d"
    assert shown(os.fsdecode(b"/x/\xff")) == r"/x/\udcff"
    assert shown("\x1b[2J\u2028\u200b") == r"\x1b[2J\u2028\u200b"


# -- errors ---------------------------------------------------------------------------------


class TestErrors:
    def test_no_journal(self, invoke: Invoke, tmp_path: Path) -> None:
        state = tmp_path / "never-ran"
        config = write_config(tmp_path / "c.toml", state, [])
        for argv in (
            ["stats"],
            ["failed"],
            ["retry", "--all"],
            ["purge", "--done-older-than", "7d"],
        ):
            result = invoke("journal", "--config", str(config), *argv)
            assert result.code == 1
            assert (
                f"no journal at {state / 'journal.db'}: the daemon has not run with this state_dir"
            ) in result.err
        assert not state.exists()  # nothing was created

    def test_bad_config(self, invoke: Invoke, tmp_path: Path) -> None:
        config = tmp_path / "bad.toml"
        config.write_text("[daemon]\nstate_dir = 3\nworkerz = 2\n")
        result = invoke("journal", "--config", str(config), "stats")
        assert result.code == 78
        assert "daemon.state_dir" in result.err and "workerz" in result.err

    def test_config_from_the_environment_or_named_when_missing(
        self, invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        missing = tmp_path / "nowhere.toml"
        monkeypatch.setenv("EXRWATCHD_CONFIG", str(missing))
        result = invoke("journal", "stats")
        assert result.code == 78
        assert f"{missing} does not exist" in result.err and "--config PATH" in result.err

    def test_unusable_journal(self, invoke: Invoke, tmp_path: Path) -> None:
        state = tmp_path / "state"
        state.mkdir()
        (state / "journal.db").write_bytes(b"not a database at all" * 100)
        config = write_config(tmp_path / "c.toml", state, [])
        result = invoke("journal", "--config", str(config), "stats")
        assert result.code == 1
        assert "journal.db" in result.err and "Traceback" not in result.err

    def test_limit_must_be_positive(self, journal_cmd: Invoke) -> None:
        result = journal_cmd("failed", "--limit", "0")
        assert result.code == 2 and "invalid count '0'" in result.err


# -- next to a writer -----------------------------------------------------------------------


class Writer(threading.Thread):
    """What the daemon does, on its own Journal (its own connection): write, claim, ack,
    retry, reject, delete, all the time, recording any error and the slowest call."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.rounds = 0
        self.slowest = 0.0

    def run(self) -> None:
        rng = random.Random(11)
        try:
            with Journal(self.db, max_attempts=2, backoff_initial=0.001, backoff_max=0.001) as j:
                while not self.stop.is_set():
                    start = time.monotonic()
                    self.step(j, rng)
                    self.slowest = max(self.slowest, time.monotonic() - start)
                    self.rounds += 1
        except BaseException as exc:
            self.errors.append(exc)

    def step(self, j: Journal, rng: random.Random) -> None:
        names = [f"/srv/live/{rng.randrange(300)}.exr" for _ in range(40)]
        j.write([Delete(n) if rng.random() < 0.2 else persist(n) for n in names])
        entries = j.claim(40)
        fate = [rng.random() for _ in entries]
        j.ack([e.id for e, f in zip(entries, fate, strict=True) if f < 0.7])
        j.retry([(e.id, "503") for e, f in zip(entries, fate, strict=True) if 0.7 <= f < 0.9])
        j.reject([(e.id, "400") for e, f in zip(entries, fate, strict=True) if f >= 0.9])

    def __enter__(self) -> Writer:
        self.start()
        # it really runs before the commands start
        wait_for(lambda: self.rounds >= 3 or self.errors, 30, "the writer to start", 0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(timeout=60)
        assert not self.is_alive()


@pytest.fixture
def many_tombstones(setup: Setup) -> int:
    """12,000 delivered deletions a month old: a purge of them takes several slices."""
    clock = Clock(NOW - 30 * DAY)
    names = [f"/srv/bulk/{i:05}.exr" for i in range(12_000)]
    with setup.journal(clock=clock) as j:  # at this time only its own entries are due
        for item in (persist, Delete):
            j.write([item(n) for n in names])
            while entries := j.claim(5000):
                assert all(e.path.startswith("/srv/bulk/") for e in entries)
                j.ack([e.id for e in entries])
    return len(names)


def test_commands_next_to_a_writer(journal_cmd: Invoke, setup: Setup, many_tombstones: int) -> None:
    with Writer(setup.db) as writer:
        for _ in range(3):
            for argv in (
                ("stats",),
                ("stats", "--json"),
                ("failed",),
                ("failed", "--json", "--kind", "dead", "--kind", "broken", "--kind", "incomplete"),
                ("retry", "--all"),
                ("purge", "--done-older-than", "0s", "--dry-run"),
            ):
                result = journal_cmd(*argv)
                assert result.code == 0, (argv, result.err)
                assert not result.err, (argv, result.err)
        result = journal_cmd("purge", "--done-older-than", "7d")
        assert result.code == 0, result.err
        purged = int(result.out.split()[1])
        assert purged >= many_tombstones + 1  # bulk and old-gone; the writer's are recent
        result = journal_cmd("purge", "--done-older-than", "0s")  # races the writer's deletes
        assert result.code == 0 and not result.err, result.err
        rounds = writer.rounds
        wait_for(lambda: writer.rounds > rounds or writer.errors, 30,
                 "the writer to keep writing", 0.01)  # fmt: skip
    assert not writer.errors, writer.errors
    # Nothing here held the write lock long: the writer never waited near busy_timeout.
    assert writer.slowest < 5.0, writer.slowest
    with setup.journal() as j:
        assert j.path_state("/srv/bulk/00000.exr") is None
        assert j.stats().paths_by_status["complete"] >= 10


# -- the Journal methods the commands use ---------------------------------------------------


class TestJournalAdditions:
    def test_stepwise_purge_equals_one_shot(self, tmp_path: Path) -> None:
        rng = random.Random(5)
        clock = Clock(NOW)
        names = [
            os.fsdecode(b"/t/%d/" % rng.randrange(20) + bytes([rng.randrange(1, 256)]) * 3)
            for _ in range(400)
        ]
        names = list(dict.fromkeys(n for n in names if "/" not in n[-3:]))
        with Journal.open(tmp_path / "a", clock=clock) as j:
            j.write([persist(n) for n in names])
            j.ack([e.id for e in j.claim(1000)])
            for n in names:
                clock.now = NOW - rng.randrange(100)
                j.write([Delete(n)] if rng.random() < 0.7 else [persist(n)])
            clock.now = NOW
            entries = j.claim(1000)
            j.ack([e.id for e in entries if rng.random() < 0.8])
        shutil.copytree(tmp_path / "a", tmp_path / "b")
        with (
            Journal(tmp_path / "a" / "journal.db", clock=clock) as a,
            Journal(tmp_path / "b" / "journal.db", clock=clock) as b,
        ):
            expected = a.count_purgeable_tombstones(50)
            assert 0 < expected < len(names)
            assert a.purge_tombstones(50, step=len(names)) == expected  # one slice
            assert b.purge_tombstones(50, step=3) == expected
            assert b.count_purgeable_tombstones(50) == 0
            for n in names:
                assert a.path_state(n) == b.path_state(n)
            with pytest.raises(ValueError):
                b.purge_tombstones(1, step=0)

    def test_paths_with_status(self, setup: Setup) -> None:
        with setup.journal() as j:
            assert [s.path for s in j.paths_with_status("incomplete")] == ["/srv/half.exr"]
            broken = j.paths_with_status("failed", limit=1)
            assert len(broken) == 1 and broken[0].status == "failed"
            deleted = [s.path for s in j.paths_with_status("deleted")]
            assert deleted == [
                "/srv/recent-gone.exr",
                "/srv/pending-gone.exr",
                "/srv/old-gone.exr",
            ]  # most recent first
            with pytest.raises(ValueError):
                j.paths_with_status("gone")  # type: ignore[arg-type]
