"""Reading the TOML file into a frozen Config (model.py): every table validated.

Every problem in the file is collected and raised as one ConfigError, one line each, shaped
``<file>: <key path>: <what is wrong>``, so a user fixes the whole file in one pass instead
of restarting the daemon once per typo.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from exrwatchd.config._fields import (
    _check_env_name,
    _check_globs_nonempty,
    _check_listen,
    _check_order,
    _Context,
    _describe,
    _Field,
    _q,
    _read_section,
    _read_table,
    _read_toml,
    _table,
    _unknown_keys,
)
from exrwatchd.config.hooks import read_hooks
from exrwatchd.config.model import (
    SECTIONS,
    Config,
    DaemonConfig,
    InspectConfig,
    LogConfig,
    MetricsConfig,
    SettleConfig,
    SinkConfig,
    VastConfig,
    WatchConfig,
    _revealed,
)
from exrwatchd.errors import ConfigError
from exrwatchd.secrets import (
    MASK,
    CredentialError,
    Secret,
    credential_sources,
    plaintext_warning,
    resolve_credential,
)


def _check_url(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        ok = False
    if ok and (parts.username or parts.password):
        # Not echoed: the user:password part is a credential, and the endpoint is printed
        # by check-config and logged at start.
        return "must not contain user:password; use the access_key / secret_key settings"
    return None if ok else f"must be an http:// or https:// URL, got {_q(value)}"


# --- sections ----------------------------------------------------------------------------
# Defaults live on the dataclasses only: a key that is absent (or invalid, and reported) is
# simply not passed to the constructor.

_DAEMON = (
    _Field("state_dir", "path"),
    _Field("workers", "int", ge=1),
    _Field("queue_size", "int", ge=1),
    _Field("rescan_interval", "float", gt=0),
    _Field("shutdown_timeout", "float", gt=0),
    _Field("sink_process", "bool"),
    _Field("cpu_affinity", "cpus"),
)
_WATCH = (
    _Field("path", "path", required=True),
    _Field("recursive", "bool"),
    _Field("backend", "str", choices=("auto", "inotify", "poll")),
    _Field("poll_interval", "float", gt=0),
    _Field("include", "globs", check=_check_globs_nonempty),
    _Field("exclude", "globs"),
    _Field("follow_symlinks", "bool"),
)
_SETTLE = (
    _Field("quiet_seconds", "float", ge=0),
    _Field("max_wait_seconds", "float", gt=0),
    _Field("recheck_initial_seconds", "float", gt=0),
    _Field("recheck_max_seconds", "float", gt=0),
)
_SINK = (
    _Field("kind", "str", choices=("local", "vast")),
    _Field("batch_size", "int", ge=1),
    _Field("batch_wait_ms", "int", ge=0),
    _Field("max_attempts", "int", ge=1),
    _Field("backoff_initial_seconds", "float", gt=0),
    _Field("backoff_max_seconds", "float", gt=0),
)
_VAST = (
    _Field("endpoint", "str", check=_check_url),
    _Field("bucket", "str"),
    _Field("schema", "str"),
    _Field("access_key", "str", hidden=True),
    _Field("secret_key", "str", hidden=True),
    _Field("access_key_file", "path", hidden=True),
    _Field("secret_key_file", "path", hidden=True),
    _Field("access_key_env", "str", check=_check_env_name),
    _Field("secret_key_env", "str", check=_check_env_name),
    _Field("ssl_verify", "bool"),
    _Field("connect_timeout", "float", gt=0),
    _Field("read_timeout", "float", gt=0),
    _Field("discover_endpoints", "bool"),
    _Field("create_tables", "bool"),
)
_LOG = (
    _Field("format", "str", choices=("json", "console")),
    _Field("level", "str", choices=("debug", "info", "warning", "error")),
    _Field("file", "path"),
    _Field("rate_limit", "float", ge=0),
    _Field("burst", "int", ge=1),
)
_METRICS = (_Field("listen", "str", check=_check_listen),)
_INSPECT = (
    _Field("pixel_stats", "bool"),
    _Field("pixel_workers", "int", ge=1),
    _Field("pixel_queue_size", "int", ge=1),
    _Field("pixel_max_decoded_mb", "int", ge=1),
)

#: The top-level tables, in the order check-config prints them.
_ENDPOINT_ENV = "VAST_DB_ENDPOINT"
_CREDENTIAL_ENV = {"access_key": "VAST_DB_ACCESS_KEY", "secret_key": "VAST_DB_SECRET_KEY"}


def _watches(data: Mapping[str, Any], ctx: _Context) -> tuple[WatchConfig, ...]:
    raw = data.get("watch", [])
    if not isinstance(raw, list):
        got = "a single table ([watch])" if isinstance(raw, dict) else _describe(raw)
        ctx.error("watch", f"expected an array of tables ([[watch]]), got {got}")
        return ()
    watches: list[tuple[int, WatchConfig]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            ctx.error(f"watch[{i}]", f"expected a table, got {_describe(item)}")
            continue
        values = _read_table(item, f"watch[{i}]", _WATCH, ctx)
        if "path" in values:  # else already reported as missing or invalid
            watches.append((i, WatchConfig(**values)))
    _check_overlap(watches, ctx)
    return tuple(w for _, w in watches)


def _check_overlap(watches: Sequence[tuple[int, WatchConfig]], ctx: _Context) -> None:
    # Two watches on one tree would report every file twice and race each other.
    for n, (i, w) in enumerate(watches):
        for j, other in watches[:n]:
            if w.path == other.path:
                problem = f"is already watched by watch[{j}]"
            elif w.path.is_relative_to(other.path):
                problem = f'is inside watch[{j}].path "{other.path}"; keep only one of them'
            elif other.path.is_relative_to(w.path):
                problem = f'contains watch[{j}].path "{other.path}"; keep only one of them'
            else:
                continue
            ctx.error(f"watch[{i}].path", f'"{w.path}" {problem}')
            break  # one overlap per watch is enough to act on


def _vast(
    table: Mapping[str, Any],
    kind: str,
    name: str,
    mode: int | None,
    ctx: _Context,
    credentials: bool = True,
) -> tuple[VastConfig, list[str]]:
    v = _read_table(table, "vast", _VAST, ctx)
    warnings: list[str] = []
    required = 'required when sink.kind = "vast"'

    endpoint = v.pop("endpoint", None)
    if "endpoint" not in table and (env_endpoint := ctx.environ.get(_ENDPOINT_ENV)):
        if message := _check_url(env_endpoint):
            ctx.error("vast.endpoint", f"{message} (from env {_ENDPOINT_ENV})")
        else:
            endpoint = env_endpoint
    elif "endpoint" not in table and kind == "vast":
        ctx.error("vast.endpoint", f"{required}; set vast.endpoint or env {_ENDPOINT_ENV}")
    if "bucket" not in table and kind == "vast":
        ctx.error("vast.bucket", f"{required}; set vast.bucket")

    creds: dict[str, Secret | None] = {}
    for cred, default_env in _CREDENTIAL_ENV.items():
        file, plain = v.pop(f"{cred}_file", None), v.pop(cred, None)
        env_var = v.pop(f"{cred}_env", default_env)
        creds[cred] = None
        if (f"{cred}_file" in table and file is None) or (cred in table and plain is None):
            continue  # a key for it is invalid and already reported; don't guess past it
        if not credentials:
            continue  # not wanted (`status`, `journal`): never read, so never required
        try:
            creds[cred] = resolve_credential(
                cred,
                file=file,
                env_var=env_var,
                plain=plain,
                config_name=name,
                environ=ctx.environ,
            )
        except CredentialError as e:
            ctx.error(e.key, e.message)
            continue
        if plain is not None:
            warnings.append(plaintext_warning(cred, name, mode))
        if creds[cred] is None and kind == "vast":
            ctx.error(f"vast.{cred}", f"{required}; set one of {credential_sources(cred, env_var)}")

    return VastConfig(endpoint=endpoint, **v, **creds), warnings


def load_config(
    path: str | Path, environ: Mapping[str, str] | None = None, *, credentials: bool = True
) -> Config:
    """Read, validate and resolve the config file at `path`.

    Raises ConfigError listing every problem, one per line. `environ` (default os.environ)
    supplies ``${VAR}`` expansion, ``~``, credentials and ``VAST_DB_ENDPOINT``.
    `credentials=False`, for commands that only read the local state: the VAST keys are
    neither looked up nor required (the Config has none).
    """
    name = str(path)
    data, mode = _read_toml(Path(path), name)
    ctx = _Context(os.environ if environ is None else environ)
    _unknown_keys(data, "", SECTIONS, ctx)

    daemon = _read_section(DaemonConfig, data, "daemon", _DAEMON, ctx)
    watches = _watches(data, ctx)
    settle = _read_section(SettleConfig, data, "settle", _SETTLE, ctx)
    _check_order(settle, "settle", "recheck_initial_seconds", "recheck_max_seconds", ctx)
    sink = _read_section(SinkConfig, data, "sink", _SINK, ctx)
    _check_order(sink, "sink", "backoff_initial_seconds", "backoff_max_seconds", ctx)
    vast, warnings = _vast(_table(data, "vast", ctx), sink.kind, name, mode, ctx, credentials)
    log = _read_section(LogConfig, data, "log", _LOG, ctx)
    metrics = _read_section(MetricsConfig, data, "metrics", _METRICS, ctx)
    inspect = _read_section(InspectConfig, data, "inspect", _INSPECT, ctx)
    hooks, hook_warnings = read_hooks(data, ctx)

    secrets = _revealed(vast, hooks)
    if ctx.errors:
        # Last line of defence: a secret pasted into the wrong key must not be echoed.
        lines = (_scrub(f"{name}: {e}", secrets) for e in ctx.errors)
        raise ConfigError("\n".join(lines))
    return Config(
        source=Path(path),
        daemon=daemon,
        watch=watches,
        settle=settle,
        sink=sink,
        vast=vast,
        log=log,
        metrics=metrics,
        inspect=inspect,
        hook=hooks,
        warnings=tuple(_scrub(w, secrets) for w in [*warnings, *hook_warnings]),
    )


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text
