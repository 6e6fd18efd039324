"""The TOML configuration, parsed and validated once (load.py) into a frozen `Config`
(model.py), its plain-data view for `check-config` (dump.py), and the bytes that hand it to
a child process (handoff.py); where the file is (paths.py).

The face is loaded on first use (PEP 562), as `exrwatchd.watch`'s is: `exrwatchd inspect`
needs only the default name globs, and loading the validating model with them (~10 ms of
dataclasses) was a sixth of its start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exrwatchd._lazy import lazy_face

if TYPE_CHECKING:
    from exrwatchd.config.dump import config_to_dict
    from exrwatchd.config.handoff import config_from_bytes, config_to_bytes
    from exrwatchd.config.hooks import HOOK_EVENTS, HookConfig
    from exrwatchd.config.load import load_config
    from exrwatchd.config.model import (
        Config,
        DaemonConfig,
        InspectConfig,
        LogConfig,
        MetricsConfig,
        SettleConfig,
        SinkConfig,
        VastConfig,
        WatchConfig,
    )
    from exrwatchd.config.names import DEFAULT_EXCLUDE, DEFAULT_INCLUDE
    from exrwatchd.config.paths import CONFIG_ENV, DEFAULT_CONFIG_PATH, config_path

#: Each name of the face, and the module of this package that defines it.
_FACE = {
    "CONFIG_ENV": "paths",
    "DEFAULT_CONFIG_PATH": "paths",
    "DEFAULT_EXCLUDE": "names",
    "DEFAULT_INCLUDE": "names",
    "HOOK_EVENTS": "hooks",
    "Config": "model",
    "DaemonConfig": "model",
    "HookConfig": "hooks",
    "InspectConfig": "model",
    "LogConfig": "model",
    "MetricsConfig": "model",
    "SettleConfig": "model",
    "SinkConfig": "model",
    "VastConfig": "model",
    "WatchConfig": "model",
    "config_from_bytes": "handoff",
    "config_path": "paths",
    "config_to_bytes": "handoff",
    "config_to_dict": "dump",
    "load_config": "load",
}

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


__getattr__, __dir__ = lazy_face(__name__, _FACE)
