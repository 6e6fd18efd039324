"""Pixel health (exrwatchd.exr.pixels) on real files: the reference corpus and generated files.

Expected values come from an independent reader (the openexr binding, or the numpy arrays the
files were written from), never from OpenImageIO itself.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import OpenEXR
import pytest
from conftest import corpus_damaged, corpus_exrs, corpus_id
from exrgen import (
    PartSpec,
    copy_into,
    deep_counts,
    ramp,
    truncated_copies,
    write_deep_scanline,
    write_deep_tiled,
    write_mipmap,
    write_multipart,
    write_scanline,
    write_subsampled,
    write_tiled,
    zeroed_offset_table_copy,
)

from exrwatchd.exr import inspect_path
from exrwatchd.exr.pixels import (
    REASONS,
    ChannelStats,
    PartStats,
    PixelHealth,
    pixel_health,
    unhealthy_reasons,
)

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, channels: dict[str, npt.NDArray], *, compression: str = "zip") -> Path:
    """A single-part scan-line file holding exactly these (height, width) arrays."""
    header = {
        "type": OpenEXR.scanlineimage,
        "compression": getattr(OpenEXR, f"{compression.upper()}_COMPRESSION"),
    }
    OpenEXR.File(header, dict(channels)).write(str(path))
    return path


def _readable(health: PixelHealth) -> PixelHealth:
    assert health.unavailable is None, health.unavailable
    return health


def _channels(part: PartStats) -> dict[str, ChannelStats]:
    return {c.name: c for c in part.channels}


def _assert_matches(stats: ChannelStats, values: npt.NDArray, *, mean_rel: float = 0.0) -> None:
    """min/max over the finite values and the NaN/Inf counts exactly as numpy has them; the
    mean too, or to ``mean_rel`` where the sum is not exact in binary (corpus images)."""
    wide = values.astype(np.float64).ravel()
    finite = wide[np.isfinite(wide)]
    assert stats.nan_count == int(np.isnan(wide).sum()), stats.name
    assert stats.inf_count == int(np.isinf(wide).sum()), stats.name
    assert (stats.min, stats.max) == (finite.min(), finite.max()), stats.name
    if mean_rel:
        assert stats.mean == pytest.approx(finite.mean(), rel=mean_rel), stats.name
    else:
        assert stats.mean == finite.mean(), stats.name


def _unavailable(health: PixelHealth, path: Path) -> str:
    reason = health.unavailable
    assert reason is not None and reason.startswith("pixel stats unavailable: ")
    assert str(path) in reason
    assert health.parts == () and health.pixel_count == 0
    assert not (health.has_nan or health.has_inf or health.is_constant)
    assert unhealthy_reasons(health) == ()
    return reason


# --------------------------------------------------------------------------- corpus


@pytest.mark.corpus
def test_corpus_nan_inf_frame_reports_both_with_counts(corpus_dir: Path) -> None:
    path = corpus_dir / "TestImages" / "BrightRingsNanInf.exr"
    health = _readable(pixel_health(str(path)))
    assert health.has_nan and health.has_inf and not health.is_constant
    assert unhealthy_reasons(health) == ("nan", "inf")
    reference = OpenEXR.File(str(path), separate_channels=True).parts[0].channels
    (part,) = health.parts
    assert [c.name for c in part.channels] == list(reference) == ["B", "G", "R"]
    for stats in part.channels:
        assert stats.nan_count > 0 and stats.inf_count > 0
        _assert_matches(stats, reference[stats.name].pixels, mean_rel=1e-12)


@pytest.mark.corpus
def test_corpus_normal_frame_is_not_flagged(corpus_dir: Path) -> None:
    path = corpus_dir / "TestImages" / "BrightRings.exr"
    health = _readable(pixel_health(str(path)))
    assert unhealthy_reasons(health) == ()
    assert health.file_bytes == path.stat().st_size and health.pixel_count == 800 * 800
    reference = OpenEXR.File(str(path), separate_channels=True).parts[0].channels
    for stats in health.parts[0].channels:
        _assert_matches(stats, reference[stats.name].pixels, mean_rel=1e-12)


@pytest.mark.corpus
def test_corpus_subsampled_file_is_unavailable(corpus_dir: Path) -> None:
    path = corpus_dir / "LuminanceChroma" / "Flowers.exr"
    reason = _unavailable(pixel_health(str(path)), path)
    assert "Subsampled channels are not supported" in reason


@pytest.mark.corpus
def test_corpus_deep_file_stats_over_samples(corpus_dir: Path) -> None:
    path = corpus_dir / "v2" / "LowResLeftView" / "Balls.exr"
    health = _readable(pixel_health(str(path)))
    (part,) = health.parts
    assert part.deep and part.name == "rgba.left" and not part.is_constant
    assert part.pixel_count == 764 * 406
    reference = OpenEXR.File(str(path), separate_channels=True).parts[0].channels
    assert [c.name for c in part.channels] == list(reference) == ["A", "B", "G", "R", "Z"]
    for stats in part.channels:
        pixels = reference[stats.name].pixels.ravel()
        samples = np.concatenate([s for s in pixels if s is not None])
        assert part.sample_count == samples.size
        _assert_matches(stats, samples, mean_rel=1e-12)


@pytest.mark.corpus
@pytest.mark.parametrize("path", corpus_exrs(), ids=corpus_id)
def test_corpus_every_file_gives_stats_or_a_reason(path: Path) -> None:
    """OpenImageIO reads every corpus file except those with sub-sampled channels."""
    health = pixel_health(str(path))
    header = inspect_path(str(path))
    assert header.error is None
    subsampled = any(
        c.x_sampling != 1 or c.y_sampling != 1 for p in header.parts for c in p.channels
    )
    if subsampled:
        _unavailable(health, path)
        return
    _readable(health)
    assert len(health.parts) == len(header.parts)
    for ours, theirs in zip(health.parts, header.parts, strict=True):
        assert [c.name for c in ours.channels] == [c.name for c in theirs.channels]
        assert (ours.width, ours.height, ours.deep) == (theirs.width, theirs.height, theirs.is_deep)
        for c in ours.channels:
            if c.min is not None:
                assert c.min <= c.mean <= c.max  # type: ignore[operator]


@pytest.mark.corpus
def test_corpus_damaged_files_never_raise(tmp_path: Path) -> None:
    """The fuzzer files of Damaged/, each copied under a .exr name (OIIO picks its reader by
    extension; without one it refuses them all before the EXR reader sees a byte)."""
    damaged = corpus_damaged()
    if not damaged:
        pytest.skip("reference corpus not found")
    for i, source in enumerate(damaged):
        copy = copy_into(source, tmp_path, f"{i:03d}.exr")
        health = pixel_health(str(copy))
        if health.unavailable is not None:
            _unavailable(health, copy)
        else:
            assert health.parts, source.name


# --------------------------------------------------------------------------- generated


def test_all_zero_frame_is_constant(tmp_path: Path) -> None:
    zeros = np.zeros((16, 32), np.float16)
    path = _write(tmp_path / "black.exr", {"R": zeros, "G": zeros, "B": zeros, "A": zeros})
    health = _readable(pixel_health(str(path)))
    assert health.is_constant and health.parts[0].is_constant
    assert unhealthy_reasons(health) == ("constant",)
    for stats in health.parts[0].channels:
        assert (stats.min, stats.max, stats.mean, stats.nan_count, stats.inf_count) == (
            0,
            0,
            0,
            0,
            0,
        )


def test_constant_grey_with_varying_alpha_is_not_constant(tmp_path: Path) -> None:
    grey = np.full((16, 32), 0.5, np.float16)
    path = _write(tmp_path / "grey.exr", {"R": grey, "A": ramp((32, 16), "half")})
    assert not _readable(pixel_health(str(path))).is_constant


@pytest.mark.parametrize("pixel_type", ["half", "float"])
def test_gradient_stats_are_exactly_numpys(tmp_path: Path, pixel_type: str) -> None:
    # Dyadic values: every partial sum is exact, so OIIO's and numpy's means agree bit for bit.
    arrays = {name: ramp((64, 32), pixel_type, k) for k, name in enumerate("ABGR")}  # type: ignore[arg-type]
    arrays["Z"] = (np.arange(64 * 32, dtype=np.float32).reshape(32, 64) / 1024).astype(
        np.float16 if pixel_type == "half" else np.float32
    )
    path = _write(tmp_path / "gradient.exr", arrays)
    health = _readable(pixel_health(str(path)))
    assert unhealthy_reasons(health) == () and not health.parts[0].is_constant
    (part,) = health.parts
    assert [c.name for c in part.channels] == ["A", "B", "G", "R", "Z"]  # file order, not RGBA
    assert {c.pixel_type for c in part.channels} == {pixel_type}
    for stats in part.channels:
        _assert_matches(stats, arrays[stats.name])


@pytest.mark.parametrize("pixel_type", [np.float16, np.float32])
def test_planted_nan_and_inf_are_counted_exactly(tmp_path: Path, pixel_type: type) -> None:
    r = ramp((32, 16), "float").astype(pixel_type)
    g, b = r.copy(), r.copy()
    r[0, :3] = r[5, 7] = np.nan
    g[1, 1] = g[2, 2] = np.inf
    g[3, 3] = -np.inf
    path = _write(tmp_path / "planted.exr", {"R": r, "G": g, "B": b})
    health = _readable(pixel_health(str(path)))
    assert unhealthy_reasons(health) == ("nan", "inf")
    stats = _channels(health.parts[0])
    assert (stats["R"].nan_count, stats["R"].inf_count) == (4, 0)
    assert (stats["G"].nan_count, stats["G"].inf_count) == (0, 3)
    assert (stats["B"].nan_count, stats["B"].inf_count) == (0, 0)
    for name, values in (("R", r), ("G", g), ("B", b)):
        _assert_matches(stats[name], values)


def test_channel_without_finite_values_has_no_min_max_mean(tmp_path: Path) -> None:
    path = _write(tmp_path / "nan.exr", {"R": np.full((8, 16), np.nan, np.float32),
                                         "G": np.full((8, 16), np.inf, np.float32)})  # fmt: skip
    stats = _channels(_readable(pixel_health(str(path))).parts[0])
    assert (stats["R"].min, stats["R"].max, stats["R"].mean, stats["R"].nan_count) == (
        None, None, None, 128,
    )  # fmt: skip
    assert (stats["G"].min, stats["G"].max, stats["G"].mean, stats["G"].inf_count) == (
        None, None, None, 128,
    )  # fmt: skip


def test_uint_channels_are_exact_integers(tmp_path: Path) -> None:
    # Above 2**24 a float32 cannot hold every integer; OIIO's own stats would round these.
    ids = (np.arange(128, dtype=np.uint32).reshape(8, 16) * 7 + 2**30 + 1).astype(np.uint32)
    path = _write(tmp_path / "ids.exr", {"R": ramp((16, 8), "half"), "id": ids})
    stats = _channels(_readable(pixel_health(str(path))).parts[0])
    assert stats["id"].pixel_type == "uint"
    assert (stats["id"].min, stats["id"].max) == (2**30 + 1, 2**30 + 1 + 127 * 7)
    assert isinstance(stats["id"].min, int)
    assert stats["id"].mean == ids.astype(np.float64).mean()
    _assert_matches(stats["R"], ramp((16, 8), "half"))


def test_multipart_gives_stats_per_part(tmp_path: Path) -> None:
    specs = [
        PartSpec("beauty"),
        PartSpec("depth", kind="tiled", channels=("Z",), pixel_type="float"),
        PartSpec("ids", channels=("id",), pixel_type="uint", size=(16, 8),
                 data_window_origin=(8, 4)),
        PartSpec("deep", kind="deepscanline", channels=("A", "Z"), pixel_type="float",
                 compression="zips", size=(16, 8)),
    ]  # fmt: skip
    path = write_multipart(tmp_path / "multi.exr", specs)
    health = _readable(pixel_health(str(path)))
    assert [(p.index, p.name, p.deep) for p in health.parts] == [
        (0, "beauty", False), (1, "depth", False), (2, "ids", False), (3, "deep", True),
    ]  # fmt: skip
    assert health.pixel_count == 32 * 16 * 2 + 16 * 8 * 2
    for spec, part in zip(specs[:3], health.parts[:3], strict=True):
        assert (part.width, part.height) == spec.size
        assert [c.name for c in part.channels] == sorted(spec.channels)
        for k, name in enumerate(spec.channels):
            _assert_matches(_channels(part)[name], ramp(spec.size, spec.pixel_type, k))
    deep = health.parts[3]
    assert deep.sample_count == deep_counts((16, 8)).sum()
    assert not health.is_constant and unhealthy_reasons(health) == ()


@pytest.mark.parametrize("writer", [write_deep_scanline, write_deep_tiled])
def test_deep_stats_are_over_samples(tmp_path: Path, writer: Callable[..., Path]) -> None:
    path = writer(tmp_path / "deep.exr")
    health = _readable(pixel_health(str(path)))
    (part,) = health.parts
    counts = deep_counts((16, 8))
    assert part.deep and part.pixel_count == 16 * 8 and part.sample_count == counts.sum()
    for k, stats in enumerate(part.channels):  # exrgen writes samples 0..n-1, plus k + 1
        samples = np.concatenate([np.arange(n, dtype=np.float32) + k + 1 for n in counts.ravel()])
        _assert_matches(stats, samples)


def test_deep_uint_channel_is_scaled_back_to_integers(tmp_path: Path) -> None:
    """OIIO normalises deep uint samples too; small ids come back exact (above 2**24 they are
    rounded to float32 precision, see ChannelStats)."""
    path = write_deep_scanline(tmp_path / "deep_ids.exr", channels=("id",), pixel_type="uint")
    (stats,) = _readable(pixel_health(str(path))).parts[0].channels
    samples = np.concatenate(
        [np.arange(n, dtype=np.float64) + 1 for n in deep_counts((16, 8)).ravel()]
    )
    assert (stats.pixel_type, stats.min, stats.max) == ("uint", 1, 3)
    assert stats.mean == pytest.approx(samples.mean(), rel=1e-6)


def test_deep_with_planted_nan_and_inf(tmp_path: Path) -> None:
    counts = deep_counts((16, 8))
    alpha = np.empty(counts.shape, dtype=object)
    for (y, x), n in np.ndenumerate(counts):
        alpha[y, x] = np.array([np.nan, np.inf, 0.5][:n], np.float32) if n else None
    header = {"type": OpenEXR.deepscanline, "compression": OpenEXR.ZIPS_COMPRESSION}
    OpenEXR.File(header, {"A": alpha}).write(str(tmp_path / "deep_nan.exr"))
    health = _readable(pixel_health(str(tmp_path / "deep_nan.exr")))
    (stats,) = health.parts[0].channels
    assert (stats.nan_count, stats.inf_count) == ((counts >= 1).sum(), (counts >= 2).sum())
    assert (stats.min, stats.max, stats.mean) == (0.5, 0.5, 0.5)
    assert unhealthy_reasons(health) == ("nan", "inf") and not health.is_constant


def test_constant_deep_part(tmp_path: Path) -> None:
    counts = deep_counts((16, 8))
    z = np.empty(counts.shape, dtype=object)
    for (y, x), n in np.ndenumerate(counts):
        z[y, x] = np.full(n, 2.0, np.float32) if n else None
    header = {"type": OpenEXR.deepscanline, "compression": OpenEXR.ZIPS_COMPRESSION}
    OpenEXR.File(header, {"Z": z}).write(str(tmp_path / "deep_flat.exr"))
    health = _readable(pixel_health(str(tmp_path / "deep_flat.exr")))
    assert health.is_constant and unhealthy_reasons(health) == ("constant",)


def test_mipmap_reads_level_zero_only(tmp_path: Path) -> None:
    path = write_mipmap(tmp_path / "mip.exr", size=(64, 32))
    health = _readable(pixel_health(str(path)))
    assert health.pixel_count == 64 * 32
    for k, name in enumerate("RGBA"):
        _assert_matches(
            _channels(health.parts[0])[name], ramp((64, 32), "float", k).astype(np.float16)
        )


def test_subsampled_generated_file_is_unavailable(tmp_path: Path) -> None:
    path = write_subsampled(tmp_path / "yc.exr")
    assert "Subsampled" in _unavailable(pixel_health(str(path)), path)


_DAMAGEABLE = {
    "scanline": lambda d: write_scanline(d / "scanline.exr", size=(64, 64)),
    "tiled": lambda d: write_tiled(d / "tiled.exr"),
    "multipart": lambda d: write_multipart(d / "multipart.exr"),
    "deep_scanline": lambda d: write_deep_scanline(d / "deep_scanline.exr"),
    "deep_tiled": lambda d: write_deep_tiled(d / "deep_tiled.exr"),
}


@pytest.mark.parametrize("kind", sorted(_DAMAGEABLE))
def test_truncated_copies_are_unavailable_not_errors(tmp_path: Path, kind: str) -> None:
    source = _DAMAGEABLE[kind](tmp_path)
    cuts = truncated_copies(source, tmp_path / "cut")
    assert len(cuts) == 6
    for cut in cuts:
        _unavailable(pixel_health(str(cut)), cut)


def test_mipmap_cut_in_its_smallest_level_still_reads_level_zero(tmp_path: Path) -> None:
    """Only level 0 is read, so a cut in the last (1x1) level goes unnoticed here: pixel
    health does not replace the completeness check of the offset table."""
    source = write_mipmap(tmp_path / "mip.exr")
    (cut,) = truncated_copies(source, tmp_path / "cut", [source.stat().st_size - 1])
    assert pixel_health(str(cut)).parts == pixel_health(str(source)).parts


@pytest.mark.parametrize("kind", ["scanline", "tiled", "multipart"])
def test_zeroed_offset_table_is_rebuilt_by_openexr(tmp_path: Path, kind: str) -> None:
    """OpenEXR recovers a zeroed offset table by scanning the chunks, so a file whose writer
    has not yet filled its table reads as whole here, with the original's statistics."""
    source = _DAMAGEABLE[kind](tmp_path)
    copy = zeroed_offset_table_copy(source, tmp_path / "zeroed" / source.name)
    assert pixel_health(str(copy)).parts == pixel_health(str(source)).parts


