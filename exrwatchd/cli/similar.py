"""`exrwatchd similar PATH`: the catalog's files ranked by how alike their structure is.

PATH is a file on disk (its header is read now) or a path the catalog holds. Files are
ranked by the cosine of their `metadata_embedding` (the whole layout) or, with --layout, of
their `channel_fingerprint` (the channels alone; docs/embeddings.md says what the numbers
mean). Each line says what differs from PATH: part count, channel set, compression, data
window. Rows whose vectors are of another embedding version are left out, and counted on
stderr: vectors of different versions are not comparable.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from exrwatchd.cli._output import flush_out, json_line, write_out
from exrwatchd.errors import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:  # numpy and pyarrow (via the catalog) load only when the command runs
    import numpy as np

    from exrwatchd.catalog.similar import Layout

__all__ = ["DESCRIPTION", "add_arguments", "run_similar"]

DESCRIPTION = (
    "Rank the catalogued files by how alike their structure is to PATH's (a file on disk, "
    "read now, or a path in the catalog): cosine of the metadata embedding, or with --layout "
    "of the channel fingerprint. Each line: score, path, and what differs from PATH (part "
    "count, channels, compression, data window). Works on the local catalog and on VAST."
)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH", help="an EXR file, or a path in the catalog")
    p.add_argument("--top", type=_positive, default=10, metavar="N",
                   help="how many files to list (default 10)")  # fmt: skip
    p.add_argument("--layout", action="store_true",
                   help="compare channel layouts only (AOV names, types, sampling)")
    p.add_argument("--within", metavar="DIR",
                   help="only files under DIR (a shot directory, as the catalog holds it)")
    p.add_argument("--lowest", action="store_true",
                   help="list the least similar first: the odd ones out of a --within DIR")


class _Failed(Exception):
    """The query cannot be answered; the message says why (exit 1)."""


def _query(
    path: str, column: str, source: Any, version: int
) -> tuple[np.ndarray, Layout | None, str]:
    """PATH's vector, its layout (None when not known) and its catalog path."""
    from exrwatchd.catalog import normalize_path
    from exrwatchd.catalog.similar import layout_of_parts
    from exrwatchd.exr import inspect_path
    from exrwatchd.exr.embed import channel_fingerprint, metadata_embedding

    key = normalize_path(os.path.abspath(path))
    if os.path.exists(path):
        result = inspect_path(path)
        if result.error is not None:
            raise _Failed(f"{path}: cannot read: {result.error.kind}: {result.error.message}")
        embed = metadata_embedding if column == "metadata_embedding" else channel_fingerprint
        return embed(result.parts), layout_of_parts(result.parts), key
    row = source.lookup(key, column)
    if row is None:
        raise _Failed(f"{path}: no such file, and not in the catalog")
    if row["vector"] is None:
        raise _Failed(f"{path}: the catalog holds no vectors for it (it could not be read: "
                      f"{row['error_kind']})")  # fmt: skip
    if row["embedding_version"] != version:
        raise _Failed(f"{path}: its catalog vectors are of embedding version "
                      f"{row['embedding_version']}, not {version}; it gets new ones when the "
                      "file changes (README: Similar files), or name a file on disk")  # fmt: skip
    found = source.layouts([row["file_id"]]).get(row["file_id"])
    return row["vector"], found[1] if found else None, key


def _source(cfg: Any) -> Any:
    if cfg.sink.kind == "vast":
        from exrwatchd.sinks.vast_read import VastVectors

        return VastVectors(cfg.vast)
    from exrwatchd.sinks.local_read import LocalVectors

    return LocalVectors(cfg.daemon.state_dir, warn=lambda m: print(f"exrwatchd similar: {m}",
                                                                   file=sys.stderr))  # fmt: skip


def _report_skipped(skipped: dict[int | None, int], version: int) -> None:
    if not skipped:
        return
    by_version = sorted(skipped.items(), key=lambda i: str(i[0]))
    counts = ", ".join(f"{n} of version {v}" for v, n in by_version)
    print(f"exrwatchd similar: left out {sum(skipped.values())} catalog rows whose vectors "
          f"are of another embedding version than {version} ({counts}); they get new ones "
          "when their files change (README: Similar files)", file=sys.stderr)  # fmt: skip


def run_similar(args: argparse.Namespace, cfg: Any) -> int:
    from exrwatchd.catalog import file_id_for, normalize_path
    from exrwatchd.catalog.similar import TopK, differences
    from exrwatchd.exr.embed import CHANNEL_DIM, EMBEDDING_VERSION, METADATA_DIM
    from exrwatchd.sinks import SinkUnavailable

    column = "channel_fingerprint" if args.layout else "metadata_embedding"
    dim = CHANNEL_DIM if args.layout else METADATA_DIM
    within = normalize_path(os.path.abspath(args.within)) if args.within else None
    try:
        source = _source(cfg)
        try:
            vector, layout, key = _query(args.path, column, source, EMBEDDING_VERSION)
            own = file_id_for(key).encode("ascii")
            top = TopK(args.top + 1, lowest=args.lowest)  # +1: PATH itself, if catalogued
            top.rank(vector, source.chunks(column, EMBEDDING_VERSION, dim, within))
            ranked = [(k.decode("ascii"), s) for k, s in top.result() if k != own][: args.top]
            found = source.layouts([k for k, _ in ranked])
            skipped = dict(source.skipped)
        finally:
            source.close()
    except (SinkUnavailable, _Failed) as exc:
        print(f"exrwatchd similar: {exc}", file=sys.stderr)
        return EXIT_FAILED
    _report_skipped(skipped, EMBEDDING_VERSION)
    for file_id, score in ranked:
        if file_id not in found:
            continue  # deleted between the ranking and this read
        path, theirs = found[file_id]
        diffs = differences(layout, theirs) if layout is not None else ["layout unknown"]
        if args.json:
            write_out(json_line({"path": path, "score": round(score, 6), "differences": diffs,
                                 "file_id": file_id}), flush=False)  # fmt: skip
        else:
            write_out(f"{score:.4f}  {path}  {'; '.join(diffs) or 'same layout'}\n"
                      .encode("utf-8", "backslashreplace"), flush=False)  # fmt: skip
    flush_out()
    return EXIT_OK
