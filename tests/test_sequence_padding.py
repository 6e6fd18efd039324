"""Frame sequences as pipelines write them (issue 14): padding is a minimum width, grouped as
fileseq.findSequencesOnDisk groups a directory, and printed in the notation fileseq parses.

fileseq is the reference: real files in a real directory, compared with what the daemon's own
grouping (sequences.group_frames, which the journal uses) makes of them.
"""

from __future__ import annotations

import os
from pathlib import Path

import fileseq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exrwatchd.sequences import (
    Frame,
    FrameStatus,
    SequenceKey,
    group_frames,
    notation,
    padding_chars,
    parse_frame_path,
    split_pattern,
    summarize,
)

DIR = "/renders/sh010"

# (head, width, frames): one sequence as both sides describe it.
Described = tuple[str, int, frozenset[int]]


def frames_of(paths: list[str]) -> list[Frame]:
    found = []
    for path in paths:
        name = parse_frame_path(path)
        if name is not None:
            found.append(Frame(name.frame, path, FrameStatus.COMPLETE))
    return found


def ours(paths: list[str]) -> set[Described]:
    out = set()
    for key, members in group_frames(frames_of(paths)).items():
        head, width, tail = split_pattern(key.pattern)
        out.add((head + "|" + tail, width, frozenset(f.number for f in members)))
    return out


def theirs(directory: Path) -> set[Described]:
    """fileseq's sequences of EXR frames, minus the README's deliberate differences:
    negative frames and names without a `.` or `_` right before the frame number."""
    out = set()
    for seq in fileseq.findSequencesOnDisk(str(directory)):
        if seq.frameSet() is None or seq.extension().lower() != ".exr":
            continue  # a single file without a frame number, or not an EXR
        if not seq.basename().endswith((".", "_")):
            continue  # `render0001.exr`, `comp_v3.exr`: not frames here
        numbers = frozenset(int(n) for n in seq.frameSet() if n >= 0)
        if numbers:
            out.add((seq.basename() + "|" + seq.extension(), seq.zfill(), numbers))
    return out


def keys(paths: list[str]) -> dict[SequenceKey, list[int]]:
    return {k: sorted(f.number for f in v) for k, v in group_frames(frames_of(paths)).items()}


def test_a_3_padded_render_crossing_999_is_one_sequence() -> None:
    paths = [f"{DIR}/comp.v3.{n:03d}.exr" for n in (101, 102, 1000)]
    assert keys(paths) == {SequenceKey(DIR, "comp.v3.%03d.exr"): [101, 102, 1000]}
    (key, members), = group_frames(frames_of(paths)).items()  # fmt: skip
    assert notation(summarize(key, members)) == "comp.v3.101-102,1000@@@.exr"


def test_unpadded_frames_of_any_width_are_one_sequence() -> None:
    paths = [f"{DIR}/a.{n}.exr" for n in (9, 99, 100, 10000)]
    assert keys(paths) == {SequenceKey(DIR, "a.%01d.exr"): [9, 99, 100, 10000]}


def test_a_wider_zero_padded_spelling_is_another_sequence() -> None:
    paths = [f"{DIR}/b.1.exr", f"{DIR}/b.0001.exr", f"{DIR}/b.0002.exr", f"{DIR}/b.1000.exr"]
    assert keys(paths) == {
        SequenceKey(DIR, "b.%01d.exr"): [1],
        # 1000 fits either: it joins the zero-padded spelling of its own width (fileseq's
        # choice depends on set order there; that is why it is not in TRICKY)
        SequenceKey(DIR, "b.%04d.exr"): [1, 2, 1000],
    }


def test_grouping_does_not_depend_on_the_order_given() -> None:
    paths = [f"{DIR}/c.01.exr", f"{DIR}/c.001.exr", f"{DIR}/c.100.exr", f"{DIR}/c.1000.exr"]
    expected = {SequenceKey(DIR, "c.%02d.exr"): [1], SequenceKey(DIR, "c.%03d.exr"): [1, 100, 1000]}
    assert keys(paths) == keys(paths[::-1]) == expected


