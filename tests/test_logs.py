"""Log output: one JSON object per line, levels, reload, and secrets that never get out."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from exrwatchd.logs import configure_logging, get_logger

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
