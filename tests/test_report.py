"""The JSON record: `inspect --json`'s fast serialisation must be the record, byte for byte."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import corpus_damaged, corpus_exrs, corpus_id
from exrgen import write_scanline

from exrwatchd.cli._output import json_line
from exrwatchd.exr import inspect_path
from exrwatchd.exr.report import inspection_json, inspection_to_dict, iso_utc


def _same_record(path: Path | str) -> None:
    result = inspect_path(str(path))
    for embeddings in (False, True):
        expected = json_line(inspection_to_dict(result, embeddings=embeddings))
        assert inspection_json(result, embeddings=embeddings) == expected, (path, embeddings)
        # Twice: the second time from the caches of serialised channels and attributes.
        assert inspection_json(result, embeddings=embeddings) == expected, (path, embeddings)


def test_every_generated_kind_serialises_as_its_record(kinds_dir: dict[str, Path]) -> None:
    for path in kinds_dir.values():
        _same_record(path)


@pytest.mark.parametrize("path", corpus_exrs() + corpus_damaged(), ids=corpus_id)
def test_every_corpus_file_serialises_as_its_record(path: Path, corpus_dir: Path) -> None:
    _same_record(path)


def test_a_name_that_is_not_utf8_takes_the_slow_path(tmp_path: Path) -> None:
    # orjson refuses the lone surrogates Python keeps such bytes as; the line must still be
    # the standard library's escape of them.
    frame = write_scanline(tmp_path / "ok.exr")
    odd = os.path.join(os.fsencode(tmp_path), b"beauty.\xff.0001.exr")
    os.rename(frame, odd)
    _same_record(os.fsdecode(odd))
    _same_record(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"gone.\xfe.exr")))


@pytest.mark.parametrize(
    "ns",
    [0, 999, 1000, -1, -1000, -1001, 1_700_000_000_123_456_789, 1_700_000_000_999_999_999,
     -86_400_000_000_001, 4_102_444_800_123_456_789],
)  # fmt: skip
def test_mtime_text_is_datetimes_with_truncated_microseconds(ns: int) -> None:
    moment = datetime.fromtimestamp(ns // 1000 / 1e6, tz=UTC)
    assert iso_utc(ns) == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
