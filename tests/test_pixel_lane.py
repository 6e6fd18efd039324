"""Pixel health in the daemon: the real process (local catalog sink) and the pixel lane.

Real files, real processes; every wait polls a condition with a deadline (harness.wait_for).
Expected values come from numpy arrays the files were written from, or the openexr binding,
never from OpenImageIO itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import OpenEXR
import pytest
from exrgen import ramp, write_subsampled
from harness import DaemonEnv, wait_for, write_config
from pixel_frames import expected, nan_inf_channels, normal_channels, write_frame, zero_channels

from exrwatchd.exr import inspect_path
from exrwatchd.filesig import FileSig
from exrwatchd.pipeline import inspect_settled
from exrwatchd.pipeline.pixel_lane import PixelLane, measure
from exrwatchd.watch import SettledFile


class Env(DaemonEnv):
    """The daemon's environment (harness.DaemonEnv) with readers for the pixel columns."""

    def files(self) -> dict[str, dict[str, Any]]:
        cols = ("file_path", "is_complete", "error_kind", "has_nan", "has_inf", "is_constant",
                "pixel_stats_error", "pixel_stats_digest", "inspection_count",
                "inspection_timestamp", "header_hash")  # fmt: skip
        rows = self.catalog.query(f"SELECT {', '.join(cols)} FROM files")
        return {r[0]: dict(zip(cols, r, strict=True)) for r in rows}

    def channels(self, path: Path) -> dict[str, tuple[Any, ...]]:
        rows = self.catalog.query(
            "SELECT channel_name, pixel_min, pixel_max, pixel_mean, nan_count, inf_count "
            "FROM channels WHERE file_path = ? ORDER BY channel_index", str(path),
        )  # fmt: skip
        return {r[0]: tuple(r[1:]) for r in rows}

    def wait_rows(self, done: dict[Path, Any], timeout: float = 60.0) -> dict[str, Any]:
        """Wait until every path has a files row for which `done[path](row)` holds."""

        def ready() -> dict[str, Any] | None:
            rows = self.files()
            ok = all(str(p) in rows and check(rows[str(p)]) for p, check in done.items())
            return rows if ok else None

        return wait_for(ready, timeout, lambda: f"rows: {self.files()}\n{self.tail()}")

    def tail(self) -> str:
        return self.daemon.tail() if self.daemon else ""


@pytest.fixture
def env_factory(tmp_path: Path) -> Iterator[Any]:
    envs: list[Env] = []

    def make(**sections: Any) -> Env:
        env = Env(tmp_path, **sections)
        envs.append(env)
        return env

    yield make
    for env in envs:
        if env.daemon is not None:
            env.daemon.kill()


PIXELS_ON = {"pixel_stats": True, "pixel_workers": 2, "pixel_queue_size": 4}


def has_stats(row: dict[str, Any]) -> bool:
    return row["pixel_stats_digest"] is not None


def oiio_loaded(pid: int) -> bool:
    """Whether the process has OpenImageIO's library mapped (imported it)."""
    return "OpenImageIO" in Path(f"/proc/{pid}/maps").read_text()


# --------------------------------------------------------------------------- the daemon


