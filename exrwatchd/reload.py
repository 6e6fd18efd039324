"""SIGHUP: re-read the config and apply what can change while running.

Applied in place: log format/level/file (the file is reopened, for logrotate), settle
timings, rescan interval, watches (added ones start with a reconciliation, removed ones
stop, changed ones restart), and the sink (the loop is restarted; the outbox is on disk, so
nothing in flight is lost). State directory, workers, queue size, the sink-process choice,
the metrics address and the [inspect] pixel-lane keys need a restart: the reload says so and
keeps the running values.
A config that does not load changes nothing: the daemon keeps running the old one.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, TextIO

from exrwatchd.config import Config, load_config
from exrwatchd.errors import ConfigError
from exrwatchd.logs import configure_logging, get_logger

if TYPE_CHECKING:
    from exrwatchd.daemon import Daemon

log = get_logger("exrwatchd.reload")

#: [daemon] keys that only a restart applies.
RESTART_KEYS = ("state_dir", "workers", "queue_size", "sink_process")
#: [inspect] keys that only a restart applies: the pixel lane's threads and queue are made at
#: start-up, and switching pixel_stats mid-run would leave a burst half with, half without.
INSPECT_RESTART_KEYS = ("pixel_stats", "pixel_workers", "pixel_queue_size")

_log_file: TextIO | None = None


def apply_logging(cfg: Config) -> None:
    """Configure logging from `cfg`; (re)open the log file if one is configured."""
    global _log_file
    stream = None
    if cfg.log.file is not None:
        previous = _log_file
        # Line-buffered append: rotation tools move the file away and send SIGHUP.
        _log_file = stream = open(cfg.log.file, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        configure_logging(cfg.log.format, cfg.log.level, cfg.secrets(), stream=stream)
        if previous is not None:
            previous.close()
        return
    configure_logging(cfg.log.format, cfg.log.level, cfg.secrets(), stream=stream)


def reload(daemon: Daemon) -> bool:
    """Apply the config file as it is now. False (and nothing changed) if it is invalid."""
    old = daemon.cfg
    try:
        new = load_config(old.source)
        new.require_watches()
    except ConfigError as exc:
        log.error("config.reload_failed", error=str(exc), keeping="the running configuration")
        return False
    for warning in new.warnings:
        log.warning("config.warning", message=warning)
    needs_restart = [f"daemon.{key}" for key in RESTART_KEYS
                     if getattr(old.daemon, key) != getattr(new.daemon, key)]  # fmt: skip
    if old.metrics != new.metrics:
        needs_restart.append("metrics")
    needs_restart += [f"inspect.{key}" for key in INSPECT_RESTART_KEYS
                      if getattr(old.inspect, key) != getattr(new.inspect, key)]  # fmt: skip
    daemon_section = dataclasses.replace(
        new.daemon, **{key: getattr(old.daemon, key) for key in RESTART_KEYS}
    )
    new = dataclasses.replace(new, daemon=daemon_section, metrics=old.metrics,
                              inspect=old.inspect)  # fmt: skip

    apply_logging(new)
    settle = new.settle
    daemon.settler.retime(
        quiet_seconds=settle.quiet_seconds, max_wait_seconds=settle.max_wait_seconds,
        recheck_initial=settle.recheck_initial_seconds, recheck_max=settle.recheck_max_seconds,
    )  # fmt: skip
    added, removed, changed = daemon.watches.replace(new.watch)
    sink_changed = (old.sink, old.vast) != (new.sink, new.vast)
    daemon.cfg = new
    if sink_changed and not daemon.restart_sink():
        daemon.cfg = dataclasses.replace(daemon.cfg, sink=old.sink, vast=old.vast)
    log.info("config.reloaded", added_watches=added, removed_watches=removed,
             changed_watches=changed, sink_restarted=sink_changed,
             needs_restart=needs_restart or None)  # fmt: skip
    return True
