"""Read the header region of an EXR file strictly by the spec, with hard bounds.

Why our own reader: OpenImageIO refuses files with sub-sampled channels, renames attributes and
drops sampling and part types; the openexr binding loses channel types in header-only mode; no
library says whether a file is complete. The parsing here is checked field by field against
the openexr library in tests.

Layout: magic, version/flags, then per part a list of `name\\0 type\\0 <int32 size> <value>`
closed by a null byte; multipart files end the list of headers with one more null byte.
"""

from __future__ import annotations

import hashlib
import operator
import re
import struct
from collections.abc import Sequence
from functools import lru_cache
from typing import NoReturn

from exrwatchd.errors import ExrFormatError
from exrwatchd.exr.attributes import (
    COMPRESSIONS,
    FIXED_SIZES,
    LEVEL_MODES,
    LINE_ORDERS,
    ROUNDING_MODES,
    VARIABLE_CHECKED,
    channel_entries,
    check_value,
    float32_value,
)
from exrwatchd.exr.chunks import expected_chunk_count
from exrwatchd.exr.model import (
    PART_TYPES,
    Attribute,
    Box,
    Channel,
    ChannelList,
    Header,
    Part,
    Tiles,
)
from exrwatchd.exr.source import HEAD_BYTES, ByteSource

MAGIC = b"\x76\x2f\x31\x01"
FLAG_TILED = 0x200
FLAG_LONG_NAMES = 0x400
FLAG_NON_IMAGE = 0x800
FLAG_MULTIPART = 0x1000
KNOWN_FLAGS = FLAG_TILED | FLAG_LONG_NAMES | FLAG_NON_IMAGE | FLAG_MULTIPART

# Hard bounds so hostile input cannot make us read or allocate without limit. Real headers
# are a few KB; 100,000 attributes still fit in the byte bound.
MAX_HEADER_BYTES = 64 * 1024 * 1024
MAX_PARTS = 100_000
MAX_CHANNELS = 100_000
MAX_NAME_BYTES = 255  # long-names limit, applied always: writers set the flag loosely

REQUIRED = ("channels", "compression", "dataWindow", "displayWindow", "lineOrder",
            "pixelAspectRatio", "screenWindowCenter", "screenWindowWidth")  # fmt: skip
REQUIRED_MULTIPART = ("name", "type", "chunkCount")


class _NeedMore(Exception):
    """The buffered bytes end inside the header being parsed.

    `what` says where; `resume` is where the unfinished attribute starts (everything before
    it is parsed and kept), `needed` how far the buffer must reach to finish it, if known.
    """

    def __init__(self, what: str, resume: int, needed: int = 0) -> None:
        self.what = what
        self.resume = resume
        self.needed = needed


class _Cursor:
    """The header region read so far; grows on demand up to MAX_HEADER_BYTES."""

    __slots__ = ("buf", "pos", "source")

    def __init__(self, source: ByteSource) -> None:
        self.source = source
        self.buf = source.read(0, HEAD_BYTES)
        self.pos = 0

    def grow(self, what: str, needed: int = 0) -> None:
        """Read at least to `needed` (and at least double the buffer), or fail: the file
        ends here, or the header is too large."""
        if len(self.buf) >= self.source.size:
            raise ExrFormatError(
                "truncated_header",
                f"file ends inside the header ({what}; file has {self.source.size} bytes)",
            )
        if len(self.buf) >= MAX_HEADER_BYTES:
            raise ExrFormatError("too_large", f"header is larger than {MAX_HEADER_BYTES} bytes")
        want = min(max(len(self.buf), needed - len(self.buf) + 4096),
                   MAX_HEADER_BYTES - len(self.buf))  # fmt: skip
        self.buf += self.source.read(len(self.buf), want)


# One attribute's fixed-shape prefix: `name\0type\0` then an int32 size. One C-level match
# per attribute instead of two finds and two slices: this loop is the hot path of inspection.
_PREFIX = re.compile(rb"[^\0]{1,255}\0[^\0]{1,255}\0....", re.DOTALL)
_SIZE = struct.Struct("<i")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


# `name\0type\0<size>` -> (name, type, size, whether the value must be checked). Farms repeat
# the same few dozen attributes, with the same sizes, in every file: one lookup replaces two
# decodes, the size's unpacking and the decision to check the value.
_PREFIXES: dict[bytes, tuple[str, str, int, bool]] = {}
_PREFIXES_MAX = 8192


