"""The generators in exrgen.py write what they claim (checked with the openexr binding, and
with a plain header walk where the binding hides details), so other tests can trust them."""

from __future__ import annotations

import fractions
import math
import struct
from pathlib import Path
from typing import Any

import exrgen
import numpy as np
import OpenEXR
import OpenImageIO as oiio
import pytest
from conftest import corpus_exrs, corpus_path, damaged_files

# kind -> per part: (type, channel names); checked against the binding's reading
EXPECTED: dict[str, list[tuple[Any, set[str]]]] = {
    "scanline_half": [(OpenEXR.scanlineimage, {"R", "G", "B", "A"})],
    "scanline_float": [(OpenEXR.scanlineimage, {"R", "G", "B", "A"})],
    "scanline_uint": [(OpenEXR.scanlineimage, {"id"})],
    "scanline_offset_window": [(OpenEXR.scanlineimage, {"R", "G", "B", "A"})],
    "scanline_decreasing_y": [(OpenEXR.scanlineimage, {"R", "G", "B", "A"})],
    "tiled": [(OpenEXR.tiledimage, {"R", "G", "B", "A"})],
    "mipmap": [(OpenEXR.tiledimage, {"R", "G", "B", "A"})],
    "ripmap": [(OpenEXR.tiledimage, {"R", "G", "B"})],
    "multipart": [
        (OpenEXR.scanlineimage, {"R", "G", "B", "A"}),
        (OpenEXR.tiledimage, {"Z"}),
        (OpenEXR.scanlineimage, {"id"}),
    ],
    "deep_scanline": [(OpenEXR.deepscanline, {"A", "Z"})],
    "deep_tiled": [(OpenEXR.deeptile, {"A", "Z"})],
    "multiview_singlepart": [
        (OpenEXR.scanlineimage, {"R", "G", "B", "right.R", "right.G", "right.B"})
    ],
    "multiview_multipart": [(OpenEXR.scanlineimage, {"R", "G", "B"})] * 2,
    "subsampled": [(OpenEXR.scanlineimage, {"Y", "RY", "BY"})],
    "every_attribute_type": [(OpenEXR.tiledimage, {"R", "G", "B"})],
    "long_names": [(OpenEXR.scanlineimage, set()), (OpenEXR.scanlineimage, set())],
    **{f"compression_{c}": [(OpenEXR.scanlineimage, {"R", "G", "B", "A"})]
       for c in exrgen.COMPRESSIONS},
}  # fmt: skip

FLAG_TILED, FLAG_LONG_NAMES, FLAG_DEEP, FLAG_MULTIPART = 0x200, 0x400, 0x800, 0x1000


def _flags(path: Path) -> int:
    return int(struct.unpack_from("<I", path.read_bytes(), 4)[0])


def _chunk_count(path: Path) -> int:
    return exrgen.offset_table_span(path)[1]


def test_all_kinds_written(kinds_dir: dict[str, Path]) -> None:
    assert set(kinds_dir) == set(EXPECTED)
    assert all(p.is_file() and p.stat().st_size > 0 for p in kinds_dir.values())


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_binding_reads_kind(kinds_dir: dict[str, Path], kind: str) -> None:
    path = kinds_dir[kind]
    f = OpenEXR.File(str(path), separate_channels=True)  # pixels too, not just the header
    assert len(f.parts) == len(EXPECTED[kind])
    for part, (part_type, channels) in zip(f.parts, EXPECTED[kind], strict=True):
        assert part.header["type"] == part_type
        if channels:
            assert set(part.channels) == channels
    # the header walker agrees with the binding on every attribute name (the binding adds a
    # `type` to single-part headers without one, such as OpenImageIO's mipmap)
    headers, _ = exrgen._walk_headers(path.read_bytes())
    for walked, part in zip(headers, f.parts, strict=True):
        assert {name for name, _, _ in walked} | {"type"} == set(part.header)


def test_scanline_options(tmp_path: Path) -> None:
    path = exrgen.write_scanline(
        tmp_path / "s.exr", channels=("Y", "Z"), pixel_type="float", compression="piz",
        size=(24, 10), data_window_origin=(-3, 5), extra_attrs={"owner": "me"},
        line_order="decreasing",
    )  # fmt: skip
    part = OpenEXR.File(str(path), separate_channels=True).parts[0]
    h = part.header
    assert h["compression"] == OpenEXR.PIZ_COMPRESSION
    assert h["lineOrder"] == OpenEXR.DECREASING_Y
    assert [list(v) for v in h["dataWindow"]] == [[-3, 5], [20, 14]]
    assert [list(v) for v in h["displayWindow"]] == [[0, 0], [23, 9]]
    assert h["owner"] == "me"
    assert part.channels["Z"].pixels.dtype == np.float32
    assert np.array_equal(part.channels["Y"].pixels, exrgen.ramp((24, 10), "float", 0))


