"""Turn one JSON record into catalog rows, and batches of rows into Arrow tables. Pure.

`build_rows` is shared by every sink: it gives the rows a first inspection of the record would
write (``inspection_count`` 1, ``inspection_timestamp`` = ``last_inspected`` = ``inspected_at``);
a sink adjusts those audit fields against what it already holds. Row dicts have exactly the
schema's field names, in schema order, with Python values of the column's type: ``str``,
``int``, ``float``, ``bool``, timezone-aware ``datetime`` for timestamps and read-only float32
``numpy`` arrays for vectors. `build_values` gives the same rows with each child row a tuple
in schema order, which the local catalog inserts as it is (it is the sink's hot path).

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

import orjson
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
    ATTRIBUTES,
    CHANNEL_DIM,
    CHANNELS,
    FILE_TABLES,
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


@dataclass(frozen=True, slots=True)
class FileValues:
    """The same rows as FileRows, as the local catalog stores them: the files row a dict
    (its sink looks columns up by name), each child row a tuple in schema column order."""

    file_id: str
    files: dict[str, Any]
    parts: list[tuple[Any, ...]]
    channels: list[tuple[Any, ...]]
    attributes: list[tuple[Any, ...]]


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


def _views(parts: Sequence[Mapping[str, Any]]) -> set[str]:
    views: set[Any] = set()
    for part in parts:
        views.add(part.get("view"))
        views.update([c.get("view") for c in part.get("channels", ())])  # no generator: hot
        mv = (part.get("attributes") or {}).get("multiView")
        if isinstance(mv, dict) and isinstance(mv.get("value"), list):
            views.update(v for v in mv["value"] if isinstance(v, str))
    views.discard(None)
    return views


def _part_rows(
    file_id: str,
    file_path: str,
    index: int,
    part: Mapping[str, Any],
    multi_view: bool,
    pixels: Mapping[tuple[int, str], ChannelValues],
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
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
    part_row = (
        file_id, file_path, index,
        as_str(need(part, "name", where), f"{where}.name", nullable=True),
        as_str(need(part, "view", where), f"{where}.view", nullable=True),
        multi_view,
        part_type,
        dw,
        as_box(need(part, "display_window", where), f"{where}.display_window"),
        data_window[2] - data_window[0] + 1,
        data_window[3] - data_window[1] + 1,
        as_float(need(part, "pixel_aspect_ratio", where), f"{where}.pixel_aspect_ratio"),
        as_str(need(part, "line_order", where), f"{where}.line_order"),
        as_str(need(part, "compression", where), f"{where}.compression"),
        tiles is not None,
        None if tiles is None else as_int(need(tiles, "x_size", where), f"{where}.tiles.x_size"),
        None if tiles is None else as_int(need(tiles, "y_size", where), f"{where}.tiles.y_size"),
        None if tiles is None else as_str(
            need(tiles, "level_mode", where), f"{where}.tiles.level_mode"),
        None if tiles is None else as_str(
            need(tiles, "rounding_mode", where), f"{where}.tiles.rounding_mode"),
        as_int(need(part, "chunk_count", where), f"{where}.chunk_count"),
        part_type in ("deepscanline", "deeptile"),
        len(channels),
    )  # fmt: skip  (PARTS column order; test_catalog checks it)

    return (
        part_row,
        _channel_rows(file_id, file_path, index, channels, pixels, where),
        _attribute_rows(file_id, file_path, index, attributes, where),
    )


# Child rows are tuples in schema column order (test_catalog checks the order): there are
# dozens per file, so this is the sink's hot path. Each row is first tried with plain type
# checks and no message built; anything unusual (a missing key, another type, a non-ASCII
# text, an int past 64 bits, a null in JSON) goes through the checked path, which gives the
# same values, or the RecordError naming the value.

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def _channel_rows(
    file_id: str, file_path: str, index: int, channels: list[Any],
    pixels: Mapping[tuple[int, str], ChannelValues], where: str,
) -> list[tuple[Any, ...]]:  # fmt: skip
    channel_rows = []
    for ci, ch in enumerate(channels):
        try:
            name, type_, xs, ys = ch["name"], ch["type"], ch["x_sampling"], ch["y_sampling"]
            p_linear, view = ch["p_linear"], ch.get("view")
            fast = (type(name) is str and name.isascii() and type(type_) is str
                    and type_.isascii() and type(xs) is int and _I64_MIN <= xs <= _I64_MAX
                    and type(ys) is int and _I64_MIN <= ys <= _I64_MAX
                    and type(p_linear) is bool
                    and (view is None or (type(view) is str and view.isascii())))  # fmt: skip
        except Exception:  # not an object, a key missing...: the checked path says which
            fast = False
        if not fast:
            name, type_, xs, ys, p_linear, view = _checked_channel(ch, f"{where}.channels[{ci}]")
        layer, _, component = name.rpartition(".")
        stats = pixels.get((index, name), NO_CHANNEL_STATS) if pixels else NO_CHANNEL_STATS
        channel_rows.append((file_id, file_path, index, ci, name, layer, component, type_,
                             xs, ys, p_linear, view, *stats))  # fmt: skip
    return channel_rows


def _checked_channel(ch: Any, cw: str) -> tuple[Any, ...]:
    name = as_str(need(ch, "name", cw), f"{cw}.name")
    assert name is not None
    return (
        name,
        as_str(need(ch, "type", cw), f"{cw}.type"),
        as_int(need(ch, "x_sampling", cw), f"{cw}.x_sampling"),
        as_int(need(ch, "y_sampling", cw), f"{cw}.y_sampling"),
        as_bool(need(ch, "p_linear", cw), f"{cw}.p_linear"),
        as_str(ch.get("view"), f"{cw}.view", nullable=True),
    )


def _attribute_rows(
    file_id: str, file_path: str, index: int, attributes: Mapping[Any, Any], where: str
) -> list[tuple[Any, ...]]:
    attribute_rows = []
    for name, attr in attributes.items():
        if type(name) is str and type(attr) is dict:
            type_name, raw = attr.get("type"), attr.get("base64")
            if type(type_name) is str and (raw is None or type(raw) is str) and "value" in attr:
                try:
                    # orjson refuses lone surrogates, so its text needs no display_text.
                    text = orjson.dumps(attr["value"]).decode()
                except TypeError:
                    text = "null"
                if "null" not in text:  # else it may stand for a NaN: as_json_text decides
                    attribute_rows.append((file_id, file_path, index, display_text(name),
                                           display_text(type_name), text, raw))  # fmt: skip
                    continue
        attribute_rows.append(_checked_attribute(file_id, file_path, index, name, attr, where))
    return attribute_rows


def _checked_attribute(
    file_id: str, file_path: str, index: int, name: Any, attr: Any, where: str
) -> tuple[Any, ...]:
    if not isinstance(name, str) or not isinstance(attr, Mapping):
        raise RecordError(f"{where}.attributes[{name!r}] is malformed")
    type_name = attr.get("type")
    raw = attr.get("base64")
    if not isinstance(type_name, str) or not (raw is None or isinstance(raw, str)):
        raise RecordError(f"{where}.attributes[{name!r}]: type must be a string and "
                          "base64 a string or null")  # fmt: skip
    if "value" not in attr:
        raise RecordError(f"{where}.attributes[{name!r}] has no 'value'")
    return (
        file_id, file_path, index,
        display_text(name),
        display_text(type_name),
        as_json_text(attr["value"], f"{where}.attributes[{name!r}]"),
        raw,
    )  # fmt: skip


def build_rows(record: Mapping[str, Any]) -> FileRows:
    """The rows of one upsert record. Raises RecordError when the record is malformed."""
    values = build_values(record)
    return FileRows(
        values.file_id,
        values.files,
        [dict(zip(_PART_NAMES, row, strict=True)) for row in values.parts],
        [dict(zip(_CHANNEL_NAMES, row, strict=True)) for row in values.channels],
        [dict(zip(_ATTRIBUTE_NAMES, row, strict=True)) for row in values.attributes],
    )


_PART_NAMES = tuple(PARTS.names)
_CHANNEL_NAMES = tuple(CHANNELS.names)
_ATTRIBUTE_NAMES = tuple(ATTRIBUTES.names)
_PART_IS_DEEP = PARTS.names.index("is_deep")


def build_values(record: Mapping[str, Any]) -> FileValues:
    """`build_rows` with the child rows as tuples, for the local catalog. RecordError when
    the record is malformed."""
    try:
        return _build_values(record)
    except RecordError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise RecordError(f"malformed record: {type(exc).__name__}: {exc}") from exc


def _build_values(record: Mapping[str, Any]) -> FileValues:
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

    # In FILES column order, pixel columns included (test_catalog checks every key's place).
    files_row = {
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
        "is_deep": any(p[_PART_IS_DEEP] for p in part_rows),
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
    }  # fmt: skip
    return FileValues(file_id, files_row, part_rows, channel_rows, attribute_rows)


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
