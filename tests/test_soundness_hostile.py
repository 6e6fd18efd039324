"""Hostile input and resources (issue 12, cases 10, 12 and 13): a pixel bomb, a FIFO swapped
in under the pixel lane, and slow clients of the metrics server.

Real parts only: the daemon as a process, real EXR files read by OpenImageIO, a real FIFO,
the real metrics server on 127.0.0.1. Every wait has a deadline (harness.wait_for).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from exrgen import PartSpec, ramp, write_mipmap, write_multipart, write_scanline, write_tiled
from harness import DaemonEnv, wait_for
from pixel_frames import nan_inf_channels, normal_channels, write_frame

from exrwatchd.config import InspectConfig
from exrwatchd.exr.pixels import DEFAULT_MAX_DECODED_BYTES, PixelHealth, pixel_health
from exrwatchd.filesig import FileSig, sig_of
from exrwatchd.pipeline import inspect_settled
from exrwatchd.pipeline.pixel_lane import PixelLane
from exrwatchd.telemetry import Metrics, MetricsServer
from exrwatchd.watch import SettledFile

MB = 1 << 20

# --------------------------------------------------------------------------- case 10


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def _zeros_frame(path: Path, width: int, height: int) -> Path:
    """A constant ZIP frame: tiny on disk, width * height half values once decoded."""
    return write_frame(path, {"Y": np.zeros((height, width), np.float16)})


def test_pixel_bomb_is_read_in_bounded_memory_or_recorded_over_budget(tmp_path: Path) -> None:
    # issue 12, case 10: a 100 KB ZIP file decoding to 64 MB took that much memory per read.
    env = DaemonEnv(
        tmp_path,
        inspect={
            "pixel_stats": True,
            "pixel_workers": 1,
            "pixel_queue_size": 4,
            "pixel_max_decoded_mb": 2,
        },
    )
    daemon = env.start()
    try:
        warm = write_frame(env.watch / "warm.exr", normal_channels())  # loads OpenImageIO
        _wait_files(env, {warm: lambda r: r[1] is not None})
        before = _peak_rss_mb(daemon.proc.pid)

        tall = _zeros_frame(tmp_path / "tall.exr", 2048, 16384)  # 64 MB of halves
        wide = _zeros_frame(tmp_path / "wide.exr", 65536, 512)  # one 16-row chunk: 4 MB as float
        assert max(tall.stat().st_size, wide.stat().st_size) < 200_000
        os.rename(tall, env.watch / "tall.exr")
        os.rename(wide, env.watch / "wide.exr")
        tall, wide = env.watch / "tall.exr", env.watch / "wide.exr"
        rows = _wait_files(
            env, {tall: lambda r: r[1] is not None, wide: lambda r: r[1] is not None}
        )
        peak = _peak_rss_mb(daemon.proc.pid)
        assert peak - before < 24, f"peak RSS grew {peak - before:.0f} MB reading the bombs"

        # The tall bomb fits the budget strip by strip: it has its stats, and is all black.
        complete, _, error, constant = rows[str(tall)]
        assert (complete, error, constant) == (1, None, 1), rows[str(tall)]
        # No strip of the wide one fits: recorded with the reason, header record and all.
        complete, _, error, constant = rows[str(wide)]
        assert (complete, constant) == (1, None)
        assert error is not None and "pixel_max_decoded_mb" in error, error
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def _wait_files(env: DaemonEnv, done: dict[Path, Any]) -> dict[str, tuple]:
    """(is_complete, pixel_stats_digest, pixel_stats_error, is_constant) per path, once every
    `done[path](row)` holds."""

    def rows() -> dict[str, tuple]:
        found = env.catalog.query("SELECT file_path, is_complete, pixel_stats_digest, "
                                  "pixel_stats_error, is_constant FROM files")  # fmt: skip
        return {r[0]: r[1:] for r in found}

    def ready() -> dict[str, tuple] | None:
        have = rows()
        ok = all(str(p) in have and check(have[str(p)]) for p, check in done.items())
        return have if ok else None

    assert env.daemon is not None
    return wait_for(ready, 90, lambda: f"rows {rows()}\n{env.daemon.tail()}")


def _big_files(tmp_path: Path) -> list[Path]:
    """Flat files whose parts are over a 160 KB budget as a whole, but not per 16-row band."""
    mixed = {"A": ramp((256, 128), "half", 1), "id": ramp((256, 128), "uint", 2),
             "Z": ramp((256, 128), "float", 3)}  # fmt: skip
    nan_inf = {k: np.tile(v, (8, 8)) for k, v in nan_inf_channels().items()}  # 256 x 128
    return [
        write_scanline(tmp_path / "zip.exr", size=(256, 128)),
        write_scanline(
            tmp_path / "piz.exr", size=(256, 130), compression="piz", data_window_origin=(-3, 7)
        ),
        write_tiled(tmp_path / "tiled.exr", size=(256, 100), tile=(32, 16)),
        write_mipmap(tmp_path / "mip.exr", size=(256, 128), tile=(32, 32)),
        write_frame(tmp_path / "mixed.exr", mixed),
        write_frame(tmp_path / "nan_inf.exr", nan_inf),
        write_frame(tmp_path / "const.exr", {"Y": np.full((128, 256), 0.5, np.float16)}),
        write_multipart(
            tmp_path / "multi.exr",
            [
                PartSpec("a", size=(256, 128)),
                PartSpec(
                    "b",
                    kind="tiled",
                    channels=("Z",),
                    pixel_type="float",
                    size=(256, 100),
                    tile=(64, 32),
                ),
                PartSpec("ids", channels=("id",), pixel_type="uint", size=(512, 64)),
                PartSpec("small", size=(8, 8)),
            ],
        ),
    ]


def test_parts_over_the_budget_are_read_in_strips_with_the_same_stats(tmp_path: Path) -> None:
    # issue 12, case 10: big parts are read by scanline/tile ranges; the stats must not change.
    for path in _big_files(tmp_path):
        whole = pixel_health(str(path))
        strips = pixel_health(str(path), 160 * 1024)
        assert whole.unavailable is None and strips.unavailable is None, (whole, strips)
        assert _without_means(strips) == _without_means(whole), path.name
        for part_w, part_s in zip(whole.parts, strips.parts, strict=True):
            for a, b in zip(part_w.channels, part_s.channels, strict=True):
                assert b.mean == pytest.approx(a.mean, rel=1e-12), (path.name, a.name)


def test_a_part_whose_one_band_is_over_the_budget_is_unavailable(tmp_path: Path) -> None:
    # issue 12, case 10: a 16-row chunk 4096 pixels wide, RGBA: 256 KB as floats.
    path = write_scanline(tmp_path / "wide.exr", size=(4096, 32))
    health = pixel_health(str(path), 200 * 1024)
    assert health.unavailable is not None and str(path) in health.unavailable
    assert "pixel_max_decoded_mb" in health.unavailable, health.unavailable
    assert health.parts == ()


def test_the_budget_default_is_the_config_default() -> None:
    assert InspectConfig().pixel_max_decoded_mb * MB == DEFAULT_MAX_DECODED_BYTES


def _without_means(health: PixelHealth) -> PixelHealth:
    parts = tuple(
        dataclasses.replace(
            p, channels=tuple(dataclasses.replace(c, mean=None) for c in p.channels)
        )
        for p in health.parts
    )
    return dataclasses.replace(health, parts=parts)


# --------------------------------------------------------------------------- case 12


def _settled(path: Path) -> SettledFile:
    st = path.stat()
    return SettledFile(str(path), FileSig(st.st_size, st.st_mtime_ns, st.st_ino), 0.0, 0)


def test_fifo_swapped_in_before_the_lane_opens_is_unavailable_and_the_lane_goes_on(
    tmp_path: Path,
) -> None:
    # issue 12, case 12: a file replaced by a FIFO between the lane's stat and OpenImageIO's
    # open hung the lane thread for good (a blocking open of a FIFO with no writer). The
    # swap is made deterministic by giving the lane the verdict as its stat would have seen
    # it at that moment: the FIFO's own signature, so the stat check lets it through.
    fifo = write_frame(tmp_path / "a.exr", normal_channels())
    good = write_frame(tmp_path / "b.exr", normal_channels())
    header_verdict = inspect_settled(_settled(fifo))
    fifo.unlink()
    os.mkfifo(fifo)
    swapped = dataclasses.replace(header_verdict, sig=sig_of(os.stat(fifo)))

    back: queue.Queue[Any] = queue.Queue()
    lane = PixelLane(1, 4, back.put)  # one thread: a hang there would stop everything
    lane.start()
    got: dict[str, Any] = {}

    def both() -> bool:
        while not back.empty():
            v = back.get()
            got[v.settled.path] = v
        return len(got) == 2

    with _fifo_rescuer(fifo, delay=15) as rescued:
        lane.submit(swapped)
        lane.submit(inspect_settled(_settled(good)))
        wait_for(both, 40, lambda: f"verdicts back: {sorted(got)}")
        assert rescued() == 0, "the lane thread was stuck opening the FIFO until rescued"
    assert lane.stop(10) == 0
    stats = got[str(fifo)].record["pixel_stats"]
    assert "not a regular file" in (stats["unavailable"] or ""), stats
    assert got[str(good)].record["pixel_stats"]["unavailable"] is None


# Run in a process of its own: a thread blocked opening a FIFO inside OpenImageIO holds the
# GIL, so no thread of the test process could ever run again. After `delay` seconds it keeps
# opening the FIFO's write end, which lets a reader stuck in open() go on, and prints how
# many opens found such a reader.
_RESCUER = """
import os, sys, time
fifo, delay = sys.argv[1], float(sys.argv[2])
time.sleep(delay)
rescued = 0
while True:
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        rescued += 1
        print(rescued, flush=True)
    except OSError:
        pass
    time.sleep(0.02)
