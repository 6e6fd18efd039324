"""The TOML configuration, parsed and validated once into frozen dataclasses.

Every problem in the file is collected and raised as one ConfigError, one line each, shaped
``<file>: <key path>: <what is wrong>``, so a user fixes the whole file in one pass instead
of restarting the daemon once per typo.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import json
import math
import os
import pwd
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from exrwatchd.errors import ConfigError
from exrwatchd.secrets import (
    MASK,
    CredentialError,
    Secret,
    credential_sources,
    plaintext_warning,
    resolve_credential,
)

Backend = Literal["auto", "inotify", "poll"]
SinkKind = Literal["local", "vast"]
LogFormat = Literal["json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]

#: Names that are hidden, or that writers use while a file is still being written.
DEFAULT_EXCLUDE = (".*", "*.tmp", "*.temp", "*.part", "*.partial", "*~", "*.swp")


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    state_dir: Path = Path("/var/lib/exrwatchd")
    # Fixed rather than os.cpu_count() so the same file behaves the same on every host.
    workers: int = 2
    queue_size: int = 10000
    rescan_interval: float = 3600.0
    shutdown_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class WatchConfig:
    path: Path
    recursive: bool = True
    backend: Backend = "auto"
    poll_interval: float = 10.0
    include: tuple[str, ...] = ("*.exr",)
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    follow_symlinks: bool = False

    def accepts(self, name: str) -> bool:
        """Whether base name `name` matches an include glob and no exclude glob.

        Case-insensitive because renders arrive as .exr and .EXR alike, often from Windows.
        """
        folded = name.casefold()
        return any(fnmatch.fnmatchcase(folded, p.casefold()) for p in self.include) and not any(
            fnmatch.fnmatchcase(folded, p.casefold()) for p in self.exclude
        )


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
    pixel_stats: bool = False


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
    warnings: tuple[str, ...] = ()

    def require_watches(self) -> None:
        """The daemon needs something to watch; one-shot commands may take paths instead."""
        if not self.watch:
            raise ConfigError(f"{self.source}: watch: at least one [[watch]] entry is required")

    def secrets(self) -> tuple[str, ...]:
        """The revealed secret values, for the log redactor."""
        return tuple(s.reveal() for s in (self.vast.access_key, self.vast.secret_key) if s)


# --- field specs -------------------------------------------------------------------------

_Kind = Literal["bool", "int", "float", "str", "path", "globs"]


@dataclass(frozen=True, slots=True)
class _Field:
    """How to validate one key: its TOML type, bounds and an extra check.

    Defaults are not here but on the section dataclasses, so they are written down once.
    """

    key: str
    kind: _Kind
    required: bool = False
    choices: tuple[str, ...] = ()  # matched case-insensitively, stored lower-case
    ge: float | None = None
    gt: float | None = None
    # Never echo the value in a message: it is a secret, or may be one put in the wrong key.
    hidden: bool = False
    check: Callable[[Any], str | None] | None = None


class _Invalid(Exception):
    """One or more problems with a value, each as (key path suffix, message)."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.problems: list[tuple[str, str]] = [("", message)] if message else []


@dataclass(frozen=True, slots=True)
class _Context:
    environ: Mapping[str, str]
    errors: list[str] = field(default_factory=list)

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"{key}: {message}")


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _describe(value: Any, hidden: bool = False) -> str:
    """A value as the user wrote it in TOML terms: 'string "4"', 'integer 4', 'an array'."""
    if isinstance(value, bool):
        noun, shown = "boolean", "true" if value else "false"
    elif isinstance(value, int):
        noun, shown = "integer", str(value)
    elif isinstance(value, float):
        noun, shown = "float", repr(value)
    elif isinstance(value, str):
        noun, shown = "string", _q(value)
    elif isinstance(value, list):
        return "an array"
    elif isinstance(value, dict):
        return "a table"
    else:
        return "a date/time"
    return noun if hidden else f"{noun} {shown}"


def _unknown_keys(
    table: Mapping[str, Any], where: str, known: Sequence[str], ctx: _Context
) -> None:
    for key in table:
        if key in known:
            continue
        hint = difflib.get_close_matches(key, known, n=1)
        suggestion = f' (did you mean "{hint[0]}"?)' if hint else ""
        ctx.error(f"{where}.{key}" if where else key, f"unknown key{suggestion}")


def _to_bool(value: Any, f: _Field, ctx: _Context) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected a boolean (true or false), got {_describe(value, f.hidden)}")
    return value


def _to_int(value: Any, f: _Field, ctx: _Context) -> int:
    # bool is a subclass of int in Python, but "workers = true" is a mistake, not 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Invalid(f"expected an integer, got {_describe(value, f.hidden)}")
    return value


def _to_float(value: Any, f: _Field, ctx: _Context) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _Invalid(f"expected a number, got {_describe(value, f.hidden)}")
    if not math.isfinite(value):
        raise _Invalid(f"must be a finite number, got {_describe(value, f.hidden)}")
    return float(value)


