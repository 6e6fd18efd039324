"""The TOML configuration, parsed and validated once into a frozen `Config` (model.py), and
its plain-data view for `check-config` (dump.py), and the bytes that hand it to a child
process (handoff.py); where the file is (paths.py)."""

from exrwatchd.config.dump import config_to_dict
from exrwatchd.config.handoff import config_from_bytes, config_to_bytes
from exrwatchd.config.hooks import HOOK_EVENTS, HookConfig
from exrwatchd.config.model import (
    DEFAULT_EXCLUDE,
    DEFAULT_INCLUDE,
    Config,
    DaemonConfig,
    InspectConfig,
    LogConfig,
    MetricsConfig,
    SettleConfig,
    SinkConfig,
    VastConfig,
    WatchConfig,
    load_config,
)
from exrwatchd.config.paths import CONFIG_ENV, DEFAULT_CONFIG_PATH, config_path

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_EXCLUDE",
    "DEFAULT_INCLUDE",
    "HOOK_EVENTS",
    "Config",
    "DaemonConfig",
    "HookConfig",
    "InspectConfig",
    "LogConfig",
    "MetricsConfig",
    "SettleConfig",
    "SinkConfig",
    "VastConfig",
    "WatchConfig",
    "config_from_bytes",
    "config_path",
    "config_to_bytes",
    "config_to_dict",
    "load_config",
]