def test_daemon_records_pixel_health_flags_and_counts(env_factory: Any) -> None:
    env = env_factory(inspect=PIXELS_ON, metrics={"listen": "127.0.0.1:0"})
    daemon = env.start()
    normal = write_frame(env.watch / "normal.0001.exr", normal_channels())
    black = write_frame(env.watch / "black.0001.exr", zero_channels())
    broken = write_frame(env.watch / "broken.0001.exr", nan_inf_channels())
    subsampled = write_subsampled(env.watch / "yc.0001.exr")
    (env.watch / "junk.exr").write_bytes(b"not an exr at all")
    junk = env.watch / "junk.exr"
    rows = env.wait_rows({normal: has_stats, black: has_stats, broken: has_stats,
                          subsampled: has_stats, junk: lambda r: True})  # fmt: skip

    assert (rows[str(normal)]["has_nan"], rows[str(normal)]["has_inf"],
            rows[str(normal)]["is_constant"]) == (0, 0, 0)  # fmt: skip
    assert (rows[str(black)]["has_nan"], rows[str(black)]["is_constant"]) == (0, 1)
    assert (rows[str(broken)]["has_nan"], rows[str(broken)]["has_inf"],
            rows[str(broken)]["is_constant"]) == (1, 1, 0)  # fmt: skip
    for path, arrays in ((normal, normal_channels()), (broken, nan_inf_channels()),
                         (black, zero_channels())):  # fmt: skip
        got = env.channels(path)
        assert got == {name: expected(values) for name, values in arrays.items()}, path

    # A file OpenImageIO cannot read keeps its header record, channels and all.
    sub = rows[str(subsampled)]
    assert sub["is_complete"] == 1 and sub["header_hash"] is not None
    assert "Subsampled" in sub["pixel_stats_error"] and sub["has_nan"] is None
    assert set(env.channels(subsampled)) == {"BY", "RY", "Y"}
    assert all(v == (None,) * 5 for v in env.channels(subsampled).values())
    # A file that is not an EXR is a failed record: never read for pixels.
    assert rows[str(junk)]["error_kind"] == "not_exr"
    assert rows[str(junk)]["pixel_stats_digest"] is None

    unhealthy = {e["path"]: e["reasons"] for e in daemon.seen("file.unhealthy")}
    assert unhealthy == {str(broken): ["nan", "inf"], str(black): ["constant"]}
    assert all(e["level"] == "warning" for e in daemon.seen("file.unhealthy"))
    (event,) = daemon.seen("file.pixel_stats_unavailable")
    assert event["path"] == str(subsampled)
    assert event["reason"].startswith("pixel stats unavailable: ") and "Subsampled" in event[
        "reason"]  # fmt: skip

    address = daemon.wait_event("metrics.listening")["address"]
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    assert 'exrwatchd_unhealthy_files_total{reason="nan"} 1.0' in text
    assert 'exrwatchd_unhealthy_files_total{reason="inf"} 1.0' in text
    assert 'exrwatchd_unhealthy_files_total{reason="constant"} 1.0' in text
    assert "exrwatchd_pixel_stats_unavailable_total 1.0" in text
    assert "exrwatchd_pixel_stats_seconds_count 4.0" in text
    assert "exrwatchd_pixel_queue_depth 0.0" in text
    assert oiio_loaded(daemon.proc.pid)
    assert daemon.stop() == 0


@pytest.mark.corpus
def test_daemon_corpus_nan_inf_and_luminance_chroma(env_factory: Any, corpus_dir: Path) -> None:
    env = env_factory(inspect=PIXELS_ON)
    env.start()
    rings = Path(shutil.copy(corpus_dir / "TestImages" / "BrightRingsNanInf.exr", env.watch))
    plain = Path(shutil.copy(corpus_dir / "TestImages" / "BrightRings.exr", env.watch))
    flowers = Path(shutil.copy(corpus_dir / "LuminanceChroma" / "Flowers.exr", env.watch))
    rows = env.wait_rows({rings: has_stats, plain: has_stats, flowers: has_stats})
    assert (rows[str(rings)]["has_nan"], rows[str(rings)]["has_inf"]) == (1, 1)
    assert (rows[str(plain)]["has_nan"], rows[str(plain)]["has_inf"],
            rows[str(plain)]["is_constant"]) == (0, 0, 0)  # fmt: skip
    reference = OpenEXR.File(str(rings), separate_channels=True).parts[0].channels
    got = env.channels(rings)
    assert list(got) == list(reference) == ["B", "G", "R"]
    for name, values in reference.items():
        lo, hi, mean, nans, infs = expected(values.pixels)
        assert (got[name][0], got[name][1], got[name][3], got[name][4]) == (lo, hi, nans, infs)
        assert got[name][2] == pytest.approx(mean, rel=1e-12)
        assert nans > 0 and infs > 0
    assert "Subsampled" in rows[str(flowers)]["pixel_stats_error"]
    assert rows[str(flowers)]["is_complete"] == 1
    assert env.daemon is not None and env.daemon.stop() == 0


