"""The daemon's lifecycle: start-up, the main loop, reload and shutdown (lifecycle.py), the
parts built from the config (components.py), the reload plan (reload.py), what it reports
(reporting.py) and the sink's own process (sink_process.py)."""

from exrwatchd.daemon.lifecycle import Daemon

__all__ = [
    "Daemon",
]
