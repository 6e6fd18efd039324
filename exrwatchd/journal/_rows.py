"""How values are encoded for the journal's columns: directory keys, records, error texts."""

from __future__ import annotations

import os
from typing import Any

from exrwatchd import _json


def dir_key(directory: str) -> bytes:
    """The `dir` column value for a directory name: no trailing slash, except for "/"."""
    key = os.fsencode(directory)
    return key.rstrip(b"/") or key[:1]


def encode_record(record: dict[str, Any]) -> str:
    # Lone surrogates (undecodable file names) become \udcXX escapes: valid UTF-8, lossless.
    return _json.dumps(record)


# Sink errors can be whole response bodies; the journal keeps enough to diagnose.
MAX_ERROR_CHARS = 4000


def clean_text(text: str) -> str:
    """Fit an error message for a TEXT column, which must be valid UTF-8.

    Messages quote file names, and those may hold lone surrogates.
    """
    text = text[:MAX_ERROR_CHARS]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