def test_pixel_stats_are_off_by_default_and_openimageio_is_never_loaded(
    env_factory: Any,
) -> None:
    env = env_factory()
    daemon = env.start()
    path = write_frame(env.watch / "f.0001.exr", nan_inf_channels())
    rows = env.wait_rows({path: lambda r: True})
    row = rows[str(path)]
    assert [row[k] for k in ("has_nan", "has_inf", "is_constant", "pixel_stats_error",
                             "pixel_stats_digest")] == [None] * 5  # fmt: skip
    assert all(v == (None,) * 5 for v in env.channels(path).values())
    assert not daemon.seen("file.unhealthy")
    assert daemon.seen("daemon.ready")[0]["pixel_stats"] is False
    assert not oiio_loaded(daemon.proc.pid)
    assert daemon.stop() == 0


def test_rerender_with_the_same_header_updates_the_pixel_columns(env_factory: Any) -> None:
    """Same header bytes, other pixels: the row set is rewritten with the new stats (plan.py),
    and inspection_timestamp still dates the header."""
    env = env_factory(inspect=PIXELS_ON)
    env.start()
    path = write_frame(env.watch / "shot.0001.exr", normal_channels())
    first = env.wait_rows({path: has_stats})[str(path)]
    assert first["has_nan"] == 0
    staged = write_frame(env.watch.parent / "staged.exr", nan_inf_channels())
    assert inspect_path(str(staged)).header_hash == first["header_hash"]
    os.replace(staged, path)  # a renderer's temp-then-rename
    again = env.wait_rows({path: lambda r: r["inspection_count"] == 2})[str(path)]
    assert (again["has_nan"], again["has_inf"]) == (1, 1)
    assert again["header_hash"] == first["header_hash"]
    assert again["inspection_timestamp"] == first["inspection_timestamp"]
    assert env.channels(path)["R"] == expected(nan_inf_channels()["R"])
    assert env.daemon is not None and env.daemon.stop() == 0


def test_a_full_lane_holds_header_work_back_and_drops_nothing(env_factory: Any) -> None:
    env = env_factory(inspect={"pixel_stats": True, "pixel_workers": 1, "pixel_queue_size": 2})
    daemon = env.start()
    big = {name: ramp((512, 512), "float", k) for k, name in enumerate("RGBA")}
    paths = [write_frame(env.watch / f"b.{i:04d}.exr", big) for i in range(40)]
    junk = env.watch / "junk.exr"
    junk.write_bytes(b"nope")
    env.wait_rows({**{p: has_stats for p in paths}, junk: lambda r: r["error_kind"]}, 120)
    assert len(daemon.seen("file.inspected")) == 40
    assert daemon.stop() == 0


def noise_frame(tmp_path: Path) -> bytes:
    """A 1024x1024 RGBA half frame of noise: ~60 ms of pixel reading (2 vCPUs)."""
    rng = np.random.default_rng(1)
    noise = {c: rng.random((1024, 1024), dtype=np.float32).astype(np.float16) for c in "RGBA"}
    return write_frame(tmp_path / "template.exr", noise).read_bytes()


def land_at_once(data: bytes, paths: list[Path]) -> None:
    """Write every frame beside the watched tree, then rename them all in: they settle
    together, so the lane's backlog is the whole burst however slowly the disk took the
    writes (written in place, a writer slower than the lane left it idle)."""
    staged = []
    for path in paths:
        stage = path.parent.parent / f"staged.{path.name}"
        stage.write_bytes(data)
        staged.append(stage)
    for stage, path in zip(staged, paths, strict=True):
        os.rename(stage, path)


def test_kill_during_pixel_reads_loses_nothing(env_factory: Any, tmp_path: Path) -> None:
    """A record waiting for the lane is not journaled yet: after kill -9 the start-up scan
    finds those files again, and every one ends with its stats."""
    env = env_factory(inspect={"pixel_stats": True, "pixel_workers": 1, "pixel_queue_size": 2})
    daemon = env.start()
    data = noise_frame(tmp_path)
    paths = [env.watch / f"k.{i:04d}.exr" for i in range(24)]
    land_at_once(data, paths)
    # The first record out of the lane: the lane holds up to 3 more, the settler the rest.
    wait_for(lambda: daemon.seen("file.inspected"), 60, "a first file through the lane")
    daemon.kill()
    rows = env.files()
    assert len([p for p in paths if str(p) in rows]) < len(paths), "too late to kill mid-burst"
    env.start()
    rows = env.wait_rows({p: has_stats for p in paths}, 120)
    assert all(rows[str(p)]["inspection_count"] == 1 for p in paths)
    assert env.catalog.orphans() == 0


