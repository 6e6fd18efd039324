"""Inspect one EXR: stat, header, completeness. Never raises for a bad file.

`inspect_source` is the pure core (bytes in, Inspection out); `inspect_path` is the thin I/O
edge that opens the file, takes one fstat, and turns OS errors into error records.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod

from exrwatchd.errors import ExrFormatError
from exrwatchd.exr.chunks import check_completeness
from exrwatchd.exr.header import read_header
from exrwatchd.exr.model import InspectError, Inspection
from exrwatchd.exr.naming import frame_number
from exrwatchd.exr.source import ByteSource, FileSource
from exrwatchd.filesig import FileSig, sig_of


def _failed(path: str, stat: FileSig | None, kind: str, message: str) -> Inspection:
    return Inspection(
        path=path, stat=stat, header_hash=None, complete=False, incomplete_reason=None,
        frame_number=frame_number(os.path.basename(path)),
        error=InspectError(kind, message), parts=(),
    )  # fmt: skip


def inspect_source(path: str, source: ByteSource, stat: FileSig | None = None) -> Inspection:
    """Read headers and check completeness from `source`; `path` only names the result."""
    try:
        header = read_header(source)
        verdict = check_completeness(source, header)
    except ExrFormatError as exc:
        return _failed(path, stat, exc.kind, exc.message)
    # Positional tuple.__new__: a NamedTuple's keyword constructor is a Python-level call,
    # and this runs once per file. The order is Inspection's field order.
    return tuple.__new__(Inspection, (
        path, stat, header.header_hash, verdict.complete, verdict.reason,
        frame_number(os.path.basename(path)), None, header.parts,
    ))  # type: ignore[return-value]  # fmt: skip


_OS_KINDS = {
    errno.ENOENT: "vanished",
    errno.ENOTDIR: "vanished",
    errno.EACCES: "unreadable",
    errno.EPERM: "unreadable",
    errno.ELOOP: "symlink_loop",
}


# O_NOFOLLOW is not used: whether symlinks are followed is the walker's decision. O_NONBLOCK:
# a FIFO put in a file's place must not hang the reader (the fstat below then refuses it).
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK


def inspect_path(path: str) -> Inspection:
    """Inspect the file at `path`; OS and format problems become error records."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        return _failed(path, None, _OS_KINDS.get(exc.errno or 0, "unreadable"),
                       f"cannot open: {exc.strerror}")  # fmt: skip
    try:
        before = os.fstat(fd)
        if not stat_mod.S_ISREG(before.st_mode):
            return _failed(path, None, "not_a_file", "not a regular file")
        stat = sig_of(before)
        result = inspect_source(path, FileSource(fd, before.st_size), stat)
        after = os.fstat(fd)
    except OSError as exc:
        return _failed(path, None, "unreadable", f"read failed: {exc.strerror}")
    finally:
        os.close(fd)
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) and result.ok:
        # The writer is still at work: whatever we read may mix old and new bytes.
        return Inspection(
            path=path, stat=stat, header_hash=result.header_hash, complete=False,
            incomplete_reason="the file changed while it was being read",
            frame_number=result.frame_number, error=None, parts=result.parts,
        )  # fmt: skip
    return result
