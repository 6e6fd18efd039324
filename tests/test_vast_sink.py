"""The VAST sink with the REAL vastdb SDK against the loopback emulator (tests/vast_emulator)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import vastdb
from exrgen import write_multipart, write_scanline
from vast_emulator import VastEmulator
from vastdb.config import SessionConfig

from exrwatchd.catalog import TABLES
from exrwatchd.config import VastConfig
from exrwatchd.exr import inspect_path
from exrwatchd.journal import OutboxEntry
from exrwatchd.pipeline import make_record
from exrwatchd.secrets import Secret
from exrwatchd.sinks import Outcome, SinkUnavailable
from exrwatchd.sinks.vast import VastSink, init_catalog

BUCKET, SCHEMA = "exrwatch", "exr_metadata"


@pytest.fixture
def emu() -> Iterator[VastEmulator]:
    with VastEmulator(buckets={BUCKET}) as emulator:
        yield emulator


def vast_config(emu: VastEmulator, **overrides: Any) -> VastConfig:
    base = VastConfig(
        endpoint=emu.endpoint, bucket=BUCKET, schema=SCHEMA,
        access_key=Secret(emu.access_key, "test"), secret_key=Secret(emu.secret_key, "test"),
        connect_timeout=2.0, read_timeout=2.0,
    )  # fmt: skip
    return dataclasses.replace(base, **overrides)


@pytest.fixture
def sink(emu: VastEmulator) -> Iterator[VastSink]:
    init_catalog(vast_config(emu))
    s = VastSink(vast_config(emu))
    s.open()
    yield s
    s.close()


class Frames:
    """Records of real files, with fresh inspection ids on demand, as the daemon makes them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._ids = 0

    def write(self, name: str, kind: str = "rgba") -> str:
        path = self.root / name
        if kind == "rgba":
            write_scanline(path)
        elif kind == "aovs":
            write_scanline(path, channels=("R", "G", "B", "A", "Z"), compression="piz")
        else:
            write_multipart(path)
        return str(path)

    def upsert(self, path: str) -> OutboxEntry:
        self._ids += 1
        return OutboxEntry(self._ids, path, "upsert", make_record(inspect_path(path)), 0, 0.0)

    def delete(self, path: str) -> OutboxEntry:
        self._ids += 1
        return OutboxEntry(self._ids, path, "delete", None, 0, 0.0)


@pytest.fixture
def frames(tmp_path: Path) -> Frames:
    return Frames(tmp_path)


def dump(emu: VastEmulator) -> dict[str, list[dict[str, Any]]]:
    """Every row of the four tables, sorted, read through the SDK like a user would."""
    session = vastdb.connect(endpoint=emu.endpoint, access=emu.access_key,
                             secret=emu.secret_key, timeout=(5, 5),
                             config=SessionConfig(data_endpoints=[emu.endpoint]))  # fmt: skip
    out = {}
    with session.transaction() as tx:
        schema = tx.bucket(BUCKET).schema(SCHEMA)
        for name in TABLES:
            rows = schema.table(name).select().read_all().to_pylist()
            for row in rows:
                for key in ("metadata_embedding", "channel_fingerprint"):
                    if row.get(key) is not None:
                        row[key] = tuple(row[key])
            out[name] = sorted(rows, key=lambda r: repr(sorted(r.items())))
    return out


def outcomes(deliveries: list) -> list[Outcome]:
    return [d.outcome for d in deliveries]


class TestInit:
    def test_init_twice_and_concurrently(self, emu: VastEmulator) -> None:
        errors: list[BaseException] = []

        def run() -> None:
            try:
                init_catalog(vast_config(emu))
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors
        assert init_catalog(vast_config(emu)) == {name: 0 for name in TABLES}

    def test_daemon_check_without_create_names_what_is_missing(self, emu: VastEmulator) -> None:
        with pytest.raises(SinkUnavailable, match="run `exrwatchd vast init"):
            VastSink(vast_config(emu)).open()

    def test_incompatible_column_is_named(self, emu: VastEmulator) -> None:
        session = vastdb.connect(endpoint=emu.endpoint, access=emu.access_key,
                                 secret=emu.secret_key, timeout=(5, 5),
                                 config=SessionConfig(data_endpoints=[emu.endpoint]))  # fmt: skip
        import pyarrow as pa

        wrong = pa.schema([pa.field("file_id", pa.int64(), metadata={"x": "y"})],
                          metadata={"x": "y"})  # fmt: skip
        with session.transaction() as tx:
            tx.bucket(BUCKET).create_schema(SCHEMA).create_table("files", wrong)
        with pytest.raises(
            SinkUnavailable, match="table files: column file_id: expected string, found int64"
        ):
            init_catalog(vast_config(emu))

    def test_bad_credentials_and_missing_bucket(self, emu: VastEmulator) -> None:
        bad = vast_config(emu, secret_key=Secret("wrong-secret-value", "test"))
        with pytest.raises(SinkUnavailable) as info:
            VastSink(bad).open()
        assert "wrong-secret-value" not in str(info.value)
        with pytest.raises(SinkUnavailable, match="bucket 'nope' does not exist"):
            init_catalog(vast_config(emu, bucket="nope"))


