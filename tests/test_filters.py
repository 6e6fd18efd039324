"""Name filters: case-insensitive base-name globs, hidden and temp names out by default."""

from __future__ import annotations

import pytest

from exrwatchd.watch import NameFilter


@pytest.mark.parametrize(
    ("name", "accepted"),
    [
        ("beauty.0001.exr", True),
        ("BEAUTY.0001.EXR", True),
        ("shot.Exr", True),
        (".beauty.0001.exr", False),  # hidden
        ("beauty.0001.exr.tmp", False),
        ("beauty.0001.exr.part", False),
        ("beauty.0001.exr~", False),
        ("beauty.0001.tif", False),
        ("exr", False),
        ("with space.exr", True),
        ("new\nline.exr", True),
        ("bad\udcff.exr", True),
    ],
)
def test_default_filter(name: str, accepted: bool) -> None:
    assert NameFilter().accepts(name) is accepted


def test_general_globs_and_empty_exclude() -> None:
    f = NameFilter(include=("shot_[0-9][0-9]*.exr", "*.sxr"), exclude=())
    assert f.accepts("shot_12.exr") and f.accepts("SHOT_12_a.EXR") and f.accepts("x.sxr")
    assert not f.accepts("shot_a1.exr")
    assert NameFilter(include=("*.exr",), exclude=("*_tmp.*", "scratch*")).accepts("a.exr")
    assert not NameFilter(include=("*.exr",), exclude=("*_tmp.*", "scratch*")).accepts("a_tmp.exr")
    assert not NameFilter(include=("*.exr",), exclude=("scratch*",)).accepts("Scratch_v1.exr")
