"""What a SQLite error means to the local catalog (exrwatchd/sinks/local.py): retry the
batch later, reject the entry, or retry the entry as a bug of ours."""

from __future__ import annotations

import sqlite3

from exrwatchd.catalog import RecordError

__all__ = ["classify", "describe", "is_transient"]

# Primary result codes (https://sqlite.org/rescode.html).
_TRANSIENT_CODES = frozenset({
    5,  # SQLITE_BUSY
    6,  # SQLITE_LOCKED
    7,  # SQLITE_NOMEM
    9,  # SQLITE_INTERRUPT
    10,  # SQLITE_IOERR
    13,  # SQLITE_FULL
    15,  # SQLITE_PROTOCOL
})  # fmt: skip
_TRANSIENT_TEXT = ("locked", "busy", "disk is full", "disk i/o error", "out of memory")


def is_transient(exc: sqlite3.Error) -> bool:
    """Whether trying the same statements again later may succeed."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _TRANSIENT_CODES
    return any(text in str(exc).lower() for text in _TRANSIENT_TEXT)


def describe(exc: BaseException) -> str:
    """The error as logs and deliveries show it: its type, then its message."""
    return f"{type(exc).__name__}: {exc}"


def classify(exc: Exception) -> str:
    """What an error while applying one entry means.

    ``batch``: the transaction is lost (transient, or the catalog is broken); ``reject``: this
    entry can never be stored; ``entry``: unexpected (a bug), retry this entry later.
    """
    if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return "entry"  # misuse of the API (a value of an unsupported type...): our bug
    if isinstance(exc, sqlite3.Error):
        if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError) and not is_transient(exc):
            return "reject"
        return "batch"
    if isinstance(exc, RecordError | OverflowError | UnicodeError):
        return "reject"
    return "entry"
