"""`exrwatchd check-config [--connect]`: OK only when `run` would start with this config.

Without --connect the file alone is checked, with the very rule `run` applies
(`Config.require_watches`). With --connect the host and the sink too: the state dir (where the
journal lives, whatever the sink), then the local catalog or the VAST cluster, read only.
Each problem is printed on its own line; nothing is created or changed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

from exrwatchd.config import Config, VastConfig, config_to_dict, load_config
from exrwatchd.errors import EXIT_CONFIG, EXIT_OK, EXIT_UNAVAILABLE, ConfigError, StartupError

__all__ = ["check_config", "connect_problems"]


def check_config(path: Path, *, connect: bool) -> int:
    """Print the effective config on stdout, warnings and problems on stderr; the exit code."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    for warning in (*cfg.warnings, *_missing_watch_roots(cfg)):
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(config_to_dict(cfg), indent=2))  # what was read, even if `run` refuses it
    try:
        cfg.require_watches()  # what `run` refuses, refused here by the same function
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    if connect:
        code, problems = connect_problems(cfg)
        for problem in problems:
            print(f"{cfg.source}: {problem}", file=sys.stderr)
        if code != EXIT_OK:
            return code
    print(f"{cfg.source}: OK" + (" (state dir and sink checked)" if connect else ""),
          file=sys.stderr)  # fmt: skip
    return EXIT_OK


def _missing_watch_roots(cfg: Config) -> list[str]:
    # A warning, not an error: the daemon starts without a share not mounted yet.
    return [f"watch[{i}].path: {w.path} does not exist (not mounted yet?); the daemon starts, "
            "reports the watch unhealthy and watches it once it appears"
            for i, w in enumerate(cfg.watch) if not os.path.exists(w.path)]  # fmt: skip


def connect_problems(cfg: Config) -> tuple[int, list[str]]:
    """(exit code, problems): 69 when the sink cannot be reached, 78 for anything else."""
    problems = _state_dir_problems(cfg.daemon.state_dir)
    if cfg.sink.kind == "local":
        if not problems:
            problems += _catalog_problems(cfg.daemon.state_dir / "catalog.db")
        return (EXIT_CONFIG if problems else EXIT_OK), problems
    unreachable, vast = _vast_problems(cfg.vast)
    code = EXIT_CONFIG if problems or (vast and not unreachable) else EXIT_OK
    return (EXIT_UNAVAILABLE if unreachable and code == EXIT_OK else code), problems + vast


def _state_dir_problems(state_dir: Path) -> list[str]:
    """The state dir is local and writable (it is created at start when missing)."""
    from exrwatchd.daemon.components import check_local_disk

    key = f"daemon.state_dir: {state_dir}"
    try:
        check_local_disk(str(state_dir))
    except StartupError as exc:
        return [str(exc)]
    if os.path.exists(state_dir):
        if not os.path.isdir(state_dir):
            return [f"{key} is not a directory"]
        try:  # a real write: os.access says yes to root on a read-only mount
            with tempfile.TemporaryFile(dir=state_dir, prefix=".check-config-"):
                pass
        except OSError as exc:
            return [f"{key} is not writable: {exc.strerror}"]
        return []
    parent = state_dir.parent
    while not os.path.exists(parent):
        parent = parent.parent
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        return [f"{key} does not exist and cannot be created under {parent}"]
    return []


def _catalog_problems(path: Path) -> list[str]:
    """An existing catalog opens, at a version this exrwatchd can write (an older one is
    upgraded in place at start; a newer one is refused)."""
    from exrwatchd.catalog import CATALOG_VERSION

    if not path.exists():
        return []  # created at start
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            version = con.execute("PRAGMA user_version").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error as exc:
        return [f"catalog {path} cannot be opened: {exc}"]
    if version > CATALOG_VERSION:
        return [f"catalog {path} has catalog version {version}, newer than the "
                f"{CATALOG_VERSION} this exrwatchd writes: upgrade exrwatchd"]  # fmt: skip
    return []


def _vast_problems(cfg: VastConfig) -> tuple[bool, list[str]]:
    """(unreachable, problems): the check `run` makes at start (the same `ensure_catalog`
    that `vast init` runs, without creating anything), with the SDK's errors sorted."""
    from exrwatchd.sinks import SinkUnavailable
    from exrwatchd.sinks.vast import VastSink, classify
    from exrwatchd.sinks.vast_schema import SchemaMismatch, ensure_catalog

    try:
        sink = VastSink(cfg)
    except SinkUnavailable as exc:
        return False, [str(exc)]
    try:
        # The sink's own connection settings (endpoint pinning, timeouts, retries).
        session = sink._connect()
        with session.transaction() as tx:
            ensure_catalog(tx, cfg.bucket, cfg.schema, create=False)  # type: ignore[arg-type]
    except SchemaMismatch as exc:
        problems = str(exc).split("; ")
        if cfg.create_tables and not _unfixable(problems):
            return False, []  # `run` creates what is missing (vast.create_tables = true)
        return False, [f"vast: {p}" for p in problems]
    except Exception as exc:
        kind = classify(exc)
        if kind == "sink":  # refused: the credentials, most often
            return False, [f"vast: {cfg.endpoint} refused the credentials or the request: "
                           f"{sink.describe(exc)}"]  # fmt: skip
        return True, [f"vast: {cfg.endpoint} unreachable: {sink.describe(exc)}"]
    return False, []


def _unfixable(problems: list[str]) -> bool:
    """Problems that creating missing tables and columns does not fix: a missing bucket (made
    on the cluster) or a column of the wrong type."""
    return any(p.startswith("bucket ") or ": expected " in p for p in problems)
