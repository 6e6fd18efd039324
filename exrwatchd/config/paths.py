"""Where the config file is: `--config`, else `$EXRWATCHD_CONFIG`, else the default path."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from exrwatchd.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/exrwatchd/config.toml")
CONFIG_ENV = "EXRWATCHD_CONFIG"


def config_path(option: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """The config file a command reads; ConfigError, naming the path and where it came from,
    when that file does not exist. An override naming a missing file is an error, never a
    reason to fall back to the next one: the operator meant that file."""
    env = os.environ if environ is None else environ
    if option:
        path, origin = Path(option), "from --config"
    elif env.get(CONFIG_ENV):
        path, origin = Path(env[CONFIG_ENV]), f"from ${CONFIG_ENV}; no --config given"
    else:
        path = DEFAULT_CONFIG_PATH
        origin = f"the default: no --config given, ${CONFIG_ENV} not set"
    if not os.path.exists(path):
        raise ConfigError(
            f"no config file: {path} does not exist ({origin})\n"
            f"fix: create it (config.example.toml documents every key), or name another with "
            f"--config PATH or {CONFIG_ENV}=PATH"
        )
    return path
