"""How values are encoded for the journal's columns: directory keys, records, error texts."""

from __future__ import annotations

import os
import zlib
from typing import Any

from exrwatchd import _json

# zlib level 1: a header record's JSON (4.6-10.7 KB for the benchmarks' frames) shrinks to
# 1.0-1.5 KB, one page instead of two or three, which SQLite then writes, checkpoints, reads
# back, rewrites when the entry is claimed and frees when it is acknowledged. Measured
# (docs/benchmarks.md): the sink process claims and acknowledges for 35 us less CPU per file
# (145-151 -> 110-118 us, decompressing included: 8-11 us); the journal writer saves about
# what compressing costs it (18-25 us).
_RECORD_LEVEL = 1


def dir_key(directory: str) -> bytes:
    """The `dir` column value for a directory name: no trailing slash, except for "/"."""
    key = os.fsencode(directory)
    return key.rstrip(b"/") or key[:1]


def encode_record(record: dict[str, Any]) -> bytes:
    """The outbox's `record` value: the record's JSON, zlib-compressed (a BLOB)."""
    # Lone surrogates (undecodable file names) become \udcXX escapes: valid UTF-8, lossless.
    return zlib.compress(_json.dumpb(record), _RECORD_LEVEL)


def decode_record(value: bytes | str) -> dict[str, Any]:
    """A `record` value back: a BLOB is compressed JSON (encode_record); TEXT is plain JSON,
    as sequence summaries are stored and as journal schema 4 and before stored every record."""
    if isinstance(value, bytes):
        value = zlib.decompress(value)
    record: dict[str, Any] = _json.loads(value)
    return record


# Sink errors can be whole response bodies; the journal keeps enough to diagnose.
MAX_ERROR_CHARS = 4000


def clean_text(text: str) -> str:
    """Fit an error message for a TEXT column, which must be valid UTF-8.

    Messages quote file names, and those may hold lone surrogates.
    """
    text = text[:MAX_ERROR_CHARS]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
