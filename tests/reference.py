"""The openexr library as the reference reader: its header values in our JSON shape.

Tests compare exrwatchd's reader against this field by field. Float32 values are compared as
float32 (we print the shortest round-tripping decimal; the binding hands back doubles).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import OpenEXR

FLOAT32_TYPES = {"float", "v2f", "v3f", "box2f", "m33f", "m44f", "chromaticities", "floatvector"}


def _enum_name(value: Any) -> str:
    return str(value.name).lower()


def _box(value: Any) -> dict[str, list]:
    lo, hi = value
    return {"min": np.asarray(lo).tolist(), "max": np.asarray(hi).tolist()}


def expected_value(type_name: str, value: Any) -> Any:
    """The binding's decoded value, converted to the JSON form our reader produces."""
    if type_name in ("box2i", "box2f"):
        return _box(value)
    if type_name == "chlist":
        return [
            {"name": c.name, "x_sampling": c.xSampling, "y_sampling": c.ySampling,
             "p_linear": bool(c.pLinear)}
            for c in value
        ]  # fmt: skip
    if type_name == "chromaticities":
        v = list(value)
        return {"red": v[0:2], "green": v[2:4], "blue": v[4:6], "white": v[6:8]}
    if type_name == "compression":
        name = _enum_name(value).removesuffix("_compression")
        return "none" if name == "no" else name
    if type_name in ("lineOrder", "deepImageState"):
        return _enum_name(value)
    if type_name == "envmap":
        return _enum_name(value).removeprefix("envmap_")
    if type_name == "timecode":
        return {
            "hours": value.hours, "minutes": value.minutes, "seconds": value.seconds,
            "frame": value.frame, "drop_frame": bool(value.dropFrame),
            "color_frame": bool(value.colorFrame), "field_phase": bool(value.fieldPhase),
            "bgf0": bool(value.bgf0), "bgf1": bool(value.bgf1), "bgf2": bool(value.bgf2),
            "user_data": value.userData,  # timeAndFlags needs a Packing the binding hides
        }  # fmt: skip
    if type_name == "keycode":
        return {
            "film_mfc_code": value.filmMfcCode, "film_type": value.filmType,
            "prefix": value.prefix, "count": value.count, "perf_offset": value.perfOffset,
            "perfs_per_frame": value.perfsPerFrame, "perfs_per_count": value.perfsPerCount,
        }  # fmt: skip
    if type_name == "rational":
        return Fraction(value)
    if type_name == "tiledesc":
        return {
            "x_size": value.xSize, "y_size": value.ySize,
            "level_mode": _enum_name(value.mode), "rounding_mode": _enum_name(value.roundingMode),
        }  # fmt: skip
    if type_name == "preview":
        height, width = np.asarray(value.pixels).shape[:2]
        return {"width": int(width), "height": int(height)}
    if type_name == "double" and isinstance(value, np.ndarray):
        return float(value.reshape(-1)[0])  # the binding hands doubles back as 1-arrays
    if type_name == "bytes":
        return {"type_hint": value.type_hint, "size": len(value.data)}
    if isinstance(value, OpenEXR.OpaqueAttribute):
        return None
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "name") and hasattr(value, "value") and type_name == "string":
        return _enum_name(value)  # the binding turns `type` into a Storage enum
    return value


def _num_equal(ours: Any, theirs: Any, f32: bool) -> bool:
    if isinstance(ours, str) and isinstance(theirs, float):  # our NaN/Infinity spelling
        return {"NaN": math.isnan(theirs), "Infinity": theirs == math.inf,
                "-Infinity": theirs == -math.inf}.get(ours, False)  # fmt: skip
    if isinstance(ours, float) or isinstance(theirs, float):
        if f32:
            return bool(np.float32(ours) == np.float32(theirs))
        return float(ours) == float(theirs)
    return bool(ours == theirs)


def same(ours: Any, theirs: Any, *, f32: bool) -> bool:
    """Deep equality between our JSON value and the converted reference value."""
    if isinstance(theirs, Fraction):
        n, d = ours["numerator"], ours["denominator"]
        return d != 0 and Fraction(n, d) == theirs
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return ours.keys() == theirs.keys() and all(same(ours[k], theirs[k], f32=f32) for k in ours)
    if isinstance(ours, list | tuple) and isinstance(theirs, list | tuple):
        return len(ours) == len(theirs) and all(
            same(a, b, f32=f32) for a, b in zip(ours, theirs, strict=True)
        )
    return _num_equal(ours, theirs, f32)


def reference_parts(path: str) -> list[Any]:
    return list(OpenEXR.File(path, separate_channels=True, header_only=True).parts)
