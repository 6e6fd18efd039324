"""Pixel health in the running daemon: a burst of 2K frames with `[inspect] pixel_stats` off
and on (1 and 2 pixel-lane threads), real `exrwatchd run`, local catalog sink, /tmp.

    .venv/bin/python bench/pixel_daemon_bench.py [--frames 200] [--lanes 1,2] [--json PATH]

Per configuration, on a fresh state dir: the frames (bench/pixel_bench.py's generated 2048x1080
RGBA half ZIP frames, gradient plus noise, ~7.5 MB each) are copied into a staging directory
next to the watched tree, then renamed into it all at once (how a render farm's files look to
the gateway: no writer on the box, no copy on the clock). Measured:
- burst: first rename until catalog.db holds every frame (with its pixel columns when on);
  files/s, MB/s of file bytes, Mpix/s (with pixel stats off this is settle-bound: every frame
  waits settle.quiet_seconds, 0.5 s here, so small bursts show that, not the inspection);
- probe: a small 64x64 frame renamed in 1 s into the burst; seconds until its catalog row
  (with pixel stats on it queues behind the lane: its wait shows what the lane's bound costs);
- the daemon's CPU seconds (main process, /proc/PID/stat) and peak RSS (VmHWM), the sink
  process excluded; SIGTERM to exit.
Every wait has a deadline. Not a test: pytest never collects it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import exrgen  # noqa: E402
from harness import Catalog, DaemonProcess, wait_for, write_config  # noqa: E402
from pixel_bench import generate  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(frames: list[Path], probe: bytes, lanes: int, work: Path) -> dict[str, Any]:
    """One burst on a fresh daemon; `lanes` pixel-lane threads, 0 for pixel stats off."""
    watch, staging, state = work / "renders", work / "staging", work / "state"
    for d in (watch, staging):
        d.mkdir(parents=True)
    inspect = {"pixel_stats": bool(lanes), "pixel_workers": max(1, lanes)}
    config = write_config(
        work / "c.toml", state, [{"path": str(watch)}],
        settle={"quiet_seconds": 0.5, "max_wait_seconds": 600.0},
        daemon={"workers": 2, "shutdown_timeout": 30.0},
        sink={"kind": "local", "batch_wait_ms": 200}, log={"level": "info"}, inspect=inspect,
    )  # fmt: skip
    staged = []
    for i, src in enumerate(frames):
        dst = staging / f"beauty.{i + 1:04d}.exr"
        shutil.copyfile(src, dst)
        staged.append(dst)
    (staging / "probe.0001.exr").write_bytes(probe)
    daemon = DaemonProcess(config, state)
    try:
        daemon.wait_event("daemon.ready", 60)
        daemon.wait_event("scan.finished", 60)
        catalog = Catalog(state)
        cpu0 = cpu_seconds(daemon.proc.pid)
        t0 = time.monotonic()
        for path in staged:
            os.rename(path, watch / path.name)
        while time.monotonic() < t0 + 1.0:
            time.sleep(0.01)
        os.rename(staging / "probe.0001.exr", watch / "probe.0001.exr")
        t_probe = time.monotonic()
        probe_path = str(watch / "probe.0001.exr")
        done = "pixel_stats_digest IS NOT NULL" if lanes else "1"

        def probe_in() -> bool:
            return bool(catalog.query(
                f"SELECT 1 FROM files WHERE file_path = ? AND {done}", probe_path))  # fmt: skip

        wait_for(probe_in, 600, "the probe frame in the catalog", interval=0.02)
        probe_seconds = time.monotonic() - t_probe

        def all_in() -> bool:
            rows = catalog.query(f"SELECT count(*) FROM files WHERE {done} AND file_path != ?",
                                 probe_path)  # fmt: skip
            return bool(rows) and rows[0][0] == len(frames)

        wait_for(all_in, 1800, lambda: f"all {len(frames)} frames; {daemon.tail(5)}", 0.05)
        seconds = time.monotonic() - t0
        cpu = cpu_seconds(daemon.proc.pid) - cpu0
        rss = peak_rss_mb(daemon.proc.pid)
        unhealthy = catalog.query("SELECT count(*) FROM files WHERE has_nan OR has_inf "
                                  "OR is_constant")[0][0]  # fmt: skip
        t_stop = time.monotonic()
        code = daemon.stop(timeout=120)
        stop_seconds = time.monotonic() - t_stop
    finally:
        daemon.kill()
    mbytes = sum(p.stat().st_size for p in frames) / 1e6
    return {
        "pixel_lane_threads": lanes, "frames": len(frames), "seconds": round(seconds, 2),
        "files_per_s": round(len(frames) / seconds, 1), "mb_per_s": round(mbytes / seconds, 1),
        "mpix_per_s": round(len(frames) * 2048 * 1080 / 1e6 / seconds, 1),
        "probe_seconds": round(probe_seconds, 2), "daemon_cpu_s": round(cpu, 1),
        "cpu_ms_per_file": round(1000 * cpu / len(frames), 1), "peak_rss_mb": round(rss),
        "unhealthy": unhealthy, "exit_code": code, "stop_seconds": round(stop_seconds, 2),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--lanes", default="0,1,2", help="pixel-lane threads; 0 = pixel stats off")
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "exrwatchd-bench-pixels"))
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="parent of the temp dirs")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    frames = generate(Path(args.dir), args.frames)
    with tempfile.TemporaryDirectory(dir=args.tmp) as t:
        probe = exrgen.write_scanline(Path(t) / "probe.exr", size=(64, 64)).read_bytes()
    results = []
    for lanes in (int(x) for x in args.lanes.split(",")):
        with tempfile.TemporaryDirectory(prefix="exrwatchd-pixd-", dir=args.tmp) as work:
            results.append(run(frames, probe, lanes, Path(work)))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    cpus = os.cpu_count() or 1
    print(f"machine: {platform.machine()}, {cpus} cpus, Python {platform.python_version()}, "
          f"load average at the end {os.getloadavg()[0]:.2f}; {args.frames} frames, "
          f"{sum(p.stat().st_size for p in frames) / 1e6:,.0f} MB")  # fmt: skip
    print("| pixel stats | files/s | MB/s | Mpix/s | burst s | probe frame s | daemon CPU ms/file "
          "| peak RSS MB | flagged | stop s |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        label = (f"on, {r['pixel_lane_threads']} lane thread(s)" if r["pixel_lane_threads"]
                 else "off")  # fmt: skip
        print(f"| {label} | {r['files_per_s']} | {r['mb_per_s']} | {r['mpix_per_s']} | "
              f"{r['seconds']} | {r['probe_seconds']} | {r['cpu_ms_per_file']} | "
              f"{r['peak_rss_mb']} | {r['unhealthy']} | {r['stop_seconds']} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"frames": args.frames, "results": results}, indent=1))


if __name__ == "__main__":
    main()
