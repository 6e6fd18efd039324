"""Reading a TOML file, typed field specs for its tables, and the error collection.

Generic machinery under config.py: it knows TOML value types, ``${VAR}`` / ``~`` expansion
and bounds, but nothing about exrwatchd's sections. Problems are collected in a _Context,
one ``<key path>: <what is wrong>`` line each, so a whole file is reported at once.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import pwd
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from exrwatchd.errors import ConfigError

_T = TypeVar("_T")


def _read_toml(path: Path, name: str) -> tuple[dict[str, Any], int]:
    """The parsed file and its st_mode; a ConfigError that starts with `name` otherwise."""
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


_Kind = Literal["bool", "int", "float", "str", "path", "globs", "cpus"]


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


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    """' (did you mean "x"?)' for the closest of `options`, or "" when none is close."""
    hint = difflib.get_close_matches(word, options, n=1)
    return f' (did you mean "{hint[0]}"?)' if hint else ""


def _unknown_keys(
    table: Mapping[str, Any], where: str, known: Sequence[str], ctx: _Context
) -> None:
    for key in table:
        if key not in known:
            ctx.error(f"{where}.{key}" if where else key, f"unknown key{_did_you_mean(key, known)}")


def _expected(what: str, value: Any, hidden: bool = False) -> _Invalid:
    return _Invalid(f"expected {what}, got {_describe(value, hidden)}")


def _to_bool(value: Any, f: _Field, ctx: _Context) -> bool:
    if not isinstance(value, bool):
        raise _expected("a boolean (true or false)", value, f.hidden)
    return value


def _to_int(value: Any, f: _Field, ctx: _Context) -> int:
    # bool is a subclass of int in Python, but "workers = true" is a mistake, not 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _expected("an integer", value, f.hidden)
    return value


def _to_float(value: Any, f: _Field, ctx: _Context) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _expected("a number", value, f.hidden)
    if not math.isfinite(value):
        raise _Invalid(f"must be a finite number, got {_describe(value, f.hidden)}")
    return float(value)


def _to_str(value: Any, f: _Field, ctx: _Context) -> str:
    if not isinstance(value, str):
        raise _expected("a string", value, f.hidden)
    if not value:
        raise _Invalid("must not be empty")
    if not f.choices:
        return value
    if value.lower() in f.choices:
        return value.lower()
    allowed = ", ".join(_q(c) for c in f.choices)
    suggestion = _did_you_mean(value.lower(), f.choices)
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
        raise _expected("an array of strings", value)
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


def _to_cpus(value: Any, f: _Field, ctx: _Context) -> str | tuple[int, int]:
    """"auto", "off", or [main, sink]: two different CPU numbers."""
    if isinstance(value, str):
        if value.lower() in ("auto", "off"):
            return value.lower()
        raise _Invalid(f'must be "auto", "off" or [main CPU, sink CPU], got {_q(value)}')
    if not isinstance(value, list):
        raise _expected('"auto", "off" or an array of two CPU numbers', value)
    if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                  for v in value):  # fmt: skip
        raise _Invalid("must be two CPU numbers, [main process, sink process], e.g. [2, 3]")
    if value[0] == value[1]:
        raise _Invalid(f"must name two different CPUs, got [{value[0]}, {value[1]}]")
    return (value[0], value[1])


_CONVERTERS: dict[_Kind, Callable[[Any, _Field, _Context], Any]] = {
    "bool": _to_bool,
    "int": _to_int,
    "float": _to_float,
    "str": _to_str,
    "path": _to_path,
    "globs": _to_globs,
    "cpus": _to_cpus,
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


def _check_env_name(value: str) -> str | None:
    ok = _ENV_NAME.match(value)
    return None if ok else f"must be an environment variable name, got {_q(value)}"


def _check_listen(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        return f'must be "host:port", e.g. "127.0.0.1:9109", got {_q(value)}'
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        return f'must put an IPv6 address in brackets, e.g. "[::1]:9109", got {_q(value)}'
    # Port 0 asks the kernel for a free port (the daemon logs the one it got).
    if not (port.isascii() and port.isdigit() and 0 <= int(port) <= 65535):
        return f"port must be a number from 0 to 65535, got {_q(port)}"
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


def _table(data: Mapping[str, Any], key: str, ctx: _Context) -> Mapping[str, Any]:
    """The sub-table `data[key]`, empty when absent or (reported) not a table."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        ctx.error(key, f"expected a table ([{key}]), got {_describe(value)}")
        return {}
    return value


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


def _read_section(
    cls: Callable[..., _T],
    data: Mapping[str, Any],
    key: str,
    fields: Sequence[_Field],
    ctx: _Context,
) -> _T:
    """`cls` built from table `data[key]`: valid keys passed, the rest left to its defaults."""
    return cls(**_read_table(_table(data, key, ctx), key, fields, ctx))


def _check_order(section: Any, where: str, low: str, high: str, ctx: _Context) -> None:
    """Report `high` when below `low`: a backoff that starts above its cap is a typo."""
    low_value, high_value = getattr(section, low), getattr(section, high)
    if low_value > high_value:
        ctx.error(f"{where}.{high}", f"must be >= {where}.{low} ({low_value}), got {high_value}")
