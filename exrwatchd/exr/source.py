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


class FileSource:
    """Reads through an already-open descriptor; the caller owns open/close and fstat."""

    __slots__ = ("_fd", "_size")

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0 or offset >= self._size:
            return b""
        return os.pread(self._fd, min(length, self._size - offset), offset)
