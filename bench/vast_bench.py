"""VAST sink throughput: N files through VastSink to the loopback emulator, real SDK.

    python bench/vast_bench.py [--files 10000] [--batch 500] [--json PATH]

Records are made from real files (a few templates, N distinct paths) exactly as the daemon
makes them; the sink writes them in outbox-sized batches, each one transaction. Prints
files/s and HTTP requests per file (counted at the emulator). Targets from the issue:
>= 1,000 files/s and <= 0.05 requests per file.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from exrgen import write_multipart, write_scanline  # noqa: E402
from vast_emulator import VastEmulator  # noqa: E402

from exrwatchd.config import VastConfig  # noqa: E402
from exrwatchd.exr import inspect_path  # noqa: E402
from exrwatchd.journal import OutboxEntry  # noqa: E402
from exrwatchd.pipeline import make_record  # noqa: E402
from exrwatchd.secrets import Secret  # noqa: E402
from exrwatchd.sinks import Outcome  # noqa: E402
from exrwatchd.sinks.vast import VastSink, init_catalog  # noqa: E402


def records(count: int, tmp: Path) -> list[OutboxEntry]:
    templates = [
        make_record(inspect_path(str(write_scanline(tmp / "a.exr")))),
        make_record(inspect_path(str(write_multipart(tmp / "b.exr")))),
        make_record(inspect_path(str(write_scanline(
            tmp / "c.exr", channels=("R", "G", "B", "A", "Z", "N.x", "N.y", "N.z"))))),
    ]  # fmt: skip
    out = []
    for i in range(count):
        record = copy.deepcopy(templates[i % len(templates)])
        record["path"] = f"/renders/show/sh{i // 1000:03d}/beauty.{i:06d}.exr"
        record["inspection_id"] = f"bench-{i}"
        out.append(OutboxEntry(i + 1, record["path"], "upsert", record, 0, 0.0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--json", type=Path, help="also write the numbers here (for bench/run_all)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, VastEmulator(buckets={"bench"}) as emu:
        cfg = VastConfig(endpoint=emu.endpoint, bucket="bench",
                         access_key=Secret(emu.access_key, "bench"),
                         secret_key=Secret(emu.secret_key, "bench"))  # fmt: skip
        init_catalog(cfg)
        entries = records(args.files, Path(tmp))
        sink = VastSink(cfg)
        sink.open()
        emu.reset_requests()
        started = time.perf_counter()
        for start in range(0, len(entries), args.batch):
            batch = entries[start : start + args.batch]
            result = sink.write(batch)
            assert all(d.outcome is Outcome.DELIVERED for d in result), result[:3]
        elapsed = time.perf_counter() - started
        requests = emu.total_requests
        print("| files | batch | seconds | files/s | HTTP requests | requests/file |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        print(f"| {args.files} | {args.batch} | {elapsed:.1f} | {args.files / elapsed:,.0f} "
              f"| {requests} | {requests / args.files:.4f} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({
            "files": args.files, "batch": args.batch, "seconds": round(elapsed, 3),
            "files_per_s": round(args.files / elapsed, 1), "requests": requests,
            "requests_per_file": round(requests / args.files, 5),
        }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
