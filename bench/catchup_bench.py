"""Catch-up throughput: N files appear at once (one `mv` of a prepared directory into the
watched tree), time until all are in catalog.db. No writer shares the CPU: this is what a
render farm writing over NFS looks like to the gateway.

    python bench/catchup_bench.py [--files 20000] [--backend inotify] [--json PATH]

Prints files/s, and the peak RSS and CPU seconds of the daemon and its sink process: in
all, and how much of that was start-up (before the files arrived). The daemon runs from
compiled bytecode, as deployed (bench/as_deployed.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

import quiet_disk  # noqa: E402
from as_deployed import deployed_env  # noqa: E402
from exrgen import write_multipart, write_scanline  # noqa: E402
from harness import write_config  # noqa: E402


def proc_stats(pid: int) -> tuple[float, float]:
    """(peak RSS MB, CPU seconds) of a live process."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return hwm / 1024, (int(fields[11]) + int(fields[12])) / ticks


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def started_up(pid: int) -> dict[int, float]:
    """CPU seconds of the daemon and its children once their start-up is over: when none
    of them has used any CPU for half a second (the catalog file exists before the sink
    process has finished starting)."""
    deadline = time.monotonic() + 30
    last: dict[int, float] = {}
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        now = {p: proc_stats(p)[1] for p in [pid, *children(pid)]}
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= 0.5:
            return now
        time.sleep(0.05)
    raise SystemExit("the daemon did not settle down after start-up within 30 s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--backend", default="inotify")
    ap.add_argument("--cpu-affinity", default="auto", choices=("auto", "off"),
                    help="[daemon] cpu_affinity (default auto, the daemon's default)")
    ap.add_argument("--json", type=Path, help="also write the numbers here (for bench/run_all)")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="exrwatchd-bench-catchup-"))
    try:
        templates = [write_scanline(base / "a.exr").read_bytes(),
                     write_multipart(base / "b.exr").read_bytes()]  # fmt: skip
        staging = base / "staging" / "shot"
        for i in range(args.files):
            d = staging / f"d{i % 20:02d}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f.{i:06d}.exr").write_bytes(templates[i % 2])
        watched, state = base / "renders", base / "state"
        watched.mkdir()
        config = write_config(base / "c.toml", state,
                              [{"path": str(watched), "backend": args.backend,
                                "poll_interval": 1.0}],
                              settle={"quiet_seconds": 0.5}, log={"level": "info"},
                              sink={"batch_wait_ms": 200},
                              daemon={"cpu_affinity": args.cpu_affinity})  # fmt: skip
        env = deployed_env()
        daemon = subprocess.Popen([sys.executable, "-m", "exrwatchd", "run", "--config",
                                   str(config)], stdout=subprocess.DEVNULL, cwd=ROOT,
                                  env=env)  # fmt: skip
        try:
            catalog = state / "catalog.db"
            deadline = time.monotonic() + 30
            while not catalog.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            startup = started_up(daemon.pid)
            started = time.monotonic()
            os.rename(staging, watched / "shot")
            count = 0
            while count < args.files and time.monotonic() - started < 600:
                time.sleep(0.1)
                con = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
                count = con.execute("SELECT count(*) FROM files").fetchone()[0]
                con.close()
            elapsed = time.monotonic() - started
            stats = [(pid, *proc_stats(pid)) for pid in [daemon.pid, *children(daemon.pid)]]
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
    finally:
        quiet_disk.remove_tree(base)
    # Daemon, then its children: peak RSS; CPU in all, and how much of it was start-up; CPU
    # per file, in all and after start-up (what a larger catch-up tends to).
    columns = " | ".join("RSS MB / CPU s (start-up) / ms per file (after start-up)"
                         for _ in stats)  # fmt: skip
    cells = []
    for pid, rss, cpu in stats:
        start = startup.get(pid, 0.0)
        per_file, after = (cpu / max(count, 1) * 1e3, (cpu - start) / max(count, 1) * 1e3)
        cells.append(f"{rss:.0f} / {cpu:.1f} ({start:.2f}) / {per_file:.3f} ({after:.3f})")
    print(f"| files | backend | seconds | files/s | {columns} |")
    print(f"| {count} | {args.backend} | {elapsed:.1f} | {count / elapsed:,.0f} | "
          + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({
            "files": args.files, "catalogued": count, "backend": args.backend,
            "seconds": round(elapsed, 3), "files_per_s": round(count / elapsed, 1),
            "processes": [{"pid": pid, "peak_rss_mb": round(rss, 1), "cpu_s": round(cpu, 2),
                           "startup_cpu_s": round(startup.get(pid, 0.0), 2)}
                          for pid, rss, cpu in stats],  # the daemon first, then its children
        }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
