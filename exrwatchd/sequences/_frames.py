"""Frame names and keys: which files belong to one sequence (padding as a minimum width), and
the layout key frames are compared by."""


from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal, NamedTuple, TypeAlias

from exrwatchd.exr import Part
from exrwatchd.exr.naming import MAX_FRAME, split_frame_name

#: Inclusive `(start, end)`. Gaps are kept as ranges so frames 1 and 10**9 cost one tuple.
Range: TypeAlias = tuple[int, int]

#: "warning": a problem appeared; "info": one went away.
Level: TypeAlias = Literal["warning", "info"]

#: Part of every layout key: keys built by another recipe must never compare equal, or frames
#: stored before an upgrade would all look like the odd ones out (recompute them instead).
LAYOUT_KEY_VERSION = 1

# Frame numbers go to INTEGER columns; past this bound naming.frame_number says None too.
_MAX_FRAME = MAX_FRAME


@dataclass(frozen=True, slots=True)
class SequenceKey:
    """Identity of a sequence: its directory and printf pattern (`beauty.%04d.exr`)."""

    directory: str
    pattern: str  # a literal "%" in the name is written "%%", so `pattern % n` always works

    def path(self, frame: int) -> str:
        """The path frame `frame` has (or would have) in this sequence."""
        return os.path.join(self.directory, self.pattern % frame)


def frame_pattern(head: str, width: int, tail: str) -> str:
    """The printf pattern of frames `head` + number padded to `width` + `tail`."""
    return f"{head.replace('%', '%%')}%0{width}d{tail.replace('%', '%%')}"


_PATTERN = re.compile(r"\A((?:[^%]|%%)*)%0(\d+)d((?:[^%]|%%)*)\Z", re.DOTALL)


def split_pattern(pattern: str) -> tuple[str, int, str]:
    """`(head, width, tail)` of a pattern made by `frame_pattern`; ValueError otherwise."""
    match = _PATTERN.match(pattern)
    if match is None:
        raise ValueError(f"{pattern!r} is not a frame pattern such as name.%04d.exr")
    head, width, tail = match.groups()
    return head.replace("%%", "%"), int(width), tail.replace("%%", "%")


class FrameName(NamedTuple):
    key: SequenceKey
    frame: int


def parse_frame_path(path: str | os.PathLike[str]) -> FrameName | None:
    """Frame number of `path` and the sequence its own spelling names (padding = digits
    written), or None when it is not a frame. Which sequence it joins depends on its
    neighbours too (a 4-digit unpadded frame joins a 3-padded sequence): `group_frames`.

    None also for non-ASCII digits (`key.path` could not rebuild the name) and for frames
    beyond 64 bits (the catalog stores those as null). Negative frames (`beauty.-001.exr`)
    are not frames: naming.py wants the digits right after "." or "_", and the catalog's
    frame_number and this module must agree on which files are frames. Everything after
    parsing (summarize, changes) works for negative numbers too.
    """
    directory, basename = os.path.split(os.fspath(path))
    split = split_frame_name(basename)
    if split is None:
        return None
    head, digits, tail = split
    if not digits.isascii() or len(digits.lstrip("0")) > len(str(_MAX_FRAME)):
        return None  # tested before int(): that is slow on long strings, an error past 4300
    frame = int(digits)
    if frame > _MAX_FRAME:
        return None
    return FrameName(SequenceKey(directory, frame_pattern(head, len(digits), tail)), frame)


class FrameStatus(StrEnum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"  # recorded before it was whole (journal status "incomplete")
    ERROR = "error"  # could not be read (journal status "failed")
    UNHEALTHY = "unhealthy"  # readable and whole, but a check flagged it
    IN_PROGRESS = "in_progress"  # found incomplete, the daemon waits for the rest to land


@dataclass(frozen=True, slots=True)
class Frame:
    number: int
    path: str
    status: FrameStatus
    layout: str | None = None  # layout_key of its parts; None when unknown (unreadable)


def group_frames(frames: Iterable[Frame]) -> dict[SequenceKey, list[Frame]]:
    """The sequences `frames` (any directories and names, distinct paths) make.

    fileseq's rule: frames of one directory and name (head and tail around the number), in
    order of width, join the sequence of the narrowest width seen so far unless they are
    zero-padded and wider, which starts a sequence of their width. So an unpadded frame
    (`1000`) joins a 3-padded sequence, a zero-padded one (`0100`) never does. Raises
    ValueError for a path that is not a frame.
    """
    families: dict[tuple[str, str, str], list[tuple[str, Frame]]] = {}
    for frame in frames:
        directory, basename = os.path.split(frame.path)
        split = split_frame_name(basename)
        if split is None:
            raise ValueError(f"{frame.path!r} is not a frame of a sequence")
        head, digits, tail = split
        families.setdefault((directory, head, tail), []).append((digits, frame))
    out: dict[SequenceKey, list[Frame]] = {}
    for (directory, head, tail), members in families.items():
        # Within a width, zero-padded first: a deterministic answer where fileseq's
        # depends on set order (`01`, `001`, `100`: `100` goes with `001`).
        members.sort(key=lambda m: (len(m[0]), not _zero_padded(m[0]), m[1].number))
        width, current = 0, None
        for digits, frame in members:
            if current is None or (len(digits) != width and _zero_padded(digits)):
                width = len(digits)
                key = SequenceKey(directory, frame_pattern(head, width, tail))
                current = out.setdefault(key, [])
            current.append(frame)
    return out


def _zero_padded(digits: str) -> bool:
    return len(digits) > 1 and digits[0] == "0"


def layout_key(parts: Sequence[Part]) -> str | None:
    """Short stable key of a file's structure: equal keys, same layout. None without parts.

    In it: per part (in file order) its type, name, view, compression, line order, tiling,
    display window, pixel aspect and channels (name, type, sampling, pLinear, view). Left out
    because they change from frame to frame of a healthy sequence: the data window (and the
    chunk count that follows it) and every attribute (timecode, dates, render stats; some
    renderers even write some attributes only on some frames).
    """
    if not parts:
        return None
    return _layout_key(tuple(
        (p.type, p.name, p.view, p.compression, p.line_order, p.tiles, p.display_window,
         p.pixel_aspect_ratio, p.channels)
        for p in parts
    ))  # fmt: skip


@lru_cache(maxsize=1024)
def _layout_key(parts: tuple[tuple[Any, ...], ...]) -> str:
    # Cached: every frame of a sequence has the same layout, and this runs once per file.
    described = [
        [ptype, name, view, compression, order,
         None if tiles is None else [tiles.x_size, tiles.y_size, tiles.level_mode,
                                     tiles.rounding_mode],
         display, aspect, channels]
        for ptype, name, view, compression, order, tiles, display, aspect, channels in parts
    ]  # fmt: skip
    # JSON rather than repr: explicit, identical in every process and Python version; ASCII
    # escapes keep names that are not valid UTF-8 (surrogates) hashable.
    data = json.dumps([LAYOUT_KEY_VERSION, described], separators=(",", ":")).encode()
    return f"{LAYOUT_KEY_VERSION}:{hashlib.blake2b(data, digest_size=10).hexdigest()}"


