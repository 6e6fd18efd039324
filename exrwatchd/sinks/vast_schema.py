"""The catalog's schema and tables in VAST: create what is missing, refuse what is wrong.

Idempotent and safe to run concurrently from two gateways: "exists" races are treated as
success, and the caller retries a transaction that lost a commit conflict. Column types are
compared with the one declared schema (catalog/schema.py); an incompatible column is an
error naming the table, the column, the expected and the found type.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from vastdb import errors as vast_errors

from exrwatchd.catalog import TABLES
from exrwatchd.errors import ExrwatchdError


class SchemaMismatch(ExrwatchdError):
    """The VAST schema or a table is missing (and may not be created) or incompatible."""


def _same_type(expected: pa.DataType, found: pa.DataType) -> bool:
    if expected == found:
        return True
    # Clusters before 5.4 keep timestamps without their time zone; the values are UTC.
    if pa.types.is_timestamp(expected) and pa.types.is_timestamp(found):
        return expected.unit == found.unit and found.tz in (None, expected.tz)
    if pa.types.is_fixed_size_list(expected) and pa.types.is_fixed_size_list(found):
        return (expected.list_size == found.list_size
                and expected.value_type == found.value_type)  # fmt: skip
    return False


def check_columns(table_name: str, expected: pa.Schema, found: pa.Schema) -> list[pa.Field]:
    """The expected fields missing from `found`; raises SchemaMismatch on a type clash."""
    problems = []
    missing = []
    for field in expected:
        if field.name not in found.names:
            missing.append(field)
            continue
        have = found.field(field.name).type
        if not _same_type(field.type, have):
            problems.append(
                f"table {table_name}: column {field.name}: expected {field.type}, found {have}"
            )
    if problems:
        raise SchemaMismatch("; ".join(problems))
    return missing


def ensure_catalog(tx: Any, bucket: str, schema: str, *, create: bool) -> dict[str, Any]:
    """The four catalog tables (vastdb Table objects) inside transaction `tx`.

    `create=False` (the daemon's default) only checks; `create=True` (`exrwatchd vast init`,
    or `vast.create_tables = true`) creates the schema, tables and missing columns.
    """
    try:
        vast_bucket = tx.bucket(bucket)
    except vast_errors.MissingBucket:
        raise SchemaMismatch(
            f"bucket {bucket!r} does not exist (buckets are created on the cluster, not by "
            "exrwatchd)"
        ) from None
    vast_schema = vast_bucket.schema(schema, fail_if_missing=False)
    if vast_schema is None:
        if not create:
            raise SchemaMismatch(
                f"schema {bucket}/{schema} does not exist: run `exrwatchd vast init --config ...`"
            )
        try:
            vast_schema = vast_bucket.create_schema(schema, fail_if_exists=False)
        except vast_errors.SchemaExists:  # another gateway won the race
            vast_schema = vast_bucket.schema(schema)
    tables = {}
    for name, expected in TABLES.items():
        table = vast_schema.table(name, fail_if_missing=False)
        if table is None:
            if not create:
                raise SchemaMismatch(
                    f"table {bucket}/{schema}/{name} does not exist: run `exrwatchd vast init`"
                )
            try:
                table = vast_schema.create_table(name, expected, fail_if_exists=False)
            except vast_errors.TableExists:
                table = vast_schema.table(name)
        missing = check_columns(name, expected, table.arrow_schema)
        if missing:
            if not create:
                names = ", ".join(f.name for f in missing)
                raise SchemaMismatch(
                    f"table {name} lacks columns {names}: run `exrwatchd vast init` to add them"
                )
            table.add_column(pa.schema(missing))
            table = vast_schema.table(name)
        tables[name] = table
    return tables
