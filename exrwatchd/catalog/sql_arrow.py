"""Arrow record batches from rows of the local SQLite catalog, a column at a time. Pure.

The SQLite side of the mapping is sinks/_sqlite_catalog.py's (docs/catalog.md, "Types in
SQLite"): timestamps are TEXT (``2026-01-31T12:00:00.000000Z``), vectors BLOBs of
little-endian float32, booleans INTEGER 0/1. `py_row` there turns one row into Python
values; here a whole batch of rows becomes one `pa.RecordBatch` without a Python object per
value, so that `exrwatchd export` streams a catalog of millions of rows at the speed of
Arrow, not of the interpreter.

A batch is built in the table's schema, or in one derived from it for a file format:
`parquet_schema` (vectors as variable-size lists) or `csv_schema` (no vectors, bytes as
base64 text).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from exrwatchd.catalog.schema import TABLES

__all__ = ["CatalogValueError", "csv_schema", "parquet_schema", "record_batch"]

# "element": the name Parquet's list layout gives the items, which readers then show.
_FLOATS = pa.field("element", pa.float32(), nullable=False)


class CatalogValueError(ValueError):
    """A stored value does not fit its column (a vector BLOB of the wrong length, a time
    that is not ISO 8601): the catalog file was written by something else, or is damaged."""


def parquet_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with each vector column as a list of float32 rather than a fixed-size list:
    pyarrow (23 and older) cannot read back a Parquet fixed-size list that holds nulls
    (apache/arrow#35692), and an unreadable file's vectors are null. Each non-null value
    still holds exactly the column's number of floats (the `dim` field metadata)."""
    fields = []
    for field in schema:
        if pa.types.is_fixed_size_list(field.type):
            meta = {**(field.metadata or {}), b"dim": str(field.type.list_size).encode()}
            field = field.with_type(pa.list_(_FLOATS)).with_metadata(meta)
        fields.append(field)
    return pa.schema(fields, metadata=schema.metadata)


def csv_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` as CSV can hold it: vector columns dropped (CSV has no lists, and 512 floats
    as text would make each files line ~6 KB; Parquet keeps them), binary columns as base64
    text (a path's bytes need not be UTF-8)."""
    fields = []
    for field in schema:
        if pa.types.is_fixed_size_list(field.type):
            continue
        if pa.types.is_binary(field.type):
            field = field.with_type(pa.string())
        fields.append(field)
    return pa.schema(fields, metadata=schema.metadata)


def _vectors(values: Sequence[Any], dim: int, target: pa.Field) -> pa.Array:
    width = dim * 4
    bad = next((v for v in values if v is not None and len(v) != width), None)
    if bad is not None:
        raise CatalogValueError(f"a BLOB of {len(bad)} bytes, expected {width} ({dim} float32)")
    mask = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
    if pa.types.is_list(target.type):  # a null holds no floats
        flat = np.frombuffer(b"".join(v for v in values if v is not None), dtype="<f4")
        offsets = np.concatenate(([0], np.cumsum(np.where(mask, 0, dim)))).astype(np.int32)
        return pa.ListArray.from_arrays(
            pa.array(offsets), pa.array(flat), type=target.type,
            mask=pa.array(mask) if mask.any() else None,
        )  # fmt: skip
    # A fixed-size list holds dim floats under a null too: null floats, as pa.array makes.
    zero = bytes(width)
    flat = np.frombuffer(b"".join(zero if v is None else v for v in values), dtype="<f4")
    if not mask.any():
        return pa.FixedSizeListArray.from_arrays(pa.array(flat), type=target.type)
    floats = pa.array(flat, mask=np.repeat(mask, dim))
    return pa.FixedSizeListArray.from_arrays(floats, type=target.type, mask=pa.array(mask))


def _column(values: Sequence[Any], source: pa.Field, target: pa.Field) -> pa.Array:
    t = source.type
    if pa.types.is_fixed_size_list(t):
        return _vectors(values, t.list_size, target)
    if pa.types.is_binary(t) and pa.types.is_string(target.type):
        values = [None if v is None else base64.b64encode(v).decode("ascii") for v in values]
        return pa.array(values, pa.string())
    if pa.types.is_boolean(t):
        return pa.array(values, pa.int64()).cast(pa.bool_())
    if pa.types.is_timestamp(t):
        return pa.array(values, pa.string()).cast(t)
    return pa.array(values, t)


def record_batch(
    table: str, rows: Sequence[Sequence[Any]], schema: pa.Schema | None = None
) -> pa.RecordBatch:
    """The SQLite values `rows` (each in the column order of TABLES[table]) as one batch of
    `schema`: the table's own (the default), or its `parquet_schema` or `csv_schema`.
    CatalogValueError names the column of a value that does not fit."""
    source = TABLES[table]
    target = source if schema is None else schema
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * len(source)
    if len(columns) != len(source):
        raise CatalogValueError(f"{table}: rows of {len(columns)} values, expected {len(source)}")
    by_name = dict(zip(source.names, columns, strict=True))
    arrays = []
    for field in target:
        try:
            arrays.append(_column(by_name[field.name], source.field(field.name), field))
        except (CatalogValueError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise CatalogValueError(f"{table}.{field.name}: {exc}") from exc
    return pa.RecordBatch.from_arrays(arrays, schema=target)
