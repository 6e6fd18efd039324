"""Scale: reconcile of a large tree against a real journal, and inotify on many directories.

    python bench/scale_bench.py                   # 100k and 1M files, 10,000 directories
    python bench/scale_bench.py --quick           # 20k and 200k files, 2,000 directories
    python bench/scale_bench.py --only reconcile --sizes 1000000 [--json PATH] [--delete]

Two measurements, both what a gateway meets on a big mount:

- reconcile: `exrwatchd.watch.reconcile.reconcile()` of a tree of empty .exr stubs (100 per leaf
  directory, bench/scan_bench.py's generator and layout, so the trees are shared with it and
  reused from one run to the next: TMP/exrwatchd-tree-N) against a real Journal that holds
  every stub with its real FileSig. The journal is filled first with Journal.write of
  Persist items in batches of 10,000 (timed too: it is what the first scan of such a mount
  costs the journal). A few stubs are left out of the journal and a few phantom paths are put
  in, so the reconcile must report exactly those (changed / gone) and nothing else. Each
  step runs in its own child process, so "peak RSS" (VmHWM) is that step's own high-water
  mark; a `find` of the same tree runs right before each reconcile, as the baseline. The
  point: memory follows directories, not files, so the peak RSS barely moves from the small
  size to the large one (10x the files).
- directories: the real daemon (`exrwatchd run`, as tests/harness.py starts it), inotify, on a
  tree of `--dirs` empty leaf directories under ~sqrt(dirs) parents: seconds from process
  start to `watch.started` and `daemon.ready` (baseline: the same on a root with no
  subdirectories), the inotify watches it holds (counted in /proc/PID/fdinfo), its RSS (and
  its sink process's), and the seconds from writing a real EXR into the last directory to its
  row in catalog.db, which proves detection works at that scale. Skipped, with a message,
  when fs.inotify.max_user_watches is too low for the tree.

Not a test: pytest never collects bench/. Temp dirs are removed; the stub trees are kept for
the next run unless `--delete`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import quiet_disk  # noqa: E402
from scan_bench import generate  # noqa: E402

from exrwatchd.filesig import FileSig  # noqa: E402
from exrwatchd.journal import Journal, Persist  # noqa: E402
from exrwatchd.watch import NameFilter  # noqa: E402
from exrwatchd.watch.reconcile import reconcile  # noqa: E402

FILES_PER_DIR = 100
BATCH = 10_000
OMIT_EVERY = 25_000  # one stub in this many is left out of the journal: "changed"
PHANTOMS_IN_GONE_DIR = 5  # journal paths in a directory that does not exist: "gone"
PHANTOMS_IN_LIVE_DIR = 5  # journal paths missing from an existing directory: "gone"
FULL = {"sizes": [100_000, 1_000_000], "dirs": 10_000}
QUICK = {"sizes": [20_000, 200_000], "dirs": 2_000}


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- /proc


def self_status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def proc_status_kb(pid: int, key: str) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def child_pids(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
    return out


def inotify_watches(pid: int) -> int:
    """Watches held by `pid`'s inotify instances (lines "inotify wd:" in its fdinfo)."""
    total = 0
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    total += sum(1 for line in f if line.startswith("inotify wd:"))
    return total


def cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# --------------------------------------------------------------------------- reconcile


def tree_root(tmp: str, files: int) -> Path:
    return Path(tmp) / f"exrwatchd-tree-{files}"


def stubs(root: Path) -> Any:
    """(path, FileSig) of every stub, one directory at a time, in a stable order."""
    stack = [str(root)]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            elif e.name.endswith(".exr"):
                st = e.stat(follow_symlinks=False)
                yield e.path, FileSig(st.st_size, st.st_mtime_ns, st.st_ino)


