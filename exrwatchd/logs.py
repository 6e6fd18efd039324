"""Structured logging: one JSON object per line, secrets redacted.

Lines carry ``timestamp`` (ISO 8601 UTC), ``level`` and ``event`` first, then the fields.
Events are stable dotted names (``file.settled``, ``sink.batch_failed``) with the details as
fields, so operators can filter and alert on them without parsing prose.

`configure_logging` may be called again (on reload). It updates the processor chain and the
output stream in place, so loggers that were bound before the reload also pick up new
secrets, format and stream; only lowering the level does not reach a logger that was
``.bind()``-ed earlier (its below-level methods are already no-ops). Loggers from
`get_logger` that are bound per use follow every change.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any, TextIO, cast

import orjson
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from exrwatchd.secrets import MASK

FORMATS = ("json", "console")
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
#: Shorter secrets are not redacted: masking every "abc" in every path would wreck the logs
#: while protecting nothing.
MIN_SECRET_LENGTH = 4

_SENSITIVE_KEY = re.compile(
    r"secret|password|passwd|token|access_?key|api_?key|authori[sz]ation", re.IGNORECASE
)
_METHOD_LEVELS = LEVELS | {
    "warn": logging.WARNING,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
_HEAD = ("timestamp", "level", "event")


class Redactor:
    """Mask configured secret values anywhere in an event, and values of secret-ish keys.

    Runs after format_exc_info, so the rendered traceback is covered too. Values of types
    the renderer would repr() are repr()-ed here first, so nothing reaches the output
    unscanned.
    """

    __slots__ = ("_pattern",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is masked whole.
        values = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {key: self._field(key, value) for key, value in event_dict.items()}

    def _field(self, key: Any, value: Any) -> Any:
        if value is not None and isinstance(key, str) and _SENSITIVE_KEY.search(key):
            return MASK
        return self._value(value)

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, Mapping):
            return {k: self._field(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._value(v) for v in value]
        if isinstance(value, PurePath):
            return self._text(str(value))
        return self._text(repr(value))

    def _text(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(MASK, text)


class _LevelGate:
    """Drops events below the current level for loggers bound before a reload raised it."""

    __slots__ = ("level",)

    def __init__(self, level: int) -> None:
        self.level = level

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if _METHOD_LEVELS.get(method_name, logging.CRITICAL) < self.level:
            raise structlog.DropEvent
        return event_dict


class _Output:
    """The stream every logger writes to; swapping its target on reload redirects them all.
    `owned` is the log file `apply_logging` opened (and closes when it opens the next)."""

    __slots__ = ("__weakref__", "owned", "target")  # structlog keys its write lock weakly

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self.owned: TextIO | None = None

    def write(self, text: str) -> int:
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()


def _head_first(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    head = {key: event_dict.pop(key) for key in _HEAD if key in event_dict}
    return head | event_dict


def _printable(logger: WrappedLogger, method_name: str, line: str) -> str:
    # File names that are not valid UTF-8 arrive as lone surrogates, which a strict UTF-8
    # stream refuses to write; escape them rather than lose the line. (JSON output is
    # already ASCII-escaped.)
    return line.encode("utf-8", "backslashreplace").decode("utf-8")


def _keep(logger: WrappedLogger, method_name: str, line: str) -> str:
    return line


# Mutated in place, never rebound: bound loggers hold a reference to this very list.
_CHAIN: list[Processor] = []
_OUTPUT = _Output(sys.stdout)


def configure_logging(
    fmt: str = "json",
    level: str = "info",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """(Re)configure logging: format "json" or "console", a level name, the secret values
    to redact, and the stream (default sys.stdout; every line is flushed, for journald)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    min_level = LEVELS.get(level.lower())
    if min_level is None:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")

    _OUTPUT.target = sys.stdout if stream is None else stream
    renderer: Processor
    if fmt == "json":
        renderer, finish = structlog.processors.JSONRenderer(serializer=_serialize), _keep
    else:
        colors = bool(getattr(_OUTPUT.target, "isatty", lambda: False)())
        renderer, finish = structlog.dev.ConsoleRenderer(colors=colors), _printable
    # Same length and positions in both formats: a thread iterating the chain while it is
    # replaced sees each step from either the old or the new chain, never a skipped one.
    _CHAIN[:] = [
        structlog.contextvars.merge_contextvars,
        _LevelGate(min_level),
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.format_exc_info,
        _head_first,
        Redactor(secrets),
        renderer,
        finish,
    ]
    structlog.configure(
        processors=_CHAIN,
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        context_class=dict,
        logger_factory=structlog.WriteLoggerFactory(file=cast(TextIO, _OUTPUT)),
        # Caching would freeze each logger's level at first use and defeat reload.
        cache_logger_on_first_use=False,
    )


def apply_logging(
    fmt: str, level: str, secrets: Iterable[str], file: str | os.PathLike[str] | None
) -> None:
    """Configure logging as `configure_logging` does, writing to `file` when one is given:
    opened again on every call (a reload after logrotate moved it away), the previous one
    closed once the new one is in place; stdout otherwise."""
    previous = _OUTPUT.owned
    stream = None
    if file is not None:
        # Line-buffered append: rotation tools move the file away and send SIGHUP.
        stream = open(file, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    configure_logging(fmt, level, secrets, stream=stream)
    _OUTPUT.owned = stream
    if previous is not None:
        previous.close()


def _serialize(obj: Any, **_: Any) -> str:
    # orjson: a log line per file event at thousands of files per second; the standard
    # library only for values orjson refuses (lone surrogates from undecodable file names).
    try:
        return orjson.dumps(obj, default=str).decode()
    except TypeError:
        return json.dumps(obj, ensure_ascii=True, default=str)


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    """A logger; `name` (usually ``__name__``) is added as the ``logger_name`` field.

    The result is a lazy proxy that follows `configure_logging` calls; bind per unit of
    work (``log.bind(path=...)``) rather than keeping bound loggers around for long.
    """
    # "logger_name" because structlog.get_logger reserves "logger" for its own argument;
    # ConsoleRenderer shows this key as the logger column.
    logger = structlog.get_logger(logger_name=name) if name else structlog.get_logger()
    return cast(FilteringBoundLogger, logger)
