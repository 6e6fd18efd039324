"""Nothing half-written is ever called complete: cuts anywhere, unfinished offset tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import corpus_exrs
from exrgen import truncated_copies, zeroed_offset_table_copy

from exrwatchd.exr import inspect_path, inspect_source
from exrwatchd.exr.source import BytesSource


def _verdicts_for_every_cut(data: bytes, step: int) -> list[tuple[int, bool, str | None]]:
    out = []
    for cut in [*range(0, len(data), step), len(data) - 1]:
        result = inspect_source("cut.exr", BytesSource(data[:cut]))
        out.append((cut, result.complete, result.error.kind if result.error else None))
    return out


def test_generated_kinds_are_complete_and_every_cut_is_not(kinds_dir: dict[str, Path]) -> None:
    for kind, path in kinds_dir.items():
        data = path.read_bytes()
        assert inspect_source(kind, BytesSource(data)).complete, kind
        step = max(1, len(data) // 97)
        for cut, complete, _ in _verdicts_for_every_cut(data, step):
            assert not complete, f"{kind} cut at {cut} of {len(data)} bytes called complete"


@pytest.mark.corpus
@pytest.mark.parametrize("path", corpus_exrs(), ids=[p.name for p in corpus_exrs()])
def test_corpus_cut_copies_are_never_complete(path: Path) -> None:
    data = path.read_bytes()
    for cut, complete, _ in _verdicts_for_every_cut(data, max(1, len(data) // 23)):
        assert not complete, f"cut at {cut} of {len(data)} called complete"


def test_truncated_copies_report_a_reason(kinds_dir: dict[str, Path], tmp_path: Path) -> None:
    for copy in truncated_copies(kinds_dir["multipart"], tmp_path):
        result = inspect_path(str(copy))
        assert not result.complete, copy.name
        if result.error is None:
            assert result.incomplete_reason, copy.name
            assert result.header_hash is not None and result.parts
        else:
            assert result.error.kind in {"empty", "truncated_header"}, result.error


def test_unfinished_offset_table_is_incomplete(kinds_dir: dict[str, Path], tmp_path: Path) -> None:
    for kind in ("scanline_half", "tiled", "multipart", "deep_scanline"):
        copy = zeroed_offset_table_copy(kinds_dir[kind], tmp_path / f"{kind}.exr")
        result = inspect_path(str(copy))
        assert result.error is None and not result.complete, kind
        assert "zero" in (result.incomplete_reason or ""), result.incomplete_reason
        assert result.header_hash == inspect_path(str(kinds_dir[kind])).header_hash


def test_file_written_in_place_becomes_complete_only_at_the_end(
    kinds_dir: dict[str, Path], tmp_path: Path
) -> None:
    # A renderer writing in place: header first, then chunks, offset table filled last.
    final = kinds_dir["scanline_half"].read_bytes()
    src = kinds_dir["scanline_half"]
    unfinished = zeroed_offset_table_copy(src, tmp_path / "u.exr").read_bytes()
    target = tmp_path / "frame.0001.exr"
    for stage in (final[:40], unfinished[: len(unfinished) // 2], unfinished):
        target.write_bytes(stage)
        assert not inspect_path(str(target)).complete
    target.write_bytes(final)
    result = inspect_path(str(target))
    assert result.complete and result.frame_number == 1


def test_header_hash_covers_headers_only(kinds_dir: dict[str, Path], tmp_path: Path) -> None:
    src = kinds_dir["scanline_half"]
    copy = tmp_path / "copy.exr"
    shutil.copy(src, copy)
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF  # pixel bytes change, headers do not
    copy.write_bytes(bytes(data))
    assert inspect_path(str(copy)).header_hash == inspect_path(str(src)).header_hash
