"""Hostile and broken input: never a crash, a hang or unbounded memory; always a clear record."""

from __future__ import annotations

import base64
import json
import os
import signal
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import corpus_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exrwatchd.exr import inspect_path, inspect_source
from exrwatchd.exr.report import inspection_to_dict
from exrwatchd.exr.source import BytesSource

MAGIC = b"\x76\x2f\x31\x01"


def attr(name: str, type_name: str, value: bytes) -> bytes:
    size = struct.pack("<i", len(value))
    return name.encode() + b"\0" + type_name.encode() + b"\0" + size + value


def box(xmin: int, ymin: int, xmax: int, ymax: int) -> bytes:
    return struct.pack("<4i", xmin, ymin, xmax, ymax)


def tiny_exr(extra: bytes = b"", window: tuple[int, int, int, int] = (0, 0, 0, 0)) -> bytes:
    """A valid single-part scanline file, hand-built: one half channel, no compression."""
    chlist = b"Y\0" + struct.pack("<iB3xii", 1, 0, 1, 1) + b"\0"
    header = (
        attr("channels", "chlist", chlist) + attr("compression", "compression", b"\0")
        + attr("dataWindow", "box2i", box(*window)) + attr("displayWindow", "box2i", box(*window))
        + attr("lineOrder", "lineOrder", b"\0")
        + attr("pixelAspectRatio", "float", struct.pack("<f", 1))
        + attr("screenWindowCenter", "v2f", struct.pack("<2f", 0, 0))
        + attr("screenWindowWidth", "float", struct.pack("<f", 1)) + extra + b"\0"
    )  # fmt: skip
    prefix = MAGIC + struct.pack("<I", 2) + header
    lines = window[3] - window[1] + 1
    width = window[2] - window[0] + 1
    if lines > 64 or width > 64:
        return prefix  # only the header matters for these cases
    table_end = len(prefix) + 8 * lines
    chunk = 8 + 2 * width
    offsets = b"".join(struct.pack("<Q", table_end + i * chunk) for i in range(lines))
    chunks = b"".join(struct.pack("<ii", window[1] + i, 2 * width) + b"\0\0" * width
                      for i in range(lines))  # fmt: skip
    return prefix + offsets + chunks


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: a guard against infinite loops, not a speed target."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def well_formed(data: bytes) -> dict:
    result = inspect_source("x.exr", BytesSource(data))
    record = inspection_to_dict(result)
    json.dumps(record, allow_nan=False)  # always valid JSON
    if result.error is None:
        assert result.parts and result.header_hash
    else:
        assert not result.complete and result.error.kind and result.error.message
    return record


class TestHandBuilt:
    def test_tiny_file_is_complete(self) -> None:
        record = well_formed(tiny_exr())
        assert record["complete"] and record["error"] is None

    def test_hundred_thousand_attributes(self) -> None:
        extra = b"".join(attr(f"a{i:06d}", "int", struct.pack("<i", i)) for i in range(100_000))
        with deadline(10):
            record = well_formed(tiny_exr(extra))
        assert record["complete"]
        assert len(record["parts"][0]["attributes"]) == 100_008

    def test_two_to_the_31_data_window(self) -> None:
        record = well_formed(tiny_exr(window=(0, 0, 0, 2**31 - 1)))
        assert not record["complete"] and record["error"] is None
        assert "chunks" in record["incomplete_reason"]
        wide = well_formed(tiny_exr(window=(-(2**31), 0, 2**31 - 1, 0)))
        assert wide["parts"][0]["data_window"] == [-(2**31), 0, 2**31 - 1, 0]

    def test_empty_data_window_is_a_bad_header(self) -> None:
        record = well_formed(tiny_exr(window=(5, 0, 0, 0)))
        assert record["error"]["kind"] == "bad_header"
        assert "dataWindow" in record["error"]["message"]

    def test_attribute_size_mismatch(self) -> None:
        record = well_formed(tiny_exr(attr("bad", "int", b"\0\0")))
        assert record["error"] == {
            "kind": "bad_attribute",
            "message": "attribute 'bad' of type int has size 2, expected 4",
        }

    def test_negative_and_huge_attribute_sizes(self) -> None:
        neg = tiny_exr(b"x\0int\0" + struct.pack("<i", -5))
        assert well_formed(neg)["error"]["kind"] == "bad_attribute"
        huge = tiny_exr(b"x\0string\0" + struct.pack("<i", 2**31 - 1) + b"abc")
        assert well_formed(huge)["error"]["kind"] == "bad_attribute"  # beyond any header bound
        past_eof = tiny_exr(b"x\0string\0" + struct.pack("<i", 100_000) + b"abc")
        assert well_formed(past_eof)["error"]["kind"] == "truncated_header"

    def test_name_longer_than_255_bytes(self) -> None:
        data = MAGIC + struct.pack("<I", 2) + b"n" * 300 + b"\0int\0"
        assert well_formed(data)["error"]["kind"] == "bad_header"

    def test_unknown_type_is_kept_opaque_with_its_bytes(self) -> None:
        record = well_formed(tiny_exr(attr("studioBlob", "acmeBlob", b"\x00\xffraw")))
        blob = record["parts"][0]["attributes"]["studioBlob"]
        assert blob["type"] == "acmeBlob" and blob["value"] is None
        assert base64.b64decode(blob["base64"]) == b"\x00\xffraw"

    def test_invalid_utf8_string_keeps_raw_bytes(self) -> None:
        record = well_formed(tiny_exr(attr("owner", "string", b"caf\xe9")))
        owner = record["parts"][0]["attributes"]["owner"]
        assert owner["value"] == "caf\\xe9"
        assert base64.b64decode(owner["base64"]) == b"caf\xe9"

    def test_nan_float_attribute_is_valid_json(self) -> None:
        record = well_formed(tiny_exr(attr("focus", "float", struct.pack("<f", float("nan")))))
        assert record["parts"][0]["attributes"]["focus"]["value"] == "NaN"

    def test_missing_required_attribute(self) -> None:
        data = MAGIC + struct.pack("<I", 2) + attr("channels", "chlist", b"\0") + b"\0"
        record = well_formed(data)
        assert record["error"]["kind"] == "bad_header"
        assert "required attribute 'compression' is missing" in record["error"]["message"]

    def test_not_exr_and_empty(self) -> None:
        assert well_formed(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)["error"]["kind"] == "not_exr"
        assert well_formed(b"")["error"]["kind"] == "empty"
        assert well_formed(MAGIC[:2])["error"]["kind"] == "truncated_header"
        assert well_formed(MAGIC + struct.pack("<I", 1))["error"]["kind"] == "unsupported"