def _to_str(value: Any, f: _Field, ctx: _Context) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_describe(value, f.hidden)}")
    if not value:
        raise _Invalid("must not be empty")
    if not f.choices:
        return value
    if value.lower() in f.choices:
        return value.lower()
    allowed = ", ".join(_q(c) for c in f.choices)
    hint = difflib.get_close_matches(value.lower(), f.choices, n=1)
    suggestion = f' (did you mean "{hint[0]}"?)' if hint else ""
    raise _Invalid(f"must be one of {allowed}, got {_q(value)}{suggestion}")


def _to_path(value: Any, f: _Field, ctx: _Context) -> Path:
    text = _to_str(value, f, ctx)
    expanded = _expand_user(_expand_vars(text, ctx.environ), ctx.environ)
    if not os.path.isabs(expanded):
        if f.hidden:
            raise _Invalid("must be an absolute path (value not shown: it may be a secret)")
        origin = f" (expanded from {_q(text)})" if expanded != text else ""
        raise _Invalid(f"must be an absolute path, got {_q(expanded)}{origin}")
    if "\0" in expanded:
        raise _Invalid("must not contain a NUL character")
    # normpath keeps a leading "//" (POSIX leaves it implementation-defined); Linux treats
    # it as "/", and the nested-watch check needs one spelling per directory.
    return Path("/" + os.path.normpath(expanded).lstrip("/"))


def _to_globs(value: Any, f: _Field, ctx: _Context) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"expected an array of strings, got {_describe(value)}")
    invalid = _Invalid()
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            got = _describe(item)
            invalid.problems.append((f"[{i}]", f"expected a non-empty string, got {got}"))
        elif "/" in item:
            invalid.problems.append(
                (f"[{i}]", f"{_q(item)} can never match: patterns match the base name only")
            )
    if invalid.problems:
        raise invalid
    return tuple(value)


_CONVERTERS: dict[_Kind, Callable[[Any, _Field, _Context], Any]] = {
    "bool": _to_bool,
    "int": _to_int,
    "float": _to_float,
    "str": _to_str,
    "path": _to_path,
    "globs": _to_globs,
}

