"""Random-access byte sources, so the reader is a pure function of bytes.

The reader asks for byte ranges; it never opens files itself. `FileSource` serves them with
pread from an open descriptor (a few syscalls per file); `BytesSource` serves them from
memory, which is what tests and property checks use.
"""

from __future__ import annotations

import os
from typing import Protocol


class ByteSource(Protocol):
    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset`; shorter only at end of data."""
        ...


class BytesSource:
    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


#: Bytes read up front: nearly every header, and often its offset table, fits in them.
HEAD_BYTES = 16 * 1024


class FileSource:
    """Reads through an already-open descriptor; the caller owns open/close and fstat.

    The first HEAD_BYTES are read once and served from memory: the header walk, the offset
    table and, for small files, the last chunk all come out of that one read() call.
    """

    __slots__ = ("_fd", "_head", "_size")

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size
        self._head = os.pread(fd, min(HEAD_BYTES, size), 0) if size > 0 else b""

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0 or offset >= self._size:
            return b""
        end = offset + length
        head = self._head
        if end <= len(head) or (len(head) == self._size and offset < self._size):
            return head if offset == 0 and end >= len(head) else head[offset:end]
        return os.pread(self._fd, min(length, self._size - offset), offset)
