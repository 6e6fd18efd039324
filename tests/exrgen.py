"""Writers of small, real OpenEXR files for the test suite.

Every ``write_*`` function writes ONE file (16x8 to 64x32 pixels, so the suite stays fast) with
the ``openexr`` binding, or with OpenImageIO where the binding cannot, and returns its path.
``write_all_kinds`` writes one file of every kind for parametrised tests.

What the tools could not do, measured with openexr 3.5.3 and OpenImageIO 3.2.2:

* Mip/ripmaps: the binding writes level 0 only (the offset table keeps zeros for the other
  levels). ``write_mipmap`` therefore uses ``oiio.ImageBufAlgo.make_texture``. Neither
  make_texture (it erases ``openexr:levelmode``) nor ``ImageOutput`` (it writes level 0 only)
  produces a complete ripmap, so ``write_ripmap`` lets the binding write the header and level 0
  uncompressed, then appends the tiles of every other level itself and fills the offset table.
* Attribute types: ``deepImageState`` and ``idmanifest`` can only be written as raw bytes
  (``OpenEXR.OpaqueAttribute``) and then the binding refuses to read the header back
  ("unsupported attribute type"): see ``write_binding_unreadable``. Every other type of the
  OpenEXR 3.5 library is in ``write_every_attribute_type``.
* Compressions: all 14 write (none rle zips zip piz pxr24 b44 b44a dwaa dwab htj2k256 htj2k32
  lj2k zstd); b44/b44a/dwaa/dwab/lj2k are lossy on half data.

Binding quirks that matter here: ``OpenEXR.File(header, channels)`` REPLACES the numpy arrays
in the ``channels`` dict you pass with ``OpenEXR.Channel`` objects (pass a fresh dict); a python
``float`` becomes a ``float`` attribute (a ``double`` needs a one-element float64 array); a
box needs a tuple of two 2-element arrays (a 2x2 array is rejected); sub-sampled channels are
written from full-resolution arrays but read back at the sub-sampled size.
"""

from __future__ import annotations

import fractions
import os
import shutil
import struct
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt
import OpenEXR
import OpenImageIO as oiio

PathLike: TypeAlias = str | os.PathLike[str]
PixelType: TypeAlias = Literal["half", "float", "uint"]
PartKind: TypeAlias = Literal["scanline", "tiled", "deepscanline", "deeptile"]
LevelMode: TypeAlias = Literal["one_level", "mipmap", "ripmap"]
LineOrderName: TypeAlias = Literal["increasing", "decreasing", "random"]
Size: TypeAlias = tuple[int, int]  # (width, height)

#: Compression names in the order of their codes 0..13 in the file.
COMPRESSIONS: tuple[str, ...] = (
    "none", "rle", "zips", "zip", "piz", "pxr24", "b44", "b44a",
    "dwaa", "dwab", "htj2k256", "htj2k32", "lj2k", "zstd",
)  # fmt: skip

#: Scan lines per chunk as the openexr 3.5 binding writes them (measured with
#: ``offset_table_span`` on height-64 and height-600 files, see test_exrgen.py).
LINES_PER_CHUNK: dict[str, int] = {
    "none": 1, "rle": 1, "zips": 1, "zip": 16, "piz": 32, "pxr24": 16, "b44": 32, "b44a": 32,
    "dwaa": 32, "dwab": 256, "htj2k256": 256, "htj2k32": 32, "lj2k": 256, "zstd": 1,
}  # fmt: skip

#: Compressions that lose information on half data (the others round-trip exactly).
LOSSY_ON_HALF = frozenset({"b44", "b44a", "dwaa", "dwab", "lj2k"})

#: Compressions OpenEXR allows for deep parts.
DEEP_COMPRESSIONS = ("none", "rle", "zips", "zip")