def phase_fill(root: Path, state: Path) -> dict[str, Any]:
    """A fresh journal holding every stub (except the omitted ones) plus the phantoms."""
    shutil.rmtree(state, ignore_errors=True)
    journal = Journal.open(state)
    record_sample = {"path": "", "complete": True, "error": None}  # a small stand-in record
    t0, c0 = time.perf_counter(), cpu_self()
    write_s = 0.0
    batch: list[Persist] = []
    written = omitted = 0

    def flush() -> None:
        nonlocal write_s, written
        w0 = time.perf_counter()
        journal.write(batch)
        write_s += time.perf_counter() - w0
        written += len(batch)
        batch.clear()

    for i, (path, sig) in enumerate(stubs(root)):
        if i % OMIT_EVERY == OMIT_EVERY // 2:
            omitted += 1
            continue
        batch.append(Persist(path, sig, None, "complete", record_sample | {"path": path}))
        if len(batch) >= BATCH:
            flush()
    live_dir = next(d for d in sorted((root / "seq_000").iterdir()) if d.is_dir())
    for k in range(PHANTOMS_IN_GONE_DIR):
        path = str(root / "seq_000" / "gone_shot" / f"gone.{k:04d}.exr")
        batch.append(Persist(path, FileSig(0, 1, 1), None, "complete", {"path": path}))
    for k in range(PHANTOMS_IN_LIVE_DIR):
        path = str(live_dir / f"phantom.{k:04d}.exr")
        batch.append(Persist(path, FileSig(0, 1, 1), None, "complete", {"path": path}))
    flush()
    seconds = time.perf_counter() - t0
    stats = journal.stats()
    journal.close()
    db = state / "journal.db"
    return {
        "paths": written,
        "omitted": omitted,
        "phantoms": PHANTOMS_IN_GONE_DIR + PHANTOMS_IN_LIVE_DIR,
        "journal_paths": sum(stats.paths_by_status.values()),
        "seconds": round(seconds, 2),
        "write_seconds": round(write_s, 2),
        "paths_per_s": round(written / seconds),
        "write_paths_per_s": round(written / write_s),
        "cpu_s": round(cpu_self() - c0, 2),
        "journal_mb": round(sum(p.stat().st_size for p in state.glob("journal.db*")) / 2**20, 1)
        if db.exists()
        else None,
        "peak_rss_kb": self_status_kb("VmHWM"),
    }


