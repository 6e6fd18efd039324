"""Pixel health of one OpenEXR file: per-channel statistics, NaN/Inf counts, constant frames.

A pure stage: a path in, a frozen ``PixelHealth`` out. It never raises for a bad file; when
OpenImageIO cannot read the pixels (sub-sampled channels, a truncated or damaged file) the
result carries ``unavailable`` with the reason and no statistics, because half a file's
statistics would read as the whole file's.

What is read: every part (OIIO subimage), MIP level 0 only (the lower levels are filters of
it), over the data window. Deep parts are read whole; their statistics are over samples.
A flat part that would decode to more than the read budget (``max_decoded_bytes``) is read in
strips of rows instead; one whose single chunk of rows is over it is not read at all (a ZIP
"bomb": a few KB of constant pixels can decode to gigabytes).
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass

import numpy as np
import OpenImageIO as oiio

from exrwatchd.exr._pixel_strips import OverBudget, ReadFailed, read_strips

__all__ = ["DEFAULT_MAX_DECODED_BYTES", "REASONS", "ChannelStats", "PartStats", "PixelHealth",
           "pixel_health", "unhealthy_reasons"]  # fmt: skip

# The daemon runs this stage in a bounded lane of worker threads, and that lane is meant to
# be the only parallelism. Left at its default OIIO decodes each file with a pool of one
# thread per core, so N workers would run N x cores threads competing for the same cores
# (measured: the default adds pool threads and was ~10% slower single-file on 2 cores).
# With 1, every decode and every ImageBufAlgo call runs on the calling worker thread.
# The attribute is process-wide, so it is set once here; nthreads=1 below says the same
# per call, so the statistics stay single-threaded even if someone resets the global.
oiio.attribute("threads", 1)

# OpenImageIO opens files by name, and picks the reader by the name's extension. It is given
# a symlink <fd>.exr -> /proc/self/fd/<fd>: opening that opens the inode of that fd, the file
# pixel_health checked, whatever the watched path names by now. Open fds are unique in the
# process, so reads on several threads never share a link.
_LINKS = tempfile.mkdtemp(prefix="exrwatchd-pixels-")
atexit.register(shutil.rmtree, _LINKS, True)

#: Every reason ``unhealthy_reasons`` can return, in its order (to pre-register metric labels).
REASONS: tuple[str, ...] = ("nan", "inf", "constant")

#: The default of `[inspect] pixel_max_decoded_mb`, in bytes: the most one read may decode.
DEFAULT_MAX_DECODED_BYTES = 32 << 20

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


def pixel_health(path: str, max_decoded_bytes: int | None = None) -> PixelHealth:
    """Read every part's pixels and compute their health. Never raises for a bad file.
    `max_decoded_bytes` (None: DEFAULT_MAX_DECODED_BYTES) bounds what one read decodes."""
    budget = DEFAULT_MAX_DECODED_BYTES if max_decoded_bytes is None else max_decoded_bytes
    # Opened here without blocking, and checked: OpenImageIO's own open of a path that was
    # swapped for a FIFO would block forever, holding the GIL (the whole process stops).
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return _unavailable(path, 0, exc.strerror or str(exc))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return _unavailable(path, st.st_size, "not a regular file")
        name = os.path.join(_LINKS, f"{fd}.exr")
        os.symlink(f"/proc/self/fd/{fd}", name)
        try:
            return _health(path, name, st.st_size, budget)
        finally:
            os.unlink(name)
    finally:
        os.close(fd)


def _health(path: str, name: str, size: int, budget: int) -> PixelHealth:
    try:
        parts = _read_parts(name, budget)
    except _Unreadable as exc:
        return _unavailable(path, size, str(exc).replace(name, path))
    except Exception as exc:  # the binding may raise on absurd damaged files; never propagate
        return _unavailable(path, size, f"{type(exc).__name__}: {exc}".replace(name, path))
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


def _read_parts(name: str, budget: int) -> list[PartStats]:
    inp = oiio.ImageInput.open(name)
    if inp is None:  # worded as ImageBuf.read words it, as the catalog has always had it
        raise _Unreadable(f"Could not open file: {_errors(None)}")
    try:
        if inp.format_name() != "openexr":
            raise _Unreadable(f"not an OpenEXR file (OpenImageIO reads it as {inp.format_name()})")
        parts: list[PartStats] = []
        while inp.seek_subimage(len(parts), 0):
            spec, index = inp.spec(), len(parts)
            # A deep part's size is only known once its sample counts are decoded.
            if spec.deep or _decoded_bytes(spec) <= budget:
                # One decoded part in memory at a time: multi-part files can be huge.
                parts.append(_part_stats(name, index, _read(name, index)))
            else:
                parts.append(_strip_stats(inp, index, spec, budget))
        return parts
    finally:
        inp.close()


def _decoded_bytes(spec: oiio.ImageSpec) -> int:
    """What reading the part whole holds: one buffer of its widest channel type (OIIO holds
    mixed types as float), plus the native re-read of uint channels beside other types."""
    formats = spec.channelformats or (spec.format,) * spec.nchannels
    values = spec.width * spec.height * spec.depth
    uint = sum(str(f) == "uint" for f in formats)
    reread = uint * 4 if uint < len(formats) else 0
    return values * (len(formats) * max(f.size() for f in formats) + reread)


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


def _strip_stats(inp: oiio.ImageInput, index: int, spec: oiio.ImageSpec, budget: int) -> PartStats:
    """A flat part over the read budget, read in strips (exr._pixel_strips)."""
    try:
        totals = read_strips(inp, index, spec, budget)
    except OverBudget as exc:
        raise _Unreadable(f"part {index}: {exc}") from exc
    except ReadFailed as exc:
        raise _Unreadable(_errors(inp)) from exc
    types = [str(f) for f in spec.channelformats or (spec.format,) * spec.nchannels]
    channels = [
        ChannelStats(name, pixel_type, t.lo, t.hi, t.mean(), t.nan, t.posinf + t.neginf)
        for t, name, pixel_type in zip(totals, spec.channelnames, types, strict=True)
    ]
    channels.sort(key=lambda ch: ch.name.encode())  # the file's order, as in _part_stats
    pixels = spec.width * spec.height * spec.depth
    return PartStats(index, spec.get_string_attribute("name") or None, False, spec.width,
                     spec.height, pixels, pixels, all(t.constant() for t in totals),
                     tuple(channels))  # fmt: skip


def _errors(source: oiio.ImageBuf | oiio.ImageInput | None) -> str:
    """OIIO's pending error messages (the buffer's or input's and this thread's global one),
    deduplicated. Always fetched: an unfetched OIIO error is printed as a warning at exit."""
    lines: list[str] = []
    fetchers = (oiio.geterror,) if source is None else (source.geterror, oiio.geterror)
    for fetch in fetchers:
        try:
            text = fetch()
        except UnicodeDecodeError:  # messages can quote the file's invalid UTF-8 bytes
            text = "an error message that is not valid UTF-8"
        lines += [line.strip() for line in text.splitlines() if line.strip()]
    why = "; ".join(dict.fromkeys(lines)) or "OpenImageIO gave no reason"
    return why if len(why) <= _MAX_REASON_CHARS else why[: _MAX_REASON_CHARS - 3] + "..."
