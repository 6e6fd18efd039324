"""Syslog priorities for journald: the real daemon, its stdout a file posing as the journal.

systemd sets $JOURNAL_STREAM to the "dev:ino" of the stream it connects stdout to. A file's
dev:ino in that variable makes the daemon (and its sink process, which inherits both) take
the file for the journal and prefix each line with `<N>`, which journald would strip and
store as the entry's PRIORITY. Without the variable, or with one naming something else, the
lines stay plain JSON.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import ROOT, wait_for, write_config

PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 3}
PREFIXED = re.compile(r"<(\d)>(\{.*)\Z")


class DaemonToFile:
    """`exrwatchd run` with stdout (and stderr) appended to a file, as under systemd."""

    def __init__(self, config: Path, out: Path, journal_stream: str | None) -> None:
        self.out = out
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("JOURNAL_STREAM", None)
        if journal_stream is not None:
            env["JOURNAL_STREAM"] = journal_stream
        with out.open("ab") as stream:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "exrwatchd", "run", "--config", str(config)],
                stdout=stream, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
            )  # fmt: skip

    def lines(self) -> list[str]:
        text = self.out.read_text(encoding="utf-8", errors="replace")
        return text.splitlines()[: text.count("\n")]  # complete lines only

    def has(self, event: str, strip: bool) -> bool:
        return any(event in line and _json(line, strip) for line in self.lines())

    def wait(self, event: str, strip: bool) -> None:
        wait_for(lambda: self.has(event, strip) or self.proc.poll() is not None, 30,
                 lambda: f"{event} in {self.out}:\n" + "\n".join(self.lines()[-20:]))  # fmt: skip
        assert self.has(event, strip), "\n".join(self.lines()[-30:])

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def _json(line: str, strip: bool) -> dict[str, Any] | None:
    if strip:
        match = PREFIXED.match(line)
        if match is None:
            return None
        line = match.group(2)
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _dev_ino(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def _run_through_levels(tmp_path: Path, journal_stream: str | None, strip: bool) -> list[str]:
    """Start the daemon at debug level, make it log a warning (a .exr that is not one) and
    an error (a reload of a broken config), stop it; return its output lines."""
    renders, state = tmp_path / "renders", tmp_path / "state"
    renders.mkdir()
    config = write_config(tmp_path / "c.toml", state, [{"path": str(renders)}])
    out = tmp_path / "stdout.log"
    out.touch()
    daemon = DaemonToFile(config, out, journal_stream(out) if journal_stream else None)
    try:
        daemon.wait("daemon.ready", strip)
        daemon.wait("sink.started", strip)  # from the sink process
        (renders / "not_an_exr.0001.exr").write_bytes(b"plain text, no magic number\n" * 4)
        daemon.wait("file.failed", strip)
        config.write_text("[daemon\nbroken = ")
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait("config.reload_failed", strip)
    finally:
        assert daemon.stop() == 0, "\n".join(daemon.lines()[-30:])
    return daemon.lines()


def test_prefixes_each_line_with_its_priority_when_stdout_is_the_journal(
    tmp_path: Path,
) -> None:
    lines = _run_through_levels(tmp_path, _dev_ino, strip=True)
    unprefixed = [line for line in lines if not PREFIXED.match(line)]
    assert not unprefixed, f"lines without a priority prefix: {unprefixed[:5]}"
    seen: dict[str, set[int]] = {}
    events = set()
    for line in lines:
        match = PREFIXED.match(line)
        assert match is not None
        event = json.loads(match.group(2))  # what journald stores: still one JSON object
        assert int(match.group(1)) == PRIORITY[event["level"]], line
        seen.setdefault(event["level"], set()).add(int(match.group(1)))
        events.add(event["event"])
    assert seen == {"debug": {7}, "info": {6}, "warning": {4}, "error": {3}}
    assert {"sink.started", "file.failed", "config.reload_failed", "daemon.stopping"} <= events


def test_no_prefix_without_journal_stream(tmp_path: Path) -> None:
    lines = _run_through_levels(tmp_path, None, strip=False)
    assert lines and all(_json(line, strip=False) for line in lines), lines[:5]


def test_no_prefix_when_journal_stream_names_another_file(tmp_path: Path) -> None:
    """systemd's variable is inherited by children whose stdout was redirected: only a
    stdout that is the very stream it names is the journal."""
    other = tmp_path / "elsewhere"
    other.touch()
    lines = _run_through_levels(tmp_path, lambda _out: _dev_ino(other), strip=False)
    assert lines and all(_json(line, strip=False) for line in lines), lines[:5]
