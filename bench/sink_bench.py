"""Sink process cost: N real records in a real journal, shipped by the real sink loop into a
fresh local catalog. Offline: no watcher, no inspection while timing, one process.

    python bench/sink_bench.py [--files 20000] [--runs 3] [--src DIR] [--json PATH]
                               [--burst-templates]

Records are made by the daemon's own `make_record` from N generated files (single- and
multi-part, as bench/catchup_bench.py makes them; with `--burst-templates`,
bench/daemon_bench.py's three, one of 41 channels) and journaled before the clock starts.
Then, as the sink process does (daemon/sink_process.py: acknowledgements-only journal
connection, its GC tuning, logging at info, here to /dev/null), a SinkLoop moves them into
catalog.db. Prints files/s and CPU seconds per file (time.process_time) per run and their
medians, and the catalog WAL bytes per file (one more run with checkpoints off, the
checkpoint thread's too, so the -wal file holds every frame written). `--src DIR` imports
exrwatchd from DIR (a `git archive` of another commit) to measure a baseline in the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _import_path(src: Path | None) -> None:
    sys.path[:0] = [str(src or ROOT), str(ROOT / "tests")]


def make_records(count: int, tmp: Path, *, burst: bool = False) -> list[Any]:
    from exrgen import write_multipart, write_scanline

    from exrwatchd.exr import inspect_path
    from exrwatchd.journal import Persist
    from exrwatchd.pipeline import make_record

    if burst:  # daemon_bench.py's three, one of 41 channels: 38 catalog rows per file, not 29.5
        sys.path.insert(0, str(ROOT / "bench"))
        from daemon_bench import make_templates

        templates = [data for _, data in make_templates(tmp / "templates")]
    else:
        templates = [write_scanline(tmp / "a.exr").read_bytes(),
                     write_multipart(tmp / "b.exr").read_bytes()]  # fmt: skip
    items = []
    for i in range(count):
        d = tmp / "shot" / f"d{i % 20:02d}"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"f.{i:06d}.exr"
        path.write_bytes(templates[i % len(templates)])
        result = inspect_path(str(path))
        status = "complete" if result.complete else "incomplete"
        items.append(Persist(str(path), result.stat, result.header_hash, status,
                             make_record(result)))  # fmt: skip
    return items


def ship(items: list[Any], state: Path, *, wal: bool = False) -> dict[str, float]:
    """Journal `items` in `state`, then time the sink loop shipping them to a new catalog."""
    from exrwatchd.daemon.gc_tuning import tune_for_throughput
    from exrwatchd.journal import Journal
    from exrwatchd.pipeline import SinkLoop
    from exrwatchd.sinks import LocalSink

    writer = Journal.open(state)
    for start in range(0, len(items), 1000):
        writer.write(items[start : start + 1000])
    writer.close()
    journal = Journal.open(state)
    journal.acknowledgements_only()
    sink = LocalSink(state)
    sink.open()
    if wal:  # keep every frame in the -wal file, to count its bytes
        sink._conn.execute("PRAGMA wal_autocheckpoint = 0")  # type: ignore[union-attr]
        checkpointer = getattr(sink, "_checkpointer", None)  # since 2026-12-03
        if checkpointer is not None:
            checkpointer.close()
    gc.collect()
    try:  # as the sink process does; a baseline from before 2026-12-03 tunes the old way
        from exrwatchd.daemon.gc_tuning import tune_for_batches

        tuned = {"between_batches": tune_for_batches()}
    except ImportError:
        tune_for_throughput()
        tuned = {}
    loop = SinkLoop(journal, sink, batch_size=500, batch_wait=0.2, **tuned)
    cpu, wall = time.process_time(), time.perf_counter()
    loop.start()
    # Sequence summaries are shipped too: done when every entry has left the outbox.
    while loop.alive() and (loop.delivered < len(items)
                            or journal.stats(paths=False).outbox_total):  # fmt: skip
        time.sleep(0.02)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    loop.stop(timeout=30)
    wal_bytes = (state / "catalog.db-wal").stat().st_size
    sink.close()
    journal.close()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    gc.enable()
    if loop.delivered < len(items):
        raise SystemExit(f"shipped {loop.delivered} of {len(items)}: {loop.error}")
    n = len(items)
    return {"files_per_s": n / wall, "cpu_ms_per_file": cpu * 1000 / n,
            "wal_bytes_per_file": wal_bytes / n}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--src", type=Path, help="import exrwatchd from this directory")
    ap.add_argument("--json", type=Path, help="also write the numbers here (for bench/run_all)")
    ap.add_argument("--burst-templates", action="store_true",
                    help="the files of bench/daemon_bench.py's burst instead")  # fmt: skip
    args = ap.parse_args()
    _import_path(args.src)
    import exrwatchd
    from exrwatchd.logs import apply_logging

    apply_logging("json", "info", [], "/dev/null")
    with tempfile.TemporaryDirectory() as tmp:
        items = make_records(args.files, Path(tmp) / "files", burst=args.burst_templates)
        runs = [ship(items, Path(tmp) / f"state{i}") for i in range(args.runs)]
        wal = ship(items, Path(tmp) / "state-wal", wal=True)["wal_bytes_per_file"]
    result = {
        "files": args.files, "code": str(Path(exrwatchd.__file__).parent),
        "files_per_s": round(statistics.median(r["files_per_s"] for r in runs), 1),
        "cpu_ms_per_file": round(statistics.median(r["cpu_ms_per_file"] for r in runs), 4),
        "wal_bytes_per_file": round(wal),
        "runs": [{k: round(v, 4) for k, v in r.items() if k != "wal_bytes_per_file"}
                 for r in runs],
    }  # fmt: skip
    print(f"code: {result['code']}")
    print("| files | files/s (median) | CPU ms per file (median) | WAL bytes per file | runs |")
    print(f"| {args.files} | {result['files_per_s']:,.0f} | {result['cpu_ms_per_file']:.3f} | "
          f"{wal:,.0f} | " + ", ".join(f"{r['files_per_s']:,.0f}/s {r['cpu_ms_per_file']:.3f} ms"
                                       for r in runs) + " |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