_DTYPES: dict[str, type[np.generic]] = {
    "half": np.float16,
    "float": np.float32,
    "uint": np.uint32,
}
_OIIO_TYPES = {"half": oiio.HALF, "float": oiio.FLOAT, "uint": oiio.UINT32}
_LINE_ORDERS = {
    "increasing": OpenEXR.INCREASING_Y,
    "decreasing": OpenEXR.DECREASING_Y,
    "random": OpenEXR.RANDOM_Y,
}
_LEVEL_MODES = {
    "one_level": OpenEXR.ONE_LEVEL,
    "mipmap": OpenEXR.MIPMAP_LEVELS,
    "ripmap": OpenEXR.RIPMAP_LEVELS,
}
_STORAGE = {
    "scanline": OpenEXR.scanlineimage,
    "tiled": OpenEXR.tiledimage,
    "deepscanline": OpenEXR.deepscanline,
    "deeptile": OpenEXR.deeptile,
}


# --------------------------------------------------------------------------- helpers


def _compression(value: str | int | OpenEXR.Compression) -> OpenEXR.Compression:
    if isinstance(value, OpenEXR.Compression):
        return value
    if isinstance(value, str):
        return OpenEXR.Compression(COMPRESSIONS.index(value.lower()))
    return OpenEXR.Compression(int(value))


def _line_order(value: LineOrderName | OpenEXR.LineOrder) -> OpenEXR.LineOrder:
    if isinstance(value, OpenEXR.LineOrder):
        return value
    return _LINE_ORDERS[value]


def _box(x0: int, y0: int, x1: int, y1: int) -> tuple[npt.NDArray[np.int32], ...]:
    """A box2i value as the binding wants it: two int32 2-vectors, max inclusive."""
    return (np.array([x0, y0], dtype=np.int32), np.array([x1, y1], dtype=np.int32))


def _windows(size: Size, origin: tuple[int, int]) -> tuple[Any, Any]:
    (w, h), (x0, y0) = size, origin
    return _box(x0, y0, x0 + w - 1, y0 + h - 1), _box(0, 0, w - 1, h - 1)


def _tiledesc(tile: Size, mode: LevelMode = "one_level", round_up: bool = False) -> Any:
    td = OpenEXR.TileDescription()
    td.xSize, td.ySize = tile
    td.mode = _LEVEL_MODES[mode]
    td.roundingMode = OpenEXR.ROUND_UP if round_up else OpenEXR.ROUND_DOWN
    return td


def ramp(size: Size, pixel_type: PixelType = "half", k: int = 0) -> npt.NDArray[Any]:
    """A deterministic, non-constant (height, width) array; ``k`` varies it per channel."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    if pixel_type == "uint":
        return (xx + w * yy + 1000 * k).astype(np.uint32)
    return (((xx + 2 * yy + 7 * k) % 64) / 64.0).astype(_DTYPES[pixel_type])


def _channel_arrays(
    channels: Sequence[str], size: Size, pixel_type: PixelType
) -> dict[str, npt.NDArray[Any]]:
    return {name: ramp(size, pixel_type, k) for k, name in enumerate(channels)}


def deep_counts(size: Size) -> npt.NDArray[np.uint32]:
    """Per-pixel sample counts used by the deep writers: 0..3, zero included."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx + yy) % 4).astype(np.uint32)


def _deep_arrays(
    channels: Sequence[str], size: Size, pixel_type: PixelType
) -> dict[str, npt.NDArray[np.object_]]:
    counts = deep_counts(size)
    dtype = _DTYPES[pixel_type]
    out: dict[str, npt.NDArray[np.object_]] = {}
    for k, name in enumerate(channels):
        arr = np.empty(counts.shape, dtype=object)
        for (y, x), n in np.ndenumerate(counts):
            # None is a pixel without samples; an empty array would do as well.
            arr[y, x] = np.arange(n, dtype=dtype) + dtype(k + 1) if n else None
        out[name] = arr
    return out


