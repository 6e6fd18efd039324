"""`exrwatchd status`: what the journal holds and what the running daemon last reported.

Reads only: the journal (SQLite WAL allows this next to a running daemon) and the
`status.json` the daemon rewrites every few seconds.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import time
from pathlib import Path
from typing import Any

from exrwatchd.config import Config
from exrwatchd.journal import Journal


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
    daemon = None
    for _ in range(3):  # rewritten in place on a full disk: a read may catch it half-way
        try:
            daemon = json.loads((state_dir / "status.json").read_text())
            break
        except OSError:
            break
        except ValueError:
            time.sleep(0.05)
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
    journal = status["journal"]
    if journal is None:
        lines.append("journal: none yet")
    else:
        lines.append("journal: " + ", ".join(f"{k} {v}" for k, v in journal.items()))
    return "\n".join(lines)


# status.json is padded with spaces (which JSON ignores) to leave this much room, so that on a
# full disk, where no new file can be written, the next status still fits over the old one.
_ROOM = 4096
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def write_status_file(state_dir: Path, status: dict[str, Any]) -> None:
    """Atomically replace <state_dir>/status.json (readers never see half a file); on a full
    disk, overwrite it in place instead, if it fits (gather_status reads again then)."""
    target = state_dir / "status.json"
    tmp = target.with_suffix(".tmp")
    text = json.dumps(status).encode()
    try:
        tmp.write_bytes(text.ljust(-(-(len(text) + _ROOM) // _ROOM) * _ROOM))
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno not in _FULL:
            raise
        _overwrite(target, text, exc)


def _overwrite(target: Path, text: bytes, cause: OSError) -> None:
    # Within its size a file's blocks are already allocated: writing them needs no space.
    with open(target, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        if len(text) > size:
            raise cause
        f.write(text.ljust(size))
