"""Pixel health of one OpenEXR file: per-channel statistics, NaN/Inf counts, constant frames.

A pure stage: a path in, a frozen ``PixelHealth`` out. It never raises for a bad file; when
OpenImageIO cannot read the pixels (sub-sampled channels, a truncated or damaged file) the
result carries ``unavailable`` with the reason and no statistics, because half a file's
statistics would read as the whole file's.

What is read: every part (OIIO subimage), MIP level 0 only (the lower levels are filters of
it), over the data window. Deep parts are read whole; their statistics are over samples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import OpenImageIO as oiio

__all__ = ["REASONS", "ChannelStats", "PartStats", "PixelHealth", "pixel_health",
           "unhealthy_reasons"]  # fmt: skip

# The daemon runs this stage in a bounded lane of worker threads, and that lane is meant to
# be the only parallelism. Left at its default OIIO decodes each file with a pool of one
# thread per core, so N workers would run N x cores threads competing for the same cores
# (measured: the default adds pool threads and was ~10% slower single-file on 2 cores).
# With 1, every decode and every ImageBufAlgo call runs on the calling worker thread.
# The attribute is process-wide, so it is set once here; nthreads=1 below says the same
# per call, so the statistics stay single-threaded even if someone resets the global.
oiio.attribute("threads", 1)

#: Every reason ``unhealthy_reasons`` can return, in its order (to pre-register metric labels).
REASONS: tuple[str, ...] = ("nan", "inf", "constant")

_UINT_SCALE = 4294967295.0  # OIIO normalises uint32 to [0, 1] by dividing by this
_MAX_REASON_CHARS = 500


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """One channel of one part. ``min``/``max``/``mean`` are over its finite values only; they
    are None when the channel has no finite value at all (all NaN/Inf, or a deep part without
    samples): OIIO reports 0.0 there, which would be indistinguishable from real black.
    For ``uint`` channels ``min``/``max`` are ints: exact in flat parts; in deep parts rounded
    from OIIO's float32 statistics (exact up to 2**24, about 7 significant digits above)."""

    name: str  # the EXR channel name, e.g. "diffuse.R"
    pixel_type: str  # "half", "float" or "uint"
    min: float | None
    max: float | None
    mean: float | None
    nan_count: int
    inf_count: int  # +Inf and -Inf together


@dataclass(frozen=True, slots=True)
class PartStats:
    """One part (level 0). ``channels`` are in the part's channel order, as in the file."""

    index: int
    name: str | None  # the part's ``name`` attribute; None when it has none
    deep: bool
    width: int
    height: int
    pixel_count: int  # width * height of the data window
    sample_count: int  # values per channel: pixel_count for flat parts, all samples for deep
    is_constant: bool  # every pixel (deep: every sample) has the same value in every channel
    channels: tuple[ChannelStats, ...]


@dataclass(frozen=True, slots=True)
class PixelHealth:
    """The pixel health of one file. With ``unavailable`` set, ``parts`` is empty and the
    flags are False: nothing is known about the pixels."""

    path: str
    file_bytes: int  # size when read: all of it for single-level files (MIP files: level 0)
    pixel_count: int  # sum over parts; with file_bytes and a timer, gives MB/s and pixels/s
    parts: tuple[PartStats, ...]
    has_nan: bool
    has_inf: bool
    is_constant: bool  # every part is constant, e.g. an all-black frame
    unavailable: str | None  # "pixel stats unavailable: <path>: <why>"


def unhealthy_reasons(health: PixelHealth) -> tuple[str, ...]:
    """What is wrong with the pixels, a subset of ``REASONS`` in that order; () when healthy.
    An unavailable file has no reasons: check ``health.unavailable`` for that."""
    flags = (health.has_nan, health.has_inf, health.is_constant)
    return tuple(reason for reason, flag in zip(REASONS, flags, strict=True) if flag)


class _Unreadable(Exception):
    """OIIO could not read the pixels; the message says why."""


