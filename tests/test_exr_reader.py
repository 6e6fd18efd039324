"""The header reader against the openexr library, field by field, on real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenEXR
import pytest
from conftest import corpus_exrs, corpus_path
from reference import FLOAT32_TYPES, expected_value, reference_parts, same

from exrwatchd.exr import Inspection, Part, inspect_path

CORPUS = corpus_path()


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(CORPUS)) if CORPUS else p.name for p in paths]


def assert_matches_reference(path: Path) -> Inspection:
    result = inspect_path(str(path))
    assert result.error is None, result.error
    ref_parts = reference_parts(str(path))
    assert len(result.parts) == len(ref_parts)
    for ours, ref in zip(result.parts, ref_parts, strict=True):
        assert_part_matches(ours, ref)
    return result


def assert_part_matches(ours: Part, ref: OpenEXR.Part) -> None:
    header = ref.header
    where = f"part {ours.index}"
    assert ours.type == header["type"].name, where
    if "name" in header:
        assert ours.name == header["name"], where
    assert ours.compression == expected_value("compression", header["compression"]), where
    for key, window in (("dataWindow", ours.data_window), ("displayWindow", ours.display_window)):
        box = expected_value("box2i", header[key])
        assert list(window) == box["min"] + box["max"], (where, key)
    assert ours.line_order == expected_value("lineOrder", header["lineOrder"])
    assert [(c.name, c.x_sampling, c.y_sampling, c.p_linear) for c in ours.channels] == [
        (c.name, c.xSampling, c.ySampling, bool(c.pLinear)) for c in header["channels"]
    ], where
    if "tiles" in header:
        assert ours.tiles is not None
        assert ours.tiles.x_size == header["tiles"].xSize
        assert ours.tiles.level_mode == expected_value("tiledesc", header["tiles"])["level_mode"]
    # The binding adds a `type` entry to old single-part headers; otherwise the same names.
    ours_attrs = {a.name: a for a in ours.attributes}
    assert set(header) - set(ours_attrs) <= {"type"}, where
    assert set(ours_attrs) == set(header) or set(ours_attrs) == set(header) - {"type"}, where
    for name, attr in ours_attrs.items():
        theirs = expected_value(attr.type, header[name])
        value = attr.value
        if attr.type == "chlist":
            value = [{k: v for k, v in c.items() if k != "type"} for c in value]
        if attr.type == "timecode":
            value = {k: v for k, v in value.items() if k != "time_and_flags"}
        assert same(value, theirs, f32=attr.type in FLOAT32_TYPES), (where, name, value, theirs)
    if "chunkCount" in header:
        assert ours.chunk_count == header["chunkCount"]


@pytest.mark.corpus
@pytest.mark.parametrize("path", corpus_exrs(), ids=_ids(corpus_exrs()))
def test_corpus_file_matches_openexr(path: Path) -> None:
    result = assert_matches_reference(path)
    assert result.complete, result.incomplete_reason


def test_every_generated_kind_matches_openexr(kinds_dir: dict[str, Path]) -> None:
    for kind, path in kinds_dir.items():
        try:
            result = assert_matches_reference(path)
        except AssertionError as exc:
            raise AssertionError(f"{kind}: {exc}") from exc
        assert result.complete, (kind, result.incomplete_reason)


def test_channel_pixel_types_match_the_pixels_openexr_reads(kinds_dir: dict[str, Path]) -> None:
    # Header-only mode of the binding hides pixel types, so read the (small) images in full.
    dtypes = {np.dtype("float16"): "half", np.dtype("float32"): "float", np.dtype("uint32"): "uint"}
    checked = 0
    for kind, path in kinds_dir.items():
        result = inspect_path(str(path))
        if result.is_deep:
            continue
        with OpenEXR.File(str(path), separate_channels=True) as f:
            for ours, ref in zip(result.parts, f.parts, strict=True):
                for channel in ours.channels:
                    pixels = ref.channels[channel.name].pixels
                    assert channel.type == dtypes[pixels.dtype], (kind, channel.name)
                    checked += 1
    assert checked > 20


def test_multiview_channels_get_their_views(kinds_dir: dict[str, Path]) -> None:
    single = inspect_path(str(kinds_dir["multiview_singlepart"]))
    views = {c.name: c.view for c in single.parts[0].channels}
    assert views["R"] == "left"  # dot-less channels belong to the default (first) view
    assert views["right.R"] == "right"
    multi = inspect_path(str(kinds_dir["multiview_multipart"]))
    assert {p.view for p in multi.parts} == {"left", "right"}
    for part in multi.parts:
        assert {c.view for c in part.channels} == {part.view}


def test_part_types_are_derived_for_old_single_part_files(kinds_dir: dict[str, Path]) -> None:
    # make_texture writes no `type` attribute: the version flags must say "tiled".
    mipmap = inspect_path(str(kinds_dir["mipmap"])).parts[0]
    assert "type" not in {a.name for a in mipmap.attributes}
    assert mipmap.type == "tiledimage"
    assert inspect_path(str(kinds_dir["scanline_half"])).parts[0].type == "scanlineimage"
    assert inspect_path(str(kinds_dir["deep_scanline"])).parts[0].type == "deepscanline"
    assert inspect_path(str(kinds_dir["deep_tiled"])).parts[0].type == "deeptile"


def test_ripmap_chunk_count(kinds_dir: dict[str, Path]) -> None:
    result = inspect_path(str(kinds_dir["ripmap"]))
    part = result.parts[0]
    assert part.tiles is not None and part.tiles.level_mode == "ripmap_levels"
    assert result.complete, result.incomplete_reason


def test_mipmapped_file_counts_every_level(kinds_dir: dict[str, Path]) -> None:
    result = inspect_path(str(kinds_dir["mipmap"]))
    part = result.parts[0]
    assert part.tiles is not None and part.tiles.level_mode == "mipmap_levels"
    assert result.complete
    one_level = -(-part.width // part.tiles.x_size) * -(-part.height // part.tiles.y_size)
    assert part.chunk_count > one_level


def test_subsampled_channels_keep_their_sampling(kinds_dir: dict[str, Path]) -> None:
    sampling = {c.name: (c.x_sampling, c.y_sampling)
                for c in inspect_path(str(kinds_dir["subsampled"])).parts[0].channels}  # fmt: skip
    assert (2, 2) in sampling.values() and (1, 1) in sampling.values()


def test_long_names_are_read_whole(kinds_dir: dict[str, Path]) -> None:
    result = inspect_path(str(kinds_dir["long_names"]))
    longest = max(
        [len(a.name) for p in result.parts for a in p.attributes]
        + [len(c.name) for p in result.parts for c in p.channels]
    )
    assert longest > 31


def test_float32_values_are_the_shortest_round_trip_decimals_as_numpy_prints_them() -> None:
    # exr.attributes writes this out rather than importing numpy (start-up of `inspect`):
    # it must agree with numpy's shortest repr of a float32 on every kind of bit pattern.
    import random
    import struct

    import numpy as np

    from exrwatchd.exr.attributes import float32_value

    rng = random.Random(1234)
    special = [0, 0x80000000, 1, 0x007FFFFF, 0x00800000, 0x3DCCCCCD, 0x3F800000, 0x7F7FFFFF,
               0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x7FC00000, 0x4B7FFFFF, 0x33800000]
    for bits in special + [rng.getrandbits(32) for _ in range(100_000)]:
        expected = np.frombuffer(struct.pack("<I", bits), "<f4")[0]
        got = float32_value.__wrapped__(bits)
        if np.isnan(expected):
            assert got == "NaN"
        elif np.isinf(expected):
            assert got == ("Infinity" if expected > 0 else "-Infinity")
        else:
            assert got == float(str(expected)), hex(bits)
            assert struct.pack("<f", got) == struct.pack("<I", bits), hex(bits)


def test_inspecting_ordinary_frames_does_not_import_numpy(tmp_path: Path) -> None:
    # `exrwatchd inspect` of ordinary frames starts without numpy (~60 ms of its start).
    import subprocess
    import sys

    from exrgen import write_scanline

    frame = write_scanline(tmp_path / "plate.0001.exr")
    code = ("import sys; from exrwatchd.exr import inspect_path; "
            "from exrwatchd.exr.report import inspection_to_dict; "
            f"inspection_to_dict(inspect_path({str(frame)!r})); "
            "print('numpy' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.strip() == "False"
