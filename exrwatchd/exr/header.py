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
import struct

from exrwatchd.errors import ExrFormatError
from exrwatchd.exr.attributes import decode_chlist, decode_value
from exrwatchd.exr.chunks import expected_chunk_count
from exrwatchd.exr.model import Attribute, Box, Channel, Header, Part, Tiles
from exrwatchd.exr.source import ByteSource

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
MAX_NAME_BYTES = 255
FIRST_READ = 16 * 1024

REQUIRED = ("channels", "compression", "dataWindow", "displayWindow", "lineOrder",
            "pixelAspectRatio", "screenWindowCenter", "screenWindowWidth")  # fmt: skip
REQUIRED_MULTIPART = ("name", "type", "chunkCount")


class _Cursor:
    """Walks the header region, fetching more bytes from the source only when needed."""

    __slots__ = ("buf", "pos", "source")

    def __init__(self, source: ByteSource) -> None:
        self.source = source
        self.buf = source.read(0, FIRST_READ)
        self.pos = 0

    def _need(self, end: int, what: str) -> None:
        while end > len(self.buf):
            if len(self.buf) >= self.source.size:
                raise ExrFormatError(
                    "truncated_header",
                    f"file ends inside the header ({what} at byte {self.pos}, "
                    f"file has {self.source.size} bytes)",
                )
            if len(self.buf) >= MAX_HEADER_BYTES:
                raise ExrFormatError(
                    "too_large", f"header is larger than {MAX_HEADER_BYTES} bytes"
                )
            want = min(max(len(self.buf), end - len(self.buf)), MAX_HEADER_BYTES - len(self.buf))
            self.buf += self.source.read(len(self.buf), want)

    def name(self, what: str, limit: int) -> str:
        """A null-terminated name of at most `limit` bytes (the terminator not counted)."""
        while True:
            end = self.buf.find(b"\0", self.pos, self.pos + limit + 1)
            if end >= 0:
                break
            if len(self.buf) >= self.pos + limit + 1:
                raise ExrFormatError(
                    "bad_header", f"{what} at byte {self.pos} is longer than {limit} bytes"
                )
            self._need(len(self.buf) + 1, what)
        raw = self.buf[self.pos : end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("utf-8", errors="backslashreplace")

    def take(self, size: int, what: str) -> bytes:
        self._need(self.pos + size, what)
        raw = self.buf[self.pos : self.pos + size]
        self.pos += size
        return raw

    def int32(self, what: str) -> int:
        (value,) = struct.unpack("<i", self.take(4, what))
        return int(value)


def _read_attributes(cur: _Cursor, name_limit: int) -> list[Attribute] | None:
    """One header's attributes; None when the header is empty (the multipart terminator)."""
    attributes: list[Attribute] = []
    while True:
        name = cur.name("attribute name", name_limit)
        if not name:
            return attributes if attributes else None
        type_name = cur.name(f"type of attribute {name!r}", name_limit)
        if not type_name:
            raise ExrFormatError("bad_attribute", f"attribute {name!r} has an empty type name")
        size = cur.int32(f"size of attribute {name!r}")
        if size < 0 or size > MAX_HEADER_BYTES:
            raise ExrFormatError("bad_attribute", f"attribute {name!r} has size {size}")
        raw = cur.take(size, f"value of attribute {name!r}")
        attributes.append(Attribute(name, type_name, decode_value(name, type_name, raw), raw))


def _typed(attrs: dict[str, Attribute], key: str, type_name: str, index: int) -> Attribute:
    attr = attrs[key]
    if attr.type != type_name:
        raise ExrFormatError(
            "bad_header", f"part {index}: attribute {key!r} has type {attr.type}, "
            f"expected {type_name}"
        )
    return attr


def _box(attr: Attribute, index: int) -> Box:
    lo, hi = attr.value["min"], attr.value["max"]
    box = (lo[0], lo[1], hi[0], hi[1])
    if box[0] > box[2] or box[1] > box[3]:
        raise ExrFormatError("bad_header", f"part {index}: {attr.name} {list(box)} is empty")
    return box


def _channel_view(name: str, multiview: list[str] | None, part_view: str | None) -> str | None:
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


def _part(index: int, attributes: list[Attribute], flags: int) -> Part:
    attrs = {a.name: a for a in attributes}
    if len(attrs) != len(attributes):
        seen: set[str] = set()
        dup = next(a.name for a in attributes if a.name in seen or seen.add(a.name))
        raise ExrFormatError("bad_header", f"part {index}: attribute {dup!r} appears twice")
    multipart = bool(flags & FLAG_MULTIPART)
    for key in REQUIRED + (REQUIRED_MULTIPART if multipart else ()):
        if key not in attrs:
            raise ExrFormatError(
                "bad_header", f"part {index}: required attribute {key!r} is missing"
            )
    if "type" in attrs:
        part_type = _typed(attrs, "type", "string", index).value
        if part_type not in ("scanlineimage", "tiledimage", "deepscanline", "deeptile"):
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
        desc = _typed(attrs, "tiles", "tiledesc", index).value
        if desc["x_size"] < 1 or desc["y_size"] < 1 or "unknown" in (
            desc["level_mode"] + desc["rounding_mode"]
        ):
            raise ExrFormatError("bad_header", f"part {index}: invalid tile description {desc}")
        tiles = Tiles(desc["x_size"], desc["y_size"], desc["level_mode"], desc["rounding_mode"])
    compression = _typed(attrs, "compression", "compression", index).value
    if compression.startswith("unknown"):
        raise ExrFormatError("bad_header", f"part {index}: {compression} compression")
    line_order = _typed(attrs, "lineOrder", "lineOrder", index).value
    data_window = _box(_typed(attrs, "dataWindow", "box2i", index), index)
    display_window = _box(_typed(attrs, "displayWindow", "box2i", index), index)

    view = _typed(attrs, "view", "string", index).value if "view" in attrs else None
    multiview = None
    if "multiView" in attrs:
        multiview = _typed(attrs, "multiView", "stringvector", index).value
    chlist = decode_chlist(_typed(attrs, "channels", "chlist", index).raw)
    if len(chlist) > MAX_CHANNELS:
        raise ExrFormatError("too_large", f"part {index}: {len(chlist)} channels")
    for ch in chlist:
        if ch["x_sampling"] < 1 or ch["y_sampling"] < 1:
            raise ExrFormatError(
                "bad_header", f"part {index}: channel {ch['name']!r} has sampling "
                f"{ch['x_sampling']}x{ch['y_sampling']}"
            )
    channels = tuple(
        Channel(c["name"], c["type"], c["x_sampling"], c["y_sampling"], c["p_linear"],
                _channel_view(c["name"], multiview, view))
        for c in chlist
    )  # fmt: skip
    chunk_count = expected_chunk_count(part_type, compression, data_window, tiles)
    if "chunkCount" in attrs:
        stored = _typed(attrs, "chunkCount", "int", index).value
        if stored != chunk_count:
            raise ExrFormatError(
                "bad_header", f"part {index}: chunkCount is {stored}, "
                f"but its data window and compression need {chunk_count}"
            )
    name = _typed(attrs, "name", "string", index).value if "name" in attrs else None
    pixel_aspect = _typed(attrs, "pixelAspectRatio", "float", index).value
    return Part(
        index=index, name=name, type=part_type, view=view, compression=compression,
        data_window=data_window, display_window=display_window,
        pixel_aspect_ratio=pixel_aspect, line_order=line_order, tiles=tiles,
        chunk_count=chunk_count, channels=channels, attributes=tuple(attributes),
    )  # fmt: skip


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
    cur.pos = 4
    (version_field,) = struct.unpack("<I", cur.take(4, "version field"))
    version, flags = version_field & 0xFF, version_field & ~0xFF
    if version != 2:
        raise ExrFormatError("unsupported", f"unsupported OpenEXR version {version}")
    if flags & ~KNOWN_FLAGS:
        raise ExrFormatError("unsupported", f"unknown version flags 0x{flags & ~KNOWN_FLAGS:x}")
    if flags & FLAG_MULTIPART and flags & FLAG_TILED:
        raise ExrFormatError("bad_header", "version flags claim both single-part tiled and multipart")
    # Names are bounded at 255 bytes either way: old writers set the long-names flag loosely.
    name_limit = MAX_NAME_BYTES

    parts: list[Part] = []
    while True:
        attributes = _read_attributes(cur, name_limit)
        if attributes is None:
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
    return Header(version=version, flags=flags, parts=tuple(parts), header_end=cur.pos,
                  header_hash=digest)  # fmt: skip