def test_missing_and_non_exr_files_are_unavailable(tmp_path: Path) -> None:
    missing = tmp_path / "gone.exr"
    assert "No such file or directory" in _unavailable(pixel_health(str(missing)), missing)
    text = tmp_path / "notes.exr"
    text.write_text("not an image\n")
    _unavailable(pixel_health(str(text)), text)
    health = pixel_health(str(tmp_path))
    _unavailable(health, tmp_path)


def test_file_bytes_is_the_size_read(tmp_path: Path) -> None:
    path = copy_into(write_scanline(tmp_path / "a.exr", size=(64, 32)), tmp_path / "b")
    health = _readable(pixel_health(str(path)))
    assert (health.path, health.file_bytes, health.pixel_count) == (
        str(path), path.stat().st_size, 64 * 32,
    )  # fmt: skip


def test_results_are_frozen_values() -> None:
    health = PixelHealth("x.exr", 0, 0, (), False, False, False, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        health.has_nan = True  # type: ignore[misc]
    assert unhealthy_reasons(health) == ()
    everything = dataclasses.replace(health, has_nan=True, has_inf=True, is_constant=True)
    assert unhealthy_reasons(everything) == REASONS == ("nan", "inf", "constant")


def test_oiio_stays_on_the_calling_thread(tmp_path: Path) -> None:
    """Importing the module pins OIIO to one thread: decoding a large frame starts no pool
    (numpy's own threads are there before; the control shows OIIO's default would add some)."""
    path = write_scanline(tmp_path / "big.exr", size=(1024, 512), compression="zip")
    code = (
        "import os, sys, OpenImageIO as oiio\n"
        "from exrwatchd.exr.pixels import pixel_health\n"
        "threads = lambda: len(os.listdir('/proc/self/task'))\n"
        "before = threads()\n"
        "assert pixel_health(sys.argv[1]).unavailable is None\n"
        "after, setting = threads(), oiio.get_int_attribute('threads')\n"
        "oiio.attribute('threads', 0)\n"
        "assert pixel_health(sys.argv[1]).unavailable is None\n"
        "print(setting, after - before, threads() - after)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    setting, added, added_by_default = (int(x) for x in out)
    assert (setting, added) == (1, 0)
    if (os.cpu_count() or 1) > 1:
        assert added_by_default > 0, "control: OIIO's default pool should have started threads"
