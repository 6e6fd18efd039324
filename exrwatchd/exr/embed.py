"""Deterministic structural embeddings of EXR headers (feature hashing, no learned model).

Each token family hashes into its own block of dimensions and is L2-normalised on its own
before being scaled by sqrt(its weight share). The cosine of two vectors is therefore the
share-weighted mean of per-family cosines, which is what makes the numbers explainable to a
TD (docs/embeddings.md). Everything is a pure function of the parts' structure.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np

from exrwatchd.exr.model import Box, Channel, Inspection, Part

__all__ = ["CHANNEL_DIM", "EMBEDDING_VERSION", "METADATA_DIM", "as_float32_base64",
           "as_float_list", "channel_fingerprint", "clear_caches", "embed_parts",
           "embedding_fields", "metadata_embedding"]  # fmt: skip

#: Bump whenever any token, weight, block size or the hash changes: vectors of different
#: versions are not comparable and must be recomputed, never mixed in one query.
EMBEDDING_VERSION = 2
METADATA_DIM = 384
CHANNEL_DIM = 128

# Family -> (block size, weight share). The key is the token's first character, so one
# string is a complete cache key. Insertion order fixes the block offsets: do not reorder.
_CHANNEL_FAMILIES = {
    "n": (48, 0.35),  # full channel names
    "l": (32, 0.20),  # layers: name prefix before the last dot ("" for R, G, B, A, Z)
    "f": (24, 0.20),  # last name component with its pixel type ("R:half")
    "t": (16, 0.15),  # pixel type, sampling, pLinear
    "k": (8, 0.10),  # channel count, log2 scale
}
# Structure (P and L: how the file is split into parts; the channels) holds 0.83 of the
# weight, so that files of one writer (same compression, storage and size) with unrelated
# structures still score <= 0.5 (docs/embeddings.md).
_META_FAMILIES = {
    "P": (32, 0.40),  # the shape: part count and deep or not, one-hot (never collides)
    "L": (32, 0.12),  # multipart, deep, multiview; per part: type, view, part name
    "C": (20, 0.05),  # compression: one-hot + lossless/lossy class
    "S": (28, 0.04),  # part type (deep or not), tile size and levels, line order
    "G": (32, 0.03),  # display window size and aspect, pixel aspect, dataWindow==display
    "D": (16, 0.02),  # data window size: follows the content, so coarse and light
    "A": (96, 0.03),  # optional attribute names with their types, never values
}
_META_CHANNEL_SHARE = 0.31  # the channel fingerprint fills the last CHANNEL_DIM dims
_SHAPE_MAX_PARTS = _META_FAMILIES["P"][0] // 2  # 16: more parts share the last slot pair

# A closed vocabulary gets one-hot dims so two compressions can never collide in the hash.
_COMPRESSIONS = ("none", "rle", "zips", "zip", "piz", "pxr24", "b44", "b44a", "dwaa", "dwab",
                 "htj2k256", "htj2k32", "lj2k", "zstd")  # fmt: skip
_LOSSLESS = frozenset({"none", "rle", "zips", "zip", "piz", "htj2k256", "htj2k32", "zstd"})
_LOSSY = frozenset({"pxr24", "b44", "b44a", "dwaa", "dwab"})

# Already represented by their own families; hashing them again would only make every pair
# of EXR files look alike.
_STRUCTURAL_ATTRIBUTES = frozenset({
    "channels", "compression", "dataWindow", "displayWindow", "lineOrder", "pixelAspectRatio",
    "screenWindowCenter", "screenWindowWidth", "tiles", "name", "type", "view", "version",
    "chunkCount",
})  # fmt: skip

_NAME_TYPE = itemgetter(0, 1)  # Attribute -> (name, type): the value never enters a key
_DATA_WINDOW = attrgetter("data_window")


def _blocks(families: dict[str, tuple[int, float]]) -> dict[str, tuple[int, int]]:
    ends = np.cumsum([size for size, _ in families.values()])
    return {key: (int(end) - size, size) for key, (size, _), end in
            zip(families, families.values(), ends, strict=True)}  # fmt: skip


_BLOCKS = {**_blocks(_CHANNEL_FAMILIES), **_blocks(_META_FAMILIES)}
_CHANNEL_FAMILY_AT = [key for key, (size, _) in _CHANNEL_FAMILIES.items() for _ in range(size)]
_META_FAMILY_AT = [key for key, (size, _) in _META_FAMILIES.items() for _ in range(size)]
assert sum(s for s, _ in _CHANNEL_FAMILIES.values()) == CHANNEL_DIM
assert sum(s for s, _ in _META_FAMILIES.values()) + CHANNEL_DIM == METADATA_DIM


@lru_cache(maxsize=1 << 16)
def _slot(token: str) -> tuple[int, float]:
    """Token -> (index in its space, sign). Family is the first character."""
    offset, size = _BLOCKS[token[0]]
    if token[0] == "C":
        name = token[1:]
        if name in _COMPRESSIONS:
            return offset + _COMPRESSIONS.index(name), 1.0
        if name in ("=lossless", "=lossy"):
            return offset + size - (2 if name == "=lossless" else 1), 1.0
        offset, size = offset + len(_COMPRESSIONS), size - len(_COMPRESSIONS) - 2
    # blake2b is stable across processes and machines, unlike hash(). Its bytes are only ever
    # read as an integer (bucket and sign), never reinterpreted as floats.
    data = token.encode("utf-8", "surrogatepass")
    h = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
    return offset + h % size, (1.0 if h >> 63 else -1.0)


def _add(acc: dict[int, float], token: str, weight: float = 1.0) -> None:
    i, sign = _slot(token)
    acc[i] = acc.get(i, 0.0) + sign * weight  # insertion-ordered: same sums on every run


def _log2(n: float) -> float:
    # Piecewise-linear log2, exact at powers of two. frexp and basic arithmetic are exact in
    # IEEE 754, unlike libm's log2, so bucket weights are bit-identical on every machine.
    m, e = math.frexp(n)
    return e - 2.0 + 2.0 * m


def _add_log2(acc: dict[int, float], prefix: str, n: float, per_octave: float, w: float) -> None:
    if not n > 0:
        _add(acc, f"{prefix}empty", w)
        return
    # Linear interpolation between neighbouring buckets: a size drifting a few pixels across
    # a bucket edge moves the vector a little instead of jumping.
    x = per_octave * _log2(n)
    lo = math.floor(x)
    _add(acc, f"{prefix}{lo}", w * (1.0 - (x - lo)))
    if x != lo:
        _add(acc, f"{prefix}{lo + 1}", w * (x - lo))


def _normalised(
    acc: dict[int, float], families: dict[str, tuple[int, float]], family_at: list[str], dim: int
) -> tuple[np.ndarray, float]:
    """Dense vector with each family scaled to norm sqrt(share); also the summed share."""
    blocks: dict[str, list[tuple[int, float]]] = {key: [] for key in families}
    for i, x in acc.items():
        blocks[family_at[i]].append((i, x))
    idx: list[int] = []
    val: list[float] = []
    total = 0.0
    for key, block in blocks.items():
        # fsum and sqrt are correctly rounded, so the bytes match on every machine and Python
        norm = math.sqrt(math.fsum(x * x for _, x in block))
        if norm > 0.0:  # a family with no tokens (or all cancelled) contributes nothing
            scale = math.sqrt(families[key][1]) / norm
            idx += [i for i, _ in block]
            val += [x * scale for _, x in block]
            total += families[key][1]
    v = np.zeros(dim)
    v[idx] = val
    return v, total


@lru_cache(maxsize=1 << 15)
def _channel_slots(name: str, ctype: str, xs: int, ys: int, linear: bool) -> tuple[Any, ...]:
    layer, _, leaf = name.rpartition(".")
    tokens = (f"n{name}", f"l{layer}", f"f{leaf}:{ctype}", f"t{ctype}:{xs}x{ys}:{int(linear)}")
    return tuple(map(_slot, tokens))


@lru_cache(maxsize=1024)
def _channel_vector(channel_sets: tuple[tuple[Channel, ...], ...]) -> np.ndarray:
    acc: dict[int, float] = {}
    # Sorted so that the float sums, and so the bytes, do not depend on channel order.
    channels = sorted(ch[:5] for chs in channel_sets for ch in chs)
    for ch in channels:
        for i, sign in _channel_slots(*ch):
            acc[i] = acc.get(i, 0.0) + sign
    if channel_sets:
        _add_log2(acc, "kcount=", len(channels) + 1, 2.0, 1.0)
    else:
        _add(acc, "k<no parts>")
    v, total = _normalised(acc, _CHANNEL_FAMILIES, _CHANNEL_FAMILY_AT, CHANNEL_DIM)
    v /= math.sqrt(total)
    v.flags.writeable = False
    return v


def _part_key(p: Part) -> tuple[Any, ...]:
    # Everything structural about a part except its data window size (which moves per frame
    # and is handled separately), as a hashable tuple: the lru_cache key below.
    return (p.type, p.view, p.name, p.compression, p.tiles, p.line_order, p.display_window,
            p.data_window == p.display_window, p.pixel_aspect_ratio, p.channels,
            tuple(map(_NAME_TYPE, p.attributes)))  # fmt: skip


@lru_cache(maxsize=1024)
def _static_meta(keys: tuple[tuple[Any, ...], ...]) -> tuple[np.ndarray, float]:
    """Families L, C, S, G, A and the channel block (not yet divided by the total norm), and
    the sum of their shares. Family D is added per file: it changes from frame to frame."""
    acc: dict[int, float] = {}
    n = len(keys)
    w = 1.0 / n  # per-part tokens are averaged so file-level tokens keep their weight
    views = {k[1] for k in keys} | {ch.view for k in keys for ch in k[9]}
    views.discard(None)
    deep, multiview = any(k[0] in ("deepscanline", "deeptile") for k in keys), len(views) > 1
    # The shape as one one-hot slot: two files share family P only when part count and deep
    # both agree, so what nearly every file has (flat, one view) cannot make them alike, and
    # no hash collision can make two shapes alike either.
    acc[_BLOCKS["P"][0] + 2 * (min(n, _SHAPE_MAX_PARTS) - 1) + deep] = 1.0
    _add(acc, f"Lmultipart={n > 1}")
    _add(acc, f"Lmultiview={multiview}")
    _add(acc, f"Ldeep={deep}")
    for ptype, view, name, comp, tiles, order, disp, dw_is_disp, par, _, attrs in keys:
        _add(acc, f"Ltype={ptype}", w)
        _add(acc, f"Lview={view}", w)
        if name is not None:
            # digits folded so "beauty_v012" and "beauty_v013" are the same layout
            _add(acc, "Lpart=" + "".join("#" if c.isdigit() else c for c in name.lower()), w / 2)
        _add(acc, f"C{comp}", w)
        if comp in _LOSSLESS or comp in _LOSSY:
            _add(acc, "C=lossless" if comp in _LOSSLESS else "C=lossy", w / 2)
        _add(acc, f"Sorder={order}", w)
        _add(acc, f"Skind={ptype}", w)  # deep and flat store samples in different ways
        if tiles is not None:
            _add(acc, f"Slevels={tiles.level_mode}/{tiles.rounding_mode}", w)
            tx, ty = (round(_log2(max(s, 1))) for s in (tiles.x_size, tiles.y_size))
            _add(acc, f"Stile={tx}x{ty}", w)
        width, height = disp[2] - disp[0] + 1, disp[3] - disp[1] + 1
        _add_log2(acc, "Gw=", width, 2.0, w)
        _add_log2(acc, "Gh=", height, 2.0, w)
        _add_log2(acc, "Gaspect=", width / height if width > 0 and height > 0 else 0, 4.0, w)
        _add(acc, f"Gdw_is_display={dw_is_disp}", w)
        ok = isinstance(par, float | int) and math.isfinite(par) and par > 0
        _add(acc, f"Gpar={float(round(par, 2)) if ok else 'invalid'}", w)
        for attr_name, attr_type in attrs:
            if attr_name not in _STRUCTURAL_ATTRIBUTES:
                _add(acc, f"A{attr_name}:{attr_type}", w)
    v, total = _normalised(acc, _META_FAMILIES, _META_FAMILY_AT, METADATA_DIM)
    v[-CHANNEL_DIM:] = _channel_vector(tuple(k[9] for k in keys)) * math.sqrt(_META_CHANNEL_SHARE)
    v.flags.writeable = False
    return v, total + _META_CHANNEL_SHARE


@lru_cache(maxsize=4096)
def _data_window_tokens(width: int, height: int) -> tuple[tuple[int, float], ...]:
    acc: dict[int, float] = {}
    _add_log2(acc, "Dw=", width, 1.0, 1.0)
    _add_log2(acc, "Dh=", height, 1.0, 1.0)
    return tuple(acc.items())


@lru_cache(maxsize=4096)
def _data_window_part(windows: tuple[Box, ...]) -> tuple[np.ndarray, np.ndarray, float]:
    """Family D as (indices, values, share): sparse, because it changes from frame to frame."""
    acc: dict[int, float] = {}
    for x0, y0, x1, y1 in windows:
        for i, x in _data_window_tokens(x1 - x0 + 1, y1 - y0 + 1):
            acc[i] = acc.get(i, 0.0) + x
    idx, val = np.array(list(acc), dtype=np.intp), np.array(list(acc.values()))
    norm = math.sqrt(math.fsum(x * x for x in acc.values()))
    share = _META_FAMILIES["D"][1] if norm > 0.0 else 0.0
    val *= math.sqrt(share) / norm if norm > 0.0 else 0.0
    idx.flags.writeable = val.flags.writeable = False
    return idx, val, share


def metadata_embedding(parts: Sequence[Part]) -> np.ndarray:
    """Unit float32 vector of shape (METADATA_DIM,) describing the file's structure.

    Read-only: the same array is handed out for every file of the same structure and size.
    """
    if not parts:
        v = np.zeros(METADATA_DIM, dtype=np.float32)
        v[_slot("L<no parts>")[0]] = 1.0
        v.flags.writeable = False
        return v
    return _metadata_vector(tuple(map(_part_key, parts)), tuple(map(_DATA_WINDOW, parts)))


@lru_cache(maxsize=2048)
def _metadata_vector(keys: tuple[tuple[Any, ...], ...], windows: tuple[Box, ...]) -> np.ndarray:
    # Cached whole: the frames of a sequence share structure and size, and the few small
    # numpy operations below cost more than the lookup (docs/benchmarks.md).
    static, total = _static_meta(keys)
    idx, val, share = _data_window_part(windows)
    v = static.copy()
    v[idx] += val  # idx is duplicate-free: accumulated in a dict
    v *= 1.0 / math.sqrt(total + share)
    out = v.astype(np.float32)
    out.flags.writeable = False
    return out


def channel_fingerprint(parts: Sequence[Part]) -> np.ndarray:
    """Unit float32 vector of shape (CHANNEL_DIM,) describing the channel layout alone.

    Read-only, and shared between files of the same layout, like metadata_embedding's.
    """
    return _channel_fingerprint32(tuple(p.channels for p in parts))


@lru_cache(maxsize=1024)
def _channel_fingerprint32(channel_sets: tuple[tuple[Channel, ...], ...]) -> np.ndarray:
    out = _channel_vector(channel_sets).astype(np.float32)
    out.flags.writeable = False
    return out


def embed_parts(parts: Sequence[Part]) -> tuple[np.ndarray, np.ndarray]:
    """`(metadata_embedding(parts), channel_fingerprint(parts))`."""
    return metadata_embedding(parts), channel_fingerprint(parts)


def as_float_list(vector: np.ndarray) -> list[float]:
    """A vector as JSON numbers (`inspect --json --embeddings`, for people and scripts)."""
    return vector.tolist()  # type: ignore[no-any-return]


def as_float32_base64(vector: np.ndarray) -> str:
    """A vector as base64 of little-endian float32 (the daemon's record): exact, 2 KB
    instead of ~10 KB of decimal text, and many times faster to parse back."""
    return base64.b64encode(vector.astype("<f4").tobytes()).decode()


def embedding_fields(result: Inspection, encode: Callable[[np.ndarray], Any]) -> dict[str, Any]:
    """The record's embedding fields, the one place they are made: the version and both
    vectors, each written by `encode`; None for a file that could not be read."""
    if result.error is not None:
        return {"embedding_version": EMBEDDING_VERSION, "metadata_embedding": None,
                "channel_fingerprint": None}  # fmt: skip
    metadata, channels = embed_parts(result.parts)
    return {"embedding_version": EMBEDDING_VERSION, "metadata_embedding": encode(metadata),
            "channel_fingerprint": encode(channels)}  # fmt: skip


def clear_caches() -> None:
    """Drop every memoised structure (tests, or to release memory); results do not change."""
    for cached in (_slot, _channel_slots, _channel_vector, _static_meta, _data_window_tokens,
                   _data_window_part, _metadata_vector, _channel_fingerprint32):  # fmt: skip
        cached.cache_clear()
