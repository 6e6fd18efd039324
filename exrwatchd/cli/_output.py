"""What the commands print: JSON lines and raw bytes on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any


def json_line(obj: Any) -> bytes:
    """One JSON object as a UTF-8 line.

    File names may hold bytes that are not UTF-8 (Python keeps them as lone surrogates);
    backslashreplace turns each into a `\\udcXX` escape, which is still valid JSON and
    decodes back to the same name.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8", errors="backslashreplace") + b"\n"


def write_out(data: bytes) -> None:
    """Write `data` to stdout as it is, and flush (a pipe reader sees each line at once)."""
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
