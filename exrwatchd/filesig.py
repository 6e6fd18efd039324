"""What a stat says about a file: the one signature that watching, settling, inspection and
the journal compare to tell whether a file changed."""

from __future__ import annotations

import os
from typing import NamedTuple

__all__ = ["FileSig", "sig_of"]


class FileSig(NamedTuple):
    """Size, modification time and inode of a regular file (a NamedTuple: built once per
    file on the hot path, and cheaper to build than a frozen dataclass)."""

    size: int
    mtime_ns: int
    inode: int


def sig_of(st: os.stat_result) -> FileSig:
    """The signature of a stat result: the only place one is built from a stat."""
    return FileSig(st.st_size, st.st_mtime_ns, st.st_ino)
