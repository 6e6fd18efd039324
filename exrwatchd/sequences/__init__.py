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

from exrwatchd.sequences._frames import (
    LAYOUT_KEY_VERSION,
    Frame,
    FrameName,
    FrameStatus,
    Level,
    Range,
    SequenceKey,
    frame_pattern,
    group_frames,
    layout_key,
    parse_frame_path,
    split_pattern,
)
from exrwatchd.sequences._records import (
    SEQUENCE_KEY_PREFIX,
    sequence_path,
    summary_from_record,
    summary_record,
)
from exrwatchd.sequences._summary import (
    SequenceEvent,
    SequenceSummary,
    changes,
    compress_frames,
    frame_set,
    notation,
    padding_chars,
    present_ranges,
    summarize,
)

__all__ = [
    "LAYOUT_KEY_VERSION",
    "SEQUENCE_KEY_PREFIX",
    "Frame",
    "FrameName",
    "FrameStatus",
    "Level",
    "Range",
    "SequenceEvent",
    "SequenceKey",
    "SequenceSummary",
    "changes",
    "compress_frames",
    "frame_pattern",
    "frame_set",
    "group_frames",
    "layout_key",
    "notation",
    "padding_chars",
    "parse_frame_path",
    "present_ranges",
    "sequence_path",
    "split_pattern",
    "summarize",
    "summary_from_record",
    "summary_record",
]
