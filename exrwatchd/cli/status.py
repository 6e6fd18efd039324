"""`exrwatchd status`: what the journal holds and what the running daemon last reported, and
an exit code for monitoring (`assess`).

Reads only: the journal (SQLite WAL allows this next to a running daemon) and the
`status.json` the daemon rewrites every few seconds.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any

from exrwatchd.cli._journal_render import shown
from exrwatchd.config import Config
from exrwatchd.errors import EXIT_FAILED, EXIT_NOT_RUNNING, EXIT_OK
from exrwatchd.journal import Journal
from exrwatchd.telemetry import read_status_file


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gather_status(cfg: Config) -> dict[str, Any]:
    state_dir = cfg.daemon.state_dir
    out: dict[str, Any] = {"state_dir": str(state_dir), "daemon": None, "journal": None}
    if (state_dir / "journal.db").exists():
        with Journal(state_dir / "journal.db") as journal:
            out["journal"] = dataclasses.asdict(journal.stats())
    daemon = read_status_file(state_dir)
    if daemon is not None:
        daemon["running"] = _pid_alive(int(daemon.get("pid", 0)))
        daemon["age_seconds"] = round(time.time() - float(daemon.get("updated_at", 0)), 1)
        unhealthy = daemon.get("sink_unhealthy_since")
        daemon["sink_healthy"] = unhealthy is None
    out["daemon"] = daemon
    return out


#: status.json is rewritten every 2 s: this much older while the pid lives, the daemon is stuck.
STALE_AFTER = 60.0


def assess(status: dict[str, Any]) -> tuple[int, list[str]]:
    """(exit code, problems) for monitoring: 0 running and healthy, 1 running but degraded,
    3 not running (LSB)."""
    daemon, journal = status["daemon"], status["journal"]
    if daemon is None or not daemon.get("running"):
        return EXIT_NOT_RUNNING, []
    problems = []
    if daemon.get("sink_unhealthy_since") is not None:
        problems.append(f"sink failing: {_one_line(daemon.get('sink_last_error')) or '-'}")
    if daemon.get("journal_disk_full"):
        problems.append(f"journal: DISK FULL: {_one_line(daemon['journal_disk_full'])}")
    # health also repeats the sink and the disk, which are reported above already.
    problems += [f"{r}" for r in str(daemon.get("health") or "").split("; ")
                 if r.startswith("watcher for ")]  # fmt: skip
    if daemon.get("unreadable_count"):
        problems.append(f"{daemon['unreadable_count']} paths unreadable under the watches "
                        "(listed below; their files stay in the catalog)")  # fmt: skip
    if (daemon.get("age_seconds") or 0) > STALE_AFTER:
        problems.append(f"status not updated for {daemon['age_seconds']:.0f} s: the daemon "
                        "may be stuck")  # fmt: skip
    if journal and journal.get("dead"):
        problems.append(f"{journal['dead']} dead letters in the journal: "
                        "`exrwatchd journal failed` lists them")  # fmt: skip
    hooks_dead = ((journal or {}).get("hooks") or {}).get("dead")
    if hooks_dead:  # an event a pipeline never got, as an outbox dead letter is a lost record
        problems.append(f"{hooks_dead} hook dead letters in the journal: "
                        "`exrwatchd journal failed` lists them")  # fmt: skip
    return (EXIT_FAILED if problems else EXIT_OK), problems


def _one_line(text: object, limit: int = 200) -> str:
    """An error message on one line, cut: the SDK's can run to kilobytes."""
    if text is None:
        return ""
    line = shown(" ".join(str(text).split()))
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _value(value: object) -> str:
    return "-" if value is None else str(value)


def _counts(counts: Mapping[str, object]) -> str:
    return ", ".join(f"{k} {_value(v)}" for k, v in counts.items())


def render_status(
    status: dict[str, Any], code: int | None = None, problems: list[str] | None = None
) -> str:
    """For people: the verdict first, its reasons under it, then the numbers. `code` and
    `problems` are assess(status)'s, computed when not given."""
    if code is None or problems is None:
        code, problems = assess(status)
    daemon, journal = status["daemon"], status["journal"]
    lines = [_headline(daemon, code)]
    lines += [f"  problem: {p}" for p in problems]
    lines.append(f"state_dir: {shown(status['state_dir'])}")
    if daemon is not None:
        keys = ("pending", "queue_depth", "inflight", "inspected", "incomplete", "failed",
                "deleted", "persisted")  # fmt: skip
        label = "files" if code != EXIT_NOT_RUNNING else "files (last reported)"
        lines.append(f"{label}: " + _counts({k.replace("_", " "): daemon.get(k) for k in keys}))
        if daemon.get("sink_unhealthy_since") is None:
            lines.append("sink: healthy")
        else:
            lines.append(f"sink: FAILING: {_one_line(daemon.get('sink_last_error')) or '-'}")
        for path, name in (daemon.get("unreadable") or {}).items():
            lines.append(f"  unreadable: {shown(path)} ({name})")
    if journal is None:
        lines.append("journal: none yet")
    else:
        outbox = {k: journal.get(k) for k in ("ready", "inflight", "dead")}
        lines.append(f"journal outbox: {_counts(outbox)}")
        lines.append(f"journal paths: {_counts(journal.get('paths_by_status') or {})}")
        if journal.get("to_read_again"):
            lines.append(f"to read again: {journal['to_read_again']} files (after a journal "
                         "rebuild, a lost catalog or `exrwatchd reembed`; the next rescan "
                         "reads them)")  # fmt: skip
        if journal.get("frames_in_progress"):
            lines.append(f"frames in progress: {journal['frames_in_progress']} "
                         "(exrwatchd sequences lists them)")  # fmt: skip
        if journal.get("hooks") is not None:
            lines.append(f"journal hooks: {_counts(journal['hooks'])}")
        if journal.get("oldest_ready_age") is not None:
            lines.append(f"oldest ready: {journal['oldest_ready_age']:.0f} s")
        if journal.get("last_error"):
            lines.append(f"last error: {_one_line(journal['last_error'])}")
    return "\n".join(lines)


def _headline(daemon: dict[str, Any] | None, code: int) -> str:
    if daemon is None:
        return "exrwatchd: not running (no status reported yet: never started with this state_dir?)"
    age = f"status {_value(daemon.get('age_seconds'))} s old"
    if code == EXIT_NOT_RUNNING:
        return f"exrwatchd: not running (last pid {_value(daemon.get('pid'))}, {age})"
    verdict = "healthy" if code == EXIT_OK else "DEGRADED"
    return f"exrwatchd: running, {verdict} (pid {_value(daemon.get('pid'))}, {age})"