def test_sigterm_with_a_busy_lane_stops_cleanly_within_the_timeout(
    env_factory: Any, tmp_path: Path
) -> None:
    """Shutdown waits for the lane up to daemon.shutdown_timeout, then gives up on what is
    left: not journaled, so the next start inspects those files again."""
    env = env_factory(inspect={"pixel_stats": True, "pixel_workers": 1, "pixel_queue_size": 8},
                      daemon={"shutdown_timeout": 0.01})  # fmt: skip
    daemon = env.start()
    data = noise_frame(tmp_path)
    paths = [env.watch / f"t.{i:04d}.exr" for i in range(30)]
    land_at_once(data, paths)
    # All 30 are due together: the lane takes 8 (its queue) and one being read, the settler
    # keeps it full from the rest; ~1.8 s of reading in all, against a timeout of 0.01 s.
    wait_for(lambda: len(daemon.seen("file.settled")) >= 8, 60, "files settled")
    started = time.monotonic()
    assert daemon.stop(timeout=20) == 0  # exit 0: no thread was left inside OpenImageIO
    assert time.monotonic() - started < 8.0
    stopped = daemon.seen("daemon.stopped")[0]
    assert stopped["unfinished_inspections"] > 0, "the lane finished before the stop"
    env.start()
    rows = env.wait_rows({p: has_stats for p in paths}, 180)
    assert all(rows[str(p)]["inspection_count"] == 1 for p in paths)


# --------------------------------------------------------------------------- the lane itself


def _settled(path: Path) -> SettledFile:
    st = path.stat()
    return SettledFile(str(path), FileSig(st.st_size, st.st_mtime_ns, st.st_ino), 0.0, 0)


def test_lane_reports_a_file_changed_or_gone_after_its_header(tmp_path: Path) -> None:
    path = write_frame(tmp_path / "a.exr", normal_channels())
    verdict = inspect_settled(_settled(path))
    assert PixelLane.wants(verdict)
    measured = measure(verdict)
    assert measured.record is not None and measured.record["pixel_stats"]["unhealthy"] == []
    assert not PixelLane.wants(measured)  # it has its stats: never a second trip

    write_frame(tmp_path / "a.exr", zero_channels())  # rewritten after the header was read
    changed = measure(verdict)
    assert (changed.kind, changed.record) == ("changed", None)
    path.unlink()
    assert measure(verdict).kind == "vanished"


def test_lane_threads_hand_back_every_verdict(tmp_path: Path) -> None:
    import queue

    back: queue.Queue[Any] = queue.Queue()
    lane = PixelLane(2, 1, back.put)
    lane.start()
    verdicts = [inspect_settled(_settled(write_frame(tmp_path / f"{i}.exr", zero_channels())))
                for i in range(5)]  # fmt: skip
    for v in verdicts:
        lane.submit(v)
    assert len(lane.held) == 5 and lane.room() <= 0  # the queue of 1 took one, 4 wait
    got = []

    def drained() -> bool:
        lane.flush()
        while not back.empty():
            got.append(back.get())
        return len(got) == 5

    wait_for(drained, 30, lambda: f"{len(got)} of 5 back")
    assert all(v.record["pixel_stats"]["unhealthy"] == ["constant"] for v in got)
    assert all(lane.returned(v.settled.path) for v in got) and not lane.held
    assert lane.stop(10) == 0


def test_reload_says_pixel_keys_need_a_restart(env_factory: Any) -> None:
    env = env_factory()
    daemon = env.start()
    write_config(env.config, env.state, [{"path": str(env.watch)}],
                 inspect={"pixel_stats": True, "pixel_workers": 2})  # fmt: skip
    daemon.proc.send_signal(signal.SIGHUP)
    event = daemon.wait_event("config.reloaded")
    assert event["needs_restart"] == ["inspect.pixel_stats", "inspect.pixel_workers"]
    path = write_frame(env.watch / "f.exr", normal_channels())
    row = env.wait_rows({path: lambda r: True})[str(path)]
    assert row["pixel_stats_digest"] is None  # still off until a restart
    assert daemon.stop() == 0
