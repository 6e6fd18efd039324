"""Turn one JSON record into catalog rows, and batches of rows into Arrow tables. Pure.

`build_rows` is shared by every sink: it gives the rows a first inspection of the record would
write (``inspection_count`` 1, ``inspection_timestamp`` = ``last_inspected`` = ``inspected_at``);
a sink adjusts those audit fields against what it already holds. Row dicts have exactly the
schema's field names, in schema order, with Python values of the column's type: ``str``,
``int``, ``float``, ``bool``, timezone-aware ``datetime`` for timestamps and read-only float32
``numpy`` arrays for vectors.

Paths: the key is `normalize_path` (``os.path.normpath``: case kept, symlinks not resolved,
no file system access). `file_id_for` hashes its raw bytes, so paths that are not valid UTF-8
(lone surrogates in the str) keep distinct ids, while string columns show such paths with
``backslashreplace`` escapes (``\\udcff`` for the byte 0xff) so that every catalog can store
them; ``file_path_bytes`` keeps the bytes. Sinks look rows up by file_id, never by that text.

The checks and conversions of single values live in exrwatchd/catalog/_convert.py.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from exrwatchd.catalog._convert import (
    RecordError,
    as_bool,
    as_box,
    as_float,
    as_frame,
    as_inode,
    as_int,
    as_json_text,
    as_str,
    as_time,
    as_vector,
    display_text,
    need,
)
from exrwatchd.catalog._pixel_values import NO_CHANNEL_STATS, ChannelValues, pixel_values
from exrwatchd.catalog.schema import (
    CHANNEL_DIM,
    FILE_TABLES,
    FILES,
    METADATA_DIM,
    PARTS,
    TABLES,
)

# RecordError and display_text come from _convert and stay importable from here.


@dataclass(frozen=True, slots=True)
class FileRows:
    """Every catalog row of one file: the files row and its children, keyed by file_id."""

    file_id: str
    files: dict[str, Any]
    parts: list[dict[str, Any]]
    channels: list[dict[str, Any]]
    attributes: list[dict[str, Any]]


# --------------------------------------------------------------------------- paths


def _fspath(path: str | os.PathLike[str]) -> str:
    p = os.fspath(path)
    if not isinstance(p, str):
        raise TypeError(f"expected a str path, got {type(p).__name__}")
    return p


def normalize_path(path: str | os.PathLike[str]) -> str:
    """The catalog key of a path: ``os.path.normpath`` only (no case folding, no realpath)."""
    return os.path.normpath(_fspath(path))


def path_bytes(path: str) -> bytes:
    """The bytes a str path stands for on Linux (UTF-8, undecodable bytes as surrogates)."""
    try:
        return path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate outside U+DC80..U+DCFF: not from os, keep it
        return path.encode("utf-8", "surrogatepass")


def file_id_for(path: str | os.PathLike[str]) -> str:
    """sha256 hex of the normalized path's bytes, first 32 characters. Path only: never mtime."""
    return hashlib.sha256(path_bytes(normalize_path(path))).hexdigest()[:32]


# --------------------------------------------------------------------------- rows


def _ordered(schema: pa.Schema, row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in schema.names}


def _views(parts: Sequence[Mapping[str, Any]]) -> set[str]:
    views: set[str] = set()
    for part in parts:
        if part.get("view") is not None:
            views.add(part["view"])
        views.update(c["view"] for c in part.get("channels", ()) if c.get("view") is not None)
        mv = (part.get("attributes") or {}).get("multiView")
        if isinstance(mv, dict) and isinstance(mv.get("value"), list):
            views.update(v for v in mv["value"] if isinstance(v, str))
    return views