def _prefix(key: bytes) -> tuple[str, str, int, bool]:
    if len(_PREFIXES) >= _PREFIXES_MAX:
        _PREFIXES.clear()  # hostile input must not grow it without bound
    raw_name, raw_type, raw_size = key.split(b"\0", 2)
    name, type_name = _text(raw_name), _text(raw_type)
    (size,) = _SIZE.unpack(raw_size)
    expected = FIXED_SIZES.get(type_name)
    check = expected != size and (expected is not None or type_name in VARIABLE_CHECKED)
    info = _PREFIXES[key] = (name, type_name, size, check)
    return info


def _parse_attributes(buf: bytes, pos: int, attributes: list[Attribute]) -> int:
    """Append the attributes of one header starting at `pos` to `attributes`; return the
    position after the header's terminator.

    Raises _NeedMore when the buffer ends first; the caller reads more and resumes at the
    unfinished attribute (rare: the first read covers nearly every real header).
    """
    end_of_buf = len(buf)
    match, prefixes = _PREFIX.match, _PREFIXES
    append = attributes.append
    # tuple.__new__ straight away: a NamedTuple's own __new__ is a Python-level call, and
    # this line runs once per attribute of every file (docs/benchmarks.md).
    new, attribute = tuple.__new__, Attribute
    while True:
        m = match(buf, pos)
        if m is None:
            if pos < end_of_buf and buf[pos] == 0:
                return pos + 1
            _diagnose(buf, pos)
        key = m[0]
        name, type_name, size, check = prefixes.get(key) or _prefix(key)
        start = m.end()
        if start + size > end_of_buf or size < 0:
            if size < 0 or size > MAX_HEADER_BYTES:
                raise ExrFormatError("bad_attribute", f"attribute {name!r} has size {size}")
            raise _NeedMore(f"value of attribute {name!r} ({size} bytes)", pos, start + size)
        pos = start + size
        raw = buf[start:pos]
        if check:
            check_value(name, type_name, raw)
        append(new(attribute, (name, type_name, raw)))


def _diagnose(buf: bytes, pos: int) -> NoReturn:
    """Say why no attribute starts at `pos`: the buffer ends, or the bytes are off-spec."""
    limit = MAX_NAME_BYTES
    name_end = buf.find(b"\0", pos, pos + limit + 1)
    if name_end < 0:
        if len(buf) > pos + limit:
            raise ExrFormatError(
                "bad_header", f"attribute name at byte {pos} is longer than {limit} bytes"
            )
        raise _NeedMore(f"attribute name at byte {pos}", pos)
    name = _text(buf[pos:name_end])
    type_end = buf.find(b"\0", name_end + 1, name_end + limit + 2)
    if type_end < 0:
        if len(buf) > name_end + limit + 1:
            raise ExrFormatError("bad_attribute", f"type name of attribute {name!r} is too long")
        raise _NeedMore(f"type of attribute {name!r}", pos)
    if type_end == name_end + 1:
        raise ExrFormatError("bad_attribute", f"attribute {name!r} has an empty type name")
    raise _NeedMore(f"size of attribute {name!r}", pos)


def _read_attributes(cur: _Cursor) -> list[Attribute]:
    attributes: list[Attribute] = []
    while True:
        try:
            cur.pos = _parse_attributes(cur.buf, cur.pos, attributes)
            return attributes
        except _NeedMore as need:
            cur.pos = need.resume
            cur.grow(need.what, need.needed)


def _typed(attrs: dict[str, Attribute], key: str, type_name: str, index: int) -> bytes:
    attr = attrs[key]
    if attr.type != type_name:
        raise ExrFormatError(
            "bad_header",
            f"part {index}: attribute {key!r} has type {attr.type}, expected {type_name}",
        )
    return attr.raw


def _box(attrs: dict[str, Attribute], key: str, index: int) -> Box:
    box: Box = _BOX.unpack(_typed(attrs, key, "box2i", index))
    if box[0] > box[2] or box[1] > box[3]:
        raise ExrFormatError("bad_header", f"part {index}: {key} {list(box)} is empty")
    return box


