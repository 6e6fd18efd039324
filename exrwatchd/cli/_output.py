"""What the commands print: JSON lines and raw bytes on stdout."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import orjson

#: Seconds a line may wait in stdout's buffer (write_out(..., flush=False)): a pipe reader
#: still sees output as it comes, without a write() system call per line.
FLUSH_SECONDS = 0.1

_last_flush = 0.0


def json_line(obj: Any) -> bytes:
    """One JSON object as a UTF-8 line.

    orjson first (several times faster than the standard library: `inspect --json` prints a
    record per file). File names may hold bytes that are not UTF-8 (Python keeps them as lone
    surrogates), which orjson refuses; for those the standard library writes the line, and
    backslashreplace turns each surrogate into a `\\udcXX` escape, which is still valid JSON
    and decodes back to the same name.
    """
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8", errors="backslashreplace") + b"\n"


def write_out(data: bytes, *, flush: bool = True) -> None:
    """Write `data` to stdout as it is. Flushed at once, or with `flush=False` once
    FLUSH_SECONDS have passed since the last flush (call `flush_out` at the end)."""
    global _last_flush
    sys.stdout.buffer.write(data)
    now = time.monotonic() if not flush else 0.0
    if flush or now - _last_flush >= FLUSH_SECONDS:
        sys.stdout.buffer.flush()
        _last_flush = now


def flush_out() -> None:
    sys.stdout.buffer.flush()
