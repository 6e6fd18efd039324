"""Log output: one JSON object per line, levels, reload, and secrets that never get out."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from exrwatchd.logs import (
    DEFAULT_BURST,
    DEFAULT_RATE_LIMIT,
    LogBudget,
    apply_logging,
    configure_logging,
    get_logger,
    journal_is,
)
from exrwatchd.secrets import MASK

SECRET = "hunter2-very-secret"
OTHER_SECRET = "rotated-key-5678"


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line of the output, each of which must be one JSON object."""
    text = stream.getvalue()
    assert text.endswith("\n") or not text
    return [json.loads(line) for line in text.splitlines()]


class TestPythonWarnings:
    def test_a_librarys_warning_is_one_json_line(self, out: io.StringIO) -> None:
        """watchdog warns (warnings.warn) when a directory moved within the tree is watched
        again; by default Python prints that to stderr as text, which is not a log line."""
        configure_logging(stream=out)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("Callback with id '7' already exists. It will be Overwritten.",
                          RuntimeWarning, stacklevel=1)  # fmt: skip
        [line] = lines(out)
        assert (line["level"], line["event"]) == ("warning", "python.warning")
        assert line["category"] == "RuntimeWarning"
        assert line["message"] == "Callback with id '7' already exists. It will be Overwritten."
        assert line["source"].rsplit(":", 1)[0] == __file__

    def test_secrets_in_a_warning_are_masked(self, out: io.StringIO) -> None:
        configure_logging(stream=out, secrets=[SECRET])
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn(f"token {SECRET} refused", UserWarning, stacklevel=1)
        assert SECRET not in out.getvalue()
        assert lines(out)[0]["message"] == f"token {MASK} refused"


class TestThreadExceptions:
    """The journal writer, the sink loop and the hook loop log why they stop and then let
    their thread die with the exception; any other thread (watchdog's, a worker) can die too.
    By default Python prints that as a traceback on stderr, which journald records line by
    line between the JSON ones."""

    @staticmethod
    def die_in_thread(name: str, exc: BaseException) -> None:
        def run() -> None:
            raise exc

        thread = threading.Thread(target=run, name=name)
        thread.start()
        thread.join()

    def test_a_thread_that_dies_is_one_json_line(self, out: io.StringIO) -> None:
        configure_logging(stream=out)
        self.die_in_thread("sink", RuntimeError("journal.db: ack failed: disk image malformed"))
        [line] = lines(out)
        assert (line["level"], line["event"]) == ("critical", "python.thread_exception")
        assert line["thread"] == "sink"
        assert line["error_type"] == "RuntimeError"
        assert line["error"] == "journal.db: ack failed: disk image malformed"
        assert line["exception"].startswith("Traceback (most recent call last):")
        assert (
            line["exception"]
            .rstrip()
            .endswith("RuntimeError: journal.db: ack failed: disk image malformed")
        )

    def test_secrets_in_a_thread_exception_are_masked(self, out: io.StringIO) -> None:
        configure_logging(stream=out, secrets=[SECRET])
        self.die_in_thread("vast", ValueError(f"token {SECRET} refused"))
        assert SECRET not in out.getvalue()
        [line] = lines(out)
        assert line["error"] == f"token {MASK} refused"

    def test_a_process_that_logs_writes_nothing_else_to_stderr(self) -> None:
        """The whole path in a process of its own, as the daemon runs: no test framework
        between the thread and the interpreter's hook."""
        code = (
            "import threading\n"
            "from exrwatchd.logs import configure_logging\n"
            "configure_logging()\n"
            "def run():\n"
            "    raise OSError(5, 'Input/output error')\n"
            "t = threading.Thread(target=run, name='journal-writer')\n"
            "t.start(); t.join()\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        [line] = [json.loads(text) for text in done.stdout.splitlines()]
        assert (line["event"], line["thread"]) == ("python.thread_exception", "journal-writer")
        assert line["error"] == "[Errno 5] Input/output error"


class TestUncaughtExceptions:
    """An exception no code catches in the main thread of a process that logs (the daemon's
    start-up or shutdown, a command's bug) is one log line with its traceback, redacted like
    every other, and not text on stderr between the JSON lines. Each case is a process of
    its own: the interpreter's hook runs only when a process dies of the exception."""

    @staticmethod
    def die(secrets: list[str], raise_: str) -> subprocess.CompletedProcess[str]:
        code = (
            "from exrwatchd.logs import configure_logging\n"
            f"configure_logging(secrets={secrets!r})\n"
            f"{raise_}\n"
        )
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60)  # fmt: skip

    def test_a_process_dying_of_an_exception_writes_one_json_line(self) -> None:
        done = self.die([], "raise RuntimeError('catalog.db: unexpected row in files')")
        assert done.returncode == 1  # still a failure, as the interpreter's own hook
        assert done.stderr == ""
        [line] = [json.loads(text) for text in done.stdout.splitlines()]
        assert (line["level"], line["event"]) == ("critical", "python.uncaught_exception")
        assert line["error_type"] == "RuntimeError"
        assert line["error"] == "catalog.db: unexpected row in files"
        assert line["exception"].startswith("Traceback (most recent call last):")
        last = line["exception"].rstrip().splitlines()[-1]
        assert last == "RuntimeError: catalog.db: unexpected row in files"

    def test_secrets_in_an_uncaught_exception_are_masked(self) -> None:
        done = self.die([SECRET], f"raise ValueError('token {SECRET} refused')")
        assert SECRET not in done.stdout + done.stderr
        [line] = [json.loads(text) for text in done.stdout.splitlines()]
        assert line["error"] == f"token {MASK} refused"