class TestWrites:
    def test_insert_replay_audit_replace_delete(
        self, emu: VastEmulator, sink: VastSink, frames: Frames
    ) -> None:
        a, b = frames.write("a.0001.exr"), frames.write("b.0001.exr", "multipart")
        batch = [frames.upsert(a), frames.upsert(b)]
        assert outcomes(sink.write(batch)) == [Outcome.DELIVERED] * 2
        first = dump(emu)
        assert len(first["files"]) == 2 and len(first["parts"]) == 1 + 3

        assert outcomes(sink.write(batch)) == [Outcome.DELIVERED] * 2  # a replay
        assert dump(emu) == first

        sink.write([frames.upsert(a)])  # unchanged header: audit columns only
        files = {r["file_path"]: r for r in dump(emu)["files"]}
        assert files[a]["inspection_count"] == 2
        assert len(dump(emu)["files"]) == 2

        frames.write("a.0001.exr", "aovs")  # re-rendered with another channel set
        sink.write([frames.upsert(a)])
        after = dump(emu)
        assert len(after["files"]) == 2
        a_id = next(r["file_id"] for r in after["files"] if r["file_path"] == a)
        assert {r["channel_name"] for r in after["channels"] if r["file_id"] == a_id} == {
            "R", "G", "B", "A", "Z"}  # fmt: skip

        sink.write([frames.delete(a)])
        final = dump(emu)
        assert [r["file_path"] for r in final["files"]] == [b]
        file_ids = {r["file_id"] for r in final["files"]}
        for child in ("parts", "channels", "attributes"):
            assert {r["file_id"] for r in final[child]} <= file_ids  # no orphans

    def test_rename_is_delete_plus_upsert(self, emu: VastEmulator, sink: VastSink,
                                          frames: Frames) -> None:  # fmt: skip
        old = frames.write("old.exr")
        sink.write([frames.upsert(old)])
        new = str(Path(old).with_name("new.exr"))
        Path(old).rename(new)
        assert outcomes(sink.write([frames.delete(old), frames.upsert(new)])) == [
            Outcome.DELIVERED, Outcome.DELIVERED]  # fmt: skip
        assert [r["file_path"] for r in dump(emu)["files"]] == [new]

    def test_requests_per_file_for_a_batch(self, emu: VastEmulator, sink: VastSink,
                                           frames: Frames) -> None:  # fmt: skip
        batch = [frames.upsert(frames.write(f"f.{i:04d}.exr")) for i in range(200)]
        emu.reset_requests()
        assert set(outcomes(sink.write(batch))) == {Outcome.DELIVERED}
        assert emu.total_requests / len(batch) <= 0.1


class TestFaults:
    def test_transient_errors_retry_the_batch(self, emu: VastEmulator, sink: VastSink,
                                              frames: Frames) -> None:  # fmt: skip
        batch = [frames.upsert(frames.write(f"t.{i}.exr")) for i in range(5)]
        for status, code in ((503, "ServiceUnavailable"), (500, "InternalError"), (502, "")):
            emu.fail_next(1, status=status, code=code, command="rows")
            result = sink.write(batch)
            assert outcomes(result) == [Outcome.RETRY] * 5, (status, result)
        assert set(outcomes(sink.write(batch))) == {Outcome.DELIVERED}
        assert len(dump(emu)["files"]) == 5

    def test_ambiguous_commit_then_replay_leaves_exactly_one_row_set(
        self, emu: VastEmulator, sink: VastSink, frames: Frames
    ) -> None:
        batch = [frames.upsert(frames.write(f"c.{i}.exr")) for i in range(4)]
        emu.reset_connection(when="after_commit")
        with pytest.raises(SinkUnavailable, match="unreachable"):  # the client cannot know
            sink.write(batch)
        committed = dump(emu)
        assert len(committed["files"]) == 4  # ...but it was applied
        assert set(outcomes(sink.write(batch))) == {Outcome.DELIVERED}
        assert dump(emu) == committed

    def test_slow_reply_and_server_down(self, emu: VastEmulator, sink: VastSink,
                                        frames: Frames) -> None:  # fmt: skip
        batch = [frames.upsert(frames.write("s.exr"))]
        # No answer is the cluster's problem, not the entries': sink-wide, so the sink loop
        # backs off as a whole and counts no attempt against them.
        emu.delay(3.0, command="rows")  # beyond the 2 s read timeout
        with pytest.raises(SinkUnavailable, match="unreachable"):
            sink.write(batch)
        emu.down()
        with pytest.raises(SinkUnavailable, match="unreachable"):
            sink.write(batch)
        emu.up()
        assert outcomes(sink.write(batch)) == [Outcome.DELIVERED]
        assert len(dump(emu)["files"]) == 1

    def test_a_rejected_row_is_dead_lettered_alone(self, emu: VastEmulator, sink: VastSink,
                                                   frames: Frames) -> None:  # fmt: skip
        paths = [frames.write(f"r.{i}.exr") for i in range(8)]
        bad = paths[5]
        emu.reject_rows(lambda row: row.get("file_path") == bad)
        result = sink.write([frames.upsert(p) for p in paths])
        assert [d.outcome for d in result].count(Outcome.REJECT) == 1
        assert result[5].outcome is Outcome.REJECT and "rejected" in (result[5].error or "")
        emu.reject_rows(None)
        assert sorted(r["file_path"] for r in dump(emu)["files"]) == sorted(set(paths) - {bad})

    def test_an_invalid_record_is_rejected_before_sending(self, sink: VastSink,
                                                          frames: Frames) -> None:  # fmt: skip
        good = frames.upsert(frames.write("g.exr"))
        broken = OutboxEntry(999, "/x/broken.exr", "upsert", {"path": "/x/broken.exr"}, 0, 0.0)
        assert outcomes(sink.write([broken, good])) == [Outcome.REJECT, Outcome.DELIVERED]
