"""The daemon's lifecycle: start-up, the main loop, reload and shutdown (lifecycle.py), the
parts built from the config (components.py), the reload plan (reload.py), what it reports
(reporting.py), the sink's own process (sink_process.py) and the signals (signals.py)."""

from exrwatchd.daemon.lifecycle import Daemon
from exrwatchd.daemon.signals import install_signal_handlers

__all__ = [
    "Daemon",
    "install_signal_handlers",
]
