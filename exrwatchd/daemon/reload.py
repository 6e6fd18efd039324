"""SIGHUP: what a new configuration changes in the running daemon, as a plan.

`plan_reload(old, new)` is a pure function of the two configurations; `Daemon.reload`
(lifecycle.py) loads the file and applies the plan. Applied in place: log format/level/file
(the file is reopened, for logrotate), settle timings, rescan interval, watches (added ones
start with a reconciliation, removed ones stop, changed ones restart), the sink (the loop
is restarted; the outbox is on disk, so nothing in flight is lost) and the [[hook]]s (events
of the next journal write on; queued rows go out with the new settings, rows of a removed
hook become dead letters). State directory, workers, queue size, the sink-process choice,
CPU affinity, the metrics address and the [inspect] pixel-lane keys need a restart: the
plan names them and keeps the running values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from exrwatchd.config import Config

__all__ = ["INSPECT_RESTART_KEYS", "RESTART_KEYS", "ReloadPlan", "plan_reload"]

#: [daemon] keys that only a restart applies.
RESTART_KEYS = ("state_dir", "workers", "queue_size", "sink_process", "cpu_affinity")
#: [inspect] keys that only a restart applies: the pixel lane's threads and queue are made at
#: start-up, and switching pixel_stats mid-run would leave a burst half with, half without.
INSPECT_RESTART_KEYS = ("pixel_stats", "pixel_workers", "pixel_queue_size",
                        "pixel_max_decoded_mb")  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    config: Config
    """The configuration to run from now on: the new one, with every key that needs a restart
    kept at its running value."""
    needs_restart: tuple[str, ...]
    """Keys whose new values wait for a restart ("daemon.workers", "metrics", ...)."""
    sink_changed: bool
    """The sink settings changed: the sink loop is restarted on them."""


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """What applying `new` to a daemon running `old` changes."""
    needs_restart = [f"daemon.{key}" for key in RESTART_KEYS
                     if getattr(old.daemon, key) != getattr(new.daemon, key)]  # fmt: skip
    if old.metrics != new.metrics:
        needs_restart.append("metrics")
    needs_restart += [f"inspect.{key}" for key in INSPECT_RESTART_KEYS
                      if getattr(old.inspect, key) != getattr(new.inspect, key)]  # fmt: skip
    daemon_section = dataclasses.replace(
        new.daemon, **{key: getattr(old.daemon, key) for key in RESTART_KEYS}
    )
    config = dataclasses.replace(new, daemon=daemon_section, metrics=old.metrics,
                                 inspect=old.inspect)  # fmt: skip
    return ReloadPlan(config, tuple(needs_restart), (old.sink, old.vast) != (new.sink, new.vast))
