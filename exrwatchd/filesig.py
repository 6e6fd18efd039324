"""What a stat says about a file: the one signature that watching, settling, inspection and
the journal compare to tell whether a file changed."""

from __future__ import annotations

import errno
import os
from typing import NamedTuple

__all__ = ["GONE_ERRNOS", "FileSig", "is_gone", "sig_of"]

#: The only errors that mean a path is gone. Any other (EACCES, EIO, ESTALE, ENOTCONN,
#: ETIMEDOUT, ...) means "unreadable now": keep what is known and look again later.
GONE_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR})


class FileSig(NamedTuple):
    """Size, modification time and inode of a regular file (a NamedTuple: built once per
    file on the hot path, and cheaper to build than a frozen dataclass)."""

    size: int
    mtime_ns: int
    inode: int


def sig_of(st: os.stat_result) -> FileSig:
    """The signature of a stat result: the only place one is built from a stat."""
    # tuple.__new__, in FileSig's field order: a NamedTuple's constructor is a Python-level
    # call, and this runs for every file seen.
    return tuple.__new__(FileSig, (st.st_size, st.st_mtime_ns, st.st_ino))  # type: ignore[return-value]


def is_gone(exc: OSError) -> bool:
    """Whether `exc` says the path is gone (and not merely unreadable)."""
    return exc.errno in GONE_ERRNOS