class TestJsonLines:
    def test_fields_in_order(self, out: io.StringIO) -> None:
        configure_logging(stream=out)
        get_logger("exrwatchd.watch").bind(watch="/srv").info("file.settled", size=42)
        [line] = lines(out)
        assert list(line)[:3] == ["timestamp", "level", "event"]
        assert line["level"] == "info"
        assert line["event"] == "file.settled"
        assert line["size"] == 42
        assert line["watch"] == "/srv"
        assert line["logger_name"] == "exrwatchd.watch"

    def test_timestamp_is_iso_utc_with_z(self, out: io.StringIO) -> None:
        configure_logging(stream=out)
        before = datetime.now(UTC)
        get_logger().warning("queue.full")
        [line] = lines(out)
        assert line["timestamp"].endswith("Z")
        stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
        assert abs((stamp - before).total_seconds()) < 60
        assert line["level"] == "warning"

    def test_exception_is_a_string_field(self, out: io.StringIO) -> None:
        configure_logging(stream=out)
        try:
            raise OSError("disk on fire")
        except OSError:
            get_logger().exception("inspect.failed", path="/srv/a.exr")
        [line] = lines(out)
        assert line["level"] == "error"
        assert isinstance(line["exception"], str)
        assert "Traceback" in line["exception"]
        assert "OSError: disk on fire" in line["exception"]
        assert "exc_info" not in line

    def test_paths_and_odd_values_render(self, out: io.StringIO) -> None:
        configure_logging(stream=out)
        get_logger().info("x.y", path=Path("/srv/a.exr"), raw=b"\x00", names=("a", "b"))
        [line] = lines(out)
        assert line["path"] == "/srv/a.exr"
        assert line["raw"] == "b'\\x00'"
        assert line["names"] == ["a", "b"]

    def test_undecodable_file_names_do_not_break_the_line(self, out: io.StringIO) -> None:
        name = b"shot\xff.exr".decode("utf-8", "surrogateescape")
        for fmt in ("json", "console"):
            configure_logging(fmt=fmt, stream=out)
            get_logger().info("file.seen", path=name)
        assert out.getvalue().encode("utf-8")  # strict UTF-8 encodable, i.e. writable
        assert "shot\\udcff.exr" in out.getvalue().splitlines()[0]

    def test_every_line_reaches_the_file_immediately(self, tmp_path: Path) -> None:
        with open(tmp_path / "log", "w", encoding="utf-8") as f:
            configure_logging(stream=f)
            get_logger().info("one")
            get_logger().info("two")
            written = (tmp_path / "log").read_text(encoding="utf-8")  # f still open
        assert [json.loads(x)["event"] for x in written.splitlines()] == ["one", "two"]

    def test_console_format_is_for_humans(self, out: io.StringIO) -> None:
        configure_logging(fmt="console", stream=out, secrets=[SECRET])
        get_logger().info("file.settled", path="/srv/a.exr", key=SECRET)
        text = out.getvalue()
        assert "file.settled" in text and "/srv/a.exr" in text
        assert SECRET not in text
        assert "\x1b[" not in text  # no colour codes when the stream is not a terminal
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)

    @pytest.mark.parametrize(("fmt", "level"), [("xml", "info"), ("json", "verbose")])
    def test_bad_arguments(self, fmt: str, level: str) -> None:
        with pytest.raises(ValueError):
            configure_logging(fmt=fmt, level=level)


