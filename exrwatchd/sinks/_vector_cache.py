"""A float32 copy of one vector column of the local catalog, for `exrwatchd similar`.

Reading 1,000,000 vectors out of catalog.db takes about 5 s: each files row is larger than
what a WITHOUT ROWID page holds, so every row costs an overflow page (docs/benchmarks.md).
Read from a plain file of float32 rows, the same vectors rank in a fraction of a second.

The copy is `<state_dir>/similar-<column>.f32` (rows of little-endian float32) with
`.ids` (the rows' file_id, 32 ASCII bytes each) and `.json` (what it was built from). It is
valid while catalog.db and its WAL keep the size and mtime they had when the build began,
and the embedding version is the same; otherwise the next query rebuilds it while ranking
(one pass over the catalog, as without a copy). Files appear atomically (rename), so two
queries at once or a crash never leave a torn copy in use.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from exrwatchd.catalog.similar import VectorChunk

KEY_BYTES = 32  # a file_id: 32 hex characters


def _private(path: Path) -> BinaryIO:
    """A new file only its owner can read, like every file of the state dir (README): the
    copy holds what the catalog does."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600),
                     "wb")  # fmt: skip


def stamp(db: Path) -> list[list[int]]:
    """(mtime_ns, size) of catalog.db and its WAL ([0, 0] for a WAL that does not exist)."""
    out = []
    for path in (db, db.with_name(db.name + "-wal")):
        try:
            st = path.stat()
            out.append([st.st_mtime_ns, st.st_size])
        except FileNotFoundError:
            out.append([0, 0])
    return out


class VectorCache:
    def __init__(self, db: Path, column: str, version: int, dim: int) -> None:
        base = db.parent / f"similar-{column}"
        self.vectors, self.keys, self.meta = (base.with_suffix(s)
                                              for s in (".f32", ".ids", ".json"))  # fmt: skip
        self._db, self._version, self._dim = db, version, dim

    def valid(self) -> dict[str, Any] | None:
        """The metadata of a copy that matches the catalog as it is now, else None."""
        try:
            meta = json.loads(self.meta.read_text())
            rows = int(meta["rows"])
            ok = (meta["stamp"] == stamp(self._db) and meta["version"] == self._version
                  and meta["dim"] == self._dim
                  and self.vectors.stat().st_size == rows * self._dim * 4
                  and self.keys.stat().st_size == rows * KEY_BYTES)  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return meta if ok else None

    def read(self, meta: dict[str, Any], chunk_rows: int) -> Iterator[VectorChunk]:
        """The copy in chunks, read into one reused buffer: memory stays at one chunk."""
        rows = int(meta["rows"])
        buf = np.empty((max(min(chunk_rows, rows), 1), self._dim), dtype="<f4")
        with open(self.vectors, "rb", buffering=0) as vf, open(self.keys, "rb") as kf:
            for start in range(0, rows, chunk_rows):
                n = min(chunk_rows, rows - start)
                view = buf[:n]
                if vf.readinto(memoryview(view).cast("B")) != view.nbytes:
                    raise OSError(f"{self.vectors}: shorter than its {rows} rows")
                yield VectorChunk(np.frombuffer(kf.read(n * KEY_BYTES), f"S{KEY_BYTES}"), view)

    def build(
        self, source: Iterator[VectorChunk], skipped: Counter[int | None],
        before: list[list[int]], on_error: Callable[[OSError], None],
    ) -> Iterator[VectorChunk]:  # fmt: skip
        """Pass `source` through while writing it down; kept only if read to the end.

        `before` is the catalog's stamp taken before `source` began: a catalog written to
        meanwhile gives a copy that the next query already sees as stale.
        """
        temp = [p.with_name(f".{p.name}.{os.getpid()}") for p in (self.vectors, self.keys)]
        try:
            files = [_private(p) for p in temp]
        except OSError as exc:  # a state dir this user cannot write: rank without a copy
            on_error(exc)
            yield from source
            return
        rows, complete = 0, False
        try:
            for chunk in source:
                files[0].write(np.ascontiguousarray(chunk.vectors, dtype="<f4").tobytes())
                files[1].write(np.asarray(chunk.keys, dtype=f"S{KEY_BYTES}").tobytes())
                rows += len(chunk.keys)
                yield chunk
            complete = True
        finally:
            for f in files:
                f.close()
            if complete:
                self._publish(temp, rows, skipped, before, on_error)
            for p in temp:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    def _publish(self, temp: list[Path], rows: int, skipped: Counter[int | None],
                 before: list[list[int]], on_error: Callable[[OSError], None]) -> None:  # fmt: skip
        meta = {"stamp": before, "version": self._version, "dim": self._dim, "rows": rows,
                "skipped": [[v, n] for v, n in skipped.items()]}  # fmt: skip
        try:
            with contextlib.suppress(FileNotFoundError):
                self.meta.unlink()  # never a new .json over old data, or old over new
            os.replace(temp[0], self.vectors)
            os.replace(temp[1], self.keys)
            fresh = self.meta.with_name(f".{self.meta.name}.{os.getpid()}")
            with _private(fresh) as f:
                f.write(json.dumps(meta).encode())
            os.replace(fresh, self.meta)
        except OSError as exc:
            on_error(exc)