def find_seconds(root: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        ["find", str(root), "-name", "*.exr", "-printf", "%s %T@ %p\n"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def phase_reconcile(root: Path, state: Path, runs: int) -> dict[str, Any]:
    journal = Journal.open(state)
    accept = NameFilter()
    rss_before = self_status_kb("VmRSS")
    find_times, times, cpus = [], [], []
    changed = gone = 0
    for _ in range(runs):
        find_times.append(find_seconds(root))
        changed = gone = 0
        t0, c0 = time.perf_counter(), cpu_self()
        for found in reconcile(str(root), journal, accept):
            if found.kind == "gone":
                gone += 1
            else:
                changed += 1
        times.append(time.perf_counter() - t0)
        cpus.append(cpu_self() - c0)
    journal.close()
    return {
        "runs": runs,
        "seconds": [round(t, 3) for t in times],
        "cpu_s": [round(c, 3) for c in cpus],
        "find_seconds": [round(t, 3) for t in find_times],
        "changed": changed,
        "gone": gone,
        "rss_before_kb": rss_before,
        "peak_rss_kb": self_status_kb("VmHWM"),
    }


def run_child(phase: str, root: Path, state: Path, runs: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", phase, "--root", str(root),
           "--state", str(state), "--runs", str(runs)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{phase} on {root} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def measure_reconcile(files: int, tmp: str, runs: int) -> dict[str, Any]:
    dirs = max(1, files // FILES_PER_DIR)
    root = tree_root(tmp, files)
    log(f"\n== reconcile: {files:,} files in {dirs:,} directories ({root})")
    gen = generate(root, files, dirs)
    log(f"   tree generated in {gen:.0f} s" if gen else "   tree reused")
    state = Path(tempfile.mkdtemp(prefix="exrwatchd-scale-state-", dir=tmp))
    try:
        fill = run_child("fill", root, state, 1)
        log(f"   journal filled: {fill['paths']:,} paths in {fill['seconds']} s "
            f"({fill['paths_per_s']:,}/s; Journal.write {fill['write_seconds']} s, "
            f"{fill['write_paths_per_s']:,}/s), {fill['journal_mb']} MB, "
            f"peak RSS {fill['peak_rss_kb'] / 1024:.0f} MB")  # fmt: skip
        rec = run_child("reconcile", root, state, runs)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    expected_changed = fill["omitted"]
    expected_gone = fill["phantoms"]
    rec_s, find_s = median(rec["seconds"]), median(rec["find_seconds"])
    ratios = [t / f for t, f in zip(rec["seconds"], rec["find_seconds"], strict=True)]
    out = {
        "files": files,
        "dirs": dirs,
        "root": str(root),
        "generated_seconds": round(gen, 1),
        "fill": fill,
        "reconcile": rec,
        "reconcile_seconds": round(rec_s, 3),
        "find_seconds": round(find_s, 3),
        "ratio_to_find": round(median(ratios), 3),
        "files_per_s": round(files / rec_s),
        "peak_rss_mb": round(rec["peak_rss_kb"] / 1024, 1),
        "rss_before_mb": round(rec["rss_before_kb"] / 1024, 1),
        "expected": {"changed": expected_changed, "gone": expected_gone},
        "correct": rec["changed"] == expected_changed and rec["gone"] == expected_gone,
    }
    log(f"   reconcile {rec_s:.2f} s (find {find_s:.2f} s, {out['ratio_to_find']:.2f}x), "
        f"found {rec['changed']} changed / {rec['gone']} gone (expected {expected_changed} / "
        f"{expected_gone}), peak RSS {out['peak_rss_mb']:.0f} MB "
        f"(before the walk {out['rss_before_mb']:.0f} MB)")  # fmt: skip
    return out


# --------------------------------------------------------------------------- directories


def make_dirs(root: Path, count: int) -> Path:
    """`count` leaf directories under ~sqrt(count) parents; returns the last leaf made."""
    parents = max(1, round(count**0.5))
    last = root
    for d in range(count):
        last = root / f"seq_{d % parents:03d}" / f"shot_{d:05d}"
        last.mkdir(parents=True)
    return last


def ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def one_daemon(work: Path, watch_root: Path, probe: Path | None, timeout: float) -> dict[str, Any]:
    """Start the daemon on `watch_root`, time its start, optionally drop `probe` (a real EXR,
    copied into place) and wait for its catalog row; stop it."""
    # Imported here: the reconcile children should not carry numpy and OpenEXR in their RSS.
    from exrgen import write_scanline
    from harness import Catalog, DaemonProcess, write_config

    state = work / "state"
    config = write_config(
        work / "exrwatchd.toml", state, [{"path": str(watch_root), "backend": "inotify"}],
        settle={"quiet_seconds": 0.5}, log={"level": "info"}, sink={"batch_wait_ms": 200},
    )  # fmt: skip
    out: dict[str, Any] = {}
    t0 = time.time()
    daemon = DaemonProcess(config, state)
    try:
        try:
            started = daemon.wait_event("watch.started", timeout=timeout)
            ready = daemon.wait_event("daemon.ready", timeout=timeout)
            scanned = daemon.wait_event("scan.finished", timeout=timeout)
        except AssertionError as exc:
            raise SystemExit(f"daemon did not start on {watch_root}: {exc}") from None
        if started.get("backend") != "inotify":
            raise SystemExit(f"expected the inotify backend, got {started}")
        pid = daemon.proc.pid
        out["watch_started_s"] = round(ts(started) - t0, 3)
        out["ready_s"] = round(ts(ready) - t0, 3)
        out["first_scan_s"] = round(ts(scanned) - t0, 3)
        out["inotify_watches"] = inotify_watches(pid)
        if probe is not None:
            template = work / "probe.exr"
            write_scanline(template, size=(64, 64))
            data = template.read_bytes()
            catalog = Catalog(state)
            w0 = time.monotonic()
            probe.write_bytes(data)
            deadline = w0 + 60
            while not catalog.query("SELECT 1 FROM files WHERE file_path = ?", str(probe)):
                if daemon.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{probe} never reached the catalog:\n{daemon.tail()}")
                time.sleep(0.05)
            out["probe_catalogued_s"] = round(time.monotonic() - w0, 3)
            out["events_lost"] = len(daemon.seen("watch.events_lost"))
        out["peak_rss_mb"] = round(proc_status_kb(pid, "VmHWM") / 1024, 1)
        out["children_peak_rss_mb"] = [
            round(proc_status_kb(c, "VmHWM") / 1024, 1) for c in child_pids(pid)
        ]
    finally:
        try:
            out["exit_code"] = daemon.stop(signal.SIGTERM, timeout=60)
        except AssertionError as exc:
            out["exit_code"] = None
            out["stop_error"] = str(exc)[-2000:]
    return out


def measure_dirs(count: int, tmp: str) -> dict[str, Any]:
    log(f"\n== directories: the daemon on {count:,} directories, inotify")
    limit_path = Path("/proc/sys/fs/inotify/max_user_watches")
    limit = int(limit_path.read_text()) if limit_path.exists() else 0
    parents = max(1, round(count**0.5))
    needed = count + parents + 1
    result: dict[str, Any] = {"dirs": count, "watched_dirs": needed, "max_user_watches": limit}
    if limit < needed + 1000:  # leave room for other inotify users (tests, editors)
        result["skipped"] = (
            f"fs.inotify.max_user_watches is {limit}, {needed:,} directories need more "
            f"(sysctl fs.inotify.max_user_watches=1048576)"
        )
        log("   SKIPPED: " + result["skipped"])
        return result
    work = Path(tempfile.mkdtemp(prefix="exrwatchd-scale-dirs-", dir=tmp))
    try:
        base_root = work / "empty" / "renders"
        base_root.mkdir(parents=True)
        result["baseline"] = one_daemon(work / "empty", base_root, None, 120)
        log(f"   baseline (no subdirectories): watch.started after "
            f"{result['baseline']['watch_started_s']} s, daemon.ready after "
            f"{result['baseline']['ready_s']} s")  # fmt: skip
        big = work / "big"
        t0 = time.perf_counter()
        last = make_dirs(big / "renders", count)
        result["mkdir_seconds"] = round(time.perf_counter() - t0, 2)
        probe = last / "probe.0001.exr"
        result["big"] = one_daemon(big, big / "renders", probe, 600)
        b = result["big"]
        log(f"   {count:,} directories: watch.started after {b['watch_started_s']} s, "
            f"daemon.ready after {b['ready_s']} s, {b['inotify_watches']:,} inotify watches, "
            f"peak RSS {b['peak_rss_mb']:.0f} MB (+ children {b['children_peak_rss_mb']}), "
            f"file in the last directory catalogued after {b['probe_catalogued_s']} s")  # fmt: skip
        result["correct"] = (
            b["inotify_watches"] >= needed
            and b.get("probe_catalogued_s") is not None
            and b["exit_code"] == 0
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


# --------------------------------------------------------------------------- report


def markdown(res: dict[str, Any]) -> str:
    lines = []
    recs = res.get("reconcile") or []
    if recs:
        lines += [
            "| files (dirs) | journal fill s (paths/s) | reconcile s | find s | / find "
            "| peak RSS MB (before walk) | fill peak RSS MB | found changed / gone |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in recs:
            f = r["fill"]
            lines.append(
                f"| {r['files']:,} ({r['dirs']:,}) | {f['seconds']:.1f} ({f['paths_per_s']:,}) "
                f"| {r['reconcile_seconds']:.2f} | {r['find_seconds']:.2f} "
                f"| {r['ratio_to_find']:.2f}x | {r['peak_rss_mb']:.0f} ({r['rss_before_mb']:.0f}) "
                f"| {f['peak_rss_kb'] / 1024:.0f} | {r['reconcile']['changed']} / "
                f"{r['reconcile']['gone']} ({'as expected' if r['correct'] else 'WRONG'}) |"
            )
        if len(recs) >= 2:
            small, large = recs[0], recs[-1]
            lines += [
                "",
                f"Reconcile peak RSS at {large['files']:,} files vs {small['files']:,}: "
                f"{large['peak_rss_mb']:.0f} vs {small['peak_rss_mb']:.0f} MB "
                f"({large['peak_rss_mb'] / small['peak_rss_mb']:.2f}x for "
                f"{large['files'] / small['files']:.0f}x the files).",
            ]
    d = res.get("dirs")
    if d:
        lines.append("")
        if "skipped" in d:
            lines.append(f"Directories: skipped: {d['skipped']}")
        else:
            b, base = d["big"], d["baseline"]
            lines += [
                "| daemon, inotify | watch.started s | daemon.ready s | inotify watches "
                "| peak RSS MB (children) | file in last dir catalogued s |",
                "| --- | ---: | ---: | ---: | ---: | ---: |",
                f"| root only | {base['watch_started_s']} | {base['ready_s']} | "
                f"{base['inotify_watches']} | {base['peak_rss_mb']:.0f} "
                f"({', '.join(f'{x:.0f}' for x in base['children_peak_rss_mb'])}) | |",
                f"| {d['dirs']:,} directories | {b['watch_started_s']} | {b['ready_s']} | "
                f"{b['inotify_watches']:,} | {b['peak_rss_mb']:.0f} "
                f"({', '.join(f'{x:.0f}' for x in b['children_peak_rss_mb'])}) "
                f"| {b['probe_catalogued_s']} |",
            ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20k/200k files, 2,000 directories")
    ap.add_argument("--sizes", help="comma-separated file counts (default 100000,1000000)")
    ap.add_argument("--dirs", type=int, help="directories for the daemon (default 10000)")
    ap.add_argument("--only", choices=("reconcile", "dirs"))
    ap.add_argument("--runs", type=int, default=3, help="reconcile runs per size (median)")
    ap.add_argument("--tmp", default="/tmp", help="where trees and temp dirs go (a local disk)")
    ap.add_argument("--json", type=Path, help="also write every number here")
    ap.add_argument("--delete", action="store_true", help="remove the stub trees afterwards")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--state", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase:
        root, state = Path(args.root), Path(args.state)
        if args.phase == "fill":
            print(json.dumps(phase_fill(root, state)))
        else:
            print(json.dumps(phase_reconcile(root, state, args.runs)))
        return 0

    preset = QUICK if args.quick else FULL
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else preset["sizes"]
    dirs = args.dirs or preset["dirs"]
    started = time.monotonic()
    res: dict[str, Any] = {"quick": args.quick, "sizes": sizes}
    if args.only != "dirs":
        res["reconcile"] = [measure_reconcile(n, args.tmp, args.runs) for n in sizes]
    if args.only != "reconcile":
        res["dirs"] = measure_dirs(dirs, args.tmp)
    res["seconds"] = round(time.monotonic() - started, 1)
    if args.delete:
        for n in sizes:
            quiet_disk.remove_tree(tree_root(args.tmp, n))
    print("\n" + markdown(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    ok = all(r["correct"] for r in res.get("reconcile", [])) and res.get("dirs", {}).get(
        "correct", True
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
