"""Structured logging: one JSON object per line, secrets redacted.

Lines carry ``timestamp`` (ISO 8601 UTC), ``level`` and ``event`` first, then the fields.
Events are stable dotted names (``file.settled``, ``sink.batch_failed``) with the details as
fields, so operators can filter and alert on them without parsing prose.

`configure_logging` may be called again (on reload). It updates the processor chain and the
output stream in place, so loggers that were bound before the reload also pick up new
secrets, format and stream; only lowering the level does not reach a logger that was
``.bind()``-ed earlier (its below-level methods are already no-ops). Loggers from
`get_logger` that are bound per use follow every change.

Under systemd each line starts with its syslog priority (``<4>{...}``) when stdout is the
journal's stream, so ``journalctl -p warning`` works; journald strips it. A budget (token
bucket) caps the lines per second below journald's rate limit and, when exceeded, drops
debug and info lines before warnings and errors, and says how many in ``log.suppressed``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePath
from typing import Any, TextIO, cast

import orjson
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from exrwatchd import _python_hooks as python_hooks
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
#: sd-daemon(3) prefixes: journald takes them off the line and stores them as PRIORITY.
_PRIORITY = {
    "debug": "<7>",
    "info": "<6>",
    "warning": "<4>",
    "warn": "<4>",
    "error": "<3>",
    "exception": "<3>",
    "critical": "<3>",
    "fatal": "<3>",
}
#: A line at this level passes the budget only while this fraction of the burst is left
#: for the levels above it: debug goes first, then info; warnings and errors use it all.
_RESERVE = {logging.DEBUG: 0.5, logging.INFO: 0.2}
#: Marks the budget's own summary line, which it lets through (popped before rendering).
_EXEMPT = "_log_budget_exempt"
#: Defaults of [log] rate_limit and burst (per process; the daemon runs two): at most
#: 2 x (1000 + 100 x 30) = 8,000 lines per 30 s, under journald's default 10,000.
DEFAULT_RATE_LIMIT = 100.0
DEFAULT_BURST = 1000


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


class LogBudget:
    """A token bucket over the lines written: `rate` lines/s on average, `burst` at once.

    journald drops a service's lines beyond its rate limit whatever their priority; this
    drops ours first and by level instead (see _RESERVE), so warnings and errors still get
    through while debug and info lines are being dropped. The counts dropped are reported
    in one ``log.suppressed`` line (warning) at most every `interval` seconds, with the
    first line logged (or dropped) after that interval has passed. `clock` is injectable
    for tests.
    """

    def __init__(
        self, rate: float, burst: int, *, interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        if rate <= 0 or burst < 1:
            raise ValueError(f"log budget needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate, self.burst, self.interval = rate, burst, interval
        self._clock = clock
        self._floor = {level: 1 + share * burst for level, share in _RESERVE.items()}
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = clock()
        self._dropped: dict[str, int] = {}
        self._since = 0.0
        self.summary_level = "warning"  # configure_logging raises it to the level's floor

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if event_dict.pop(_EXEMPT, False):
            return event_dict
        level = _METHOD_LEVELS.get(method_name, logging.CRITICAL)
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            allowed = self._tokens >= self._floor.get(level, 1)
            if allowed:
                self._tokens -= 1
            else:
                name = logging.getLevelName(min(level, logging.CRITICAL)).lower()
                if not self._dropped:
                    self._since = now
                self._dropped[name] = self._dropped.get(name, 0) + 1
            report = self._take_report(now)
        if report is not None:
            self._report(report)
        if not allowed:
            raise structlog.DropEvent
        return event_dict

    def _take_report(self, now: float) -> dict[str, Any] | None:
        if not self._dropped or now - self._since < self.interval:
            return None
        dropped, self._dropped = self._dropped, {}
        return {"suppressed": dropped, "total": sum(dropped.values()),
                "seconds": round(now - self._since, 1)}  # fmt: skip

    def _report(self, fields: dict[str, Any]) -> None:
        # Called without the lock held: the summary goes through the chain (and this step).
        log = get_logger("exrwatchd.logs")
        getattr(log, self.summary_level)(
            "log.suppressed", rate_limit=self.rate, burst=self.burst, **fields, **{_EXEMPT: True}
        )


def _pass(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    return event_dict


def journal_is(stream: Any) -> bool:
    """Whether `stream` is the journal's: systemd sets $JOURNAL_STREAM to the "dev:ino" of
    the socket it connects a service's stdout to (inherited by children whose stdout may
    be something else, hence the comparison)."""
    expected = os.environ.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


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


def _journal_json(logger: WrappedLogger, method_name: str, line: str) -> str:
    return _PRIORITY.get(method_name, "<6>") + line


def _journal_console(logger: WrappedLogger, method_name: str, line: str) -> str:
    # journald makes an entry of each line: a traceback's lines each need the prefix too.
    prefix = _PRIORITY.get(method_name, "<6>")
    return prefix + _printable(logger, method_name, line).replace("\n", "\n" + prefix)


# Mutated in place, never rebound: bound loggers hold a reference to this very list.
_CHAIN: list[Processor] = []
_OUTPUT = _Output(sys.stdout)
_BUDGET: LogBudget | None = None  # apply_logging's, kept across reloads with the same settings


def configure_logging(
    fmt: str = "json",
    level: str = "info",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    budget: LogBudget | None = None,
) -> None:
    """(Re)configure logging: format "json" or "console", a level name, the secret values
    to redact, the stream (default sys.stdout; every line is flushed, for journald) and the
    budget of lines per second (none: unlimited)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    min_level = LEVELS.get(level.lower())
    if min_level is None:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")

    _OUTPUT.target = sys.stdout if stream is None else stream
    # What Python itself would print on stderr, between the JSON lines: log lines instead.
    warnings.showwarning = python_hooks.show_warning
    threading.excepthook = python_hooks.thread_died
    sys.excepthook = python_hooks.process_died
    # Decided once here, not per line: a log file is never the journal, stdout may be.
    journal = stream is None and journal_is(_OUTPUT.target)
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_serialize)
        finish = _journal_json if journal else _keep
    else:
        colors = not journal and bool(getattr(_OUTPUT.target, "isatty", lambda: False)())
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
        finish = _journal_console if journal else _printable
    if budget is not None:  # the summary must pass the level gate and the filtering logger
        budget.summary_level = "warning" if min_level <= logging.WARNING else "error"
    # Same length and positions in both formats: a thread iterating the chain while it is
    # replaced sees each step from either the old or the new chain, never a skipped one.
    _CHAIN[:] = [
        structlog.contextvars.merge_contextvars,
        _LevelGate(min_level),
        # Before rendering: a dropped line costs a dict lookup and the bucket's arithmetic.
        _pass if budget is None else budget,
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
    fmt: str, level: str, secrets: Iterable[str], file: str | os.PathLike[str] | None,
    rate_limit: float = DEFAULT_RATE_LIMIT, burst: int = DEFAULT_BURST,
) -> None:  # fmt: skip
    """Configure logging as `configure_logging` does, writing to `file` when one is given:
    opened again on every call (a reload after logrotate moved it away), the previous one
    closed once the new one is in place; stdout otherwise. `rate_limit` lines/s (0: no
    limit) and `burst` make the budget, kept across calls while they stay the same."""
    global _BUDGET
    previous = _OUTPUT.owned
    stream = None
    if file is not None:
        # Line-buffered append: rotation tools move the file away and send SIGHUP.
        stream = open(file, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    budget = _BUDGET
    if rate_limit <= 0:
        budget = None
    elif budget is None or (budget.rate, budget.burst) != (rate_limit, burst):
        budget = LogBudget(rate_limit, burst)
    configure_logging(fmt, level, secrets, stream=stream, budget=budget)
    _BUDGET = budget
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
