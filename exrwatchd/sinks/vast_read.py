"""Reading the VAST catalog's vectors for `exrwatchd similar`, through the `vastdb` SDK.

The vector column comes back as Arrow record batches (VAST sends at most a row group,
64Ki rows, per batch), each turned into a float32 matrix and ranked before the next one is
read, so memory stays bounded whatever the table's size. A `--within` directory is pushed
down as a `startswith` predicate on file_path_normalized: the cluster filters, only the
directory's rows travel. One read transaction; nothing is ever written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from exrwatchd.catalog import file_id_for
from exrwatchd.catalog.similar import (
    VECTOR_COLUMNS,
    Layout,
    VectorChunk,
    assemble_layouts,
    within_range,
)
from exrwatchd.config import VastConfig
from exrwatchd.sinks.base import SinkUnavailable
from exrwatchd.sinks.vast import VastSink

__all__ = ["VastVectors"]

class VastVectors:
    """The vectors and layouts of the VAST catalog (the `files`, `parts` and `channels`
    tables of the configured bucket and schema)."""

    def __init__(self, cfg: VastConfig) -> None:
        # The sink's session setup (timeouts, pinned endpoint, backoff) and its scrubbing of
        # secrets from messages; the tables are only looked up, never created.
        self._sink = VastSink(cfg)
        self._cfg = cfg
        self._session: Any = None
        #: embedding_version -> rows left out of the ranking for having another version
        self.skipped: Counter[int | None] = Counter()

    def close(self) -> None:
        self._session = None

    @contextmanager
    def _tables(self) -> Iterator[dict[str, Any]]:
        """The three tables inside one transaction; any failure becomes SinkUnavailable
        (secrets scrubbed). Reads only: the transaction has nothing to commit."""
        try:
            if self._session is None:
                self._session = self._sink._connect()
            with self._session.transaction() as tx:
                schema = tx.bucket(self._cfg.bucket).schema(self._cfg.schema)
                yield {name: schema.table(name) for name in ("files", "parts", "channels")}
        except SinkUnavailable:
            raise
        except Exception as exc:
            self._session = None
            raise SinkUnavailable(f"vast: {self._sink.describe(exc)}") from None

    def lookup(self, path: str, column: str) -> dict[str, Any] | None:
        """The files row of `path` (vector as float32, embedding_version, error), or None."""
        assert column in VECTOR_COLUMNS
        file_id = file_id_for(path)

        with self._tables() as tables:
            files = tables["files"]
            rows = files.select(columns=["file_id", column, "embedding_version", "error_kind"],
                                predicate=files["file_id"] == file_id).read_all().to_pylist()
        if not rows:
            return None
        row = rows[0]
        vector = row[column]
        return {"file_id": file_id, "error_kind": row["error_kind"],
                "vector": None if vector is None else np.asarray(vector, dtype=np.float32),
                "embedding_version": row["embedding_version"]}  # fmt: skip

    def chunks(self, column: str, version: int, dim: int, within: str | None = None,
               chunk_rows: int = 50_000) -> Iterator[VectorChunk]:  # fmt: skip
        """Every row with a `column` vector of `version`, batch by batch; the others are
        counted in `skipped`. Keys are file_ids as bytes."""
        assert column in VECTOR_COLUMNS
        self.skipped.clear()
        # Yielded inside the transaction: the SDK wants the reader consumed there, and the
        # caller ranks each chunk before the next batch is read.
        with self._tables() as tables:
            files = tables["files"]
            predicate = None
            if within is not None:
                predicate = files["file_path_normalized"].startswith(within_range(within)[0])
            reader = files.select(columns=["file_id", column, "embedding_version"],
                                  predicate=predicate)  # fmt: skip
            for batch in reader:
                for start in range(0, batch.num_rows, chunk_rows):
                    chunk = self._chunk(batch.slice(start, chunk_rows), column, version, dim)
                    if chunk is not None:
                        yield chunk

    def _chunk(self, batch: pa.RecordBatch, column: str, version: int,
               dim: int) -> VectorChunk | None:  # fmt: skip
        vectors = batch.column(column)
        versions = batch.column("embedding_version")
        has = pc.is_valid(vectors)
        current = pc.and_(has, pc.fill_null(pc.equal(versions, version), False))
        for v in pc.filter(versions, pc.and_(has, pc.invert(current))).to_pylist():
            self.skipped[v] += 1
        kept = batch.filter(current)
        if kept.num_rows == 0:
            return None
        matrix = kept.column(column).flatten().to_numpy().reshape(kept.num_rows, dim)
        keys = np.array([k.encode("ascii") for k in kept.column("file_id").to_pylist()],
                        dtype=object)  # fmt: skip
        return VectorChunk(keys, matrix.astype(np.float32, copy=False))

    def layouts(self, file_ids: Sequence[str]) -> dict[str, tuple[str, Layout]]:
        """file_id -> (path, layout) for the files of `file_ids` that are in the catalog."""
        if not file_ids:
            return {}
        ids = list(file_ids)

        wanted = [("files", ["file_id", "file_path", "multipart_count"]),
                  ("parts", ["file_id", "part_index", "compression", "data_window"]),
                  ("channels", ["file_id", "channel_name"])]  # fmt: skip
        found = []
        with self._tables() as tables:
            for name, columns in wanted:
                t = tables[name]
                rows = t.select(columns=columns, predicate=t["file_id"].isin(ids)).read_all()
                found.append(list(zip(*(rows.column(c).to_pylist() for c in columns),
                                      strict=True)))  # fmt: skip
        files, parts, channels = found
        parts = [(fid, comp, window) for fid, _, comp, window in sorted(parts, key=lambda r: r[:2])]
        return assemble_layouts(files, parts, channels)
