"""Decode EXR attribute values into JSON-ready Python values, by the spec's type names.

Every decoder checks the stored size exactly: a size that does not match the type is a
`bad_attribute` error, never a guess. Values that JSON cannot hold as they are (NaN, invalid
UTF-8, opaque types) get a stable textual form here and the raw bytes stay on the Attribute.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeAlias

from exrwatchd.errors import ExrFormatError

#: A JSON-compatible value: what an attribute decodes to.
JSONValue: TypeAlias = Any

COMPRESSIONS = (
    "none", "rle", "zips", "zip", "piz", "pxr24", "b44", "b44a",
    "dwaa", "dwab", "htj2k256", "htj2k32", "lj2k", "zstd",
)  # fmt: skip
LINE_ORDERS = ("increasing_y", "decreasing_y", "random_y")
LEVEL_MODES = ("one_level", "mipmap_levels", "ripmap_levels")
ROUNDING_MODES = ("round_down", "round_up")
PIXEL_TYPES = ("uint", "half", "float")
ENVMAPS = ("latlong", "cube")
DEEP_IMAGE_STATES = ("messy", "sorted", "non_overlapping", "tidy")

_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _finite_or_text(x: float) -> float | str:
    # JSON has no NaN/Infinity literals; a string keeps the value honest and the output valid.
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else _NON_FINITE[x]


@lru_cache(maxsize=65536)
def float32_value(bits: int) -> float | str:
    """The shortest decimal that round-trips the float32 (0.1, not 0.10000000149011612):
    lossless for the stored bits and what a user expects to read, as numpy's str() of a
    float32 gives it. Written out rather than taken from numpy so that reading headers does
    not import numpy (~60 ms at the start of every `exrwatchd inspect`); a test compares the
    two. Cached by bit pattern: headers repeat a handful of values (0, 1, chromaticities)."""
    packed = struct.pack("<I", bits)
    (exact,) = struct.unpack("<f", packed)
    if not math.isfinite(exact):
        return _finite_or_text(exact)
    for digits in range(1, 9):  # 9 significant digits round-trip every float32
        text = f"{exact:.{digits}g}"
        try:
            if struct.pack("<f", float(text)) == packed:
                return float(text)
        except OverflowError:  # rounded past the largest float32 (3e+38 for 3.4028235e+38)
            continue
    return float(f"{exact:.9g}")


def _floats(raw: bytes, count: int) -> list[float | str]:
    return [float32_value(b) for b in struct.unpack(f"<{count}I", raw)]


def _doubles(raw: bytes, count: int) -> list[float | str]:
    return [_finite_or_text(d) for d in struct.unpack(f"<{count}d", raw)]


def _ints(raw: bytes, count: int) -> list[int]:
    return list(struct.unpack(f"<{count}i", raw))


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


def _enum(names: tuple[str, ...], code: int) -> str:
    return names[code] if code < len(names) else f"unknown({code})"


def _fixed(size: int, decode: Callable[[bytes], JSONValue]) -> tuple[int | None, Callable]:
    return size, decode


def _matrix(raw: bytes, n: int, double: bool) -> list[list[float | str]]:
    flat = _doubles(raw, n * n) if double else _floats(raw, n * n)
    return [flat[i * n : (i + 1) * n] for i in range(n)]


def _box(values: list) -> dict[str, list]:
    return {"min": values[0:2], "max": values[2:4]}


def _chromaticities(raw: bytes) -> dict[str, list]:
    v = _floats(raw, 8)
    return {"red": v[0:2], "green": v[2:4], "blue": v[4:6], "white": v[6:8]}


def _keycode(raw: bytes) -> dict[str, int]:
    names = ("film_mfc_code", "film_type", "prefix", "count", "perf_offset",
             "perfs_per_frame", "perfs_per_count")  # fmt: skip
    return dict(zip(names, _ints(raw, 7), strict=True))


def _bcd(value: int) -> int:
    return (value >> 4) * 10 + (value & 0x0F)


def _timecode(raw: bytes) -> dict[str, int | bool]:
    # SMPTE 12M packing as OpenEXR stores it (ImfTimeCode.h, TV60 packing).
    packed, user_data = struct.unpack("<II", raw)
    return {
        "hours": _bcd((packed >> 24) & 0x3F),
        "minutes": _bcd((packed >> 16) & 0x7F),
        "seconds": _bcd((packed >> 8) & 0x7F),
        "frame": _bcd(packed & 0x3F),
        "drop_frame": bool(packed & (1 << 6)),
        "color_frame": bool(packed & (1 << 7)),
        "field_phase": bool(packed & (1 << 15)),
        "bgf0": bool(packed & (1 << 23)),
        "bgf1": bool(packed & (1 << 30)),
        "bgf2": bool(packed & (1 << 31)),
        "time_and_flags": packed,
        "user_data": user_data,
    }


def _rational(raw: bytes) -> dict[str, int]:
    numerator, denominator = struct.unpack("<iI", raw)
    return {"numerator": numerator, "denominator": denominator}


def _tiledesc(raw: bytes) -> dict[str, int | str]:
    x_size, y_size, mode = struct.unpack("<IIB", raw)
    return {
        "x_size": x_size,
        "y_size": y_size,
        "level_mode": _enum(LEVEL_MODES, mode & 0x0F),
        "rounding_mode": _enum(ROUNDING_MODES, mode >> 4),
    }


def _preview(raw: bytes) -> dict[str, int]:
    if len(raw) < 8:
        raise ValueError("preview shorter than its 8-byte size fields")
    width, height = struct.unpack_from("<II", raw)
    if len(raw) != 8 + 4 * width * height:
        raise ValueError(f"preview of {width}x{height} needs {8 + 4 * width * height} bytes")
    return {"width": width, "height": height}


def _bytes(raw: bytes) -> dict[str, JSONValue]:
    # OpenEXR 3.3's `bytes`: int32 hint length, the hint (a MIME-like type), then the data.
    # The data itself travels as the record's `base64` (needs_raw), not in the value.
    if len(raw) < 4:
        raise ValueError("shorter than its 4-byte hint length")
    (hint_length,) = struct.unpack_from("<i", raw)
    if hint_length < 0 or 4 + hint_length > len(raw):
        raise ValueError(f"type hint of {hint_length} bytes overruns the attribute")
    return {"type_hint": _text(raw[4 : 4 + hint_length]), "size": len(raw) - 4 - hint_length}


def _stringvector(raw: bytes) -> list[str]:
    items, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise ValueError("string vector entry cut inside its length")
        (length,) = struct.unpack_from("<i", raw, pos)
        pos += 4
        if length < 0 or pos + length > len(raw):
            raise ValueError(f"string vector entry of {length} bytes overruns the attribute")
        items.append(_text(raw[pos : pos + length]))
        pos += length
    return items


_CHANNEL_FIELDS = struct.Struct("<iB3xii")


@lru_cache(maxsize=4096)
def channel_entries(raw: bytes) -> tuple[tuple[str, str, bool, int, int], ...]:
    """The channel list as stored, in file order: (name, pixel type, pLinear, xs, ys).

    Cached by the raw bytes: every frame of a sequence carries the same channel list.
    """
    channels: list[tuple[str, str, bool, int, int]] = []
    pos, unpack = 0, _CHANNEL_FIELDS.unpack_from
    while True:
        end = raw.find(b"\0", pos)
        if end < 0:
            raise ValueError("channel list is not terminated")
        if end == pos:
            if end != len(raw) - 1:
                raise ValueError("bytes after the channel list terminator")
            return tuple(channels)
        name = _text(raw[pos:end])
        if end + 17 > len(raw):
            raise ValueError(f"channel {name!r} cut short")
        pixel_type, p_linear, x_sampling, y_sampling = unpack(raw, end + 1)
        if not 0 <= pixel_type < 3:
            raise ValueError(f"channel {name!r} has unknown pixel type {pixel_type}")
        channels.append((name, PIXEL_TYPES[pixel_type], bool(p_linear), x_sampling, y_sampling))
        pos = end + 17


def _chlist(raw: bytes) -> list[dict[str, JSONValue]]:
    return [
        {"name": n, "type": t, "x_sampling": xs, "y_sampling": ys, "p_linear": p}
        for n, t, p, xs, ys in channel_entries(raw)
    ]


_DECODERS: dict[str, tuple[int | None, Callable[[bytes], JSONValue]]] = {
    "bytes": (None, _bytes),
    "box2i": _fixed(16, lambda r: _box(_ints(r, 4))),
    "box2f": _fixed(16, lambda r: _box(_floats(r, 4))),
    "chlist": (None, _chlist),
    "chromaticities": _fixed(32, _chromaticities),
    "compression": _fixed(1, lambda r: _enum(COMPRESSIONS, r[0])),
    "deepImageState": _fixed(1, lambda r: _enum(DEEP_IMAGE_STATES, r[0])),
    "double": _fixed(8, lambda r: _doubles(r, 1)[0]),
    "envmap": _fixed(1, lambda r: _enum(ENVMAPS, r[0])),
    "float": _fixed(4, lambda r: _floats(r, 1)[0]),
    "floatvector": (None, lambda r: _floats(r, len(r) // 4) if len(r) % 4 == 0 else _bad()),
    "int": _fixed(4, lambda r: _ints(r, 1)[0]),
    "keycode": _fixed(28, _keycode),
    "lineOrder": _fixed(1, lambda r: _enum(LINE_ORDERS, r[0])),
    "m33f": _fixed(36, lambda r: _matrix(r, 3, False)),
    "m33d": _fixed(72, lambda r: _matrix(r, 3, True)),
    "m44f": _fixed(64, lambda r: _matrix(r, 4, False)),
    "m44d": _fixed(128, lambda r: _matrix(r, 4, True)),
    "preview": (None, _preview),
    "rational": _fixed(8, _rational),
    "string": (None, _text),
    "stringvector": (None, _stringvector),
    "tiledesc": _fixed(9, _tiledesc),
    "timecode": _fixed(8, _timecode),
    "v2i": _fixed(8, lambda r: _ints(r, 2)),
    "v2f": _fixed(8, lambda r: _floats(r, 2)),
    "v2d": _fixed(16, lambda r: _doubles(r, 2)),
    "v3i": _fixed(12, lambda r: _ints(r, 3)),
    "v3f": _fixed(12, lambda r: _floats(r, 3)),
    "v3d": _fixed(24, lambda r: _doubles(r, 3)),
}

#: Types whose JSON value is a complete decoding; anything else is opaque (value null + base64).
DECODED_TYPES = frozenset(_DECODERS)


def _bad() -> JSONValue:
    raise ValueError("size is not a multiple of 4")


def decode_value(name: str, type_name: str, raw: bytes) -> JSONValue:
    """The JSON value of one attribute; None for a type this reader does not know."""
    spec = _DECODERS.get(type_name)
    if spec is None:
        return None
    size, decode = spec
    if size is not None and len(raw) != size:
        raise ExrFormatError(
            "bad_attribute",
            f"attribute {name!r} of type {type_name} has size {len(raw)}, expected {size}",
        )
    try:
        return decode(raw)
    except (ValueError, struct.error) as exc:
        raise ExrFormatError(
            "bad_attribute", f"attribute {name!r} of type {type_name}: {exc}"
        ) from None


# Types whose size alone does not prove the value decodes; checked in full while reading.
VARIABLE_CHECKED = frozenset({"bytes", "chlist", "floatvector", "preview", "stringvector"})


#: Stored size of every fixed-size type, for the reader's one-lookup size check.
FIXED_SIZES = {name: spec[0] for name, spec in _DECODERS.items() if spec[0] is not None}


def check_value(name: str, type_name: str, raw: bytes) -> None:
    """Raise `bad_attribute` unless `raw` is a valid value of `type_name`.

    Fixed-size types are checked by size alone (cheap); the few variable ones are decoded.
    """
    size = FIXED_SIZES.get(type_name)
    if size is not None:
        if len(raw) != size:
            raise ExrFormatError(
                "bad_attribute",
                f"attribute {name!r} of type {type_name} has size {len(raw)}, expected {size}",
            )
    elif type_name == "chlist":
        try:
            channel_entries(raw)  # cached: the reader needs it again for the part
        except ValueError as exc:
            message = f"attribute {name!r} of type chlist: {exc}"
            raise ExrFormatError("bad_attribute", message) from None
    elif type_name in VARIABLE_CHECKED:
        decode_value(name, type_name, raw)


def needs_raw(type_name: str, raw: bytes) -> bool:
    """Whether the JSON form alone would lose bytes: opaque types, previews, bad UTF-8."""
    if type_name not in DECODED_TYPES or type_name in ("preview", "bytes"):
        return True
    if type_name in ("string", "stringvector"):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return True
    return False