def test_compressions(kinds_dir: dict[str, Path]) -> None:
    failures: dict[str, str] = {}
    written = exrgen.write_every_compression(kinds_dir["tiled"].parent / "again",
                                             failures=failures)  # fmt: skip
    assert failures == {}
    assert list(written) == list(exrgen.COMPRESSIONS)
    height = 64
    for code, name in enumerate(exrgen.COMPRESSIONS):
        path = kinds_dir[f"compression_{name}"]
        part = OpenEXR.File(str(path), separate_channels=True).parts[0]
        assert part.header["compression"] == OpenEXR.Compression(code)
        assert path.read_bytes()[exrgen._header_end(path.read_bytes()) - 1] == 0
        assert _chunk_count(path) == math.ceil(height / exrgen.LINES_PER_CHUNK[name]), name
        exact = np.array_equal(part.channels["R"].pixels, exrgen.ramp((32, height), "half", 0))
        assert exact == (name not in exrgen.LOSSY_ON_HALF), name


@pytest.mark.parametrize("name", ["zip", "piz", "dwab", "lj2k", "zstd", "htj2k32"])
def test_lines_per_chunk_tall_image(tmp_path: Path, name: str) -> None:
    # 600 lines tell 16/32/64/128/256 apart (64 lines cannot separate 64 from 256)
    path = exrgen.write_scanline(tmp_path / f"{name}.exr", channels=("Y",), compression=name,
                                 size=(8, 600))  # fmt: skip
    assert _chunk_count(path) == math.ceil(600 / exrgen.LINES_PER_CHUNK[name])


