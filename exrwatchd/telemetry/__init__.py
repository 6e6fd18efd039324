"""What the running daemon tells the outside: Prometheus metrics and /healthz (metrics.py,
http.py), systemd notifications (notify.py) and status.json (status_file.py). Nothing here
reads the daemon: the daemon's reporting (exrwatchd.daemon.reporting) hands it snapshots."""

from exrwatchd.telemetry.http import MetricsServer, health_reason, parse_listen
from exrwatchd.telemetry.metrics import (
    Metrics,
    NullMetrics,
    Snapshot,
    WatchState,
)
from exrwatchd.telemetry.notify import Notifier, WatchdogPinger, format_status
from exrwatchd.telemetry.progress import PROGRESS_INTERVAL, ProgressLine
from exrwatchd.telemetry.status_file import read_status_file, write_status_file

__all__ = [
    "PROGRESS_INTERVAL",
    "Metrics",
    "MetricsServer",
    "Notifier",
    "NullMetrics",
    "ProgressLine",
    "Snapshot",
    "WatchState",
    "WatchdogPinger",
    "format_status",
    "health_reason",
    "parse_listen",
    "read_status_file",
    "write_status_file",
]