def _enum_of(attrs: dict[str, Attribute], key: str, names: tuple[str, ...], index: int) -> str:
    code = _typed(attrs, key, key, index)[0]
    if code >= len(names):
        raise ExrFormatError("bad_header", f"part {index}: unknown {key} {code}")
    return names[code]


_BOX = struct.Struct("<4i")
_U32 = struct.Struct("<I")
_PART_TYPES = {t.encode(): t for t in PART_TYPES}
_TILEDESC = struct.Struct("<IIB")


@lru_cache(maxsize=1024)
def _tiles_from(raw: bytes) -> Tiles | None:
    x_size, y_size, mode = _TILEDESC.unpack(raw)
    level, rounding = mode & 0x0F, mode >> 4
    if x_size < 1 or y_size < 1 or level >= len(LEVEL_MODES) or rounding >= len(ROUNDING_MODES):
        return None
    return Tiles(x_size, y_size, LEVEL_MODES[level], ROUNDING_MODES[rounding])


def _tiles(raw: bytes, index: int) -> Tiles:
    tiles = _tiles_from(raw)
    if tiles is None:
        x_size, y_size, mode = _TILEDESC.unpack(raw)
        raise ExrFormatError(
            "bad_header", f"part {index}: invalid tile description {x_size}x{y_size} mode {mode}"
        )
    return tiles


def _channel_view(name: str, multiview: Sequence[str] | None, part_view: str | None) -> str | None:
    # OpenEXR's viewFromChannelName: a part's `view` wins; otherwise the view is the
    # second-to-last dotted component when it names a view, and dot-less channels belong
    # to the first (default) view.
    if part_view is not None:
        return part_view
    if not multiview:
        return None
    pieces = name.split(".")
    if len(pieces) == 1:
        return multiview[0]
    return pieces[-2] if pieces[-2] in multiview else None


@lru_cache(maxsize=4096)
def _channels(
    raw: bytes, view: str | None, multiview: tuple[str, ...] | None
) -> tuple[Channel, ...]:
    """Channels with their views; cached, as frames of a sequence repeat the same list.

    Raises ValueError for a channel with a sampling below 1 (not cached, so it raises again).
    """
    channels = []
    for name, pixel_type, p_linear, xs, ys in channel_entries(raw):
        if xs < 1 or ys < 1:
            raise ValueError(f"channel {name!r} has sampling {xs}x{ys}")
        view_of = _channel_view(name, multiview, view) if multiview or view else None
        channels.append(Channel(name, pixel_type, xs, ys, p_linear, view_of))
    return ChannelList(channels)


_REQUIRED_KEYS = frozenset(REQUIRED)
_REQUIRED_MULTIPART_KEYS = frozenset(REQUIRED_MULTIPART + REQUIRED)
_NAME_OF = operator.itemgetter(0)