def test_tiled_single_level(kinds_dir: dict[str, Path]) -> None:
    path = kinds_dir["tiled"]
    tiles = OpenEXR.File(str(path), header_only=True).parts[0].header["tiles"]
    assert (tiles.xSize, tiles.ySize, tiles.mode) == (16, 16, OpenEXR.ONE_LEVEL)
    assert _flags(path) & FLAG_TILED
    assert _chunk_count(path) == (64 // 16) * (32 // 16)


def test_binding_mipmap_is_incomplete(tmp_path: Path) -> None:
    """Why write_mipmap uses OpenImageIO: the binding stores level 0 only."""
    path = exrgen.write_tiled(tmp_path / "m.exr", level_mode="mipmap", size=(32, 16), tile=(8, 8))
    data = path.read_bytes()
    start = exrgen._header_end(data)
    total = sum(math.ceil(w / 8) * math.ceil(h / 8) for w, h in zip(
        exrgen.level_sizes(32), [*exrgen.level_sizes(16), 1], strict=True))  # fmt: skip
    offsets = struct.unpack_from(f"<{total}Q", data, start)
    assert all(offsets[:8]) and not any(offsets[8:])


def test_mipmap(kinds_dir: dict[str, Path]) -> None:
    path = kinds_dir["mipmap"]
    tiles = OpenEXR.File(str(path), header_only=True).parts[0].header["tiles"]
    assert tiles.mode == OpenEXR.MIPMAP_LEVELS and tiles.roundingMode == OpenEXR.ROUND_DOWN
    xs, ys = exrgen.level_sizes(64), exrgen.level_sizes(32)
    ys += [1] * (len(xs) - len(ys))
    assert _chunk_count(path) == sum(
        math.ceil(w / 16) * math.ceil(h / 16) for w, h in zip(xs, ys, strict=True)
    )
    buf = oiio.ImageBuf(str(path))
    assert buf.nmiplevels == len(xs) == 7
    smallest = oiio.ImageBuf(str(path), 0, 6)
    assert (smallest.spec().width, smallest.spec().height) == (1, 1)
    assert not oiio.geterror()


def test_ripmap_complete_and_consistent(kinds_dir: dict[str, Path]) -> None:
    path = kinds_dir["ripmap"]
    tiles = OpenEXR.File(str(path), header_only=True).parts[0].header["tiles"]
    assert tiles.mode == OpenEXR.RIPMAP_LEVELS
    (w, h), (tw, th), names = (32, 16), (8, 8), ("B", "G", "R")
    level0 = {c: exrgen.ramp((w, h), "half", k) for k, c in enumerate(("R", "G", "B"))}
    data = path.read_bytes()
    start, count = exrgen.offset_table_span(path)
    offsets = struct.unpack_from(f"<{count}Q", data, start)
    expected_chunks = []
    for ly, lh in enumerate(exrgen.level_sizes(h)):
        for lx, lw in enumerate(exrgen.level_sizes(w)):
            for ty in range(math.ceil(lh / th)):
                expected_chunks += [(tx, ty, lx, ly) for tx in range(math.ceil(lw / tw))]
    assert count == len(expected_chunks) == 60
    pos = start + 8 * count
    for offset, (tx, ty, lx, ly) in zip(offsets, expected_chunks, strict=True):
        assert offset == pos  # chunks follow each other in offset-table order
        *coords, size = struct.unpack_from("<5i", data, offset)
        assert tuple(coords) == (tx, ty, lx, ly)
        level = {
            c: level0[c][:: 1 << ly, :: 1 << lx][: max(1, h >> ly), : max(1, w >> lx)]
            for c in names
        }
        payload = data[offset + 20 : offset + 20 + size]
        # level (0, 0) was encoded by the binding: this checks exrgen's encoder against it
        assert payload == exrgen._uncompressed_tile(level, tx, ty, (tw, th))
        pos = offset + 20 + size
    assert pos == len(data)


def test_multipart(kinds_dir: dict[str, Path]) -> None:
    path = kinds_dir["multipart"]
    assert _flags(path) & FLAG_MULTIPART
    parts = OpenEXR.File(str(path), header_only=True).parts
    assert [p.header["name"] for p in parts] == ["beauty", "depth", "ids"]
    windows = {tuple(map(tuple, p.header["displayWindow"])) for p in parts}
    assert windows == {((0, 0), (31, 15))}
    assert [list(v) for v in parts[2].header["dataWindow"]] == [[8, 4], [23, 11]]
    assert parts[2].header["compression"] == OpenEXR.ZIPS_COMPRESSION


def test_multipart_with_deep_part(tmp_path: Path) -> None:
    specs = [exrgen.PartSpec("flat"), exrgen.PartSpec("deep", kind="deeptile",
             channels=("Z",), pixel_type="float", compression="zips", size=(16, 8))]  # fmt: skip
    path = exrgen.write_multipart(tmp_path / "mixed.exr", specs)
    parts = OpenEXR.File(str(path), separate_channels=True).parts
    assert [p.header["type"] for p in parts] == [OpenEXR.scanlineimage, OpenEXR.deeptile]
    assert _flags(path) & FLAG_MULTIPART and _flags(path) & FLAG_DEEP


@pytest.mark.parametrize("kind", ["deep_scanline", "deep_tiled"])
def test_deep(kinds_dir: dict[str, Path], kind: str) -> None:
    path = kinds_dir[kind]
    flags = _flags(path)
    assert flags & FLAG_DEEP and not flags & FLAG_TILED
    part = OpenEXR.File(str(path), separate_channels=True).parts[0]
    counts = exrgen.deep_counts((16, 8))
    assert (counts == 0).any() and counts.max() == 3
    for channel in part.channels.values():
        got = np.vectorize(lambda s: 0 if s is None else len(s), otypes=[np.uint32])(channel.pixels)
        assert np.array_equal(got, counts)


def test_multiview(kinds_dir: dict[str, Path]) -> None:
    single = OpenEXR.File(str(kinds_dir["multiview_singlepart"]), header_only=True).parts[0]
    assert single.header["multiView"] == ["left", "right"]
    multi = OpenEXR.File(str(kinds_dir["multiview_multipart"]), header_only=True).parts
    assert [(p.header["name"], p.header["view"]) for p in multi] == [
        ("left", "left"),
        ("right", "right"),
    ]


def test_subsampled(kinds_dir: dict[str, Path]) -> None:
    path = kinds_dir["subsampled"]
    channels = OpenEXR.File(str(path), separate_channels=True).parts[0].channels
    sampling = {n: (c.xSampling, c.ySampling, c.pixels.shape) for n, c in channels.items()}
    assert sampling == {"Y": (1, 1, (16, 32)), "RY": (2, 2, (8, 16)), "BY": (2, 2, (8, 16))}
    assert oiio.ImageInput.open(str(path)) is None  # OIIO refuses sub-sampled channels
    assert "Subsampled" in oiio.geterror()


def test_every_attribute_type(tmp_path: Path) -> None:
    written = exrgen.write_every_attribute_type(tmp_path / "attrs.exr")
    expected = {
        "box2i", "box2f", "bytes", "chlist", "chromaticities", "compression", "double",
        "envmap", "float", "floatvector", "int", "keycode", "lineOrder", "m33f", "m33d",
        "m44f", "m44d", "preview", "rational", "string", "stringvector", "tiledesc",
        "timecode", "v2i", "v2f", "v2d", "v3i", "v3f", "v3d", "exrgenCustomType",
    }  # fmt: skip
    assert written.type_names == expected
    assert not written.type_names & exrgen.UNWRITABLE_ATTRIBUTE_TYPES
    h = OpenEXR.File(str(written.path), header_only=True).parts[0].header
    assert written.types["aDouble"] == "double" and h["aDouble"].dtype == np.float64
    assert h["framesPerSecond"] == fractions.Fraction(24000, 1001)
    assert h["timeCode"].hours == 1 and h["timeCode"].frame == 4
    assert h["keyCode"].perfsPerCount == 64
    assert h["aFloatVector"] == [0.25, 0.5, 0.75, 1.0]
    assert h["aStringVector"] == ["alpha", "beta", "gamma"]
    assert h["aOpaque"].typeName == "exrgenCustomType"


def test_binding_unreadable(tmp_path: Path) -> None:
    path = exrgen.write_binding_unreadable(tmp_path / "dis.exr")
    with pytest.raises(RuntimeError, match="deepImageState"):
        OpenEXR.File(str(path), header_only=True)
    inp = oiio.ImageInput.open(str(path))
    assert inp is not None
    assert inp.spec().get_string_attribute("openexr:deepImageState")
    inp.close()


def test_long_names(kinds_dir: dict[str, Path]) -> None:
    path = kinds_dir["long_names"]
    assert _flags(path) & FLAG_LONG_NAMES
    parts = OpenEXR.File(str(path), header_only=True).parts
    assert all(len(p.header["name"]) == 200 for p in parts)
    assert any(len(name) == 200 for name in parts[0].header)
    lengths = {len(n) for p in parts for n in (c.name for c in p.header["channels"])}
    assert {200, 202} <= lengths


@pytest.mark.parametrize("kind", ["scanline_half", "tiled", "multipart", "deep_scanline"])
def test_truncated_copies(kinds_dir: dict[str, Path], tmp_path: Path, kind: str) -> None:
    src = kinds_dir[kind]
    data = src.read_bytes()
    points = exrgen.truncation_points(src)
    start, count = exrgen.offset_table_span(src)
    assert points["magic"] == 2 and points["after_header"] == start
    assert start < points["offset_table"] < start + 8 * count < points["mid_data"] < len(data)
    copies = exrgen.truncated_copies(src, tmp_path)
    assert [p.stat().st_size for p in copies] == sorted(set(points.values()))
    assert all(data.startswith(p.read_bytes()) for p in copies)
    assert [p.stat().st_size for p in exrgen.truncated_copies(src, tmp_path / "x", [5, 9])] == [
        5,
        9,
    ]


@pytest.mark.parametrize("kind", ["scanline_half", "mipmap", "multipart", "deep_tiled"])
def test_zeroed_offset_table(kinds_dir: dict[str, Path], tmp_path: Path, kind: str) -> None:
    src = kinds_dir[kind]
    start, count = exrgen.offset_table_span(src)
    dst = exrgen.zeroed_offset_table_copy(src, tmp_path / "zeroed.exr")
    before, after = src.read_bytes(), dst.read_bytes()
    end = start + 8 * count
    assert len(after) == len(before)
    assert after[start:end] == bytes(8 * count) and before[start:end] != bytes(8 * count)
    assert after[:start] == before[:start] and after[end:] == before[end:]
    OpenEXR.File(str(dst), header_only=True)  # the header alone does not show it


def test_corpus_helpers_never_fail() -> None:
    files = corpus_exrs()
    root = corpus_path()
    if root is None:
        assert files == []
    else:
        assert files and all(p.suffix == ".exr" and "Damaged" not in p.parts for p in files)
        assert all(p.name != "README.rst" for p in damaged_files(root))


@pytest.mark.corpus
def test_corpus_fixture(corpus_dir: Path) -> None:
    assert (corpus_dir / "Damaged").is_dir()
    assert len(damaged_files(corpus_dir)) > 100