class TestRedaction:
    def test_secret_in_event_fields_nested_and_event_name(self, out: io.StringIO) -> None:
        configure_logging(stream=out, secrets=[SECRET])
        log = get_logger().bind(url=f"https://u:{SECRET}@vast")
        log.info(
            f"weird {SECRET}",
            message=f"auth failed for {SECRET}!",
            nested={"deeper": [f"x{SECRET}x", {"k": (SECRET,)}]},
        )
        text = out.getvalue()
        assert SECRET not in text
        [line] = lines(out)
        assert line["event"] == "weird ********"
        assert line["message"] == "auth failed for ********!"
        assert line["url"] == "https://u:********@vast"
        assert line["nested"] == {"deeper": ["x********x", {"k": ["********"]}]}

    def test_secret_in_exception_message(self, out: io.StringIO) -> None:
        configure_logging(stream=out, secrets=[SECRET])
        try:
            raise RuntimeError(f"login rejected: {SECRET}")
        except RuntimeError:
            get_logger().exception("sink.auth_failed")
        [line] = lines(out)
        assert "RuntimeError: login rejected: ********" in line["exception"]
        assert SECRET not in out.getvalue()

    def test_secret_inside_an_arbitrary_object(self, out: io.StringIO) -> None:
        class Creds:
            def __repr__(self) -> str:
                return f"Creds({SECRET})"

        configure_logging(stream=out, secrets=[SECRET])
        get_logger().info("x", creds=Creds())
        assert lines(out)[0]["creds"] == "Creds(********)"

    def test_secret_named_keys_are_masked_even_without_secrets(self, out: io.StringIO) -> None:
        configure_logging(stream=out)
        get_logger().info(
            "http.request",
            password="pw",
            headers={"Authorization": "Bearer abc", "Accept": "*/*"},
            aws_secret_key="k",
            access_key="a",
            token=None,
        )
        [line] = lines(out)
        assert line["password"] == "********"
        assert line["headers"] == {"Authorization": "********", "Accept": "*/*"}
        assert line["aws_secret_key"] == "********"
        assert line["access_key"] == "********"
        assert line["token"] is None

    def test_short_values_are_not_treated_as_secrets(self, out: io.StringIO) -> None:
        configure_logging(stream=out, secrets=["exr"])
        get_logger().info("file.seen", path="/srv/a.exr")
        assert lines(out)[0]["path"] == "/srv/a.exr"

    def test_secret_containing_another_is_masked_whole(self, out: io.StringIO) -> None:
        configure_logging(stream=out, secrets=["abcd", "abcdefgh"])
        get_logger().info("x", v="abcdefgh")
        assert lines(out)[0]["v"] == "********"


class TestLevels:
    def test_filtering(self, out: io.StringIO) -> None:
        configure_logging(level="warning", stream=out)
        log = get_logger()
        log.debug("a")
        log.info("b")
        log.warning("c")
        log.error("d")
        assert [x["event"] for x in lines(out)] == ["c", "d"]

    def test_level_is_case_insensitive(self, out: io.StringIO) -> None:
        configure_logging(level="DEBUG", stream=out)
        get_logger().debug("a")
        assert len(lines(out)) == 1