def pixel_health(path: str) -> PixelHealth:
    """Read every part's pixels and compute their health. Never raises for a bad file."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        return _unavailable(path, 0, exc.strerror or str(exc))
    try:
        parts = _read_parts(path)
    except _Unreadable as exc:
        return _unavailable(path, size, str(exc))
    except Exception as exc:  # the binding may raise on absurd damaged files; never propagate
        return _unavailable(path, size, f"{type(exc).__name__}: {exc}")
    channels = [c for p in parts for c in p.channels]
    return PixelHealth(
        path=path,
        file_bytes=size,
        pixel_count=sum(p.pixel_count for p in parts),
        parts=tuple(parts),
        has_nan=any(c.nan_count for c in channels),
        has_inf=any(c.inf_count for c in channels),
        is_constant=bool(parts) and all(p.is_constant for p in parts),
        unavailable=None,
    )


def _unavailable(path: str, size: int, why: str) -> PixelHealth:
    reason = f"pixel stats unavailable: {path}: {why}"
    return PixelHealth(path, size, 0, (), False, False, False, reason)


def _read_parts(path: str) -> list[PartStats]:
    first = _read(path, 0)
    if first.file_format_name != "openexr":
        raise _Unreadable(f"not an OpenEXR file (OpenImageIO reads it as {first.file_format_name})")
    count = first.nsubimages
    parts = [_part_stats(path, 0, first)]
    del first  # one decoded part in memory at a time: multi-part files can be huge
    for index in range(1, count):
        parts.append(_part_stats(path, index, _read(path, index)))
    return parts


def _read(path: str, index: int) -> oiio.ImageBuf:
    buf = oiio.ImageBuf(path, index, 0)
    # force=True reads into this buffer directly. Otherwise OIIO would go through its shared
    # ImageCache, which keeps files open and pixels cached across calls: memory that grows
    # with every file the daemon sees, and stale pixels for a path rendered again.
    if not buf.read(index, 0, force=True):
        raise _Unreadable(_errors(buf))
    return buf


def _part_stats(path: str, index: int, buf: oiio.ImageBuf) -> PartStats:
    spec = buf.spec()
    stats = oiio.PixelStats()
    if not oiio.ImageBufAlgo.computePixelStats(buf, stats, oiio.ROI.All, 1):
        raise _Unreadable(_errors(buf))
    types = _channel_types(buf)
    channels = [
        _channel(name, types[c], stats, c, buf.deep) for c, name in enumerate(spec.channelnames)
    ]
    uint_channels = [c for c, t in enumerate(types) if t == "uint"]
    if uint_channels and not buf.deep:
        for c, (lo, hi, mean) in _exact_uint(path, index, buf, uint_channels).items():
            channels[c] = ChannelStats(channels[c].name, "uint", lo, hi, mean, 0, 0)
    pixels = spec.width * spec.height * spec.depth
    samples = stats.finitecount[0] + stats.nancount[0] + stats.infcount[0]
    # EXR stores a part's channels sorted by name (bytewise); OIIO moves R, G, B, A first.
    # Give them back in the file's order, the one the header reader and catalog use.
    channels.sort(key=lambda ch: ch.name.encode())
    name = spec.get_string_attribute("name") or None
    return PartStats(index, name, buf.deep, spec.width, spec.height, pixels,
                     samples if buf.deep else pixels, _is_constant(buf, channels),
                     tuple(channels))  # fmt: skip


def _channel_types(buf: oiio.ImageBuf) -> list[str]:
    # nativespec, not spec: a flat buffer holds mixed half/uint channels as float.
    native = buf.nativespec()
    formats = native.channelformats or (native.format,) * native.nchannels
    return [str(fmt) for fmt in formats]


def _channel(
    name: str, pixel_type: str, stats: oiio.PixelStats, c: int, deep: bool
) -> ChannelStats:
    finite = stats.finitecount[c]
    lo = hi = mean = None
    if finite:
        lo, hi, mean = stats.min[c], stats.max[c], stats.sum[c] / finite  # sum is a double
        if pixel_type == "uint" and deep:
            # Only reached for deep parts (flat uint is re-read exactly): OIIO's float32 of the
            # normalised value, so exact up to 2**24 and ~7 significant digits above.
            lo, hi, mean = round(lo * _UINT_SCALE), round(hi * _UINT_SCALE), mean * _UINT_SCALE
    return ChannelStats(name, pixel_type, lo, hi, mean, stats.nancount[c], stats.infcount[c])


def _exact_uint(
    path: str, index: int, buf: oiio.ImageBuf, uint_channels: list[int]
) -> dict[int, tuple[int, int, float]]:
    """(min, max, mean) of uint channels, exact. OIIO's stats see uint32 normalised to float
    [0, 1] (and a buffer mixing uint with half/float holds them as float32): ids lose bits."""
    arrays: dict[int, np.ndarray] = {}
    if buf.spec().format == oiio.UINT32:  # every channel is uint: the buffer holds them as is
        pixels = _uint_pixels(buf)
        arrays = {c: pixels[..., c] for c in uint_channels}
    else:  # re-read each run of adjacent uint channels natively (costs one more decode)
        for begin, end in _runs(uint_channels):
            run = oiio.ImageBuf(path, index, 0)
            if not run.read(index, 0, begin, end, True, oiio.UINT32):
                raise _Unreadable(_errors(run))
            pixels = _uint_pixels(run)
            arrays.update({c: pixels[..., c - begin] for c in range(begin, end)})
    return {
        c: (int(a.min()), int(a.max()), float(a.mean(dtype=np.float64))) for c, a in arrays.items()
    }


def _uint_pixels(buf: oiio.ImageBuf) -> np.ndarray:
    pixels = buf.get_pixels(oiio.UINT32)
    if pixels is None:
        raise _Unreadable(_errors(buf))
    return pixels


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Sorted indices as [begin, end) runs of consecutive values: [1, 2, 4] -> [(1, 3), (4, 5)]."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _is_constant(buf: oiio.ImageBuf, channels: list[ChannelStats]) -> bool:
    # The statistics already rule most frames out; isConstantColor is a second pass over the
    # pixels, so it only runs when they cannot (min == max everywhere, or no finite value).
    if any(c.min != c.max for c in channels):
        return False
    if buf.deep:
        # isConstantColor crashes the process (SIGSEGV) on a deep buffer in OIIO 3.2.2. Samples
        # are constant when every channel's finite values agree and there is nothing else.
        return all(c.nan_count == 0 and c.inf_count == 0 for c in channels)
    color = oiio.ImageBufAlgo.isConstantColor(buf, 0.0, oiio.ROI.All, 1)
    if buf.has_error:
        raise _Unreadable(_errors(buf))
    return color is not None


def _errors(buf: oiio.ImageBuf) -> str:
    """OIIO's pending error messages (the buffer's and this thread's global one), deduplicated.
    Always fetched: an unfetched OIIO error is printed as a warning at exit."""
    lines: list[str] = []
    for fetch in (buf.geterror, oiio.geterror):
        try:
            text = fetch()
        except UnicodeDecodeError:  # messages can quote the file's invalid UTF-8 bytes
            text = "an error message that is not valid UTF-8"
        lines += [line.strip() for line in text.splitlines() if line.strip()]
    why = "; ".join(dict.fromkeys(lines)) or "OpenImageIO gave no reason"
    return why if len(why) <= _MAX_REASON_CHARS else why[: _MAX_REASON_CHARS - 3] + "..."
