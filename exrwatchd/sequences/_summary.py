"""Summaries of a sequence: its ranges, gaps and odd frames, their notation, and the events
between two summaries."""


from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from exrwatchd.sequences._frames import (
    Frame,
    FrameStatus,
    Level,
    Range,
    SequenceKey,
    split_pattern,
)


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