_VAR = re.compile(r"\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _expand_vars(text: str, environ: Mapping[str, str]) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` (default also when VAR is empty, as in sh)."""
    if "${" in _VAR.sub("", text):
        raise _Invalid('unterminated "${" (write ${NAME} or ${NAME:-default})')

    def substitute(m: re.Match[str]) -> str:
        name, sep, default = m.group(1).partition(":-")
        if not _ENV_NAME.match(name) or "${" in default:
            raise _Invalid(f'invalid variable reference "{m.group(0)}" (nesting is not supported)')
        value = environ.get(name)
        if sep:
            return value or default
        if value is None:
            raise _Invalid(
                f"environment variable {name} is not set (write ${{{name}:-default}} to give "
                "a default)"
            )
        return value

    return _VAR.sub(substitute, text)


def _expand_user(text: str, environ: Mapping[str, str]) -> str:
    if text == "~" or text.startswith("~/"):
        # HOME from the injected environment, so tests and check-config see what the
        # daemon would see.
        home = environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
        return (home.rstrip("/") + text[1:]) or "/"
    if text.startswith("~"):
        expanded = os.path.expanduser(text)
        if expanded == text:
            raise _Invalid(f"unknown user {_q(text.partition('/')[0])}")
        return expanded
    return text


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


def _check_env_name(value: str) -> str | None:
    ok = _ENV_NAME.match(value)
    return None if ok else f"must be an environment variable name, got {_q(value)}"


def _check_listen(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        return f'must be "host:port", e.g. "127.0.0.1:9100", got {_q(value)}'
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        return f'must put an IPv6 address in brackets, e.g. "[::1]:9100", got {_q(value)}'
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return f"port must be a number from 1 to 65535, got {_q(port)}"
    return None


def _check_globs_nonempty(value: tuple[str, ...]) -> str | None:
    return None if value else "must list at least one pattern"


def _convert(f: _Field, value: Any, ctx: _Context) -> Any:
    result = _CONVERTERS[f.kind](value, f, ctx)
    if f.ge is not None and result < f.ge:
        raise _Invalid(f"must be >= {f.ge}, got {result}")
    if f.gt is not None and result <= f.gt:
        raise _Invalid(f"must be > {f.gt}, got {result}")
    if f.check is not None and (message := f.check(result)):
        raise _Invalid(message)
    return result


def _read_table(
    table: Mapping[str, Any], where: str, fields: Sequence[_Field], ctx: _Context
) -> dict[str, Any]:
    """Validate `table` against `fields`, returning only the keys that are present and valid.

    Problems go to `ctx`; the caller's dataclass supplies defaults for everything left out.
    """
    _unknown_keys(table, where, [f.key for f in fields], ctx)
    out: dict[str, Any] = {}
    for f in fields:
        if f.key not in table:
            if f.required:
                ctx.error(f"{where}.{f.key}", "missing required key")
            continue
        try:
            out[f.key] = _convert(f, table[f.key], ctx)
        except _Invalid as e:
            for suffix, message in e.problems:
                ctx.error(f"{where}.{f.key}{suffix}", message)
    return out


def _check_order(section: Any, where: str, low: str, high: str, ctx: _Context) -> None:
    """A backoff that starts above its own cap is a typo, not a policy."""
    low_value, high_value = getattr(section, low), getattr(section, high)
    if low_value > high_value:
        ctx.error(f"{where}.{high}", f"must be >= {where}.{low} ({low_value}), got {high_value}")


# --- sections ----------------------------------------------------------------------------
# Defaults live on the dataclasses only: a key that is absent (or invalid, and reported) is
# simply not passed to the constructor.

_DAEMON = (
    _Field("state_dir", "path"),
    _Field("workers", "int", ge=1),
    _Field("queue_size", "int", ge=1),
    _Field("rescan_interval", "float", gt=0),
    _Field("shutdown_timeout", "float", gt=0),
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
)
_METRICS = (_Field("listen", "str", check=_check_listen),)
_INSPECT = (_Field("pixel_stats", "bool"),)

_SECTIONS = ("daemon", "watch", "settle", "sink", "vast", "log", "metrics", "inspect")
_ENDPOINT_ENV = "VAST_DB_ENDPOINT"
_CREDENTIAL_ENV = {"access_key": "VAST_DB_ACCESS_KEY", "secret_key": "VAST_DB_SECRET_KEY"}


def _table(data: Mapping[str, Any], key: str, ctx: _Context) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        ctx.error(key, f"expected a table ([{key}]), got {_describe(value)}")
        return {}
    return value


def _watches(data: Mapping[str, Any], ctx: _Context) -> tuple[WatchConfig, ...]:
    raw = data.get("watch", [])
    if isinstance(raw, dict):
        ctx.error("watch", "expected an array of tables ([[watch]]), got a single table ([watch])")
        return ()
    if not isinstance(raw, list):
        ctx.error("watch", f"expected an array of tables ([[watch]]), got {_describe(raw)}")
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
    table: Mapping[str, Any], kind: str, name: str, mode: int | None, ctx: _Context
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


def _read_toml(path: Path, name: str) -> tuple[dict[str, Any], int]:
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"{name}: cannot read config file: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{name}: not valid UTF-8 (at byte {e.start})") from None
    try:
        return tomllib.loads(text), mode
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if m:
            where = f"line {m.group(1)}, column {m.group(2)}"
            message = message[: m.start()]
        else:
            where, message = "at end of file", message.replace(" (at end of document)", "")
        raise ConfigError(f"{name}: {where}: invalid TOML: {message}") from None


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and resolve the config file at `path`.

    Raises ConfigError listing every problem, one per line. `environ` (default os.environ)
    supplies ``${VAR}`` expansion, ``~``, credentials and ``VAST_DB_ENDPOINT``.
    """
    name = str(path)
    data, mode = _read_toml(Path(path), name)
    ctx = _Context(os.environ if environ is None else environ)
    _unknown_keys(data, "", _SECTIONS, ctx)

    daemon = DaemonConfig(**_read_table(_table(data, "daemon", ctx), "daemon", _DAEMON, ctx))
    watches = _watches(data, ctx)
    settle = SettleConfig(**_read_table(_table(data, "settle", ctx), "settle", _SETTLE, ctx))
    _check_order(settle, "settle", "recheck_initial_seconds", "recheck_max_seconds", ctx)
    sink = SinkConfig(**_read_table(_table(data, "sink", ctx), "sink", _SINK, ctx))
    _check_order(sink, "sink", "backoff_initial_seconds", "backoff_max_seconds", ctx)
    vast, warnings = _vast(_table(data, "vast", ctx), sink.kind, name, mode, ctx)
    log = LogConfig(**_read_table(_table(data, "log", ctx), "log", _LOG, ctx))
    metrics = MetricsConfig(**_read_table(_table(data, "metrics", ctx), "metrics", _METRICS, ctx))
    inspect = InspectConfig(**_read_table(_table(data, "inspect", ctx), "inspect", _INSPECT, ctx))

    secrets = [s.reveal() for s in (vast.access_key, vast.secret_key) if s]
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
        warnings=tuple(_scrub(w, secrets) for w in warnings),
    )


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text


# --- output ------------------------------------------------------------------------------


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The effective config as TOML-able data, secrets masked with their source.

    Keys that are unset (None) are left out, since TOML has no null.
    """
    return {
        "daemon": _plain(cfg.daemon),
        "watch": [_plain(w) for w in cfg.watch],
        "settle": _plain(cfg.settle),
        "sink": _plain(cfg.sink),
        "vast": _plain(cfg.vast),
        "log": _plain(cfg.log),
        "metrics": _plain(cfg.metrics),
        "inspect": _plain(cfg.inspect),
    }


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