class TestReconfigure:
    def test_changes_level_for_existing_loggers(self, out: io.StringIO) -> None:
        log = get_logger("exrwatchd.sink")  # fetched at import time in real modules
        configure_logging(level="info", stream=out)
        log.debug("hidden")
        configure_logging(level="debug", stream=out)
        log.debug("shown")
        configure_logging(level="error", stream=out)
        log.info("hidden again")
        assert [x["event"] for x in lines(out)] == ["shown"]

    def test_raised_level_reaches_loggers_bound_before(self, out: io.StringIO) -> None:
        configure_logging(level="debug", stream=out)
        bound = get_logger().bind(watch="/srv")
        configure_logging(level="error", stream=out)
        bound.info("hidden")
        bound.error("shown")
        assert [x["event"] for x in lines(out)] == ["shown"]

    def test_new_secrets_and_stream_reach_loggers_bound_before(self) -> None:
        first, second = io.StringIO(), io.StringIO()
        configure_logging(stream=first, secrets=[SECRET])
        bound = get_logger().bind(watch="/srv")
        configure_logging(stream=second, secrets=[OTHER_SECRET])
        bound.info("x", v=OTHER_SECRET)
        assert first.getvalue() == ""
        assert lines(second)[0]["v"] == "********"

    def test_switches_format(self, out: io.StringIO) -> None:
        configure_logging(fmt="console", stream=out)
        configure_logging(fmt="json", stream=out)
        get_logger().info("x")
        assert lines(out)[0]["event"] == "x"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def flood(level: str, n: int) -> None:
    log = get_logger("flood")
    for i in range(n):
        getattr(log, level)(f"{level}.line", i=i)


def events(out: io.StringIO) -> list[str]:
    return [line["event"] for line in lines(out)]


class TestBudget:
    """The in-process budget keeps the volume under journald's rate limit, dropping debug,
    then info, before warnings and errors; the clock is the test's."""

    def test_debug_then_info_go_first_warnings_use_the_rest(self, out: io.StringIO) -> None:
        clock = Clock()
        configure_logging(level="debug", stream=out, budget=LogBudget(10, 100, clock=clock))
        flood("debug", 200)  # debug stops with half the burst left
        flood("info", 200)  # info with a fifth left
        flood("warning", 200)  # warnings take what remains
        flood("error", 5)  # and nothing is left for errors either
        assert Counter(events(out)) == {"debug.line": 50, "info.line": 30, "warning.line": 20}

    def test_warnings_pass_while_info_is_being_dropped(self, out: io.StringIO) -> None:
        clock = Clock()
        configure_logging(stream=out, budget=LogBudget(100, 1000, clock=clock))
        for _ in range(60):  # a minute of 1,000 info lines/s with a warning and an error each s
            flood("info", 1000)
            flood("warning", 1)
            flood("error", 1)
            clock.now += 1.0
        counted = Counter(events(out))
        assert counted["warning.line"] == 60 and counted["error.line"] == 60
        # The budget holds: a burst, then the rate (less the warnings, errors and summaries).
        assert counted["info.line"] + 120 + counted["log.suppressed"] <= 1000 + 100 * 60

    def test_one_summary_per_interval_with_the_counts(self, out: io.StringIO) -> None:
        clock = Clock()
        configure_logging(stream=out, budget=LogBudget(1, 10, interval=10.0, clock=clock))
        flood("info", 8 + 5)  # 8 pass (a fifth of 10 is kept back), 5 dropped
        flood("warning", 2 + 3)  # 2 pass, 3 dropped
        clock.now += 9.5  # 9.5 tokens back, not yet a summary
        flood("info", 1)
        assert "log.suppressed" not in events(out)
        clock.now += 0.5
        flood("debug", 1)  # below the level: neither counted nor a trigger
        assert "log.suppressed" not in events(out)
        flood("info", 1)
        summaries = [x for x in lines(out) if x["event"] == "log.suppressed"]
        assert len(summaries) == 1
        [summary] = summaries
        assert summary["level"] == "warning"
        assert summary["suppressed"] == {"info": 5, "warning": 3}
        assert summary["total"] == 8
        assert summary["seconds"] == 10.0
        assert summary["rate_limit"] == 1 and summary["burst"] == 10
        assert summary["logger_name"] == "exrwatchd.logs"
        assert "_log_budget_exempt" not in summary
        assert events(out)[-2:] == ["log.suppressed", "info.line"]  # the summary comes first
        flood("info", 100)  # dropped again: counted towards the next interval's summary
        clock.now += 5
        flood("info", 1)
        assert events(out).count("log.suppressed") == 1

    def test_summary_survives_a_level_above_warning(self, out: io.StringIO) -> None:
        clock = Clock()
        configure_logging(level="error", stream=out, budget=LogBudget(1, 2, clock=clock))
        flood("error", 5)
        clock.now += 10
        flood("error", 1)
        [summary] = [x for x in lines(out) if x["event"] == "log.suppressed"]
        assert summary["level"] == "error" and summary["suppressed"] == {"error": 3}

    def test_exception_and_critical_are_counted(self, out: io.StringIO) -> None:
        clock = Clock()
        configure_logging(stream=out, budget=LogBudget(1, 1, clock=clock))
        get_logger().critical("a")
        get_logger().critical("b")
        try:
            raise OSError("x")
        except OSError:
            get_logger().exception("c")
        clock.now += 10
        get_logger().critical("d")
        summary = lines(out)[1]
        assert summary["suppressed"] == {"critical": 1, "error": 1}

    def test_bad_budget(self) -> None:
        with pytest.raises(ValueError):
            LogBudget(0, 10)
        with pytest.raises(ValueError):
            LogBudget(10, 0)


