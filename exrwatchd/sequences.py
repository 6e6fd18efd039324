"""Frame sequences: which files belong together, which frames are missing or look wrong.

Pure logic: no I/O, no clock, no state. The caller keeps the frames of each sequence (journal)
and the last summary (catalog), calls `summarize` after every arrival, rename or deletion, and
logs what `changes(previous, current)` returns. Because `changes` compares two summaries and
nothing else, the same call is right after a restart or a reconciliation (compare with the
stored summary, not with an empty one) and can be debounced (compare with an older summary).

Naming (see `parse_frame_path`): the frame number is the last run of digits before `.exr`,
after a `.` or `_`, exactly as `exrwatchd.exr.naming.frame_number` reads it. Padding is a
minimum width, as fileseq and renderers read it (`group_frames`): `comp.101.exr`,
`comp.102.exr` and `comp.1000.exr` are one 3-padded sequence (`comp.%03d.exr`), so a render
crossing frame 999 or 9999 does not split; `a.99.exr` and `a.100.exr` are one unpadded one.
Only a zero-padded spelling wider than the narrowest one starts another sequence
(`a.1.exr` and `a.0001.exr` are two). Same grouping as fileseq.findSequencesOnDisk except:
negative frames and names without a `.` or `_` before the frame are not frames here, and
among frames of one width the zero-padded ones decide first (fileseq leaves that order to
chance). Printed in fileseq's notation by `notation`: `beauty.1001-1040,1042-1100#.exr`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from itertools import pairwise
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


@dataclass(frozen=True, slots=True)
class SequenceSummary:
    """One row of the sequences table, minus the update time (the caller's clock)."""

    directory: str
    pattern: str
    first: int
    last: int
    count: int
    missing: tuple[Range, ...]  # sorted, disjoint, each strictly between two present frames
    incomplete: tuple[int, ...]
    unhealthy: tuple[int, ...]  # status error or unhealthy: present but not usable
    structure_consistent: bool  # every frame with a known layout has the same one
    layout: str | None  # the majority layout (ties: the one of the lowest frame)
    odd_layout: tuple[int, ...]  # frames whose known layout is not the majority's
    in_progress: tuple[int, ...] = ()  # present but still being written (re-checked)

    @property
    def key(self) -> SequenceKey:
        return SequenceKey(self.directory, self.pattern)

    @property
    def missing_count(self) -> int:
        return sum(end - start + 1 for start, end in self.missing)

    @property
    def is_whole(self) -> bool:
        """No frame missing, incomplete, unusable, of another layout or still being written."""
        return not (self.missing or self.incomplete or self.unhealthy or self.odd_layout
                    or self.in_progress)  # fmt: skip


def summarize(key: SequenceKey, frames: Iterable[Frame]) -> SequenceSummary:
    """The summary of the sequence `key` made of `frames` (any order).

    O(n log n) in the number of frames, independent of the span they cover. Raises ValueError
    without frames (a sequence with none does not exist: pass None to `changes`) or with two
    frames of one number (one key and number are one path, so the caller mixed things up).
    """
    ordered = sorted(frames, key=_number)
    if not ordered:
        raise ValueError(f"no frames for {key.pattern} in {key.directory}")
    missing: list[Range] = []
    for a, b in pairwise(ordered):
        if b.number - a.number > 1:
            missing.append((a.number + 1, b.number - 1))
        elif b.number == a.number:
            raise ValueError(f"frame {a.number} twice: {a.path!r} and {b.path!r}")
    # Counter keeps first-seen order and max() returns the first maximum, so on a tie the
    # layout of the lowest frame wins, whatever order the frames came in.
    counts = Counter(f.layout for f in ordered if f.layout is not None)
    majority = max(counts, key=counts.__getitem__) if counts else None
    return SequenceSummary(
        directory=key.directory, pattern=key.pattern,
        first=ordered[0].number, last=ordered[-1].number, count=len(ordered),
        missing=tuple(missing),
        incomplete=tuple(f.number for f in ordered if f.status == FrameStatus.INCOMPLETE),
        unhealthy=tuple(f.number for f in ordered if f.status in _UNUSABLE),
        structure_consistent=len(counts) <= 1, layout=majority,
        odd_layout=tuple(f.number for f in ordered if f.layout not in (None, majority)),
        in_progress=tuple(f.number for f in ordered if f.status == FrameStatus.IN_PROGRESS),
    )  # fmt: skip


def padding_chars(width: int) -> str:
    """fileseq's padding characters (its default style): `#` per 4 digits, else `@` each."""
    width = max(1, width)
    return "#" * (width // 4) if width % 4 == 0 else "@" * width


def frame_set(ranges: Iterable[Range]) -> str:
    """Inclusive ranges as a frame set VFX tools parse: `1001-1040,1042,1044-1100`."""
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def present_ranges(summary: SequenceSummary) -> tuple[Range, ...]:
    """The frames of `summary` that exist, as ranges: first to last minus the missing."""
    return _subtract(((summary.first, summary.last),), summary.missing)


def notation(summary: SequenceSummary) -> str:
    """The sequence as fileseq, Nuke and RV write it: `beauty.1001-1040,1042-1100#.exr`.

    The frame set lists the frames present; the padding characters give the width.
    """
    head, width, tail = split_pattern(summary.pattern)
    return f"{head}{frame_set(present_ranges(summary))}{padding_chars(width)}{tail}"


@dataclass(frozen=True, slots=True)
class SequenceEvent:
    """A log event about a sequence: `log.<level>(event.event, **event.fields())`."""

    event: str  # "sequence.gap" | "sequence.changed_layout" | "sequence.gap_filled" | ...
    level: Level
    directory: str
    pattern: str
    ranges: tuple[Range, ...]  # the frames concerned, as inclusive ranges

    #: Ranges listed in a log line; the rest are counted. A sequence with every other frame
    #: missing must not write a megabyte per line (`exrwatchd sequences` lists them all).
    MAX_LOGGED_RANGES = 20

    def fields(self) -> dict[str, Any]:
        shown = self.ranges[: self.MAX_LOGGED_RANGES]
        fields = {"directory": self.directory, "pattern": self.pattern,
                  "ranges": [list(r) for r in shown],
                  "frames": sum(end - start + 1 for start, end in self.ranges)}  # fmt: skip
        if len(shown) < len(self.ranges):
            fields["ranges_not_shown"] = len(self.ranges) - len(shown)
        return fields


def changes(before: SequenceSummary | None, after: SequenceSummary | None) -> list[SequenceEvent]:
    """What to log when the summary of one sequence goes from `before` to `after`.

    - sequence.gap: frames missing now that were not missing before (a missing frame is always
      between two present ones, so a sequence still growing at its end has no gap);
    - sequence.changed_layout: frames that now differ from the majority layout and did not;
    - sequence.gap_filled: frames missing before that are present now (not those that left
      [first, last] because the first or last frame went away);
    - sequence.completed: the sequence became whole (see SequenceSummary.is_whole).
    Nothing when `after` is None: a sequence whose last frame went away has no problems left.
    """
    if after is None:
        return []
    if before is not None and before.key != after.key:
        raise ValueError(f"{before.key} and {after.key} are different sequences")

    def event(name: str, level: Level, ranges: tuple[Range, ...]) -> SequenceEvent:
        return SequenceEvent(name, level, after.directory, after.pattern, ranges)

    old_missing = before.missing if before is not None else ()
    old_odd = frozenset(before.odd_layout) if before is not None else frozenset()
    events: list[SequenceEvent] = []
    if gaps := _subtract(after.missing, old_missing):
        events.append(event("sequence.gap", "warning", gaps))
    if odd := compress_frames([n for n in after.odd_layout if n not in old_odd]):
        events.append(event("sequence.changed_layout", "warning", odd))
    if before is not None:
        gone = _subtract(before.missing, after.missing)
        if filled := _clip(gone, after.first, after.last):
            events.append(event("sequence.gap_filled", "info", filled))
        if after.is_whole and not before.is_whole:
            events.append(event("sequence.completed", "info", ((after.first, after.last),)))
    return events


_UNUSABLE = frozenset({FrameStatus.ERROR, FrameStatus.UNHEALTHY})


def _number(frame: Frame) -> int:
    return frame.number


def compress_frames(numbers: Sequence[int]) -> tuple[Range, ...]:
    """Sorted distinct numbers -> ranges."""
    out: list[Range] = []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return tuple(out)


def _subtract(a: Sequence[Range], b: Sequence[Range]) -> tuple[Range, ...]:
    """Frames in `a` and not in `b`; both sorted and disjoint. Linear, never per frame."""
    out: list[Range] = []
    j = 0
    for start, end in a:
        while j < len(b) and b[j][1] < start:
            j += 1
        k = j  # b[j] may still overlap the next range of a: do not move j past it
        while start <= end and k < len(b) and b[k][0] <= end:
            if b[k][0] > start:
                out.append((start, b[k][0] - 1))
            start = max(start, b[k][1] + 1)
            k += 1
        if start <= end:
            out.append((start, end))
    return tuple(out)


def _clip(ranges: Iterable[Range], lo: int, hi: int) -> tuple[Range, ...]:
    return tuple((max(s, lo), min(e, hi)) for s, e in ranges if e >= lo and s <= hi)


# ---- records: how the journal keeps a summary and queues it for the sinks

#: Outbox keys of sequences start with this, so they can never equal a watched (absolute)
#: path, even of a file literally named `beauty.%04d.exr`.
SEQUENCE_KEY_PREFIX = "sequence:"


def sequence_path(directory: str, pattern: str) -> str:
    """The outbox key of a sequence: its prefix, then where its pattern would sit as a file."""
    return SEQUENCE_KEY_PREFIX + os.path.join(directory, pattern)


def summary_record(summary: SequenceSummary, updated_at: datetime) -> dict[str, Any]:
    """The journal record of a sequence (JSON-ready), `notation` included."""
    return {
        "directory": summary.directory,
        "pattern": summary.pattern,
        "first": summary.first,
        "last": summary.last,
        "count": summary.count,
        "missing": [list(r) for r in summary.missing],
        "incomplete": list(summary.incomplete),
        "unhealthy": list(summary.unhealthy),
        "structure_consistent": summary.structure_consistent,
        "layout": summary.layout,
        "odd_layout": list(summary.odd_layout),
        "in_progress": list(summary.in_progress),
        "notation": notation(summary),
        "updated_at": updated_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def summary_from_record(record: Mapping[str, Any]) -> SequenceSummary:
    """The summary a record was made from (the journal compares old and new summaries)."""
    return SequenceSummary(
        directory=record["directory"], pattern=record["pattern"], first=record["first"],
        last=record["last"], count=record["count"],
        missing=tuple((a, b) for a, b in record["missing"]),
        incomplete=tuple(record["incomplete"]), unhealthy=tuple(record["unhealthy"]),
        structure_consistent=record["structure_consistent"], layout=record["layout"],
        odd_layout=tuple(record["odd_layout"]),
        in_progress=tuple(record.get("in_progress", ())),  # absent from older records
    )  # fmt: skip
