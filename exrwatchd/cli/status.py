"""`exrwatchd status`: what the journal holds and what the running daemon last reported.

Reads only: the journal (SQLite WAL allows this next to a running daemon) and the
`status.json` the daemon rewrites every few seconds.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from exrwatchd.config import Config
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


def render_status(status: dict[str, Any]) -> str:
    lines = [f"state_dir: {status['state_dir']}"]
    daemon = status["daemon"]
    if daemon is None:
        lines.append("daemon: no status reported yet (never started here?)")
    else:
        state = "running" if daemon["running"] else "not running"
        lines.append(f"daemon: {state} (pid {daemon['pid']}, status {daemon['age_seconds']} s old)")
        lines.append(
            f"  pending {daemon['pending']}, queued {daemon['queue_depth']}, "
            f"inspecting {daemon['inflight']}; inspected {daemon['inspected']}, "
            f"incomplete {daemon['incomplete']}, failed {daemon['failed']}, "
            f"deleted {daemon['deleted']}, persisted {daemon['persisted']}"
        )
        sink = "healthy" if daemon["sink_healthy"] else f"FAILING: {daemon['sink_last_error']}"
        lines.append(f"  sink: {sink}")
        if daemon.get("journal_disk_full"):
            lines.append(f"  journal: DISK FULL: {daemon['journal_disk_full']}")
        if daemon.get("health"):
            lines.append(f"  health: {daemon['health']}")
        if daemon.get("unreadable_count"):
            # Not deleted: the rows of what these paths hold stay in the catalog.
            lines.append(f"  unreadable now: {daemon['unreadable_count']} (files kept)")
            for path, name in daemon["unreadable"].items():
                lines.append(f"    unreadable: {path} ({name})")
    journal = status["journal"]
    if journal is None:
        lines.append("journal: none yet")
    else:
        lines.append("journal: " + ", ".join(f"{k} {v}" for k, v in journal.items()))
    return "\n".join(lines)