"""


@contextlib.contextmanager
def _fifo_rescuer(fifo: Path, delay: float) -> Iterator[Callable[[], int]]:
    """The rescuer process; yields a function giving how many stuck opens it released."""
    proc = subprocess.Popen([sys.executable, "-c", _RESCUER, str(fifo), str(delay)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    rescued: list[int] = []

    def count() -> int:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
        rescued.extend(int(n) for n in out.split())
        return len(rescued)

    try:
        yield count
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# --------------------------------------------------------------------------- case 13


@contextlib.contextmanager
def _server(**limits: Any) -> Iterator[MetricsServer]:
    server = MetricsServer("127.0.0.1:0", Metrics(process=False), **limits)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _get(server: MetricsServer, path: str = "/metrics") -> int:
    host, port = server.address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as reply:
            reply.read()
            return reply.status
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        return getattr(exc, "code", 0)


def _slow_client(server: MetricsServer) -> socket.socket:
    """A connection that sends the start of a request and then nothing."""
    sock = socket.create_connection(server.address, timeout=5)
    sock.sendall(b"GET /metrics HTTP/1.1\r\n")
    return sock


def test_metrics_server_refuses_connections_over_its_cap(tmp_path: Path) -> None:
    # issue 12, case 13: every connection got a thread, so slow clients piled threads up.
    with _server(max_connections=3, request_timeout=60.0) as server:
        threads = threading.active_count()
        held = [_slow_client(server) for _ in range(3)]
        try:
            extra = socket.create_connection(server.address, timeout=5)
            extra.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            try:
                reply = extra.recv(1024)  # the server answers at once, then closes
            except ConnectionResetError:  # closed with our request unread: also refused
                reply = b""
            except TimeoutError:
                pytest.fail("the connection over the cap was kept waiting")
            finally:
                extra.close()
            assert reply == b"" or reply.startswith(b"HTTP/1.0 503"), reply
            assert _get(server) != 200  # the cap holds for every client
            assert threading.active_count() - threads <= 3
        finally:
            for sock in held:
                sock.close()
        # The slots come back as the slow clients go: /metrics answers again.
        wait_for(lambda: _get(server) == 200, 10, "/metrics answering after the slow clients")


def test_metrics_server_cuts_a_trickling_client_after_the_request_limit(tmp_path: Path) -> None:
    # issue 12, case 13: the timeout was per read, so a byte every few seconds kept a thread.
    limit = 1.0
    with _server(max_connections=3, request_timeout=limit) as server:
        sock = socket.create_connection(server.address, timeout=5)
        started = time.monotonic()
        closed_at = None
        try:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            # A byte every 0.1 s, far inside any per-read timeout, until the server hangs up.
            while closed_at is None and time.monotonic() - started < limit + 4:
                try:
                    sock.sendall(b"a")
                    readable, _, _ = select.select([sock], [], [], 0.1)
                    if readable and sock.recv(4096) == b"":
                        closed_at = time.monotonic()
                except OSError:  # reset or broken pipe: closed too
                    closed_at = time.monotonic()
        finally:
            sock.close()
        assert closed_at is not None, f"still open after {limit + 4} s of trickling"
        assert limit - 0.2 <= closed_at - started <= limit + 2, closed_at - started
        assert _get(server) == 200
