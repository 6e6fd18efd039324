"""Run the real daemon as a subprocess and wait on what it does, with deadlines.

No sleeping and hoping: every wait polls a condition (a log event, a catalog row count)
until it holds or a deadline passes, and a failure says what was seen instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def write_config(
    path: Path, state_dir: Path, watches: list[dict[str, Any]], **sections: Any
) -> Path:
    """A TOML config with short timings, for tests."""
    settle = {
        "quiet_seconds": 0.3,
        "max_wait_seconds": 5.0,
        "recheck_initial_seconds": 0.2,
        "recheck_max_seconds": 1.0,
    }
    settle.update(sections.pop("settle", {}))
    daemon = {"state_dir": str(state_dir), "workers": 2, "shutdown_timeout": 10.0}
    daemon.update(sections.pop("daemon", {}))
    sink = {"kind": "local", "batch_wait_ms": 20}
    sink.update(sections.pop("sink", {}))
    lines = []

    def table(name: str, values: dict[str, Any], array: bool = False) -> None:
        lines.append(f"[[{name}]]" if array else f"[{name}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")

    table("daemon", daemon)
    table("settle", settle)
    table("sink", sink)
    # rate_limit 0: the tests read what the daemon did from its log, every line of it.
    table("log", {"level": "debug", "rate_limit": 0} | sections.pop("log", {}))
    for name, values in sections.items():
        table(name, values)
    for watch in watches:
        table(
            "watch",
            {"path": str(watch["path"])} | {k: v for k, v in watch.items() if k != "path"},
            array=True,
        )
    path.write_text("\n".join(lines) + "\n")
    return path


class DaemonProcess:
    """`exrwatchd run --config CONFIG` with its JSON log lines collected as they arrive."""

    def __init__(
        self, config: Path, state_dir: Path, *, env: dict[str, str] | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:  # fmt: skip
        """`wrapper`: a command the daemon runs under (e.g. setpriv, to drop capabilities)."""
        self.config = config
        self.state_dir = state_dir
        self.events: list[dict[str, Any]] = []
        self.raw_lines: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "exrwatchd", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.raw_lines.append(line)
                with contextlib.suppress(ValueError):
                    self.events.append(json.loads(line))

    def seen(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e
                for e in self.events
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
            ]

    def wait_event(self, event: str, timeout: float = 20.0, **fields: Any) -> dict[str, Any]:
        wait_for(
            lambda: self.seen(event, **fields) or self.proc.poll() is not None,
            timeout,
            lambda: f"event {event} {fields}; last lines:\n" + self.tail(),
        )
        found = self.seen(event, **fields)
        assert found, f"daemon exited ({self.proc.returncode}) before {event}:\n{self.tail()}"
        return found[-1]

    def tail(self, n: int = 30) -> str:
        with self._lock:
            return "\n".join(self.raw_lines[-n:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(
                f"daemon did not stop within {timeout} s:\n{self.tail()}"
            ) from None
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def wait_for(
    condition: Callable[[], Any],
    timeout: float,
    describe: Callable[[], str] | str = "",
    interval: float = 0.05,
) -> Any:
    """Poll `condition` until it returns something truthy; fail with a description if not."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            text = describe() if callable(describe) else describe
            raise AssertionError(f"timed out after {timeout} s waiting for: {text}")
        time.sleep(interval)


class Catalog:
    """Read-only queries on <state_dir>/catalog.db, as a user would run them."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "catalog.db"

    def query(self, sql: str, *args: Any) -> list[tuple]:
        if not self.path.exists():
            return []
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []  # tables not created yet
        finally:
            con.close()

    def paths(self) -> dict[str, tuple]:
        """file_path -> (header_hash, is_complete, error_kind)."""
        rows = self.query("SELECT file_path, header_hash, is_complete, error_kind FROM files")
        return {r[0]: r[1:] for r in rows}

    def wait_paths(self, expected: set[str], timeout: float = 30.0) -> dict[str, tuple]:
        """Wait until the files table holds exactly `expected` paths."""

        def exact() -> dict[str, tuple] | None:
            paths = self.paths()
            return paths if set(paths) == expected else None

        return wait_for(
            exact,
            timeout,
            lambda: (
                f"catalog paths == {len(expected)} expected; have {len(self.paths())}: "
                f"missing {sorted(expected - set(self.paths()))[:5]}, "
                f"extra {sorted(set(self.paths()) - expected)[:5]}"
            ),
        )

    def orphans(self) -> int:
        """Stored child rows whose files row is gone (the views would hide them)."""
        total = 0
        for table in ("parts", "channels", "attributes"):
            total += self.query(
                f"SELECT count(*) FROM {table}_rows WHERE file_ref NOT IN "
                "(SELECT file_ref FROM files)"
            )[0][0]
        return total


def children(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


class DaemonEnv:
    """A watched tree (tmp/renders), a state dir and a config for the real daemon; `start`
    runs it and waits until its start-up scan is done. `watch` options go to the one
    [[watch]] entry, `sections` to write_config."""

    def __init__(self, tmp: Path, watch: dict[str, Any] | None = None, **sections: Any) -> None:
        self.tmp = tmp
        self.watch = tmp / "renders"
        self.watch.mkdir(exist_ok=True)
        self.state = tmp / "state"
        entry = {"path": str(self.watch), **(watch or {})}
        self.config = write_config(tmp / "config.toml", self.state, [entry], **sections)
        self.catalog = Catalog(self.state)
        self.daemon: DaemonProcess | None = None

    def start(self) -> DaemonProcess:
        self.daemon = DaemonProcess(self.config, self.state)
        self.daemon.wait_event("daemon.ready")
        self.daemon.wait_event("scan.finished")
        return self.daemon