def _part(index: int, attributes: list[Attribute], flags: int) -> Part:
    attrs = dict(zip(map(_NAME_OF, attributes), attributes, strict=True))
    if len(attrs) != len(attributes):
        seen: set[str] = set()
        dup = next(a.name for a in attributes if a.name in seen or seen.add(a.name))  # type: ignore[func-returns-value]
        raise ExrFormatError("bad_header", f"part {index}: attribute {dup!r} appears twice")
    multipart = bool(flags & FLAG_MULTIPART)
    if not attrs.keys() >= (_REQUIRED_MULTIPART_KEYS if multipart else _REQUIRED_KEYS):
        for key in REQUIRED_MULTIPART + REQUIRED if multipart else REQUIRED:
            if key not in attrs:
                raise ExrFormatError(
                    "bad_header", f"part {index}: required attribute {key!r} is missing"
                )
    if "type" in attrs:
        raw_type = _typed(attrs, "type", "string", index)
        part_type = _PART_TYPES.get(raw_type) or _text(raw_type)
        if part_type not in _PART_TYPES.values():
            raise ExrFormatError("bad_header", f"part {index}: unknown part type {part_type!r}")
    else:
        # Old single-part files carry no `type`; the version flags say what they are.
        if flags & FLAG_NON_IMAGE:
            raise ExrFormatError("bad_header", "deep single-part file without a 'type' attribute")
        part_type = "tiledimage" if flags & FLAG_TILED else "scanlineimage"
    tiles = None
    if part_type in ("tiledimage", "deeptile"):
        if "tiles" not in attrs:
            raise ExrFormatError("bad_header", f"part {index}: tiled part without 'tiles'")
        tiles = _tiles(_typed(attrs, "tiles", "tiledesc", index), index)
    compression = _enum_of(attrs, "compression", COMPRESSIONS, index)
    line_order = _enum_of(attrs, "lineOrder", LINE_ORDERS, index)
    data_window = _box(attrs, "dataWindow", index)
    display_window = _box(attrs, "displayWindow", index)
    view = _text(_typed(attrs, "view", "string", index)) if "view" in attrs else None
    multiview = None
    if "multiView" in attrs:
        _typed(attrs, "multiView", "stringvector", index)
        multiview = attrs["multiView"].value
    views = tuple(multiview) if multiview else None
    try:
        channels = _channels(_typed(attrs, "channels", "chlist", index), view, views)
    except ValueError as exc:
        raise ExrFormatError("bad_header", f"part {index}: {exc}") from None
    if len(channels) > MAX_CHANNELS:
        raise ExrFormatError("too_large", f"part {index}: {len(channels)} channels")
    chunk_count = expected_chunk_count(part_type, compression, data_window, tiles)
    if "chunkCount" in attrs:
        (stored,) = struct.unpack("<i", _typed(attrs, "chunkCount", "int", index))
        if stored != chunk_count:
            raise ExrFormatError(
                "bad_header",
                f"part {index}: chunkCount is {stored}, "
                f"but its data window and compression need {chunk_count}",
            )
    part_name = _text(_typed(attrs, "name", "string", index)) if "name" in attrs else None
    (aspect_bits,) = _U32.unpack(_typed(attrs, "pixelAspectRatio", "float", index))
    # Positional tuple.__new__ for the same reason as in _parse_attributes; the order is
    # Part's field order.
    return tuple.__new__(Part, (
        index, part_name, part_type, view, compression, data_window, display_window,
        float32_value(aspect_bits), line_order, tiles, chunk_count, channels, tuple(attributes),
    ))  # type: ignore[return-value]  # fmt: skip


def read_header(source: ByteSource) -> Header:
    """Parse magic, flags and every part header. Raises ExrFormatError on anything off-spec."""
    if source.size == 0:
        raise ExrFormatError("empty", "file is empty (0 bytes)")
    cur = _Cursor(source)
    if not cur.buf.startswith(MAGIC[: len(cur.buf)]) or len(cur.buf) < 4:
        if cur.buf.startswith(MAGIC[: len(cur.buf)]):
            raise ExrFormatError("truncated_header", f"file ends inside the magic number "
                                 f"({source.size} bytes)")  # fmt: skip
        raise ExrFormatError("not_exr", f"not an OpenEXR file (magic {cur.buf[:4].hex()})")
    while len(cur.buf) < 8:
        cur.grow("version field")
    cur.pos = 8
    (version_field,) = struct.unpack_from("<I", cur.buf, 4)
    version, flags = version_field & 0xFF, version_field & ~0xFF
    if version != 2:
        raise ExrFormatError("unsupported", f"unsupported OpenEXR version {version}")
    if flags & ~KNOWN_FLAGS:
        raise ExrFormatError("unsupported", f"unknown version flags 0x{flags & ~KNOWN_FLAGS:x}")
    if flags & FLAG_MULTIPART and flags & FLAG_TILED:
        raise ExrFormatError(
            "bad_header", "version flags claim both single-part tiled and multipart"
        )
    parts: list[Part] = []
    while True:
        attributes = _read_attributes(cur)
        if not attributes:
            if not flags & FLAG_MULTIPART:
                raise ExrFormatError("bad_header", "single-part header has no attributes")
            if not parts:
                raise ExrFormatError("bad_header", "multipart file with no parts")
            break
        parts.append(_part(len(parts), attributes, flags))
        if len(parts) > MAX_PARTS:
            raise ExrFormatError("too_large", f"more than {MAX_PARTS} parts")
        if not flags & FLAG_MULTIPART:
            break
    digest = hashlib.sha256(memoryview(cur.buf)[: cur.pos]).hexdigest()
    # Positional tuple.__new__, in Header's field order, for the reason given in _part.
    return tuple.__new__(Header, (version, flags, tuple(parts), cur.pos, digest))  # type: ignore[return-value]