class TestApplyLogging:
    @pytest.fixture(autouse=True)
    def _close_log_file(self) -> Iterator[None]:
        yield
        apply_logging("json", "info", (), None)

    def test_defaults_stay_under_journalds_default_limit(self) -> None:
        from exrwatchd.config.model import LogConfig

        # Two processes (daemon and sink) each at most burst + 30 s x rate per 30 s window.
        assert (LogConfig().rate_limit, LogConfig().burst) == (DEFAULT_RATE_LIMIT, DEFAULT_BURST)
        assert 2 * (DEFAULT_BURST + 30 * DEFAULT_RATE_LIMIT) < 10_000

    def test_rate_limit_zero_is_no_limit(self, tmp_path: Path) -> None:
        path = tmp_path / "x.log"
        apply_logging("json", "info", (), path, rate_limit=0)
        flood("info", 3000)
        assert len(path.read_text().splitlines()) == 3000

    def test_budget_applies_to_the_log_file(self, tmp_path: Path) -> None:
        path = tmp_path / "x.log"
        apply_logging("json", "info", (), path, rate_limit=0.001, burst=10)
        flood("info", 3000)
        assert len(path.read_text().splitlines()) == 8  # a fifth of the burst kept back

    def test_the_budget_outlives_a_reload_with_the_same_settings(self, tmp_path: Path) -> None:
        path = tmp_path / "x.log"
        apply_logging("json", "info", (), path, rate_limit=0.001, burst=10)
        flood("info", 3000)
        apply_logging("json", "info", (), path, rate_limit=0.001, burst=10)  # SIGHUP
        flood("info", 3000)
        assert len(path.read_text().splitlines()) == 8  # not a fresh burst per reload

    def test_no_prefix_on_a_log_file_even_under_systemd(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "x.log"
        path.touch()
        st = path.stat()
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        apply_logging("json", "info", (), path)
        get_logger().warning("w")
        assert json.loads(path.read_text())["event"] == "w"


class TestJournalPrefix:
    """In-process; tests/test_journald.py checks the same with the real daemon."""

    def test_prefix_per_level_and_console_tracebacks(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "stdout"
        with path.open("w", encoding="utf-8") as stream:
            st = os.fstat(stream.fileno())
            monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
            monkeypatch.setattr(sys, "stdout", stream)
            configure_logging(level="debug")
            for level in ("debug", "info", "warning", "error", "critical"):
                getattr(get_logger(), level)(level)
            configure_logging(fmt="console", level="debug")
            try:
                raise OSError("disk on fire")
            except OSError:
                get_logger().exception("boom")
        text = path.read_text().splitlines()
        assert [line[:3] for line in text[:5]] == ["<7>", "<6>", "<4>", "<3>", "<3>"]
        assert [json.loads(line[3:])["level"] for line in text[:5]] == [
            "debug", "info", "warning", "error", "critical",
        ]  # fmt: skip
        assert len(text) > 6 and all(line.startswith("<3>") for line in text[5:])

    def test_not_the_journal_when_the_stream_is_another(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A terminal (or anything) whose dev:ino is not the one systemd named: a child whose
        stdout was redirected inherits $JOURNAL_STREAM all the same."""
        leader, follower = pty.openpty()
        with os.fdopen(follower, "w", encoding="utf-8") as tty:
            st = os.fstat(tty.fileno())
            monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
            assert not journal_is(tty)
            monkeypatch.setattr(sys, "stdout", tty)
            assert not journal_is(sys.stdout)
        os.close(leader)
        assert not journal_is(io.StringIO())
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not journal_is(sys.__stdout__)