def _part_rows(
    file_id: str,
    file_path: str,
    index: int,
    part: Mapping[str, Any],
    multi_view: bool,
    pixels: Mapping[tuple[int, str], ChannelValues],
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    where = f"parts[{index}]"
    if need(part, "index", where) != index:
        raise RecordError(f"{where} has index {part['index']!r}")
    part_type = as_str(need(part, "type", where), f"{where}.type")
    data_window = need(part, "data_window", where)
    dw = as_box(data_window, f"{where}.data_window")
    tiles = need(part, "tiles", where)
    if tiles is not None and not isinstance(tiles, Mapping):
        raise RecordError(f"{where}.tiles must be an object or null")
    channels = need(part, "channels", where)
    attributes = need(part, "attributes", where)
    if not isinstance(channels, list) or not isinstance(attributes, Mapping):
        raise RecordError(f"{where}: channels must be a list and attributes an object")
    base = {"file_id": file_id, "file_path": file_path, "part_index": index}
    part_row = _ordered(PARTS, base | {
        "part_name": as_str(need(part, "name", where), f"{where}.name", nullable=True),
        "view_name": as_str(need(part, "view", where), f"{where}.view", nullable=True),
        "multi_view": multi_view,
        "part_type": part_type,
        "data_window": dw,
        "display_window": as_box(need(part, "display_window", where), f"{where}.display_window"),
        "width": data_window[2] - data_window[0] + 1,
        "height": data_window[3] - data_window[1] + 1,
        "pixel_aspect_ratio": as_float(need(part, "pixel_aspect_ratio", where),
                                        f"{where}.pixel_aspect_ratio"),
        "line_order": as_str(need(part, "line_order", where), f"{where}.line_order"),
        "compression": as_str(need(part, "compression", where), f"{where}.compression"),
        "is_tiled": tiles is not None,
        "tile_width": None if tiles is None else as_int(
            need(tiles, "x_size", where), f"{where}.tiles.x_size"),
        "tile_height": None if tiles is None else as_int(
            need(tiles, "y_size", where), f"{where}.tiles.y_size"),
        "tile_level_mode": None if tiles is None else as_str(
            need(tiles, "level_mode", where), f"{where}.tiles.level_mode"),
        "tile_rounding_mode": None if tiles is None else as_str(
            need(tiles, "rounding_mode", where), f"{where}.tiles.rounding_mode"),
        "chunk_count": as_int(need(part, "chunk_count", where), f"{where}.chunk_count"),
        "is_deep": part_type in ("deepscanline", "deeptile"),
        "channel_count": len(channels),
    })  # fmt: skip

    return (
        part_row,
        _channel_rows(file_id, file_path, index, channels, pixels, where),
        _attribute_rows(file_id, file_path, index, attributes, where),
    )


# Child rows are dict literals in schema column order (test_catalog checks the order): there
# are dozens per file, so no merging or re-ordering on this path. Error texts are only
# formatted when something is wrong.


def _channel_rows(
    file_id: str, file_path: str, index: int, channels: list[Any],
    pixels: Mapping[tuple[int, str], ChannelValues], where: str,
) -> list[dict[str, Any]]:  # fmt: skip
    channel_rows = []
    for ci, ch in enumerate(channels):
        cw = f"{where}.channels[{ci}]"
        name = as_str(need(ch, "name", cw), f"{cw}.name")
        assert name is not None
        layer, _, component = name.rpartition(".")
        stats = pixels.get((index, name), NO_CHANNEL_STATS) if pixels else NO_CHANNEL_STATS
        channel_rows.append({
            "file_id": file_id, "file_path": file_path, "part_index": index,
            "channel_index": ci,
            "channel_name": name,
            "layer_name": layer,
            "component_name": component,
            "channel_type": as_str(need(ch, "type", cw), f"{cw}.type"),
            "x_sampling": as_int(need(ch, "x_sampling", cw), f"{cw}.x_sampling"),
            "y_sampling": as_int(need(ch, "y_sampling", cw), f"{cw}.y_sampling"),
            "p_linear": as_bool(need(ch, "p_linear", cw), f"{cw}.p_linear"),
            "view_name": as_str(ch.get("view"), f"{cw}.view", nullable=True),
            "pixel_min": stats[0], "pixel_max": stats[1], "pixel_mean": stats[2],
            "nan_count": stats[3], "inf_count": stats[4],
        })  # fmt: skip
    return channel_rows


def _attribute_rows(
    file_id: str, file_path: str, index: int, attributes: Mapping[Any, Any], where: str
) -> list[dict[str, Any]]:
    attribute_rows = []
    for name, attr in attributes.items():
        if not isinstance(name, str) or not isinstance(attr, Mapping):
            raise RecordError(f"{where}.attributes[{name!r}] is malformed")
        type_name = attr.get("type")
        raw = attr.get("base64")
        if not isinstance(type_name, str) or not (raw is None or isinstance(raw, str)):
            raise RecordError(f"{where}.attributes[{name!r}]: type must be a string and "
                              "base64 a string or null")  # fmt: skip
        if "value" not in attr:
            raise RecordError(f"{where}.attributes[{name!r}] has no 'value'")
        attribute_rows.append({
            "file_id": file_id, "file_path": file_path, "part_index": index,
            "attribute_name": display_text(name),
            "attribute_type": display_text(type_name),
            "attribute_value": as_json_text(attr["value"], f"{where}.attributes[{name!r}]"),
            "attribute_base64": raw,
        })  # fmt: skip
    return attribute_rows


def build_rows(record: Mapping[str, Any]) -> FileRows:
    """The rows of one upsert record. Raises RecordError when the record is malformed."""
    try:
        return _build_rows(record)
    except RecordError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise RecordError(f"malformed record: {type(exc).__name__}: {exc}") from exc


def _build_rows(record: Mapping[str, Any]) -> FileRows:
    if not isinstance(record, Mapping):
        raise RecordError(f"record must be an object, got {type(record).__name__}")
    raw_path = need(record, "path", "record")
    if not isinstance(raw_path, str) or not raw_path:
        raise RecordError(f"record path must be a non-empty string, got {raw_path!r}")
    file_id = file_id_for(raw_path)
    file_path = display_text(raw_path)
    inspected_at = as_time(need(record, "inspected_at", "record"), "inspected_at")
    parts = need(record, "parts", "record")
    if not isinstance(parts, list):
        raise RecordError("record parts must be a list")
    error = need(record, "error", "record")
    if error is not None and not isinstance(error, Mapping):
        raise RecordError("record error must be an object or null")
    inspection_id = as_str(need(record, "inspection_id", "record"), "inspection_id")
    if not inspection_id:
        raise RecordError("inspection_id must not be empty")

    multi_view = len(_views(parts)) > 1
    pixel_files, pixel_channels = pixel_values(record)
    part_rows, channel_rows, attribute_rows = [], [], []
    for index, part in enumerate(parts):
        p, cs, attrs = _part_rows(file_id, file_path, index, part, multi_view, pixel_channels)
        part_rows.append(p)
        channel_rows.extend(cs)
        attribute_rows.extend(attrs)

    files_row = _ordered(FILES, {
        "file_id": file_id,
        "file_path": file_path,
        "file_path_normalized": display_text(normalize_path(raw_path)),
        "header_hash": as_str(need(record, "header_hash", "record"), "header_hash",
                               nullable=True),
        "size_bytes": as_int(need(record, "size_bytes", "record"), "size_bytes",
                              nullable=True),
        "mtime": as_time(need(record, "mtime", "record"), "mtime", nullable=True),
        "inode": as_inode(record.get("inode")),
        "multipart_count": len(parts),
        "is_deep": any(p["is_deep"] for p in part_rows),
        "is_complete": as_bool(need(record, "complete", "record"), "complete"),
        "incomplete_reason": as_str(need(record, "incomplete_reason", "record"),
                                     "incomplete_reason", nullable=True),
        "error_kind": None if error is None else as_str(
            need(error, "kind", "error"), "error.kind"),
        "error_message": None if error is None else as_str(
            need(error, "message", "error"), "error.message"),
        "frame_number": as_frame(need(record, "frame_number", "record")),
        "metadata_embedding": as_vector(record.get("metadata_embedding"), METADATA_DIM,
                                         "metadata_embedding"),
        "channel_fingerprint": as_vector(record.get("channel_fingerprint"), CHANNEL_DIM,
                                          "channel_fingerprint"),
        "embedding_version": as_int(record.get("embedding_version"), "embedding_version",
                                     nullable=True),
        "inspection_timestamp": inspected_at,
        "inspection_count": 1,
        "last_inspected": inspected_at,
        "last_inspection_id": inspection_id,
        **pixel_files,
        "file_path_bytes": path_bytes(raw_path),
    })  # fmt: skip
    return FileRows(file_id, files_row, part_rows, channel_rows, attribute_rows)


# --------------------------------------------------------------------------- arrow


def table_of(schema: pa.Schema, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """One Arrow table of `rows` (dicts with the schema's keys) with exactly `schema`."""
    columns = []
    for field in schema:
        # pa.array takes the float32 numpy vectors (and None) for fixed-size list columns.
        column = pa.array([row[field.name] for row in rows], type=field.type)
        if not field.nullable and column.null_count:
            raise RecordError(f"{schema.metadata[b'table'].decode()}.{field.name} "
                              f"must not be null")  # fmt: skip
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


_PICK: dict[str, Callable[[FileRows], Sequence[Mapping[str, Any]]]] = {
    "files": lambda r: [r.files],
    "parts": lambda r: r.parts,
    "channels": lambda r: r.channels,
    "attributes": lambda r: r.attributes,
}


def to_arrow(rows: Sequence[FileRows]) -> dict[str, pa.Table]:
    """One Arrow table per file table (FILE_TABLES order) holding the rows of every file."""
    return {
        name: table_of(TABLES[name], [row for fr in rows for row in _PICK[name](fr)])
        for name in FILE_TABLES
    }
