"""Pixel statistics of a flat part too big to decode at once, read in strips of rows.

Used by exr.pixels for a part whose whole decode would be over the read budget
(`[inspect] pixel_max_decoded_mb`): a ZIP file of constant pixels compresses about 1,000:1,
so a few MB of file can decode to gigabytes. Each strip is whole chunks (a read of fewer
rows still decodes the whole chunk) and decodes to at most half the budget as 4-byte values;
the decoder's own chunk buffers and the per-channel masks of `ChannelTotals.add` fit in the
other half. A part whose single chunk is over the budget is not read at all (`OverBudget`).
"""

from __future__ import annotations

import numpy as np
import OpenImageIO as oiio

__all__ = ["ChannelTotals", "OverBudget", "ReadFailed", "read_strips"]

# Rows per chunk by compression (OpenEXR's table); unknown ones get the largest.
_CHUNK_ROWS = {"none": 1, "rle": 1, "zips": 1, "zip": 16, "pxr24": 16, "piz": 32, "b44": 32,
               "b44a": 32, "dwaa": 32, "dwab": 256}  # fmt: skip


class OverBudget(Exception):
    """One chunk of the part decodes to more than the budget; the message says how much."""


class ReadFailed(Exception):
    """OpenImageIO could not read a strip; its error is pending on the ImageInput."""


class ChannelTotals:
    """One channel's statistics over the strips read so far, as exr.ChannelStats has them:
    min/max/sum over finite values only; uint channels as exact integers."""

    def __init__(self) -> None:
        self.finite = self.nan = self.posinf = self.neginf = 0
        self.lo: float | int | None = None
        self.hi: float | int | None = None
        self.total: float | int = 0

    def add(self, a: np.ndarray) -> None:
        if a.dtype.kind == "u":
            n, lo, hi, total = a.size, int(a.min()), int(a.max()), int(a.sum(dtype=np.uint64))
        else:  # masks only, no copy of the finite values: a quarter of the floats each
            finite = np.isfinite(a)
            n, nan = int(np.count_nonzero(finite)), int(np.count_nonzero(np.isnan(a)))
            posinf = int(np.count_nonzero(a == np.inf))
            self.nan, self.posinf = self.nan + nan, self.posinf + posinf
            self.neginf += a.size - n - nan - posinf
            if not n:
                return
            lo = float(np.min(a, where=finite, initial=np.inf))
            hi = float(np.max(a, where=finite, initial=-np.inf))
            total = float(np.sum(a, where=finite, dtype=np.float64))
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)
        self.finite, self.total = self.finite + n, self.total + total

    def mean(self) -> float | None:
        return self.total / self.finite if self.finite else None

    def constant(self) -> bool:
        """Every value the same: one kind of value (finite, +Inf or -Inf) and no NaN."""
        kinds = (self.finite > 0) + (self.posinf > 0) + (self.neginf > 0)
        return self.nan == 0 and kinds == 1 and self.lo == self.hi


def read_strips(
    inp: oiio.ImageInput, index: int, spec: oiio.ImageSpec, budget: int
) -> list[ChannelTotals]:
    """Totals per channel (in `spec` order) of part `index`, MIP level 0, read in strips."""
    band = spec.tile_height if spec.tile_width else _CHUNK_ROWS.get(
        spec.get_string_attribute("compression").split(":")[0], 256)  # fmt: skip
    row_bytes = spec.width * spec.depth * spec.nchannels * 4
    if band * row_bytes > budget:
        raise OverBudget(
            f"one chunk of {band} rows of {spec.width} pixels x {spec.nchannels} channels "
            f"decodes to {band * row_bytes / 2**20:.1f} MB, over the read budget of "
            f"{budget / 2**20:g} MB (inspect.pixel_max_decoded_mb)"
        )
    rows = max(band, budget // 2 // row_bytes // band * band)
    types = [str(f) for f in spec.channelformats or (spec.format,) * spec.nchannels]
    totals = [ChannelTotals() for _ in types]
    for y in range(spec.y, spec.y + spec.height, rows):
        _read_strip(inp, index, spec, (y, min(y + rows, spec.y + spec.height)), types, totals)
    return totals


def _read_strip(
    inp: oiio.ImageInput, index: int, spec: oiio.ImageSpec, ys: tuple[int, int],
    types: list[str], totals: list[ChannelTotals],
) -> None:  # fmt: skip
    """Rows [ys[0], ys[1]) into `totals`: uint channels as uint32 (exact), others as float."""
    for begin, end in _type_runs(types):
        fmt = oiio.UINT32 if types[begin] == "uint" else oiio.FLOAT
        if spec.tile_width:
            data = inp.read_tiles(index, 0, spec.x, spec.x + spec.width, *ys, spec.z,
                                  spec.z + spec.depth, begin, end, fmt)  # fmt: skip
        else:
            data = inp.read_scanlines(index, 0, *ys, spec.z, begin, end, fmt)
        if data is None:
            raise ReadFailed
        for c in range(begin, end):
            totals[c].add(data[..., c - begin])
        del data  # freed before the next run is decoded


def _type_runs(types: list[str]) -> list[tuple[int, int]]:
    """[begin, end) runs of adjacent channels read alike (uint or not):
    ["half", "uint", "float"] -> [(0, 1), (1, 2), (2, 3)]; ["half", "float"] -> [(0, 2)]."""
    runs: list[tuple[int, int]] = []
    for c, t in enumerate(types):
        if runs and (types[runs[-1][0]] == "uint") == (t == "uint"):
            runs[-1] = (runs[-1][0], c + 1)
        else:
            runs.append((c, c + 1))
    return runs
