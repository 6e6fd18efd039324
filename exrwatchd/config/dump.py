"""The effective configuration as plain data, for `exrwatchd check-config`: every section
and key, secrets masked with where they came from, unset keys left out (TOML has no null)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from exrwatchd.config.model import SECTIONS, Config
from exrwatchd.secrets import MASK, Secret


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The effective config as TOML-able data, secrets masked with their source.

    Keys that are unset (None) are left out, since TOML has no null.
    """
    out: dict[str, Any] = {}
    for name in SECTIONS:
        section = getattr(cfg, name)
        if section == ():  # no [[hook]]: left out, like an unset key
            continue
        out[name] = [_plain(s) for s in section] if isinstance(section, tuple) else _plain(section)
    return out


def _plain(section: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if value is None:
            continue
        if isinstance(value, Secret):
            value = f"{MASK} (from {value.source})"
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out
