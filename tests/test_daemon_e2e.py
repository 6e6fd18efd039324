"""End to end: the real `exrwatchd run` process on temp dirs, asserting on catalog.db.

Both backends run every scenario: inotify (local disk) and poll (what NFS/SMB mounts get).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from exrgen import _offset_table_span, write_multipart, write_scanline
from harness import DaemonEnv, wait_for

BACKENDS = ["inotify", "poll"]


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("templates")
    return {
        "rgba": write_scanline(d / "rgba.exr").read_bytes(),
        "aovs": write_scanline(
            d / "aovs.exr", channels=("R", "G", "B", "A", "Z", "N.x", "N.y"), compression="piz"
        ).read_bytes(),
        "big": write_scanline(d / "big.exr", size=(64, 256), compression="none").read_bytes(),
        "multipart": write_multipart(d / "multipart.exr").read_bytes(),
    }


class Env(DaemonEnv):
    def __init__(self, tmp: Path, backend: str, **sections: object) -> None:
        super().__init__(tmp, {"backend": backend, "poll_interval": 0.2}, **sections)
        self.backend = backend

    def path(self, name: str) -> str:
        return str(self.watch / name)


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    marker = request.node.get_closest_marker("daemon_config")
    e = Env(tmp_path, request.param, **(marker.kwargs if marker else {}))
    yield e
    if e.daemon is not None:
        e.daemon.kill()


def put(path: str | Path, data: bytes) -> None:
    """Write a file the way a careful copy does: all at once."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)


