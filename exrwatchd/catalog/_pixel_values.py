"""The pixel-health columns of a record's rows, for exrwatchd/catalog/rows.py. Pure.

A record's ``pixel_stats`` (exrwatchd/exr/report.py `pixel_stats_to_dict`) is null when pixel
stats were not computed, ``{"unavailable": why}`` when OpenImageIO could not read the pixels,
else file flags and per-part, per-channel statistics. Channels are matched to their stats by
part index and channel name, never by position, so a channel the stats lack stays null.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import orjson

from exrwatchd.catalog._convert import RecordError, as_bool, as_float, as_int, as_str, need

#: The files columns, in schema order, and their value when nothing was computed.
FILE_COLUMNS = ("has_nan", "has_inf", "is_constant", "pixel_stats_error", "pixel_stats_digest")
NOT_COMPUTED: dict[str, Any] = dict.fromkeys(FILE_COLUMNS)

#: One channel's (pixel_min, pixel_max, pixel_mean, nan_count, inf_count).
ChannelValues = tuple[float | None, float | None, float | None, int | None, int | None]
NO_CHANNEL_STATS: ChannelValues = (None, None, None, None, None)


def digest(stats: Mapping[str, Any]) -> str:
    """sha256 hex of the stats as canonical JSON: equal stats, equal digest, in any process."""
    try:
        text = orjson.dumps(stats, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # lone surrogates in a channel name: escaped, still deterministic
        text = json.dumps(stats, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode()
    return hashlib.sha256(text).hexdigest()


def pixel_values(
    record: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[tuple[int, str], ChannelValues]]:
    """The files columns and, per (part index, channel name), the channel columns."""
    stats = record.get("pixel_stats")  # absent in records journaled before pixel stats
    if stats is None:
        return NOT_COMPUTED, {}
    if not isinstance(stats, Mapping):
        raise RecordError(f"pixel_stats must be an object or null, got {type(stats).__name__}")
    error = as_str(stats.get("unavailable"), "pixel_stats.unavailable", nullable=True)
    if error is not None:
        return dict(NOT_COMPUTED, pixel_stats_error=error, pixel_stats_digest=digest(stats)), {}
    files: dict[str, Any] = {
        flag: as_bool(need(stats, flag, "pixel_stats"), f"pixel_stats.{flag}")
        for flag in ("has_nan", "has_inf", "is_constant")
    }
    files.update(pixel_stats_error=None, pixel_stats_digest=digest(stats))
    parts = need(stats, "parts", "pixel_stats")
    if not isinstance(parts, list):
        raise RecordError("pixel_stats.parts must be a list")
    channels: dict[tuple[int, str], ChannelValues] = {}
    for pi, part in enumerate(parts):
        where = f"pixel_stats.parts[{pi}]"
        index = as_int(need(part, "index", where), f"{where}.index")
        found = need(part, "channels", where)
        if not isinstance(found, list):
            raise RecordError(f"{where}.channels must be a list")
        for ci, ch in enumerate(found):
            cw = f"{where}.channels[{ci}]"
            name = as_str(need(ch, "name", cw), f"{cw}.name")
            assert index is not None and name is not None
            channels[(index, name)] = (
                _stat(need(ch, "min", cw), f"{cw}.min"),
                _stat(need(ch, "max", cw), f"{cw}.max"),
                _stat(need(ch, "mean", cw), f"{cw}.mean"),
                as_int(need(ch, "nan_count", cw), f"{cw}.nan_count"),
                as_int(need(ch, "inf_count", cw), f"{cw}.inf_count"),
            )
    return files, channels


def _stat(value: Any, what: str) -> float | None:
    # min/max/mean are over finite values, so null means "no finite value", never NaN; uint
    # channels give ints, exact in a float64 (they are 32-bit).
    return None if value is None else as_float(value, what)
