"""systemd/exrwatchd.logrotate: logrotate accepts it, and a rotation with it loses no line.

The sample is rotated for real against the real daemon logging to `log.file`: a copy of
it with the path moved into a temp dir, `su`/`create` naming the user running the test, and
the postrotate command `systemctl reload exrwatchd.service` replaced by what the unit's
ExecReload= does (`kill -HUP` of the main process). Every line before the rotation must be
in the rotated file, and the daemon and its sink process must write to the new one after.
Skips where logrotate is not installed (Debian package: logrotate); the structural checks
run everywhere.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest
from exrgen import write_scanline
from harness import ROOT, Catalog, DaemonProcess, wait_for, write_config

SAMPLE = ROOT / "systemd" / "exrwatchd.logrotate"
UNIT = ROOT / "systemd" / "exrwatchd.service"
POSTROTATE = "systemctl reload exrwatchd.service >/dev/null 2>&1 || true"


def _directives() -> tuple[str, list[str], list[str]]:
    """The sample's path pattern, its directives and its postrotate script lines."""
    lines = [x.strip() for x in SAMPLE.read_text().splitlines()]
    lines = [x for x in lines if x and not x.startswith("#")]
    head, *body = lines
    assert head.endswith("{") and body[-1] == "}", lines
    body = body[:-1]
    start, end = body.index("postrotate"), body.index("endscript")
    return head[:-1].strip(), body[:start] + body[end + 1 :], body[start + 1 : end]


def test_structure_matches_the_unit() -> None:
    pattern, directives, script = _directives()
    # The unit's LogsDirectory= is where the service may write log.file.
    assert "LogsDirectory=exrwatchd" in UNIT.read_text()
    assert pattern == "/var/log/exrwatchd/*.log"
    assert "su exrwatchd exrwatchd" in directives  # the directory is the service user's
    assert "create 0640 exrwatchd exrwatchd" in directives
    assert {"missingok", "notifempty", "compress", "delaycompress", "sharedscripts"} <= set(
        directives
    )
    assert "copytruncate" not in directives  # would lose what is written meanwhile
    # The unit's reload is SIGHUP, on which the daemon reopens log.file.
    assert "ExecReload=/bin/kill -HUP $MAINPID" in UNIT.read_text()
    assert script == [POSTROTATE]


def _local_copy(tmp_path: Path, logs: Path, pid: int) -> Path:
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    text = SAMPLE.read_text()
    for old, new in [
        ("/var/log/exrwatchd/", f"{logs}/"),
        ("su exrwatchd exrwatchd", f"su {user} {group}"),
        ("create 0640 exrwatchd exrwatchd", f"create 0640 {user} {group}"),
        (POSTROTATE, f"kill -HUP {pid}"),
    ]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    copy = tmp_path / "exrwatchd.logrotate"
    copy.write_text(text)
    copy.chmod(0o644)
    return copy


def _events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()[: text.count("\n")]]


def _names(path: Path) -> list[str]:
    return [e["event"] for e in _events(path)]


def test_rotation_with_the_sample_reopens_the_log(tmp_path: Path) -> None:
    logrotate = shutil.which("logrotate") or shutil.which("/usr/sbin/logrotate")
    if logrotate is None:
        pytest.skip("logrotate not installed (Debian package: logrotate)")
    renders, state, logs = tmp_path / "renders", tmp_path / "state", tmp_path / "logs"
    renders.mkdir()
    logs.mkdir(mode=0o750)
    log_file = logs / "exrwatchd.log"
    config = write_config(tmp_path / "c.toml", state, [{"path": str(renders)}],
                          log={"file": str(log_file)})  # fmt: skip
    daemon = DaemonProcess(config, state)
    catalog = Catalog(state)
    try:
        wait_for(lambda: "sink.started" in _names(log_file), 30, lambda: daemon.tail())
        first = str(write_scanline(renders / "before.0001.exr"))
        catalog.wait_paths({first})
        wait_for(lambda: "sink.persisted" in _names(log_file), 30, lambda: str(_names(log_file)))
        copy = _local_copy(tmp_path, logs, daemon.proc.pid)
        check = subprocess.run([logrotate, "-d", "-s", str(tmp_path / "dry"), str(copy)],
                               capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert check.returncode == 0 and "error" not in check.stderr.lower(), check.stderr
        before = _names(log_file)

        run = subprocess.run([logrotate, "-f", "-s", str(tmp_path / "state.lr"), str(copy)],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert run.returncode == 0, run.stderr
        rotated = logs / "exrwatchd.log.1"  # delaycompress: the newest stays plain text
        wait_for(lambda: "config.reloaded" in _names(log_file), 30, lambda: daemon.tail())
        second = str(write_scanline(renders / "after.0001.exr"))
        catalog.wait_paths({first, second})

        def from_sink_process() -> bool:  # the sink process reopened the file too
            return any(e["event"] == "sink.persisted" and e.get("path") == second
                       for e in _events(log_file))  # fmt: skip

        wait_for(from_sink_process, 30, lambda: str(_names(log_file)))
        assert _names(rotated)[: len(before)] == before
        assert "config.reloaded" not in _names(rotated)
        assert "daemon.ready" not in _names(log_file)
        assert oct(log_file.stat().st_mode & 0o777) == "0o640"  # logrotate's `create`
        assert not (logs / "exrwatchd.log.1.gz").exists()
    finally:
        assert daemon.stop() == 0