def write_like_a_renderer(path: Path, data: bytes, seconds: float, steps: int = 10) -> None:
    """Header and a zeroed offset table first, pixels over `seconds`, the table last."""
    start, count = offset_table_span_bytes(data)
    table_end = start + 8 * count
    with open(path, "wb") as f:
        f.write(data[:start] + b"\0" * (8 * count))
        f.flush()
        body = data[table_end:]
        step = max(1, len(body) // steps)
        for i in range(0, len(body), step):
            f.write(body[i : i + step])
            f.flush()
            time.sleep(seconds / steps)  # the writer is slow on purpose; tests wait on conditions
        f.seek(start)
        f.write(data[start:table_end])


def offset_table_span_bytes(data: bytes) -> tuple[int, int]:
    return _offset_table_span(data)


class TestArrivals:
    def test_burst_of_500_files(self, env: Env, templates: dict[str, bytes]) -> None:
        env.start()
        expected = set()
        for i in range(500):
            p = env.path(f"shot/sh{i % 5}/frame.{i:04d}.exr")
            put(p, templates["rgba"] if i % 2 else templates["multipart"])
            expected.add(p)
        rows = env.catalog.wait_paths(expected, timeout=60)
        assert all(r[1] == 1 for r in rows.values())
        assert env.catalog.query("SELECT count(*) FROM files")[0][0] == 500
        assert env.catalog.orphans() == 0

    # The writer pauses 0.5 s between chunks, longer than quiet_seconds: the daemon inspects
    # the half-written frame again and again. With the harness's max_wait_seconds (5.0, about
    # as long as this writer takes) it would give up and record the frame incomplete just
    # before the last write whenever the writer ran a little late.
    @pytest.mark.daemon_config(settle={"max_wait_seconds": 60.0})
    def test_slow_writer_is_recorded_once_complete(
        self, env: Env, templates: dict[str, bytes]
    ) -> None:
        env.start()
        target = env.watch / "slow.0001.exr"
        writer = threading.Thread(
            target=write_like_a_renderer, args=(target, templates["big"], 5.0)
        )
        writer.start()
        seen_incomplete = []
        while writer.is_alive():  # the catalog must never hold a half-written verdict
            seen_incomplete += [r for r in env.catalog.paths().values() if r[1] != 1]
            writer.join(timeout=0.1)
        assert not seen_incomplete
        rows = env.catalog.wait_paths({str(target)})
        assert rows[str(target)][1] == 1

    def test_file_that_never_finishes_is_recorded_incomplete(
        self, env: Env, templates: dict[str, bytes]
    ) -> None:
        env.start()
        data = templates["big"]
        start, count = offset_table_span_bytes(data)
        target = env.path("stuck.exr")
        put(target, data[:start] + b"\0" * (8 * count) + data[start + 8 * count :])
        rows = env.catalog.wait_paths({target}, timeout=30)
        assert rows[target][1] == 0  # is_complete false, after max_wait_seconds
        reason = env.catalog.query("SELECT incomplete_reason FROM files")[0][0]
        assert "zero" in reason

    def test_temp_then_rename(self, env: Env, templates: dict[str, bytes]) -> None:
        env.start()
        tmp = env.path("frame.0001.exr.tmp")
        put(tmp, templates["rgba"])
        os.rename(tmp, env.path("frame.0001.exr"))
        env.catalog.wait_paths({env.path("frame.0001.exr")})

    def test_nested_directories_created_after_start(
        self, env: Env, templates: dict[str, bytes]
    ) -> None:
        env.start()
        deep = env.watch / "a" / "b" / "c"
        deep.mkdir(parents=True)
        put(deep / "x.0001.exr", templates["rgba"])
        put(deep / "y.0001.exr", templates["aovs"])
        env.catalog.wait_paths({str(deep / "x.0001.exr"), str(deep / "y.0001.exr")})

    def test_ignores_non_exr_names_and_hidden_files(
        self, env: Env, templates: dict[str, bytes]
    ) -> None:
        env.start()
        put(env.path("notes.txt"), b"hello")
        put(env.path(".hidden.exr"), templates["rgba"])
        put(env.path("render.exr.part"), templates["rgba"])
        put(env.path("UPPER.EXR"), templates["rgba"])
        put(env.path("garbage.exr"), b"not an exr at all")
        rows = env.catalog.wait_paths({env.path("UPPER.EXR"), env.path("garbage.exr")})
        assert rows[env.path("garbage.exr")][2] == "not_exr"  # recorded as an error row


class TestChanges:
    def test_deletion_removes_rows(self, env: Env, templates: dict[str, bytes]) -> None:
        env.start()
        put(env.path("a.exr"), templates["multipart"])
        put(env.path("b.exr"), templates["rgba"])
        env.catalog.wait_paths({env.path("a.exr"), env.path("b.exr")})
        os.unlink(env.path("a.exr"))
        env.catalog.wait_paths({env.path("b.exr")})
        assert env.catalog.orphans() == 0

    def test_rename_within_tree_moves_the_record(
        self, env: Env, templates: dict[str, bytes]
    ) -> None:
        env.start()
        put(env.path("old/name.exr"), templates["rgba"])
        env.catalog.wait_paths({env.path("old/name.exr")})
        os.makedirs(env.path("new"))
        os.rename(env.path("old/name.exr"), env.path("new/name.exr"))
        env.catalog.wait_paths({env.path("new/name.exr")})

    def test_files_moved_in_and_out_of_the_tree(
        self, env: Env, templates: dict[str, bytes]
    ) -> None:
        env.start()
        outside = env.tmp / "outside"
        outside.mkdir()
        put(outside / "incoming.0001.exr", templates["rgba"])
        put(env.path("leaving.0001.exr"), templates["aovs"])
        env.catalog.wait_paths({env.path("leaving.0001.exr")})
        os.rename(outside / "incoming.0001.exr", env.path("incoming.0001.exr"))
        os.rename(env.path("leaving.0001.exr"), outside / "leaving.0001.exr")
        env.catalog.wait_paths({env.path("incoming.0001.exr")})

    def test_directory_moved_out_of_the_tree(self, env: Env, templates: dict[str, bytes]) -> None:
        env.start()
        for i in range(3):
            put(env.path(f"shot/f.{i}.exr"), templates["rgba"])
        put(env.path("keep.exr"), templates["rgba"])
        env.catalog.wait_paths(
            {env.path(f"shot/f.{i}.exr") for i in range(3)} | {env.path("keep.exr")}
        )
        shutil.move(env.path("shot"), str(env.tmp / "elsewhere"))
        env.catalog.wait_paths({env.path("keep.exr")})

    def test_rerender_with_a_different_header_replaces_rows(
        self, env: Env, templates: dict[str, bytes]
    ) -> None:
        env.start()
        target = env.path("frame.0001.exr")
        put(target, templates["rgba"])
        first = env.catalog.wait_paths({target})[target][0]
        tmp = env.path("frame.0001.exr.tmp")
        put(tmp, templates["aovs"])
        os.replace(tmp, target)
        wait_for(lambda: env.catalog.paths().get(target, (first,))[0] != first, 20, "new header")
        assert env.catalog.query("SELECT count(*) FROM files")[0][0] == 1
        channels = env.catalog.query("SELECT count(*) FROM channels")[0][0]
        assert channels == 7 and env.catalog.orphans() == 0


class TestRestarts:
    def test_files_created_while_stopped_are_found_at_restart(
        self, env: Env, templates: dict[str, bytes]
    ) -> None:
        daemon = env.start()
        put(env.path("before.exr"), templates["rgba"])
        env.catalog.wait_paths({env.path("before.exr")})
        assert daemon.stop() == 0
        put(env.path("while_down.exr"), templates["aovs"])
        os.unlink(env.path("before.exr"))
        env.start()
        env.catalog.wait_paths({env.path("while_down.exr")})

    def test_sigterm_during_a_burst_loses_nothing(
        self, env: Env, templates: dict[str, bytes]
    ) -> None:
        daemon = env.start()
        expected = set()
        for i in range(300):
            p = env.path(f"burst/f.{i:04d}.exr")
            put(p, templates["rgba"])
            expected.add(p)
        wait_for(lambda: len(env.catalog.paths()) >= 20, 30, "some rows before the signal")
        assert daemon.stop(signal.SIGTERM) == 0
        assert daemon.seen("daemon.stopping")
        env.start()
        env.catalog.wait_paths(expected, timeout=60)
        assert env.catalog.orphans() == 0