def _write(path: PathLike, header: dict[str, Any], channels: dict[str, Any]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    OpenEXR.File(header, channels).write(str(p))
    return p


# --------------------------------------------------------------------------- flat images


def write_scanline(
    path: PathLike,
    *,
    channels: Sequence[str] = ("R", "G", "B", "A"),
    pixel_type: PixelType = "half",
    compression: str | int | OpenEXR.Compression = "zip",
    size: Size = (32, 16),
    data_window_origin: tuple[int, int] = (0, 0),
    display_window: tuple[int, int, int, int] | None = None,
    extra_attrs: Mapping[str, Any] | None = None,
    line_order: LineOrderName | OpenEXR.LineOrder = "increasing",
) -> Path:
    """A single-part scan-line file. ``display_window`` is (xmin, ymin, xmax, ymax)."""
    data_window, display = _windows(size, data_window_origin)
    header: dict[str, Any] = {
        "type": OpenEXR.scanlineimage,
        "compression": _compression(compression),
        "lineOrder": _line_order(line_order),
        "dataWindow": data_window,
        "displayWindow": _box(*display_window) if display_window else display,
    }
    header.update(extra_attrs or {})
    return _write(path, header, _channel_arrays(channels, size, pixel_type))


def write_tiled(
    path: PathLike,
    *,
    channels: Sequence[str] = ("R", "G", "B", "A"),
    pixel_type: PixelType = "half",
    compression: str | int | OpenEXR.Compression = "zip",
    size: Size = (64, 32),
    tile: Size = (16, 16),
    level_mode: LevelMode = "one_level",
    round_up: bool = False,
    data_window_origin: tuple[int, int] = (0, 0),
    extra_attrs: Mapping[str, Any] | None = None,
    line_order: LineOrderName | OpenEXR.LineOrder = "increasing",
) -> Path:
    """A single-part tiled file.

    With ``level_mode`` "mipmap" or "ripmap" the binding writes level 0 only and leaves zeros
    in the offset table for the other levels: an INCOMPLETE file (useful as such). Use
    ``write_mipmap``/``write_ripmap`` for complete multi-resolution files.
    """
    data_window, display = _windows(size, data_window_origin)
    header: dict[str, Any] = {
        "type": OpenEXR.tiledimage,
        "compression": _compression(compression),
        "lineOrder": _line_order(line_order),
        "tiles": _tiledesc(tile, level_mode, round_up),
        "dataWindow": data_window,
        "displayWindow": display,
    }
    header.update(extra_attrs or {})
    return _write(path, header, _channel_arrays(channels, size, pixel_type))


def write_mipmap(
    path: PathLike,
    *,
    channels: Sequence[str] = ("R", "G", "B", "A"),
    pixel_type: Literal["half", "float"] = "half",
    compression: str = "zip",
    size: Size = (64, 32),
    tile: Size = (16, 16),
) -> Path:
    """A complete mipmapped tiled file (round-down levels) via OpenImageIO's make_texture.

    make_texture adds its own attributes (``textureformat``, ``wrapmodes``, ``oiio:SHA-1``...).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    spec = oiio.ImageSpec(w, h, len(channels), _OIIO_TYPES[pixel_type])
    spec.channelnames = tuple(channels)
    src = oiio.ImageBuf(spec)
    pixels = np.stack([ramp(size, "float", k) for k in range(len(channels))], axis=-1)
    if not src.set_pixels(oiio.ROI(), pixels):
        raise RuntimeError(f"set_pixels: {src.geterror()}")
    config = oiio.ImageSpec()
    config.tile_width, config.tile_height = tile
    config.attribute("compression", compression)
    config.attribute("maketx:constant_color_detect", 0)
    if not oiio.ImageBufAlgo.make_texture(oiio.MakeTxTexture, src, str(p), config):
        raise RuntimeError(f"make_texture({p}): {oiio.geterror()}")
    return p


def level_sizes(n: int, round_up: bool = False) -> list[int]:
    """Sizes of the levels of one axis of length ``n`` (OpenEXR level rounding)."""
    sizes = [n]
    while sizes[-1] > 1:
        sizes.append((sizes[-1] + 1) // 2 if round_up else sizes[-1] // 2)
    return sizes


def _uncompressed_tile(
    level: Mapping[str, npt.NDArray[Any]], tx: int, ty: int, tile: Size
) -> bytes:
    """Pixel bytes of tile (tx, ty) of a level, compression "none": per line of the tile,
    each channel's samples, channels in name order, little-endian."""
    (tw, th), names = tile, sorted(level)
    lh, lw = level[names[0]].shape
    rows = []
    for y in range(ty * th, min((ty + 1) * th, lh)):
        for c in names:
            row = level[c][y, tx * tw : min((tx + 1) * tw, lw)]
            rows.append(row.astype(row.dtype.newbyteorder("<")).tobytes())
    return b"".join(rows)


def write_ripmap(
    path: PathLike,
    *,
    channels: Sequence[str] = ("R", "G", "B"),
    pixel_type: PixelType = "half",
    size: Size = (32, 16),
    tile: Size = (8, 8),
) -> Path:
    """A complete ripmapped tiled file (round-down levels), uncompressed.

    The binding writes the header and the tiles of level (0, 0); this function appends the
    tiles of every other level (x/y-decimated copies of level 0) and fills the offset table.
    Compression is "none" because the extra tiles are encoded here. Level order in the offset
    table and chunk layout follow the OpenEXR spec: levels ly-major, tiles ty-major, each chunk
    ``int32 tx, ty, lx, ly, int32 size`` then, per line, each channel's samples (channels in
    name order).
    """
    p = write_tiled(
        path, channels=channels, pixel_type=pixel_type, compression="none", size=size,
        tile=tile, level_mode="ripmap",
    )  # fmt: skip
    data = bytearray(p.read_bytes())
    table_start, count = _offset_table_span(bytes(data))
    offsets = list(struct.unpack_from(f"<{count}Q", data, table_start))
    level0 = _channel_arrays(channels, size, pixel_type)
    names = sorted(channels)
    (w, h), (tw, th) = size, tile
    xs, ys = level_sizes(w), level_sizes(h)
    index = 0
    for ly, lh in enumerate(ys):
        for lx, lw in enumerate(xs):
            level = {c: level0[c][:: 1 << ly, :: 1 << lx][:lh, :lw] for c in names}
            for ty in range(-(-lh // th)):
                for tx in range(-(-lw // tw)):
                    if offsets[index] == 0:
                        payload = _uncompressed_tile(level, tx, ty, tile)
                        offsets[index] = len(data)
                        data += struct.pack("<5i", tx, ty, lx, ly, len(payload)) + payload
                    index += 1
    if index != count:
        raise RuntimeError(f"ripmap: {index} chunks computed, offset table has {count}")
    struct.pack_into(f"<{count}Q", data, table_start, *offsets)
    p.write_bytes(bytes(data))
    return p


# --------------------------------------------------------------------------- multi-part


@dataclass(frozen=True)
class PartSpec:
    """One part of ``write_multipart``."""

    name: str
    kind: PartKind = "scanline"
    channels: tuple[str, ...] = ("R", "G", "B", "A")
    pixel_type: PixelType = "half"
    compression: str = "zip"
    size: Size = (32, 16)
    data_window_origin: tuple[int, int] = (0, 0)
    tile: Size = (16, 16)
    view: str | None = None
    extra_attrs: Mapping[str, Any] = field(default_factory=dict)


DEFAULT_PARTS: tuple[PartSpec, ...] = (
    PartSpec("beauty"),
    PartSpec("depth", kind="tiled", channels=("Z",), pixel_type="float", size=(32, 16)),
    PartSpec("ids", channels=("id",), pixel_type="uint", compression="zips", size=(16, 8),
             data_window_origin=(8, 4)),
)  # fmt: skip


def write_multipart(
    path: PathLike,
    parts: Sequence[PartSpec] = DEFAULT_PARTS,
    *,
    display_window: tuple[int, int, int, int] | None = None,
) -> Path:
    """A multi-part file; all parts share one displayWindow (default: the largest part)."""
    if display_window is None:
        display_window = (
            0,
            0,
            max(s.size[0] for s in parts) - 1,
            max(s.size[1] for s in parts) - 1,
        )
    out = []
    for spec in parts:
        data_window, _ = _windows(spec.size, spec.data_window_origin)
        header: dict[str, Any] = {
            "type": _STORAGE[spec.kind],
            "compression": _compression(spec.compression),
            "dataWindow": data_window,
            "displayWindow": _box(*display_window),
        }
        if spec.kind in ("tiled", "deeptile"):
            header["tiles"] = _tiledesc(spec.tile)
        if spec.view is not None:
            header["view"] = spec.view
        header.update(spec.extra_attrs)
        if spec.kind.startswith("deep"):
            chans: dict[str, Any] = dict(_deep_arrays(spec.channels, spec.size, spec.pixel_type))
        else:
            chans = dict(_channel_arrays(spec.channels, spec.size, spec.pixel_type))
        out.append(OpenEXR.Part(header, chans, spec.name))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    OpenEXR.File(out).write(str(p))
    return p


# --------------------------------------------------------------------------- deep


def write_deep_scanline(
    path: PathLike,
    *,
    channels: Sequence[str] = ("A", "Z"),
    pixel_type: PixelType = "float",
    compression: str = "zips",
    size: Size = (16, 8),
) -> Path:
    """A deep scan-line file; sample counts per pixel are ``deep_counts(size)`` (0..3)."""
    data_window, display = _windows(size, (0, 0))
    header = {
        "type": OpenEXR.deepscanline,
        "compression": _compression(compression),
        "dataWindow": data_window,
        "displayWindow": display,
    }
    return _write(path, header, dict(_deep_arrays(channels, size, pixel_type)))


def write_deep_tiled(
    path: PathLike,
    *,
    channels: Sequence[str] = ("A", "Z"),
    pixel_type: PixelType = "float",
    compression: str = "zips",
    size: Size = (16, 8),
    tile: Size = (8, 8),
) -> Path:
    """A deep tiled file; sample counts per pixel are ``deep_counts(size)`` (0..3)."""
    data_window, display = _windows(size, (0, 0))
    header = {
        "type": OpenEXR.deeptile,
        "compression": _compression(compression),
        "tiles": _tiledesc(tile),
        "dataWindow": data_window,
        "displayWindow": display,
    }
    return _write(path, header, dict(_deep_arrays(channels, size, pixel_type)))


# --------------------------------------------------------------------------- multi-view


def write_multiview_singlepart(
    path: PathLike,
    views: Sequence[str] = ("left", "right"),
    *,
    size: Size = (16, 8),
    compression: str = "zip",
) -> Path:
    """One part with ``multiView`` = views. The first (default) view's channels are plain
    R,G,B; the other views' are ``<view>.R`` etc., per the OpenEXR multi-view convention."""
    names = [c if i == 0 else f"{view}.{c}" for i, view in enumerate(views) for c in "RGB"]
    data_window, display = _windows(size, (0, 0))
    header = {
        "type": OpenEXR.scanlineimage,
        "compression": _compression(compression),
        "multiView": list(views),
        "dataWindow": data_window,
        "displayWindow": display,
    }
    return _write(path, header, _channel_arrays(names, size, "half"))


def write_multiview_multipart(
    path: PathLike,
    views: Sequence[str] = ("left", "right"),
    *,
    size: Size = (16, 8),
) -> Path:
    """One scan-line part per view, named after the view, with a ``view`` attribute."""
    parts = [PartSpec(v, channels=("R", "G", "B"), size=size, view=v) for v in views]
    return write_multipart(path, parts)


# --------------------------------------------------------------------------- compressions


def write_every_compression(
    directory: PathLike,
    *,
    size: Size = (32, 64),
    failures: dict[str, str] | None = None,
) -> dict[str, Path]:
    """One half RGBA scan-line file per compression, named ``compression_<name>.exr``.

    A compression that fails to write is skipped with a warning and recorded in ``failures``
    (name -> error) when given. With openexr 3.5.3 all 14 write.
    """
    out: dict[str, Path] = {}
    for name in COMPRESSIONS:
        target = Path(directory) / f"compression_{name}.exr"
        try:
            out[name] = write_scanline(target, compression=name, size=size)
        except Exception as exc:
            warnings.warn(f"compression {name} did not write: {exc}", stacklevel=2)
            if failures is not None:
                failures[name] = str(exc)
            target.unlink(missing_ok=True)
    return out


# --------------------------------------------------------------------------- sampling


def write_subsampled(
    path: PathLike,
    *,
    size: Size = (32, 16),
    compression: str = "zip",
) -> Path:
    """A luminance/chroma file: Y at full resolution, RY and BY with x/y sampling 2.

    The binding takes full-resolution arrays for sub-sampled channels and reads them back at
    (h/2, w/2). OpenImageIO refuses to open this file.
    """
    w, h = size
    if w % 2 or h % 2:
        raise ValueError("sub-sampled channels need an even width and height")
    data_window, display = _windows(size, (0, 0))
    header = {
        "type": OpenEXR.scanlineimage,
        "compression": _compression(compression),
        "dataWindow": data_window,
        "displayWindow": display,
    }
    chans = {
        "Y": ramp(size, "half", 0),
        "RY": OpenEXR.Channel(ramp(size, "half", 1), 2, 2),
        "BY": OpenEXR.Channel(ramp(size, "half", 2), 2, 2),
    }
    return _write(path, header, chans)


# --------------------------------------------------------------------------- attributes


class AttributeFile(NamedTuple):
    """What ``write_every_attribute_type`` wrote."""

    path: Path
    #: attribute name -> EXR type name, as stored in the file (read with the header walker).
    types: dict[str, str]

    @property
    def type_names(self) -> frozenset[str]:
        return frozenset(self.types.values())


#: EXR attribute types of the OpenEXR 3.5 library that the binding cannot write as such.
UNWRITABLE_ATTRIBUTE_TYPES = frozenset({"deepImageState", "idmanifest"})


def _every_attribute() -> dict[str, Any]:
    f32, f64, i32 = np.float32, np.float64, np.int32
    preview = np.zeros((4, 8), dtype=OpenEXR.PreviewImage(1, 1).pixels.dtype)
    preview["r"], preview["a"] = 200, 255
    return {
        "aBox2i": _box(-1, -2, 3, 4),
        "aBox2f": (np.array([0.5, 1.5], f32), np.array([2.5, 3.5], f32)),
        "aBytes": OpenEXR.Bytes(b"\x00\x01binary\xff", "application/octet-stream"),
        "chromaticities": (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290),
        "aCompression": OpenEXR.PIZ_COMPRESSION,
        "aDouble": np.array([2.718281828459045], f64),
        "envmap": OpenEXR.Envmap(OpenEXR.ENVMAP_LATLONG),
        "aFloat": 1.5,
        "aFloatVector": np.array([0.25, 0.5, 0.75, 1.0], f32),
        "aInt": -42,
        # filmMfcCode, filmType, prefix, count, perfOffset, perfsPerFrame, perfsPerCount
        "keyCode": OpenEXR.KeyCode(1, 2, 3, 4, 5, 4, 64),
        "aLineOrder": OpenEXR.DECREASING_Y,
        "aM33f": np.arange(9, dtype=f32).reshape(3, 3),
        "aM33d": np.arange(9, dtype=f64).reshape(3, 3),
        "worldToCamera": np.eye(4, dtype=f32),
        "aM44d": np.arange(16, dtype=f64).reshape(4, 4),
        "preview": OpenEXR.PreviewImage(preview),
        "framesPerSecond": fractions.Fraction(24000, 1001),
        "owner": "exrgen",
        "aStringVector": ["alpha", "beta", "gamma"],
        "aTiledesc": _tiledesc((4, 4), "mipmap", round_up=True),
        # hours, minutes, seconds, frame, dropFrame, colorFrame, fieldPhase, bgf0, bgf1,
        # bgf2, binaryGroup1..8
        "timeCode": OpenEXR.TimeCode(1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8),
        "aV2i": np.array([1, -2], i32),
        "aV2f": np.array([1.5, -2.5], f32),
        "aV2d": np.array([1.25, -2.25], f64),
        "aV3i": np.array([1, 2, 3], i32),
        "aV3f": np.array([1.5, 2.5, 3.5], f32),
        "aV3d": np.array([1.25, 2.25, 3.25], f64),
        "aOpaque": OpenEXR.OpaqueAttribute(b"\x01\x02\x03\x04", "exrgenCustomType"),
    }


def write_every_attribute_type(path: PathLike) -> AttributeFile:
    """A tiled file (so ``tiles`` is a tiledesc) with one attribute of every type the binding
    can write, including an unknown (opaque) type ``exrgenCustomType``; the binding reads it
    all back. Types it cannot write are in ``UNWRITABLE_ATTRIBUTE_TYPES``."""
    p = write_tiled(path, channels=("R", "G", "B"), size=(16, 8), tile=(8, 8),
                    extra_attrs=_every_attribute())  # fmt: skip
    OpenEXR.File(str(p), header_only=True)  # must read back
    headers, _ = _walk_headers(p.read_bytes())
    return AttributeFile(p, {name: typ for name, typ, _ in headers[0]})


def write_binding_unreadable(path: PathLike) -> Path:
    """A valid scan-line file with a ``deepImageState`` attribute (written as raw bytes).

    The binding raises RuntimeError("unsupported attribute type: deepImageState") even with
    ``header_only=True``; OpenImageIO reads it as ``openexr:deepImageState``.
    """
    return write_scanline(
        path, size=(16, 8),
        extra_attrs={"deepImageState": OpenEXR.OpaqueAttribute(b"\x01", "deepImageState")},
    )  # fmt: skip


def write_long_names(path: PathLike, *, length: int = 200) -> Path:
    """Two parts whose part names, one attribute name and channel names are ``length`` chars
    long (> 31, so the long-names flag 0x400 is set; the format allows up to 255)."""
    if not 31 < length <= 255:
        raise ValueError("length must be in 32..255")

    def long(prefix: str) -> str:
        return (prefix + "_" * length)[: length - 1] + "X"

    parts = [
        PartSpec(long("part_one"), channels=(long("layer") + ".R", long("layer") + ".G", "B"),
                 size=(16, 8), extra_attrs={long("attribute"): "long attribute name"}),
        PartSpec(long("part_two"), channels=(long("Z"),), pixel_type="float", size=(16, 8)),
    ]  # fmt: skip
    return write_multipart(path, parts)


# --------------------------------------------------------------------------- damaged copies


def _walk_headers(data: bytes) -> tuple[list[list[tuple[str, str, int]]], int]:
    """Headers as lists of (name, type, value offset), and the offset just past them.

    Only for fixture building: trusts the file (no bounds checks beyond Python's own).
    """
    if data[:4] != b"\x76\x2f\x31\x01":
        raise ValueError("not an OpenEXR file")
    multipart = bool(struct.unpack_from("<I", data, 4)[0] & 0x1000)
    pos = 8
    headers: list[list[tuple[str, str, int]]] = []
    while True:
        attrs: list[tuple[str, str, int]] = []
        while data[pos] != 0:
            name_end = data.index(b"\0", pos)
            type_end = data.index(b"\0", name_end + 1)
            (size,) = struct.unpack_from("<i", data, type_end + 1)
            attrs.append((data[pos:name_end].decode(), data[name_end + 1 : type_end].decode(),
                          type_end + 5))  # fmt: skip
            pos = type_end + 5 + size
        pos += 1  # the null byte closing this header
        if not multipart:
            return [attrs], pos
        if not attrs:  # the empty header closing a multi-part file
            return headers, pos
        headers.append(attrs)


def _header_end(data: bytes) -> int:
    """Offset of the first byte after the header(s): where the offset tables start."""
    return _walk_headers(data)[1]


def _offset_table_span(data: bytes) -> tuple[int, int]:
    """(start, entry count) of the offset tables of all parts, together.

    Writers put the first chunk right after the tables, so the tables end at the smallest
    offset they contain; read entries until reaching it.
    """
    start = _header_end(data)
    count, first_chunk = 0, len(data)
    while start + 8 * (count + 1) <= first_chunk:
        (offset,) = struct.unpack_from("<Q", data, start + 8 * count)
        if 0 < offset < first_chunk:
            first_chunk = offset
        count += 1
    return start, count


def offset_table_span(path: PathLike) -> tuple[int, int]:
    """(start, entry count) of a complete file's offset tables (all parts together)."""
    return _offset_table_span(Path(path).read_bytes())


def truncation_points(src: PathLike) -> dict[str, int]:
    """Where ``truncated_copies`` cuts by default: label -> file length after the cut."""
    data = Path(src).read_bytes()
    start, count = _offset_table_span(data)
    table_end = start + 8 * count
    return {
        "magic": 2,
        "header": start // 2,
        "after_header": start,
        "offset_table": start + 8 * (count // 2) + 4,
        "mid_data": table_end + (len(data) - table_end) // 2,
        "one_short": len(data) - 1,
    }


def truncated_copies(
    src: PathLike,
    dst_dir: PathLike,
    offsets: Sequence[int] | Mapping[str, int] | None = None,
) -> list[Path]:
    """Copies of ``src`` cut to each length in ``offsets`` (default ``truncation_points``),
    named ``<stem>.cut-<label>-<length>.exr``, in the order given (duplicates dropped)."""
    data = Path(src).read_bytes()
    if offsets is None:
        offsets = truncation_points(src)
    labelled = (
        list(offsets.items()) if isinstance(offsets, Mapping) else [(f"at{o}", o) for o in offsets]
    )
    out_dir = Path(dst_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seen: set[int] = set()
    paths = []
    for label, length in labelled:
        if length in seen or not 0 <= length < len(data):
            continue
        seen.add(length)
        target = out_dir / f"{Path(src).stem}.cut-{label}-{length}.exr"
        target.write_bytes(data[:length])
        paths.append(target)
    return paths


def zeroed_offset_table_copy(src: PathLike, dst: PathLike) -> Path:
    """A copy whose offset tables are all zero, like a file a writer has not finished."""
    data = bytearray(Path(src).read_bytes())
    start, count = _offset_table_span(bytes(data))
    data[start : start + 8 * count] = bytes(8 * count)
    target = Path(dst)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bytes(data))
    return target


# --------------------------------------------------------------------------- everything


def write_all_kinds(directory: PathLike) -> dict[str, Path]:
    """One file of each kind, name -> path (the every-compression files as
    ``compression_<name>``). All are valid, complete files that the binding reads."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, Path] = {
        "scanline_half": write_scanline(d / "scanline_half.exr"),
        "scanline_float": write_scanline(d / "scanline_float.exr", pixel_type="float"),
        "scanline_uint": write_scanline(d / "scanline_uint.exr", channels=("id",),
                                        pixel_type="uint"),
        "scanline_offset_window": write_scanline(
            d / "scanline_offset_window.exr", size=(16, 8), data_window_origin=(-4, 3)
        ),
        "scanline_decreasing_y": write_scanline(
            d / "scanline_decreasing_y.exr", line_order="decreasing"
        ),
        "tiled": write_tiled(d / "tiled.exr"),
        "mipmap": write_mipmap(d / "mipmap.exr"),
        "ripmap": write_ripmap(d / "ripmap.exr"),
        "multipart": write_multipart(d / "multipart.exr"),
        "deep_scanline": write_deep_scanline(d / "deep_scanline.exr"),
        "deep_tiled": write_deep_tiled(d / "deep_tiled.exr"),
        "multiview_singlepart": write_multiview_singlepart(d / "multiview_singlepart.exr"),
        "multiview_multipart": write_multiview_multipart(d / "multiview_multipart.exr"),
        "subsampled": write_subsampled(d / "subsampled.exr"),
        "every_attribute_type": write_every_attribute_type(d / "every_attribute_type.exr").path,
        "long_names": write_long_names(d / "long_names.exr"),
    }  # fmt: skip
    for name, path in write_every_compression(d).items():
        kinds[f"compression_{name}"] = path
    return kinds


def copy_into(src: PathLike, dst_dir: PathLike, name: str | None = None) -> Path:
    """Copy a (generated or corpus) file into ``dst_dir``; handy before damaging it."""
    target = Path(dst_dir) / (name or Path(src).name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    return target
