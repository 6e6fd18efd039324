"""What an inspection knows about one EXR file: frozen values, no behaviour beyond derivation.

These immutable values are the seam between the header reader and everything downstream
(embeddings, journal, catalog rows, CLI output). Collections are tuples so a value can be
shared between threads without copying. The ones built per file or per attribute are
NamedTuples rather than frozen dataclasses: the reader's benchmark (docs/benchmarks.md)
runs against OpenImageIO, and a frozen dataclass pays a __setattr__ call per field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

from exrwatchd.exr.attributes import JSONValue, decode_value
from exrwatchd.filesig import FileSig

#: ``(xmin, ymin, xmax, ymax)``, inclusive, as EXR stores a box2i.
Box: TypeAlias = tuple[int, int, int, int]

PART_TYPES = ("scanlineimage", "tiledimage", "deepscanline", "deeptile")
DEEP_PART_TYPES = frozenset({"deepscanline", "deeptile"})


class Attribute(NamedTuple):
    """One header attribute: its value bytes exactly as stored, decoded on demand.

    A NamedTuple rather than a frozen dataclass, and `value` decoded lazily, because a header
    holds dozens of attributes and building them is the reader's hot path (construction is
    twice as cheap; most consumers never look at most values). It is just as immutable, and
    the reader has already checked that `raw` decodes, so `value` cannot raise.
    """

    name: str
    type: str
    raw: bytes

    @property
    def value(self) -> JSONValue:
        """The JSON form (see attributes.py); None for types this reader does not know."""
        return decode_value(self.name, self.type, self.raw)


class Channel(NamedTuple):
    """One channel. A NamedTuple for the same reason as Attribute: files have dozens."""

    name: str
    type: str  # "uint" | "half" | "float"
    x_sampling: int
    y_sampling: int
    p_linear: bool
    view: str | None


class ChannelList(tuple[Channel, ...]):
    """The channels of a part: a tuple that remembers its hash.

    The reader hands out one shared ChannelList per distinct channel list (every frame of a
    sequence has the same), and the embeddings key their caches on it: hashing dozens of
    channels again for every file would cost more than the cache lookup saves.
    """

    def __hash__(self) -> int:
        cached: int | None = self.__dict__.get("hash")
        if cached is None:
            cached = self.__dict__["hash"] = tuple.__hash__(self)
        return cached


@dataclass(frozen=True, slots=True)
class Tiles:
    x_size: int
    y_size: int
    level_mode: str  # "one_level" | "mipmap_levels" | "ripmap_levels"
    rounding_mode: str  # "round_down" | "round_up"


class Part(NamedTuple):
    """One part (subimage) of a file. Immutable; a NamedTuple rather than a frozen
    dataclass because it is built on the reader's hot path (docs/benchmarks.md)."""

    index: int
    name: str | None
    type: str  # one of PART_TYPES
    view: str | None
    compression: str
    data_window: Box
    display_window: Box
    pixel_aspect_ratio: float
    line_order: str  # "increasing_y" | "decreasing_y" | "random_y"
    tiles: Tiles | None
    chunk_count: int
    channels: tuple[Channel, ...]
    attributes: tuple[Attribute, ...]

    @property
    def is_deep(self) -> bool:
        return self.type in DEEP_PART_TYPES

    @property
    def width(self) -> int:
        return self.data_window[2] - self.data_window[0] + 1

    @property
    def height(self) -> int:
        return self.data_window[3] - self.data_window[1] + 1


class Header(NamedTuple):
    """Everything read from the header region: the parts and where the region ends.

    NamedTuples here and below: built once per file on the hot path, where a frozen
    dataclass's per-field __setattr__ costs measurably (docs/benchmarks.md).
    """

    version: int
    flags: int
    parts: tuple[Part, ...]
    header_end: int  # offset of the first offset table
    header_hash: str  # sha256 hex of bytes [0, header_end)

    @property
    def is_multipart(self) -> bool:
        return bool(self.flags & 0x1000)


class Completeness(NamedTuple):
    complete: bool
    reason: str | None


@dataclass(frozen=True, slots=True)
class InspectError:
    """Why a file could not be read. `kind` is stable; `message` is for people."""

    kind: str
    message: str


class Inspection(NamedTuple):
    """The result of inspecting one path: a record, an incomplete verdict, or an error.

    Immutable; a NamedTuple for the same hot-path reason as Part.
    """

    path: str
    stat: FileSig | None
    header_hash: str | None
    complete: bool
    incomplete_reason: str | None
    frame_number: int | None
    error: InspectError | None
    parts: tuple[Part, ...]

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def is_deep(self) -> bool:
        return any(part.is_deep for part in self.parts)