TRICKY = [
    # a 3-padded render crossing 999, a 4-padded one crossing 9999
    *(f"comp.v3.{n:03d}.exr" for n in (101, 102, 999, 1000, 1001)),
    *(f"plate_{n:04d}.exr" for n in (9998, 9999, 10000, 10001)),
    # unpadded, widths 1 to 3; one sequence with padding 1
    "a.9.exr", "a.99.exr", "a.100.exr",
    # mixed padding: an unpadded and a 4-padded spelling of the same frames
    "b.1.exr", "b.2.exr", "b.0001.exr", "b.0002.exr", "b.0003.exr",
    # 2- and 3-padded
    "c.01.exr", "c.02.exr", "c.001.exr", "c.002.exr",
    # versions and several dots, `_` separators, upper-case extension, one-frame sequences
    "shot_v3.0001.exr", "shot_v3.0002.exr", "shot_v4.0001.exr",
    "sh010.comp.v002.1001.exr", "sh010.comp.v002.1003.exr", "multi.1.2.exr", "multi.1.3.exr",
    "diffuse_0001.exr", "diffuse_0002.exr", "Beauty.0007.EXR", "still.0042.exr",
    # deliberate differences: negative frames, no `.` or `_` before the number
    "neg.-001.exr", "neg.-002.exr", "neg.0001.exr", "neg.0002.exr",
    "render0001.exr", "render0002.exr", "comp_v3.exr",
    # not frames for either side
    "notes.exr", "beauty.0001.png",
]  # fmt: skip


def test_grouping_agrees_with_fileseq_on_disk(tmp_path: Path) -> None:
    for name in TRICKY:
        (tmp_path / name).write_bytes(b"")
    paths = sorted(os.path.join(tmp_path, n) for n in os.listdir(tmp_path))
    mine, reference = ours(paths), theirs(tmp_path)
    assert mine == reference, (sorted(mine - reference), sorted(reference - mine))
    assert ("comp.v3.|.exr", 3, frozenset({101, 102, 999, 1000, 1001})) in mine
    assert ("plate_|.exr", 4, frozenset({9998, 9999, 10000, 10001})) in mine


def test_padding_characters_are_fileseqs() -> None:
    for width in range(1, 13):
        assert padding_chars(width) == fileseq.FileSequence.getPaddingChars(width)
        assert fileseq.FileSequence.getPaddingNum(padding_chars(width)) == width


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["beauty.", "comp.v3.", "sh010_plate_", "a.1.", "100%_grey."]),
    st.integers(1, 8),
    st.sets(st.integers(0, 30_000), min_size=1, max_size=60),
)
def test_every_notation_parses_back_to_its_frames_and_padding(
    head: str, width: int, numbers: set[int]
) -> None:
    paths = [f"{DIR}/{head}{n:0{width}d}.exr" for n in numbers]
    for key, members in group_frames(frames_of(paths)).items():
        text = notation(summarize(key, members))
        parsed = fileseq.FileSequence(os.path.join(DIR, text))
        assert set(parsed.frameSet()) == {f.number for f in members}
        assert parsed.zfill() == split_pattern(key.pattern)[1]
        assert (parsed.basename(), parsed.extension()) == (head, ".exr")
        for frame in members:  # and names every file it stands for
            assert parsed.frame(frame.number) == frame.path


def test_pattern_and_notation_of_an_unusual_name() -> None:
    key = SequenceKey(DIR, "100%%_grey.%05d.exr")
    assert split_pattern(key.pattern) == ("100%_grey.", 5, ".exr")
    summary = summarize(key, [Frame(n, key.path(n), FrameStatus.COMPLETE) for n in (1, 2, 4)])
    assert notation(summary) == "100%_grey.1-2,4@@@@@.exr"
    with pytest.raises(ValueError, match="not a frame pattern"):
        split_pattern("beauty.exr")
