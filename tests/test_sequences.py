"""Frame sequences (exrwatchd/sequences.py): naming, summaries, and the events between them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

import pytest
from exrgen import write_scanline
from hypothesis import given, settings
from hypothesis import strategies as st

from exrwatchd.exr import InspectError, Inspection, Part, inspect_path
from exrwatchd.exr.model import Attribute, Channel, Tiles
from exrwatchd.exr.naming import frame_number
from exrwatchd.sequences import (
    LAYOUT_KEY_VERSION,
    Frame,
    FrameStatus,
    SequenceKey,
    SequenceSummary,
    changes,
    layout_key,
    parse_frame_path,
    summarize,
)

DIR = "/renders/sh010"
BEAUTY = SequenceKey(DIR, "beauty.%04d.exr")
FULL_HD = (0, 0, 1919, 1079)


def group_paths(paths: list[str]) -> dict[SequenceKey, dict[int, str]]:
    """Paths by sequence, then by frame number, as the journal groups them."""
    groups: dict[SequenceKey, dict[int, str]] = {}
    for path in paths:
        name = parse_frame_path(path)
        if name is not None:
            groups.setdefault(name.key, {})[name.frame] = path
    return groups


def frame_of(inspection: Inspection) -> tuple[SequenceKey, Frame] | None:
    """The sequence and Frame of an inspected file (its status and layout key as the daemon
    records them), or None when it is not a frame."""
    name = parse_frame_path(inspection.path)
    if name is None:
        return None
    if inspection.error is not None:
        status = FrameStatus.ERROR
    else:
        status = FrameStatus.COMPLETE if inspection.complete else FrameStatus.INCOMPLETE
    return name.key, Frame(name.frame, inspection.path, status, layout_key(inspection.parts))


def part(
    channels: Iterable[str] = ("R", "G", "B", "A"),
    *,
    pixel_type: str = "half",
    compression: str = "zip",
    data_window: tuple[int, int, int, int] = FULL_HD,
    display_window: tuple[int, int, int, int] = FULL_HD,
    attributes: tuple[Attribute, ...] = (),
    chunk_count: int = 68,
    tiles: Tiles | None = None,
    name: str | None = None,
    index: int = 0,
) -> Part:
    return Part(
        index=index, name=name, type="scanlineimage" if tiles is None else "tiledimage",
        view=None, compression=compression, data_window=data_window,
        display_window=display_window, pixel_aspect_ratio=1.0, line_order="increasing_y",
        tiles=tiles, chunk_count=chunk_count,
        channels=tuple(Channel(n, pixel_type, 1, 1, False, None) for n in sorted(channels)),
        attributes=attributes,
    )  # fmt: skip


RGBA = layout_key([part()])
RGB = layout_key([part(("R", "G", "B"))])


def frames(
    numbers: Iterable[int],
    *,
    layout: str | None = RGBA,
    status: FrameStatus = FrameStatus.COMPLETE,
    key: SequenceKey = BEAUTY,
) -> list[Frame]:
    return [Frame(n, key.path(n), status, layout) for n in numbers]


def events(
    before: SequenceSummary | None, after: SequenceSummary | None
) -> dict[str, tuple[tuple[int, int], ...]]:
    """{event name: its ranges} for one update."""
    return {e.event: e.ranges for e in changes(before, after)}


# ----------------------------------------------------------------------------- naming


@pytest.mark.parametrize(
    ("basename", "pattern", "frame"),
    [
        ("beauty.0001.exr", "beauty.%04d.exr", 1),
        ("diffuse_0042.exr", "diffuse_%04d.exr", 42),
        ("beauty.1.exr", "beauty.%01d.exr", 1),
        ("beauty.1001.exr", "beauty.%04d.exr", 1001),  # no leading zero: still 4 digits
        ("beauty.10000.exr", "beauty.%05d.exr", 10000),  # alone; group_frames may widen it
        ("beauty.0.exr", "beauty.%01d.exr", 0),
        ("beauty.000000.exr", "beauty.%06d.exr", 0),
        ("Beauty.0007.EXR", "Beauty.%04d.EXR", 7),  # case kept, in the name and extension
        ("beauty_v002.0010.exr", "beauty_v002.%04d.exr", 10),  # the last digit run counts
        ("sh010.12.0003.exr", "sh010.12.%04d.exr", 3),
        ("100%_grey.0005.exr", "100%%_grey.%04d.exr", 5),  # printf-escaped
        ("a_b.c_0099.exr", "a_b.c_%04d.exr", 99),
    ],
)
def test_pattern_and_frame_come_from_the_name(basename: str, pattern: str, frame: int) -> None:
    path = f"{DIR}/{basename}"
    name = parse_frame_path(path)
    assert name is not None
    assert name.key == SequenceKey(DIR, pattern)
    assert name.frame == frame == frame_number(basename)  # agrees with the catalog column
    assert name.key.path(frame) == path
    assert parse_frame_path(Path(path)) == name  # a Path reads as its text


def test_padded_and_unpadded_spellings_of_a_frame_name_two_sequences() -> None:
    unpadded = parse_frame_path(f"{DIR}/beauty.1.exr")
    padded = parse_frame_path(f"{DIR}/beauty.0001.exr")
    assert unpadded is not None and padded is not None
    assert unpadded.frame == padded.frame == 1
    assert unpadded.key != padded.key


@pytest.mark.parametrize(
    "basename",
    [
        "beauty.exr", "beauty0001.exr", ".0001.exr", "_0001.exr", "beauty.0001.exr.tmp",
        "beauty.0001.png", "beauty-0001.exr", "beauty.0001", "beauty.0001.exrx",
        "beauty.-001.exr", "beauty_-1.exr",  # negative frames: not frames (naming.py agrees)
    ],
)  # fmt: skip
def test_files_that_are_not_frames(basename: str) -> None:
    assert parse_frame_path(f"{DIR}/{basename}") is None
    assert frame_number(basename) is None


def test_names_the_catalog_reads_but_a_sequence_cannot_hold() -> None:
    too_big = "beauty." + "9" * 20 + ".exr"  # > 2**63 - 1: the catalog stores null too
    arabic = "beauty.\u0661\u0662.exr"  # int() reads it, but "%02d" % 12 cannot rebuild it
    for basename in (too_big, arabic):
        assert parse_frame_path(f"{DIR}/{basename}") is None
    assert frame_number(arabic) is not None
    assert frame_number(too_big) is None  # issue 12, case 5: one bound for both
    assert parse_frame_path(f"{DIR}/beauty.{2**63 - 1}.exr") is not None
    assert parse_frame_path(f"{DIR}/beauty.0001.exr/") is None  # a directory, not a file


def test_two_sequences_in_one_directory() -> None:
    listing = [f"{DIR}/beauty.{n:04d}.exr" for n in (1, 2, 4, 5)]
    listing += [f"{DIR}/diffuse_{n:04d}.exr" for n in (1, 2, 3, 4, 5)]
    listing += [f"{DIR}/beauty_{n:04d}.exr" for n in (7,)]  # other separator, other sequence
    listing += [f"{DIR}/notes.exr", f"{DIR}/beauty.0003.exr.tmp"]
    groups = group_paths(listing)
    diffuse, beauty_ = SequenceKey(DIR, "diffuse_%04d.exr"), SequenceKey(DIR, "beauty_%04d.exr")
    assert set(groups) == {BEAUTY, diffuse, beauty_}
    assert groups[BEAUTY] == {n: BEAUTY.path(n) for n in (1, 2, 4, 5)}
    summaries = {key: summarize(key, frames(by_frame, key=key)) for key, by_frame in groups.items()}
    assert summaries[BEAUTY].missing == ((3, 3),)
    assert summaries[diffuse].missing == ()
    assert (summaries[beauty_].first, summaries[beauty_].last) == (7, 7)
    assert events(None, summaries[BEAUTY]) == {"sequence.gap": ((3, 3),)}
    assert events(None, summaries[diffuse]) == {}


# ----------------------------------------------------------------------------- gaps


def test_a_sequence_with_gaps() -> None:
    s = summarize(BEAUTY, frames([10, 9, 7, 3, 2, 1]))
    assert (s.directory, s.pattern, s.first, s.last, s.count) == (DIR, BEAUTY.pattern, 1, 10, 6)
    assert s.missing == ((4, 6), (8, 8))
    assert s.missing_count == 4
    assert s.structure_consistent and s.layout == RGBA and s.odd_layout == ()
    assert not s.is_whole
    [gap] = changes(None, s)
    assert (gap.event, gap.level, gap.directory, gap.pattern) == (
        "sequence.gap", "warning", DIR, BEAUTY.pattern)  # fmt: skip
    assert gap.fields() == {"directory": DIR, "pattern": BEAUTY.pattern,
                            "ranges": [[4, 6], [8, 8]], "frames": 4}  # fmt: skip


def test_a_sequence_growing_in_order_never_has_a_gap() -> None:
    before = None
    for n in range(1001, 1021):
        after = summarize(BEAUTY, frames(range(1001, n + 1)))
        assert changes(before, after) == []
        before = after


def test_a_rerender_fills_the_gaps() -> None:
    gappy = summarize(BEAUTY, frames([1, 2, 3, 7, 9, 10]))
    partly = summarize(BEAUTY, frames([1, 2, 3, 5, 7, 9, 10]))
    assert partly.missing == ((4, 4), (6, 6), (8, 8))
    # splitting a known gap reports what was filled, and no "new" gap
    assert events(gappy, partly) == {"sequence.gap_filled": ((5, 5),)}
    whole = summarize(BEAUTY, frames(range(1, 11)))
    assert whole.is_whole
    assert events(partly, whole) == {
        "sequence.gap_filled": ((4, 4), (6, 6), (8, 8)),
        "sequence.completed": ((1, 10),),
    }
    assert events(gappy, whole)["sequence.gap_filled"] == ((4, 6), (8, 8))
    assert changes(whole, whole) == []  # a restart comparing with the stored summary: silent


def test_gap_when_a_later_frame_lands_first() -> None:
    s1 = summarize(BEAUTY, frames(range(1, 11)))
    s2 = summarize(BEAUTY, frames([*range(1, 11), 20]))
    assert events(s1, s2) == {"sequence.gap": ((11, 19),)}


def test_deleting_frames() -> None:
    whole = summarize(BEAUTY, frames(range(1, 11)))
    holed = summarize(BEAUTY, frames([n for n in range(1, 11) if n != 5]))
    assert events(whole, holed) == {"sequence.gap": ((5, 5),)}
    shorter = summarize(BEAUTY, frames([n for n in range(1, 10) if n != 5]))
    assert events(holed, shorter) == {}  # the last frame going away opens no gap
    assert (shorter.last, shorter.count) == (9, 8)
    # the first frame going away takes the gap after it out of the sequence: not "filled"
    tail = summarize(BEAUTY, frames(range(6, 10)))
    assert events(shorter, tail) == {"sequence.completed": ((6, 9),)}
    assert changes(tail, None) == []  # the last frame gone: nothing left to complain about


def test_incomplete_and_unusable_frames() -> None:
    fs = frames(range(1, 6))
    fs[1] = dataclasses.replace(fs[1], status=FrameStatus.INCOMPLETE)
    fs[2] = dataclasses.replace(fs[2], status=FrameStatus.ERROR, layout=None)
    fs[3] = dataclasses.replace(fs[3], status=FrameStatus.UNHEALTHY)
    s = summarize(BEAUTY, fs)
    assert (s.incomplete, s.unhealthy, s.missing) == ((2,), (3, 4), ())
    assert s.structure_consistent  # an unreadable frame has no layout to disagree with
    assert not s.is_whole
    assert events(None, s) == {}  # each file already logged file.incomplete / file.failed
    assert events(s, summarize(BEAUTY, frames(range(1, 6)))) == {"sequence.completed": ((1, 5),)}


def test_negative_frame_numbers_summarize_like_any_other() -> None:
    s = summarize(BEAUTY, frames([-5, -4, -3, 0, 2]))
    assert (s.first, s.last, s.missing) == (-5, 2, ((-2, -1), (1, 1)))


def test_pathological_span_is_not_materialised() -> None:
    s = summarize(BEAUTY, frames([1, 10**9]))
    assert s.missing == ((2, 10**9 - 1),)
    assert s.missing_count == 10**9 - 2
    [gap] = changes(None, s)
    assert gap.fields()["frames"] == 10**9 - 2
    filled = summarize(BEAUTY, frames([1, 5 * 10**8, 10**9]))
    assert events(s, filled) == {"sequence.gap_filled": ((5 * 10**8, 5 * 10**8),)}


def test_long_sequence() -> None:
    numbers = [n for n in range(1, 200_001) if n % 7]
    before = summarize(BEAUTY, frames(numbers))
    assert before.count == len(numbers)
    assert before.missing_count == 200_000 // 7
    after = summarize(BEAUTY, frames(range(1, 200_001)))
    ev = events(before, after)
    assert len(ev["sequence.gap_filled"]) == 200_000 // 7


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="no frames"):
        summarize(BEAUTY, [])
    with pytest.raises(ValueError, match="frame 3 twice"):
        summarize(BEAUTY, frames([1, 3, 3]))
    other = summarize(SequenceKey(DIR, "diffuse.%04d.exr"), frames([1]))
    with pytest.raises(ValueError, match="different sequences"):
        changes(summarize(BEAUTY, frames([1])), other)


# ----------------------------------------------------------------------------- layout


def test_a_frame_with_a_different_channel_set() -> None:
    fs = frames(range(1, 11))
    fs[5] = dataclasses.replace(fs[5], layout=RGB)  # frame 6 lost its alpha on the farm
    s = summarize(BEAUTY, fs)
    assert not s.structure_consistent
    assert (s.layout, s.odd_layout) == (RGBA, (6,))
    assert not s.is_whole
    assert events(None, s) == {"sequence.changed_layout": ((6, 6),)}
    # more frames arrive: frame 6 is not news any more
    s2 = summarize(BEAUTY, [*fs, *frames(range(11, 13))])
    assert changes(s, s2) == []
    # frame 6 re-rendered right
    fixed = summarize(BEAUTY, frames(range(1, 13)))
    assert fixed.structure_consistent and fixed.odd_layout == ()
    assert events(s2, fixed) == {"sequence.completed": ((1, 12),)}


def test_majority_tie_goes_to_the_lowest_frame_whatever_the_order() -> None:
    fs = [*frames([1], layout=RGB), *frames([2], layout=RGBA)]
    for order in (fs, fs[::-1]):
        s = summarize(BEAUTY, order)
        assert (s.layout, s.odd_layout) == (RGB, (2,))


def test_when_the_majority_changes_the_old_frames_are_reported() -> None:
    early = summarize(BEAUTY, frames(range(1, 4), layout=RGB))
    later = summarize(BEAUTY, [*frames(range(1, 4), layout=RGB), *frames(range(4, 11))])
    assert (later.layout, later.odd_layout) == (RGBA, (1, 2, 3))
    assert events(early, later) == {"sequence.changed_layout": ((1, 3),)}


def test_layout_key_ignores_what_changes_from_frame_to_frame() -> None:
    base = layout_key([part()])
    assert base is not None and base.startswith(f"{LAYOUT_KEY_VERSION}:")
    assert len(base) == len(f"{LAYOUT_KEY_VERSION}:") + 20
    timecode = Attribute("timeCode", "timecode", b"\x01\x02\x03\x04\x00\x00\x00\x00")
    same = [
        part(data_window=(10, 20, 900, 700), chunk_count=43),
        part(attributes=(timecode, Attribute("owner", "string", b"artist7"))),
        part(("A", "B", "G", "R")),  # the same channel set
    ]
    assert {layout_key([p]) for p in same} == {base}
    different = [
        [part(("R", "G", "B"))], [part(("R", "G", "B", "A", "Z"))], [part(pixel_type="float")],
        [part(compression="piz")], [part(display_window=(0, 0, 959, 539))],
        [part(tiles=Tiles(64, 64, "one_level", "round_down"))], [part(name="beauty")],
        [part(), part(("Z",), name="depth", index=1)],
    ]  # fmt: skip
    keys = [layout_key(parts) for parts in different]
    assert len(set(keys)) == len(keys) and base not in keys
    assert layout_key([]) is None


def test_layout_and_status_from_real_files(tmp_path: Path) -> None:
    for n in (1, 2, 3):  # per-frame data window and metadata, as a renderer writes them
        write_scanline(tmp_path / f"beauty.{n:04d}.exr", data_window_origin=(n, 2 * n),
                       extra_attrs={"comments": f"frame {n}"})  # fmt: skip
    write_scanline(tmp_path / "beauty.0005.exr", channels=("R", "G", "B"))
    key = SequenceKey(str(tmp_path), "beauty.%04d.exr")
    found = [frame_of(inspect_path(str(p))) for p in sorted(tmp_path.iterdir())]
    assert all(f is not None and f[0] == key for f in found)
    fs = [f[1] for f in found if f is not None]
    assert [(f.number, f.status) for f in fs] == [(n, FrameStatus.COMPLETE) for n in (1, 2, 3, 5)]
    s = summarize(key, fs)
    assert (s.missing, s.odd_layout, s.structure_consistent) == (((4, 4),), (5,), False)
    assert s.layout == fs[0].layout == fs[1].layout == fs[2].layout != fs[3].layout


def test_frame_from_an_incomplete_or_failed_inspection() -> None:
    path = f"{DIR}/beauty.0003.exr"
    half = Inspection(path, None, "h", False, "truncated", 3, None, (part(),))
    broken = Inspection(path, None, None, False, None, 3, InspectError("not_exr", "no"), ())
    assert frame_of(half) == (BEAUTY, Frame(3, path, FrameStatus.INCOMPLETE, RGBA))
    assert frame_of(broken) == (BEAUTY, Frame(3, path, FrameStatus.ERROR, None))
    assert frame_of(half._replace(path=f"{DIR}/notes.exr")) is None


# ----------------------------------------------------------------------------- properties

# Dense clusters (gaps of a few frames) and wild spans (frames 10**12 apart) in one strategy.
frame_sets = st.one_of(
    st.sets(st.integers(-50, 300), min_size=1, max_size=200),
    st.sets(st.integers(-(10**12), 10**12), min_size=1, max_size=50),
)


@settings(max_examples=300, deadline=None)
@given(frame_sets)
def test_missing_and_present_cover_first_to_last_exactly(present: set[int]) -> None:
    s = summarize(BEAUTY, frames(sorted(present, reverse=True)))
    assert (s.first, s.last, s.count) == (min(present), max(present), len(present))
    pieces = sorted([(n, n) for n in present] + list(s.missing))
    assert pieces[0][0] == s.first and pieces[-1][1] == s.last
    for (_, end), (start, _) in pairwise(pieces):
        assert start == end + 1  # adjacent: no frame covered twice, none left out
    for start, end in s.missing:
        assert start <= end and start - 1 in present and end + 1 in present
    assert summarize(BEAUTY, frames(sorted(present))) == s  # the order given does not matter


def _frames_in(ranges: Iterable[tuple[int, int]]) -> set[int]:
    return {n for start, end in ranges for n in range(start, end + 1)}


@settings(max_examples=300, deadline=None)
@given(st.sets(st.integers(0, 60), min_size=1), st.sets(st.integers(0, 60), min_size=1))
def test_events_match_set_arithmetic(old: set[int], new: set[int]) -> None:
    before, after = summarize(BEAUTY, frames(old)), summarize(BEAUTY, frames(new))
    ev = {e.event: _frames_in(e.ranges) for e in changes(before, after)}
    old_missing, new_missing = _frames_in(before.missing), _frames_in(after.missing)
    assert ev.get("sequence.gap", set()) == new_missing - old_missing
    assert ev.get("sequence.gap_filled", set()) == (old_missing - new_missing) & new
    assert ("sequence.completed" in ev) == (bool(old_missing) and not new_missing)


names = st.text(st.characters(exclude_characters="/\n\x00", exclude_categories=["Cs"]), min_size=1)


@settings(max_examples=300, deadline=None)
@given(names, st.sampled_from("._"), st.text("0123456789", min_size=1, max_size=18),
       st.sampled_from([".exr", ".EXR", ".Exr"]))  # fmt: skip
def test_the_pattern_rebuilds_every_name(head: str, sep: str, digits: str, ext: str) -> None:
    path = f"{DIR}/{head}{sep}{digits}{ext}"
    name = parse_frame_path(path)
    assert name is not None
    assert name.frame == int(digits)
    assert name.key.path(name.frame) == path
    assert name.key.pattern.endswith(f"%0{len(digits)}d{ext}")
