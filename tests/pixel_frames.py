"""Frames for the pixel-health tests: small scan-line files holding exact numpy arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import OpenEXR
from exrgen import ramp

SIZE = (32, 16)  # width, height


def write_frame(path: Path, channels: dict[str, npt.NDArray[Any]]) -> Path:
    """A single-part ZIP scan-line file holding exactly these (height, width) arrays. Every
    call with the same channel names and types writes the same header bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"type": OpenEXR.scanlineimage, "compression": OpenEXR.ZIP_COMPRESSION}
    OpenEXR.File(header, dict(channels)).write(str(path))
    return path


def normal_channels() -> dict[str, npt.NDArray[Any]]:
    return {name: ramp(SIZE, "half", k) for k, name in enumerate("BGR")}


def zero_channels() -> dict[str, npt.NDArray[Any]]:
    zeros = np.zeros((SIZE[1], SIZE[0]), np.float16)
    return {"B": zeros, "G": zeros, "R": zeros}


def nan_inf_channels() -> dict[str, npt.NDArray[Any]]:
    channels = normal_channels()
    channels["R"] = channels["R"].copy()
    channels["R"][0, :3] = np.nan
    channels["G"] = channels["G"].copy()
    channels["G"][1, 1] = np.inf
    channels["G"][2, 2] = -np.inf
    return channels


def expected(values: npt.NDArray[Any]) -> tuple[float, float, float, int, int]:
    """(min, max, mean, nan_count, inf_count) as numpy has them, over the finite values."""
    wide = values.astype(np.float64).ravel()
    finite = wide[np.isfinite(wide)]
    return (finite.min(), finite.max(), finite.mean(), int(np.isnan(wide).sum()),
            int(np.isinf(wide).sum()))  # fmt: skip
