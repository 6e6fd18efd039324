"""Tree scan cost: PollScanner vs `find`, on a generated tree of empty .exr stubs.

    python bench/scan_bench.py --files 1000000 --dirs 10000 --root /tmp/scanbench [--runs 3]
                               [--delete]

The tree is ROOT/seq_NNN/shot_NNNNN/shot_NNNNN.FFFF.exr: `--dirs` leaf directories of equal
size under ~sqrt(dirs) parents. It is reused when ROOT/.scanbench says it has the same shape
(generating a million files takes a minute); `--delete` removes it at the end.

Everything runs with a warm page cache (one untimed `find` first). Each measurement is repeated
`--runs` times, each right after a `find` of the same tree; the table shows the best and the
median time and the median of the paired ratios to find, by wall time and by CPU time (user +
sys: steadier on a shared machine). Every scanner measurement runs in its own child process,
so "peak RSS" is that measurement's own high-water mark:

- find: `find ROOT -name '*.exr' -printf '%s %T@ %p\\n' > /dev/null` (stats every file)
- first scan: a new PollScanner, `known` returns {} so every file is "created"
- pruned rescan: the same scanner again over the unchanged tree (directory mtimes prune all)
- full rescan, journal knows all: `scan(full=True)` with `known` backed by a dict of every
  file's FileSig (the steady state of the periodic full pass); its RSS includes that dict
  (the stand-in journal), shown separately as "RSS before"
- first scan of a new process, journal knows all: a restart; the first listing of each
  directory also runs every known name through the filter (it may have changed)
- floor: the least a Python scandir walk can do (is_dir, name match, stat through a directory
  fd as the scanner does), for reference
- tree.walk_files: the simple walker `inspect` uses (paths only since 2026-12-03: before,
  a stat and a FoundFile per file)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import quiet_disk

from exrwatchd.filesig import FileSig
from exrwatchd.watch import NameFilter
from exrwatchd.watch.poll import PollScanner
from exrwatchd.watch.tree import walk_files

MARKER = ".scanbench"
EMPTY: dict[str, FileSig] = {}


# -- the tree ------------------------------------------------------------------------------


def generate(root: Path, files: int, dirs: int) -> float:
    """Create the tree unless an identical one is there. Returns seconds spent."""
    shape = {"files": files, "dirs": dirs, "layout": 1}
    marker = root / MARKER
    if marker.exists() and json.loads(marker.read_text()) == shape:
        return 0.0
    t0 = time.perf_counter()
    if root.exists():
        quiet_disk.remove_tree(root)
    parents = max(1, round(dirs**0.5))
    per_dir, extra = divmod(files, dirs)
    mode = 0o644 | 0o100000  # S_IFREG
    for d in range(dirs):
        leaf = root / f"seq_{d % parents:03d}" / f"shot_{d:05d}"
        leaf.mkdir(parents=True)
        base = os.fsencode(leaf / f"shot_{d:05d}")
        for frame in range(1001, 1001 + per_dir + (1 if d < extra else 0)):
            os.mknod(b"%s.%04d.exr" % (base, frame), mode)
    marker.write_text(json.dumps(shape))
    # Backdate every directory so the racy-mtime rule (RACY_NS) plays no part in a fresh tree.
    old = time.time_ns() - 3600 * 10**9
    for dirpath, _dirnames, _filenames in os.walk(root):
        os.utime(dirpath, ns=(old, old))
    return time.perf_counter() - t0


# -- measurements (each in a child process) --------------------------------------------------


def _rss_now_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


FIND = ["find", "ROOT", "-name", "*.exr", "-printf", "%s %T@ %p\n"]


def _cpu(who: int) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def _find(root: str) -> tuple[float, float]:
    """Wall and CPU (user + sys) seconds of one find."""
    c0, t0 = _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(
        [root if a == "ROOT" else a for a in FIND], check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - t0, _cpu(resource.RUSAGE_CHILDREN) - c0


def _timed(fn: Callable[[], object], root: str, runs: int, out: dict) -> None:
    """Time `fn` `runs` times, each right after a `find` of the same tree: the machine is
    shared, and a ratio of neighbours is steadier than a ratio of separate medians. CPU time
    (user + sys) is kept too: it moves less than wall time when other work competes."""
    for key in ("times", "cpu", "find_times", "find_cpu"):
        out[key] = []
    for _ in range(runs):
        wall, cpu = _find(root)
        out["find_times"].append(wall)
        out["find_cpu"].append(cpu)
        c0, t0 = _cpu(resource.RUSAGE_SELF), time.perf_counter()
        fn()
        out["times"].append(time.perf_counter() - t0)
        out["cpu"].append(_cpu(resource.RUSAGE_SELF) - c0)


def phase(name: str, root: str, runs: int) -> dict:
    accept = NameFilter()
    out: dict = {"phase": name}

    if name == "first":
        counts = []

        def first() -> None:
            s = PollScanner(root, accept, lambda d: EMPTY)
            counts.append(sum(1 for _ in s.scan()))

        out["rss_before_kb"] = _rss_now_kb()
        _timed(first, root, runs, out)
        out["files"] = counts[-1]

    elif name == "pruned":
        s = PollScanner(root, accept, lambda d: EMPTY, full_every=10**9)
        out["files"] = sum(1 for _ in s.scan())
        out["rss_before_kb"] = _rss_now_kb()
        stats = []

        def pruned() -> None:
            n = sum(1 for _ in s.scan())
            assert n == 0, n
            stats.append(s.stats)

        _timed(pruned, root, runs, out)
        out["dirs_listed"] = stats[-1].dirs_listed
        out["dirs_pruned"] = stats[-1].dirs_pruned
        out["dirs_known"] = s.dirs_known

    elif name == "full_known":
        journal: dict[str, dict[str, FileSig]] = {}
        s = PollScanner(root, accept, lambda d: journal.get(d, EMPTY))
        for c in s.scan():
            directory, base = os.path.split(c.path)
            journal.setdefault(directory, {})[base] = c.sig  # type: ignore[assignment]
        out["files"] = sum(len(v) for v in journal.values())
        out["rss_before_kb"] = _rss_now_kb()

        def full() -> None:
            n = sum(1 for _ in s.scan(full=True))
            assert n == 0, n

        _timed(full, root, runs, out)
        out["dirs_listed"] = s.stats.dirs_listed

    elif name == "restart":
        journal = {}
        for c in PollScanner(root, accept, lambda d: EMPTY).scan():
            directory, base = os.path.split(c.path)
            journal.setdefault(directory, {})[base] = c.sig  # type: ignore[assignment]
        out["files"] = sum(len(v) for v in journal.values())
        out["rss_before_kb"] = _rss_now_kb()

        def restart() -> None:
            s = PollScanner(root, accept, lambda d: journal.get(d, EMPTY))
            n = sum(1 for _ in s.scan())
            assert n == 0, n

        _timed(restart, root, runs, out)

    elif name == "floor":
        counts = []

        def floor() -> None:
            match = accept.accepts
            n = 0
            stack = [root]
            while stack:
                d = stack.pop()
                fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
                with os.scandir(fd) as it:  # stats relative to the directory fd (fstatat)
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(d + "/" + e.name)
                        elif match(e.name):
                            e.stat(follow_symlinks=False)
                            n += 1
                os.close(fd)
            counts.append(n)

        out["rss_before_kb"] = _rss_now_kb()
        _timed(floor, root, runs, out)
        out["files"] = counts[-1]

    elif name == "walk_files":
        counts = []

        def walk() -> None:
            counts.append(sum(1 for _ in walk_files(root, accept)))

        out["rss_before_kb"] = _rss_now_kb()
        _timed(walk, root, runs, out)
        out["files"] = counts[-1]

    else:
        raise SystemExit(f"unknown phase {name}")
    out["peak_rss_kb"] = _peak_rss_kb()
    return out


def run_phase(name: str, root: str, runs: int) -> dict:
    cmd = [sys.executable, __file__, "--phase", name, "--root", root, "--runs", str(runs)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


# -- report --------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--dirs", type=int, default=10_000)
    ap.add_argument("--root", default="/tmp/scanbench")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--delete", action="store_true", help="remove the tree afterwards")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = os.path.abspath(args.root)

    if args.phase:
        print(json.dumps(phase(args.phase, root, args.runs)))
        return

    gen = generate(Path(root), args.files, args.dirs)
    fs = subprocess.run(
        ["stat", "-f", "-c", "%T", root], capture_output=True, text=True
    ).stdout.strip()
    info = machine()
    print(f"machine: nproc {info['nproc']}, {info['cpu']}, Python {info['python']}, "
          f"Linux {info['kernel']}, {info['date']}")  # fmt: skip
    print(f"tree: {args.files:,} files in {args.dirs:,} leaf directories at {root} ({fs})"
          + (f", generated in {gen:.0f} s" if gen else ", reused"))  # fmt: skip

    _find(root)  # warm the page cache
    labels = {
        "first": "PollScanner first scan (known = {}: all created)",
        "pruned": "PollScanner pruned rescan, unchanged tree",
        "full_known": "PollScanner full rescan, journal knows all",
        "restart": "PollScanner first scan of a new process, journal knows all",
        "floor": "floor: bare scandir + is_dir + match + stat",
        "walk_files": "tree.walk_files (paths, no stat)",
    }
    results = {name: run_phase(name, root, args.runs) for name in labels}

    find_all = [t for res in results.values() for t in res["find_times"]]
    find_cpu = [t for res in results.values() for t in res["find_cpu"]]
    lines = [
        "| measurement | best (s) | median (s) | / find, wall | / find, CPU "
        "| RSS before (MB) | peak RSS (MB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| find -printf (stats every file), {len(find_all)} runs | {min(find_all):.3f} "
        f"| {statistics.median(find_all):.3f} | 1.00x "
        f"| 1.00x ({statistics.median(find_cpu):.2f} s) | | |",
    ]
    for name, label in labels.items():
        res = results[name]
        times = res["times"]
        wall = statistics.median(t / f for t, f in zip(times, res["find_times"], strict=True))
        cpu = statistics.median(t / f for t, f in zip(res["cpu"], res["find_cpu"], strict=True))
        lines.append(
            f"| {label} | {min(times):.3f} | {statistics.median(times):.3f} | {wall:.2f}x "
            f"| {cpu:.2f}x | {res['rss_before_kb'] / 1024:.0f} | {res['peak_rss_kb'] / 1024:.0f} |"
        )
    print()
    print("\n".join(lines))
    pr = results["pruned"]
    print()
    print(f"pruned rescan: {pr['dirs_listed']} directories listed, {pr['dirs_pruned']} pruned, "
          f"{pr['dirs_known']} remembered; files found: "
          + ", ".join(f"{k} {v['files']:,}" for k, v in results.items()))  # fmt: skip

    if args.delete:
        quiet_disk.remove_tree(root)
        print(f"deleted {root}")


if __name__ == "__main__":
    main()
