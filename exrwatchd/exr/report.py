"""Render an Inspection as the JSON record `exrwatchd inspect --json` prints, or one line."""

from __future__ import annotations

import base64
import json
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson

from exrwatchd.exr.attributes import needs_raw
from exrwatchd.exr.model import Attribute, ChannelList, Inspection, Part

if TYPE_CHECKING:  # importing exr.pixels loads OpenImageIO and sets its thread count
    from exrwatchd.exr.pixels import PixelHealth

#: What `pixel_health` can find wrong, in order (exr.pixels.REASONS, kept here so that code
#: which only reads records never imports OpenImageIO; a test checks the two agree).
UNHEALTHY_REASONS = ("nan", "inf", "constant")


def iso_utc(ns: int) -> str:
    """ISO 8601 UTC with microseconds and a `Z`, from nanoseconds since the epoch (the
    microseconds truncated, as the catalog's timestamps are)."""
    seconds, micros = divmod(ns // 1000, 1_000_000)
    return f"{_utc_second(seconds)}.{micros:06d}Z"


@lru_cache(maxsize=256)
def _utc_second(seconds: int) -> str:
    # Files of a catch-up share their seconds by the thousand: formatting each second once
    # took iso_utc from 2.5 to 0.6 us.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


# Frames of a sequence repeat most attributes byte for byte (channels, windows, compression,
# the renderer's metadata), so each distinct attribute is decoded into its JSON form once: in
# the daemon's profile that decoding was a quarter of building a record. The dicts are shared
# between records, which are only ever serialised, never changed in place. Large values
# (previews, blobs) are not kept; the bound keeps a long-running daemon's memory flat.
_ATTRIBUTE_DICTS: dict[Attribute, dict[str, Any]] = {}
_CACHED_ATTRIBUTES = 8192
_CACHED_RAW_BYTES = 512


def attribute_to_dict(attr: Attribute) -> dict[str, Any]:
    """The JSON form of one attribute: type and value, plus the bytes in base64 when the value
    alone would lose them (exr.attributes.needs_raw). The result must not be modified."""
    out = _ATTRIBUTE_DICTS.get(attr)
    if out is not None:
        return out
    out = {"type": attr.type, "value": attr.value}
    if needs_raw(attr.type, attr.raw):
        out["base64"] = base64.b64encode(attr.raw).decode("ascii")
    if len(attr.raw) <= _CACHED_RAW_BYTES:
        if len(_ATTRIBUTE_DICTS) >= _CACHED_ATTRIBUTES:
            _ATTRIBUTE_DICTS.clear()  # threads may race here: a lost entry is only a miss
        _ATTRIBUTE_DICTS[attr] = out
    return out


def part_to_dict(part: Part, *, body: bool = True) -> dict[str, Any]:
    """A part's JSON form; without its `body`, "channels" and "attributes" are None, in their
    places, for the caller to fill."""
    tiles = part.tiles
    return {
        "index": part.index,
        "name": part.name,
        "type": part.type,
        "view": part.view,
        "compression": part.compression,
        "data_window": list(part.data_window),
        "display_window": list(part.display_window),
        "pixel_aspect_ratio": part.pixel_aspect_ratio,
        "line_order": part.line_order,
        "tiles": None if tiles is None else {
            "x_size": tiles.x_size, "y_size": tiles.y_size,
            "level_mode": tiles.level_mode, "rounding_mode": tiles.rounding_mode,
        },
        "chunk_count": part.chunk_count,
        "channels": _channel_dicts(part.channels) if body else None,
        "attributes": {a.name: attribute_to_dict(a) for a in part.attributes} if body else None,
    }  # fmt: skip


def _channel_dicts(channels: ChannelList) -> list[dict[str, Any]]:
    return [
        {"name": c.name, "type": c.type, "x_sampling": c.x_sampling,
         "y_sampling": c.y_sampling, "p_linear": c.p_linear, "view": c.view}
        for c in channels
    ]  # fmt: skip


def inspection_to_dict(
    result: Inspection, *, embeddings: bool = False, parts: bool = True
) -> dict[str, Any]:
    """The record of `inspect --json` (README); without `parts`, "parts" is None, in its
    place, for the caller to fill."""
    stat = result.stat
    out: dict[str, Any] = {
        "path": result.path,
        "size_bytes": stat.size if stat else None,
        "mtime": iso_utc(stat.mtime_ns) if stat else None,
        "header_hash": result.header_hash,
        "complete": result.complete,
        "incomplete_reason": result.incomplete_reason,
        "frame_number": result.frame_number,
        "error": None if result.error is None else {
            "kind": result.error.kind, "message": result.error.message,
        },
        "parts": [part_to_dict(p) for p in result.parts] if parts else None,
    }  # fmt: skip
    if embeddings:
        # Imported here so that plain inspection does not pay for the embedding tables.
        from exrwatchd.exr.embed import as_float_list, embedding_fields

        out.update(embedding_fields(result, as_float_list))
    return out


def inspection_json(result: Inspection, *, embeddings: bool = False) -> bytes:
    """`inspection_to_dict(result)` as one JSON line, byte for byte what json_line() of it
    gives (a test holds the two together), made the way `inspect --json` needs it fast.

    A record is ~2.4 KB, nearly all of it the parts' channels and attributes, which frames
    of a sequence repeat: each distinct channel list and attribute is serialised once and
    spliced in as an orjson.Fragment: building and encoding a record, 9.5 -> 5.3 us.
    Names that are not UTF-8 (orjson refuses their surrogates) take the slow path.
    """
    out = inspection_to_dict(result, embeddings=embeddings, parts=False)
    try:
        out["parts"] = [orjson.Fragment(_part_json(p)) for p in result.parts]
        return orjson.dumps(out, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        out["parts"] = [part_to_dict(p) for p in result.parts]
        text = json.dumps(out, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8", errors="backslashreplace") + b"\n"


def _part_json(part: Part) -> bytes:
    head = part_to_dict(part, body=False)
    channels = part.channels
    channels_json: bytes | None = channels.__dict__.get("json")
    if channels_json is None:  # one per distinct list: the reader shares them (header.py)
        channels_json = channels.__dict__["json"] = orjson.dumps(_channel_dicts(channels))
    head["channels"] = orjson.Fragment(channels_json)
    known = _ATTRIBUTE_JSON.get  # the lookup inline: a call per attribute cost more than it
    members = [known(a) or _attribute_json(a) for a in part.attributes]
    head["attributes"] = orjson.Fragment(b"{" + b",".join(members) + b"}")
    return orjson.dumps(head)


def _attribute_json(attr: Attribute) -> bytes:
    """`"name":{...}`, the attribute's member of a part's "attributes" object (not known yet)."""
    out = orjson.dumps({attr.name: attribute_to_dict(attr)})[1:-1]
    if len(attr.raw) <= _CACHED_RAW_BYTES:
        if len(_ATTRIBUTE_JSON) >= _CACHED_ATTRIBUTES:
            _ATTRIBUTE_JSON.clear()
        _ATTRIBUTE_JSON[attr] = out
    return out


_ATTRIBUTE_JSON: dict[Attribute, bytes] = {}


def summary_line(result: Inspection) -> str:
    """One human line: verdict, then a compact description of each part."""
    if result.error is not None:
        return f"{result.path}: ERROR {result.error.kind}: {result.error.message}"
    verdict = "complete" if result.complete else f"INCOMPLETE ({result.incomplete_reason})"
    parts = []
    for p in result.parts:
        label = f"{p.name!r} " if p.name else ""
        view = f" view={p.view}" if p.view else ""
        channels = ",".join(c.name for c in p.channels[:8])
        if len(p.channels) > 8:
            channels += f",+{len(p.channels) - 8}"
        parts.append(f"[{p.index}] {label}{p.type} {p.width}x{p.height} {p.compression}"
                     f"{view} {channels}")  # fmt: skip
    return f"{result.path}: {verdict}; " + "; ".join(parts)


# --------------------------------------------------------------------------- pixel health


def pixel_stats_to_dict(health: PixelHealth) -> dict[str, Any]:
    """The record's ``pixel_stats``: ``{"unavailable": why}`` when OpenImageIO could not read
    the pixels, else the file's flags, its unhealthy reasons and per-part, per-channel stats.
    ``min``/``max``/``mean`` are over finite values (null when a channel has none)."""
    if health.unavailable is not None:
        prefix = f"pixel stats unavailable: {health.path}: "
        why = health.unavailable
        return {"unavailable": why[len(prefix) :] if why.startswith(prefix) else why}
    flags = (health.has_nan, health.has_inf, health.is_constant)
    return {
        "unavailable": None,
        "has_nan": health.has_nan,
        "has_inf": health.has_inf,
        "is_constant": health.is_constant,
        "unhealthy": [r for r, flag in zip(UNHEALTHY_REASONS, flags, strict=True) if flag],
        "pixel_count": health.pixel_count,
        "parts": [
            {"index": p.index, "name": p.name, "deep": p.deep, "width": p.width,
             "height": p.height, "pixel_count": p.pixel_count, "sample_count": p.sample_count,
             "is_constant": p.is_constant,
             "channels": [
                 {"name": c.name, "type": c.pixel_type, "min": c.min, "max": c.max,
                  "mean": c.mean, "nan_count": c.nan_count, "inf_count": c.inf_count}
                 for c in p.channels
             ]}
            for p in health.parts
        ],
    }  # fmt: skip


def pixel_summary(stats: dict[str, Any] | None) -> str:
    """The pixel stats of a record for humans: a verdict line, then one line per channel."""
    if stats is None:
        return "  pixels: not read (only complete files are)"
    if stats.get("unavailable") is not None:
        return f"  pixel stats unavailable: {stats['unavailable']}"
    reasons = stats.get("unhealthy") or []
    lines = [f"  pixels: {'UNHEALTHY (' + ', '.join(reasons) + ')' if reasons else 'ok'}"]
    for part in stats.get("parts", []):
        label = f"[{part['index']}]" + (f" {part['name']!r}" if part.get("name") else "")
        flag = " constant" if part.get("is_constant") else ""
        lines.append(f"  {label} {part['width']}x{part['height']}{flag}")
        for c in part.get("channels", []):
            lines.append(
                f"    {c['name']:<12} min {_num(c['min'])} max {_num(c['max'])} "
                f"mean {_num(c['mean'])} nan {c['nan_count']} inf {c['inf_count']}"
            )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"
