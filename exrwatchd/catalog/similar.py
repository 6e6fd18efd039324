"""Similarity over the catalog's vectors: a running top-k over chunks, and what two layouts
differ in, in words. Pure numpy; the sinks' readers (sinks/local_read.py, sinks/vast_read.py)
hand the chunks over, `exrwatchd similar` (cli/similar.py) prints the result.

The vectors are unit length (exr/embed.py), so a dot product is the cosine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["VECTOR_COLUMNS", "Layout", "TopK", "VectorChunk", "assemble_layouts", "differences",
           "layout_of_parts", "within_range"]  # fmt: skip

#: The files columns `similar` ranks by: the whole layout, or the channel layout alone.
VECTOR_COLUMNS = ("metadata_embedding", "channel_fingerprint")


class VectorChunk(NamedTuple):
    """Rows of the catalog: their keys (file_id, as bytes) and a float32 (n, dim) matrix."""

    keys: np.ndarray
    vectors: np.ndarray


class TopK:
    """The k best (highest, or with `lowest` the lowest) scores seen so far, with their keys.

    Memory is O(k + one chunk) whatever the number of rows: each chunk is cut to its own k
    best with argpartition (linear), then merged with the k kept so far.
    """

    def __init__(self, k: int, *, lowest: bool = False) -> None:
        self.k = max(int(k), 0)
        self._sign = -1.0 if lowest else 1.0
        self._scores = np.empty(0, dtype=np.float32)  # sign * score: larger is better
        self._keys = np.empty(0, dtype=object)
        self.seen = 0

    def push(self, scores: np.ndarray, keys: Sequence[Any] | np.ndarray) -> None:
        self.seen += len(scores)
        if self.k == 0 or len(scores) == 0:
            return
        signed = np.asarray(scores, dtype=np.float32) * np.float32(self._sign)
        if len(signed) > self.k:
            best = np.argpartition(signed, -self.k)[-self.k :]
            signed = signed[best]
            keys = np.asarray(keys, dtype=object)[best]
        scores_all = np.concatenate([self._scores, signed])
        keys_all = np.concatenate([self._keys, np.asarray(keys, dtype=object)])
        if len(scores_all) > self.k:
            keep = np.argpartition(scores_all, -self.k)[-self.k :]
            scores_all, keys_all = scores_all[keep], keys_all[keep]
        self._scores, self._keys = scores_all, keys_all

    def rank(self, query: np.ndarray, chunks: Iterable[VectorChunk]) -> TopK:
        """Push the cosine of `query` with every row of `chunks`; returns self."""
        q = np.ascontiguousarray(query, dtype=np.float32)
        for chunk in chunks:
            self.push(chunk.vectors @ q, chunk.keys)
        return self

    def result(self) -> list[tuple[Any, float]]:
        """(key, score), best first; equal scores in key order, so the output is stable."""
        order = sorted(range(len(self._scores)), key=lambda i: (-self._scores[i], self._keys[i]))
        return [(self._keys[i], float(self._scores[i]) * self._sign) for i in order]


def within_range(directory: str) -> tuple[str, str]:
    """[low, high) of the paths under `directory` in the catalog's byte order: '/' + 1 is
    '0', so every path starting with `directory/` sorts inside, nothing else does."""
    prefix = directory.rstrip("/") + "/"
    return prefix, prefix[:-1] + "0"


# --------------------------------------------------------------------------- layouts


class Layout(NamedTuple):
    """What `similar` says two files differ in: part count, channel set, compression, data
    window (per part, [xmin, ymin, xmax, ymax] inclusive)."""

    parts: int
    channels: frozenset[str]
    compressions: tuple[str, ...]
    data_windows: tuple[tuple[int, int, int, int], ...]


def layout_of_parts(parts: Sequence[Any]) -> Layout:
    """The layout of inspected parts (exrwatchd.exr.Part)."""
    return Layout(
        len(parts),
        frozenset(ch.name for p in parts for ch in p.channels),
        tuple(p.compression for p in parts),
        tuple(tuple(p.data_window) for p in parts),
    )


def assemble_layouts(
    files: Iterable[Sequence[Any]], parts: Iterable[Sequence[Any]],
    channels: Iterable[Sequence[Any]],
) -> dict[str, tuple[str, Layout]]:  # fmt: skip
    """file_id -> (path, layout) from catalog rows: files (file_id, file_path,
    multipart_count), parts (file_id, compression, data_window JSON) in part order, and
    channels (file_id, channel_name)."""
    per_part: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    for fid, compression, window in parts:
        per_part.setdefault(fid, []).append((compression, tuple(json.loads(window))))
    names: dict[str, set[str]] = {}
    for fid, name in channels:
        names.setdefault(fid, set()).add(name)
    out = {}
    for fid, path, count in files:
        mine = per_part.get(fid, [])
        out[fid] = (path, Layout(int(count), frozenset(names.get(fid, ())),
                                 tuple(c for c, _ in mine), tuple(w for _, w in mine)))  # type: ignore[misc]
    return out


def _names(names: Iterable[str], limit: int = 6) -> str:
    shown = sorted(names)
    text = ", ".join(shown[:limit])
    return text + (f" (+{len(shown) - limit} more)" if len(shown) > limit else "")


def _window(box: Sequence[int]) -> str:
    x0, y0, x1, y1 = box
    return f"{x1 - x0 + 1}x{y1 - y0 + 1} at ({x0},{y0})"


def differences(query: Layout, other: Layout) -> list[str]:
    """What `other` differs from `query` in, in words; [] for the same layout."""
    out = []
    if other.parts != query.parts:
        out.append(f"{other.parts} part{'s' * (other.parts != 1)} instead of {query.parts}")
    added, missing = other.channels - query.channels, query.channels - other.channels
    if added:
        out.append(f"adds channels {_names(added)}")
    if missing:
        out.append(f"lacks channels {_names(missing)}")
    if set(other.compressions) != set(query.compressions):
        out.append(f"compression {'/'.join(sorted(set(other.compressions))) or 'none'} "
                   f"instead of {'/'.join(sorted(set(query.compressions))) or 'none'}")  # fmt: skip
    for i, (mine, theirs) in enumerate(zip(query.data_windows, other.data_windows, strict=False)):
        if tuple(mine) != tuple(theirs):
            where = f" (part {i})" if max(query.parts, other.parts) > 1 else ""
            out.append(f"data window {_window(theirs)} instead of {_window(mine)}{where}")
            break  # the first differing part says enough; frames move their boxes together
    return out
