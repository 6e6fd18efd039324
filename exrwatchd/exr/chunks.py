"""Chunk counts and the completeness check.

Writers fill the offset tables last, so a file still being written (or cut short) has zero
entries, entries past the end, or a last chunk that ends past EOF. The header alone cannot
tell: every cut after the header opens cleanly in both OpenEXR libraries.
"""

from __future__ import annotations

import array
import struct
from functools import lru_cache

from exrwatchd.exr.model import Box, Completeness, Header, Tiles
from exrwatchd.exr.source import ByteSource

# Scanlines per chunk by compression (OpenEXR's getCompressionNumScanlines); lj2k shares
# HTJ2K256's block, and zstd is written one line per chunk by OpenEXR 3.5.
LINES_PER_CHUNK = {
    "none": 1, "rle": 1, "zips": 1, "zip": 16, "piz": 32, "pxr24": 16, "b44": 32,
    "b44a": 32, "dwaa": 32, "dwab": 256, "htj2k256": 256, "htj2k32": 32, "lj2k": 256,
    "zstd": 1,
}  # fmt: skip

# The offset table of a hostile header can claim billions of chunks; past this it is not
# read into memory (a real 16K frame in 1-line chunks has 16,384).
MAX_CHUNKS = 1 << 27


def _level_size(size: int, level: int, round_up: bool) -> int:
    b = 1 << level
    n = size // b
    if round_up and n * b < size:
        n += 1
    return max(n, 1)


def _log2(value: int, round_up: bool) -> int:
    floor = value.bit_length() - 1
    return floor + 1 if round_up and (1 << floor) < value else floor


def _tile_count(width: int, height: int, tiles: Tiles) -> int:
    round_up = tiles.rounding_mode == "round_up"

    def count(w: int, h: int) -> int:
        return -(-w // tiles.x_size) * -(-h // tiles.y_size)

    if tiles.level_mode == "one_level":
        return count(width, height)
    if tiles.level_mode == "mipmap_levels":
        levels = _log2(max(width, height), round_up) + 1
        return sum(
            count(_level_size(width, lv, round_up), _level_size(height, lv, round_up))
            for lv in range(levels)
        )
    x_levels = _log2(width, round_up) + 1
    y_levels = _log2(height, round_up) + 1
    return sum(
        count(_level_size(width, lx, round_up), _level_size(height, ly, round_up))
        for ly in range(y_levels)
        for lx in range(x_levels)
    )


@lru_cache(maxsize=4096)
def expected_chunk_count(part_type: str, compression: str, window: Box, tiles: Tiles | None) -> int:
    """How many chunks (offset table entries) a part with this layout has."""
    width = window[2] - window[0] + 1
    height = window[3] - window[1] + 1
    if tiles is not None:
        return _tile_count(width, height, tiles)
    return -(-height // LINES_PER_CHUNK[compression])


def _chunk_end(source: ByteSource, offset: int, part_type: str, multipart: bool) -> int | None:
    """Where the chunk starting at `offset` ends, from its own header; None if that is cut."""
    pos = offset + (4 if multipart else 0)
    tiled = part_type in ("tiledimage", "deeptile")
    coords = 16 if tiled else 4
    if part_type in ("deepscanline", "deeptile"):
        raw = source.read(pos + coords, 16)
        if len(raw) < 16:
            return None
        packed_offsets, packed_samples = struct.unpack("<QQ", raw)
        return pos + coords + 24 + packed_offsets + packed_samples
    raw = source.read(pos + coords, 4)
    if len(raw) < 4:
        return None
    (data_size,) = struct.unpack("<i", raw)
    return pos + coords + 4 + data_size if data_size >= 0 else -1


def _min_max(table: bytes) -> tuple[int, int]:
    # Plain struct for the small tables of typical frames (numpy's per-call overhead is
    # larger than the work there); numpy for the thousands of chunks of big files, imported
    # only then: `exrwatchd inspect` of ordinary frames never pays its ~60 ms import.
    count = len(table) // 8
    if count <= 256:
        values = struct.unpack(f"<{count}Q", table)
        return min(values), max(values)
    import numpy as np

    offsets = np.frombuffer(table, "<u8")
    return int(offsets.min()), int(offsets.max())


#: The verdict of every whole file (one immutable value, not a new one per file).
_COMPLETE = Completeness(True, None)


def check_completeness(source: ByteSource, header: Header) -> Completeness:
    """Complete only when every offset of every part is set, inside the file, and the
    physically last chunk ends within the file."""
    size = source.size
    total = sum(part.chunk_count for part in header.parts)
    table_end = header.header_end + 8 * total
    if total > MAX_CHUNKS:
        return Completeness(False, f"offset tables claim {total} chunks, more than {MAX_CHUNKS}")
    if table_end > size:
        return Completeness(
            False, f"offset tables end at byte {table_end}, past the end of the file "
            f"({size} bytes): the file is cut short or still being written"
        )  # fmt: skip
    raw = source.read(header.header_end, 8 * total)
    last_offset, last_part = 0, header.parts[0]
    start = 0
    for part in header.parts:
        table = raw[8 * start : 8 * (start + part.chunk_count)]
        start += part.chunk_count
        low, high = _min_max(table)
        if low == 0:
            zeros = array.array("Q", table).count(0)  # zero in either byte order
            return Completeness(
                False, f"part {part.index}: {zeros} of {part.chunk_count} chunk offsets are "
                "zero (the writer has not finished)"
            )  # fmt: skip
        if high >= size:
            return Completeness(
                False, f"part {part.index}: a chunk offset ({high}) points past the end of "
                f"the file ({size} bytes)"
            )  # fmt: skip
        if low < table_end:
            return Completeness(
                False, f"part {part.index}: a chunk offset ({low}) points into the header "
                f"or offset tables (which end at byte {table_end})"
            )  # fmt: skip
        if high > last_offset:
            last_offset, last_part = high, part
    end = _chunk_end(source, last_offset, last_part.type, header.is_multipart)
    if end is None or end > size or end < 0:
        where = "its header is cut" if end is None or end < 0 else f"it ends at byte {end}"
        return Completeness(
            False, f"the last chunk (part {last_part.index}, at byte {last_offset}) is "
            f"incomplete: {where}, the file has {size} bytes"
        )  # fmt: skip
    return _COMPLETE