class TestOnDisk:
    def test_vanished_file(self, tmp_path: Path) -> None:
        result = inspect_path(str(tmp_path / "gone.0001.exr"))
        assert result.error is not None and result.error.kind == "vanished"
        assert result.frame_number == 1

    def test_directory_and_fifo_named_exr_do_not_hang(self, tmp_path: Path) -> None:
        (tmp_path / "dir.exr").mkdir()
        os.mkfifo(tmp_path / "pipe.exr")
        with deadline(5):
            for name in ("dir.exr", "pipe.exr"):
                result = inspect_path(str(tmp_path / name))
                assert result.error is not None and result.error.kind == "not_a_file", name

    @pytest.mark.skipif(os.geteuid() == 0, reason="root reads files of mode 000")
    def test_unreadable_file(self, tmp_path: Path) -> None:
        path = tmp_path / "locked.exr"
        path.write_bytes(tiny_exr())
        path.chmod(0)
        result = inspect_path(str(path))
        assert result.error is not None and result.error.kind == "unreadable"

    def test_names_with_spaces_newlines_and_invalid_utf8(self, tmp_path: Path) -> None:
        for raw_name in (b"with space.0001.exr", b"new\nline.exr", b"bad\xff\xfe.exr",
                         b"x" * 251 + b".exr"):  # fmt: skip
            path = os.path.join(os.fsencode(tmp_path), raw_name)
            with open(path, "wb") as f:
                f.write(tiny_exr())
            result = inspect_path(os.fsdecode(path))
            assert result.complete, raw_name
            from exrwatchd.cli._output import json_line

            line = json_line(inspection_to_dict(result))
            assert json.loads(line)["path"] == os.fsdecode(path)


@pytest.mark.corpus
def test_every_damaged_corpus_file_gives_a_record_quickly() -> None:
    root = corpus_path()
    if root is None:
        pytest.skip("reference corpus not found")
    damaged = sorted((root / "Damaged").iterdir())  # README.rst included: a non-EXR, too
    assert len(damaged) == 186
    kinds: dict[str, int] = {}
    for path in damaged:
        with deadline(1.0):
            result = inspect_path(str(path))
        json.dumps(inspection_to_dict(result), allow_nan=False)
        key = result.error.kind if result.error else f"complete={result.complete}"
        kinds[key] = kinds.get(key, 0) + 1
    assert sum(kinds.values()) == 186
    assert kinds.get("complete=True", 0) < 10, kinds  # fuzzed files are overwhelmingly broken


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    cut=st.integers(min_value=0, max_value=400),
)
def test_mutated_headers_never_crash(data: st.DataObject, cut: int) -> None:
    original = bytearray(tiny_exr(attr("owner", "string", b"studio")))
    header_len = len(original) - 8 - 10
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, header_len - 1))
        original[pos] = data.draw(st.integers(0, 255))
    mutated = bytes(original)
    if data.draw(st.booleans()):
        mutated = mutated[: len(mutated) - cut]
    with deadline(2):
        well_formed(mutated)
