"""The catalog: files, parts, channels, attributes and sequences, declared once in Arrow.

`schema` declares the tables; `rows` turns a JSON record into rows and rows into Arrow
tables; `sql_arrow` turns rows read from the SQLite catalog into Arrow batches (for
`exrwatchd export`). All are pure; the sinks (exrwatchd.sinks) store the rows.
"""

from exrwatchd.catalog.rows import (
    FileRows,
    FileValues,
    RecordError,
    build_rows,
    build_values,
    display_text,
    file_id_for,
    normalize_path,
    table_of,
    to_arrow,
)
from exrwatchd.catalog.schema import (
    ATTRIBUTES,
    CATALOG_VERSION,
    CHANNEL_DIM,
    CHANNELS,
    CHILD_TABLES,
    FILE_TABLES,
    FILES,
    METADATA_DIM,
    PARTS,
    SEQUENCES,
    TABLES,
)
from exrwatchd.catalog.sql_arrow import (
    CatalogValueError,
    csv_schema,
    parquet_schema,
    record_batch,
)

__all__ = [
    "ATTRIBUTES",
    "CATALOG_VERSION",
    "CHANNELS",
    "CHANNEL_DIM",
    "CHILD_TABLES",
    "FILES",
    "FILE_TABLES",
    "METADATA_DIM",
    "PARTS",
    "SEQUENCES",
    "TABLES",
    "CatalogValueError",
    "FileRows",
    "FileValues",
    "RecordError",
    "build_rows",
    "build_values",
    "csv_schema",
    "display_text",
    "file_id_for",
    "normalize_path",
    "parquet_schema",
    "record_batch",
    "table_of",
    "to_arrow",
]
