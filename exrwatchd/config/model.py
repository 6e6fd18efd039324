"""The configuration's frozen dataclasses, one per TOML table, with their defaults.

Reading and validating the file is load.py's; this module holds only the values it makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from exrwatchd._cpus import CpuSetting
from exrwatchd.config.hooks import HookConfig
from exrwatchd.config.names import DEFAULT_EXCLUDE, DEFAULT_INCLUDE
from exrwatchd.errors import ConfigError
from exrwatchd.secrets import Secret

Backend = Literal["auto", "inotify", "poll"]
SinkKind = Literal["local", "vast"]
LogFormat = Literal["json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    state_dir: Path = Path("/var/lib/exrwatchd")
    # Fixed rather than os.cpu_count() so the same file behaves the same on every host.
    workers: int = 2
    queue_size: int = 1000
    rescan_interval: float = 3600.0
    shutdown_timeout: float = 30.0
    # Ship from a child process (its own core) rather than a thread: see docs/benchmarks.md.
    sink_process: bool = True
    # "auto" (the main process's threads on one CPU, the sink process on another: a
    # catch-up costs a fifth less CPU per file), "off" (the scheduler places them), or
    # [main CPU, sink CPU]. See exrwatchd/_cpus.py.
    cpu_affinity: CpuSetting = "auto"


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """One [[watch]] tree; exrwatchd.watch.filters.NameFilter applies include/exclude."""

    path: Path
    recursive: bool = True
    backend: Backend = "auto"
    poll_interval: float = 10.0
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    follow_symlinks: bool = False


@dataclass(frozen=True, slots=True)
class SettleConfig:
    quiet_seconds: float = 2.0
    max_wait_seconds: float = 3600.0
    recheck_initial_seconds: float = 1.0
    recheck_max_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class SinkConfig:
    kind: SinkKind = "local"
    batch_size: int = 500
    batch_wait_ms: int = 200
    max_attempts: int = 20
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class VastConfig:
    endpoint: str | None = None
    bucket: str | None = None
    schema: str = "exr_metadata"
    access_key: Secret | None = None
    secret_key: Secret | None = None
    ssl_verify: bool = True
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    discover_endpoints: bool = False
    create_tables: bool = False


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: LogFormat = "json"
    level: LogLevel = "info"
    file: Path | None = None
    # Lines per second per process (0: no limit) and burst: logs.DEFAULT_RATE_LIMIT/_BURST.
    rate_limit: float = 100.0
    burst: int = 1000


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: str | None = None

    @property
    def host(self) -> str | None:
        """The host part of `listen`, IPv6 brackets removed."""
        return None if self.listen is None else self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int | None:
        return None if self.listen is None else int(self.listen.rpartition(":")[2])


@dataclass(frozen=True, slots=True)
class InspectConfig:
    # Off by default: reading every pixel costs far more than the header (docs/benchmarks.md).
    pixel_stats: bool = False
    # The pixel lane's own threads, apart from daemon.workers, so pixel reads never hold up
    # header inspection; and its queue, small because each item waits on a whole-file read.
    pixel_workers: int = 1
    pixel_queue_size: int = 64
    # The most decoded pixel data one read may hold, per lane thread (exr.pixels); bigger
    # parts are read in strips. 32: a 2K RGBA float frame; sized to the 300 MB target of all
    # processes (docs/benchmarks.md) with the daemon at ~160 MB and the sink process at ~130.
    pixel_max_decoded_mb: int = 32


@dataclass(frozen=True, slots=True)
class Config:
    source: Path
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    watch: tuple[WatchConfig, ...] = ()
    settle: SettleConfig = field(default_factory=SettleConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    vast: VastConfig = field(default_factory=VastConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    inspect: InspectConfig = field(default_factory=InspectConfig)
    hook: tuple[HookConfig, ...] = ()
    warnings: tuple[str, ...] = ()

    def require_watches(self) -> None:
        """The daemon needs something to watch; one-shot commands may take paths instead."""
        if not self.watch:
            raise ConfigError(f"{self.source}: watch: at least one [[watch]] entry is required")

    def secrets(self) -> tuple[str, ...]:
        """The revealed secret values, for the log redactor."""
        return _revealed(self.vast, self.hook)


def _revealed(vast: VastConfig, hooks: Sequence[HookConfig] = ()) -> tuple[str, ...]:
    found = (vast.access_key, vast.secret_key, *(h.token for h in hooks))
    return tuple(s.reveal() for s in found if s)


#: The top-level tables of the file, in the order check-config prints them.
SECTIONS = ("daemon", "watch", "settle", "sink", "vast", "log", "metrics", "inspect", "hook")
