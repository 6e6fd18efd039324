"""What Python would print on stderr itself, as log lines: a library's warning, a thread that
dies of an exception, a process that dies of one. `exrwatchd.logs.configure_logging` installs
them (warnings.showwarning, threading.excepthook, sys.excepthook), so every process that logs
writes one JSON object per line and nothing else, redacted like every other line."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TextIO

import structlog

__all__ = ["process_died", "show_warning", "thread_died"]


def show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int,
    file: TextIO | None = None, line: str | None = None,
) -> None:  # fmt: skip
    """warnings.showwarning for the processes that log: a library's warning (watchdog warns
    when a directory moved within the tree is watched again) becomes one log line, redacted
    like every other, instead of text on stderr between the JSON lines."""
    structlog.get_logger(logger_name="py.warnings").warning(
        "python.warning", category=category.__name__, message=str(message),
        source=f"{filename}:{lineno}",
    )  # fmt: skip


def thread_died(args: threading.ExceptHookArgs) -> None:
    """threading.excepthook for the processes that log: a thread that dies of an exception
    (the journal writer, the sink and hook loops, after their own line saying why; any other
    thread) becomes one log line with its traceback, redacted, instead of text on stderr."""
    if args.exc_type is SystemExit:  # as threading's own hook: not an error
        return
    structlog.get_logger(logger_name="py.threading").critical(
        "python.thread_exception", thread=None if args.thread is None else args.thread.name,
        error_type=args.exc_type.__name__, error=str(args.exc_value),
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )  # fmt: skip


def process_died(
    exc_type: type[BaseException], exc_value: BaseException, exc_traceback: TracebackType | None
) -> None:
    """sys.excepthook for the processes that log: an exception nothing caught in the main
    thread (in the daemon's start-up or shutdown, outside its main loop; a command's bug)
    becomes one log line with its traceback, redacted, instead of text on stderr. The
    process still exits with status 1."""
    structlog.get_logger(logger_name="py.main").critical(
        "python.uncaught_exception", error_type=exc_type.__name__, error=str(exc_value),
        exc_info=(exc_type, exc_value, exc_traceback),
    )  # fmt: skip
