"""`exrwatchd similar` over a large local catalog: load time vs rank time, peak memory.

    python bench/similar_bench.py [--rows 1000000] [--db PATH] [--json PATH]

Builds (once; reused when --db exists) a catalog.db of ROWS files rows with real DDL and
realistic paths and unit vectors, then times, each in a fresh process (median of 3):
- sqlite: stream the metadata vectors from catalog.db in chunks of 50,000 and rank them;
- build: the same, writing the float32 copy beside it (the first query after a change);
- cached: rank from the float32 copy (every later query);
- layout: the 128-float channel fingerprints, from their copy.
"Load" is the time to get the chunks, "rank" the matrix-vector products and the top-k.
Peak extra memory is VmHWM minus the RSS before the query.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]


def build(db: Path, rows: int) -> None:
    import numpy as np

    from exrwatchd.catalog import FILES
    from exrwatchd.exr.embed import EMBEDDING_VERSION
    from exrwatchd.sinks._sqlite_catalog import ddl

    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = WAL")
    for statement in ddl():
        con.execute(statement)
    rng = np.random.default_rng(1)
    layouts = rng.standard_normal((64, 384)).astype("<f4")  # 64 render setups
    channels = rng.standard_normal((64, 128)).astype("<f4")
    layouts /= np.linalg.norm(layouts, axis=1, keepdims=True)
    channels /= np.linalg.norm(channels, axis=1, keepdims=True)
    names = FILES.names
    insert = f"INSERT INTO files ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    t = "2026-01-01T00:00:00.000000Z"

    def row(i: int) -> tuple[object, ...]:
        path = f"/renders/show{i % 7}/sq{i // 20000:03d}/sh{i // 200:05d}/beauty.{i % 200:04d}.exr"
        m = layouts[i % 64] + 0.01 * rng.standard_normal(384).astype("<f4")
        m /= np.linalg.norm(m)
        v = {"file_id": f"{i:032x}", "file_path": path, "file_path_normalized": path,
             "header_hash": "ab" * 32, "size_bytes": 10**7, "mtime": t, "inode": i,
             "multipart_count": 1, "is_deep": 0, "is_complete": 1, "frame_number": i % 200,
             "metadata_embedding": m.astype("<f4").tobytes(),
             "channel_fingerprint": channels[i % 64].tobytes(),
             "embedding_version": EMBEDDING_VERSION, "inspection_timestamp": t,
             "inspection_count": 1, "last_inspected": t, "last_inspection_id": f"i{i}",
             "file_path_bytes": path.encode()}  # fmt: skip
        return tuple(v.get(n) for n in names)

    for lo in range(0, rows, 100_000):
        with con:
            con.executemany(insert, (row(i) for i in range(lo, min(rows, lo + 100_000))))
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def one(db: Path, mode: str) -> dict[str, float]:
    """One query in this process: (load, rank, total seconds, peak extra MB)."""
    import numpy as np

    from exrwatchd.catalog.similar import TopK
    from exrwatchd.exr.embed import CHANNEL_DIM, EMBEDDING_VERSION, METADATA_DIM
    from exrwatchd.sinks.local_read import LocalVectors

    def rss(field: str) -> float:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines()
                    if x.startswith(field))  # fmt: skip
        return int(line.split()[1]) / 1024

    column, dim = (("channel_fingerprint", CHANNEL_DIM) if mode == "layout"
                   else ("metadata_embedding", METADATA_DIM))  # fmt: skip
    source = LocalVectors(db.parent, cache=mode != "sqlite")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:  # row 0's vector
        blob = con.execute(f"SELECT {column} FROM files WHERE file_id = ?", ("0" * 32,))
        query = np.frombuffer(blob.fetchone()[0], "<f4")
    base = rss("VmRSS")
    top = TopK(10)
    load = rank = 0.0
    started = time.perf_counter()
    chunks = source.chunks(column, EMBEDDING_VERSION, dim)
    while True:
        t0 = time.perf_counter()
        chunk = next(chunks, None)
        t1 = time.perf_counter()
        load += t1 - t0
        if chunk is None:
            break
        top.push(chunk.vectors @ query, chunk.keys)
        rank += time.perf_counter() - t1
    top.result()
    total = time.perf_counter() - started
    return {"load_s": load, "rank_s": rank, "total_s": total, "rows": top.seen,
            "peak_extra_mb": rss("VmHWM") - base}  # fmt: skip


def measure(db: Path, mode: str) -> dict[str, float]:
    runs = []
    for _ in range(3):
        if mode == "build":
            for p in db.parent.glob("similar-metadata_embedding.*"):
                p.unlink()
        out = subprocess.run([sys.executable, __file__, "--db", str(db), "--one", mode],
                             capture_output=True, text=True, check=True)  # fmt: skip
        runs.append(json.loads(out.stdout))
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--db", type=Path, default=Path("/tmp/exrwatchd-similar-bench/catalog.db"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.db, args.one)))
        return
    if not args.db.exists():
        started = time.perf_counter()
        build(args.db, args.rows)
        print(f"built {args.rows} rows in {time.perf_counter() - started:.0f} s", flush=True)
    print(f"{'mode':8} {'rows':>8} {'load s':>7} {'rank s':>7} {'total s':>8} {'peak MB':>8}")
    results = {}
    for mode in ("sqlite", "build", "cached", "layout"):
        r = results[mode] = measure(args.db, mode)
        print(f"{mode:8} {r['rows']:8.0f} {r['load_s']:7.2f} {r['rank_s']:7.2f} "
              f"{r['total_s']:8.2f} {r['peak_extra_mb']:8.0f}", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
