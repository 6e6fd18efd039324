"""Reading the local catalog's vectors for `exrwatchd similar`: read-only, never blocking the
daemon (WAL), in chunks so that memory stays bounded whatever the catalog's size.

The whole catalog is read through a float32 copy of the column (sinks/_vector_cache.py);
a `--within` directory is read from catalog.db directly, through the path index.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from exrwatchd.catalog import file_id_for
from exrwatchd.catalog.similar import (
    VECTOR_COLUMNS,
    Layout,
    VectorChunk,
    assemble_layouts,
    within_range,
)
from exrwatchd.sinks._vector_cache import VectorCache, stamp
from exrwatchd.sinks.base import SinkUnavailable
from exrwatchd.sinks.local import CATALOG_FILENAME

__all__ = ["CHUNK_ROWS", "LocalVectors"]

#: Rows per chunk: 50,000 metadata vectors are 77 MB of float32.
CHUNK_ROWS = 50_000
#: Rows per fetch from SQLite, where each row also costs a Python bytes object and the join
#: copies it: 16,384 keeps the peak under 200 MB (docs/benchmarks.md).
SQLITE_ROWS = 16_384


class LocalVectors:
    """The vectors and layouts of `<state_dir>/catalog.db`, opened read-only."""

    def __init__(self, state_dir: Path, *, cache: bool = True,
                 warn: Callable[[str], None] = lambda _: None) -> None:  # fmt: skip
        self.db = state_dir / CATALOG_FILENAME
        self.where = f"catalog {self.db}"
        if not self.db.is_file():
            raise SinkUnavailable(f"{self.where}: not found (nothing catalogued yet?)")
        uri = f"file:{urllib.parse.quote(str(self.db))}?mode=ro"
        try:
            self._conn = sqlite3.connect(uri, uri=True, timeout=10)
            self._conn.execute("SELECT 1 FROM files LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise SinkUnavailable(f"{self.where}: {exc}") from None
        self._cache = cache
        self._warn = warn
        #: embedding_version -> rows left out of the ranking for having another version
        self.skipped: Counter[int | None] = Counter()

    def close(self) -> None:
        self._conn.close()

    def _sql(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, args)
        except sqlite3.Error as exc:
            raise SinkUnavailable(f"{self.where}: {exc}") from None

    def lookup(self, path: str, column: str) -> dict[str, Any] | None:
        """The files row of `path` (vector as float32, embedding_version, error), or None."""
        assert column in VECTOR_COLUMNS
        row = self._sql(f"SELECT file_id, {column}, embedding_version, error_kind FROM files "
                        "WHERE file_id = ?", (file_id_for(path),)).fetchone()  # fmt: skip
        if row is None:
            return None
        vector = None if row[1] is None else np.frombuffer(row[1], "<f4")
        return {"file_id": row[0], "vector": vector, "embedding_version": row[2],
                "error_kind": row[3]}  # fmt: skip

    def chunks(self, column: str, version: int, dim: int, within: str | None = None,
               chunk_rows: int = CHUNK_ROWS) -> Iterator[VectorChunk]:  # fmt: skip
        """Every row with a `column` vector of `version`, in chunks; the others are counted
        in `skipped`. Keys are file_ids as bytes."""
        assert column in VECTOR_COLUMNS
        self.skipped.clear()
        if within is not None or not self._cache:
            yield from self._stream(column, version, dim, within, chunk_rows)
            return
        cache = VectorCache(self.db, column, version, dim)
        meta = cache.valid()
        if meta is not None:
            self.skipped.update({v: n for v, n in meta["skipped"]})
            yield from cache.read(meta, chunk_rows)
            return
        before = stamp(self.db)
        source = self._stream(column, version, dim, None, chunk_rows)
        yield from cache.build(source, self.skipped, before, self._cache_failed)

    def _cache_failed(self, exc: OSError) -> None:
        self._warn(f"cannot keep a vector copy beside {self.db} ({exc.strerror or exc}); "
                   "every query reads the whole catalog")  # fmt: skip

    def _stream(self, column: str, version: int, dim: int, within: str | None,
                chunk_rows: int) -> Iterator[VectorChunk]:  # fmt: skip
        sql = f"SELECT file_id, {column}, embedding_version FROM files WHERE {column} IS NOT NULL"
        args: tuple[str, ...] = ()
        if within is not None:
            sql += " AND file_path_normalized >= ? AND file_path_normalized < ?"
            args = within_range(within)
        cursor = self._sql(sql, args)
        size = dim * 4
        while rows := cursor.fetchmany(min(chunk_rows, SQLITE_ROWS)):
            keys, blobs = [], []
            for file_id, blob, row_version in rows:
                if row_version != version or len(blob) != size:
                    self.skipped[row_version] += 1
                else:
                    keys.append(file_id.encode("ascii"))
                    blobs.append(blob)
            if keys:
                vectors = np.frombuffer(b"".join(blobs), "<f4").reshape(len(keys), dim)
                yield VectorChunk(np.array(keys, dtype=object), vectors)

    def layouts(self, file_ids: Sequence[str]) -> dict[str, tuple[str, Layout]]:
        """file_id -> (path, layout) for the files of `file_ids` that are in the catalog."""
        if not file_ids:
            return {}
        marks = ", ".join("?" * len(file_ids))
        files = self._sql(f"SELECT file_id, file_path, multipart_count FROM files "
                          f"WHERE file_id IN ({marks})", file_ids).fetchall()  # fmt: skip
        parts = self._sql(
            f"SELECT file_id, compression, data_window FROM parts WHERE file_id IN ({marks}) "
            "ORDER BY file_id, part_index", file_ids).fetchall()  # fmt: skip
        channels = self._sql(f"SELECT file_id, channel_name FROM channels "
                             f"WHERE file_id IN ({marks})", file_ids).fetchall()  # fmt: skip
        return assemble_layouts(files, parts, channels)
