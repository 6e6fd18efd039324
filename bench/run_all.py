"""Every benchmark, each beside its baseline in the same run; results into docs/benchmarks.md.

    bench/run_all                  # ~3 minutes on 2 cores; rewrites the generated section
    bench/run_all --full           # the 1M-file scan and the 100k/1M scale run (~6 minutes)
    bench/run_all --only scan,vast --no-write

Runs the scripts in bench/ one after the other as child processes (so nothing they import or
leave behind distorts the next one), streams their output, keeps it with their --json files
in --out, and writes the summary table (value, same-run baseline, ratio, target, met) between
the markers `<!-- run_all:begin -->` and `<!-- run_all:end -->` at the end of
docs/benchmarks.md (appended the first time; the hand-written text above is never touched).

    step     script                                               baseline in the same run
    inspect  inspect_bench.py: 2,000 generated files + the corpus  OpenImageIO header walk
    scan     scan_bench.py: 200,000 files (1,000,000 with --full)  find -printf
    burst    daemon_bench.py --only burst: 20,000 files, inotify   the writer's own rate
    catchup  catchup_bench.py: 20,000 files moved in               -
    latency  daemon_bench.py --only latency: 50 files/s, inotify   -
    vast     vast_bench.py: 10,000 files, emulator, real SDK       -
    scale    scale_bench.py --quick --dirs 10000 (full: --full)    smaller tree; find; bare root

Long runs stay out of CI: nothing here is under tests/, and pytest never collects bench/.
Exit status: 0 when every step ran (whether or not targets were met), 1 when one failed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- run_all:begin -->", "<!-- run_all:end -->"
RSS_TARGET_MB = 300.0
RATE_TARGET = 2000.0


# --------------------------------------------------------------------------- steps


@dataclass
class Step:
    name: str
    argv: list[str]  # after `python bench/`
    estimate_s: int  # printed as progress; the sum is the expected run time
    timeout_s: int  # the child's process group is killed after this
    json_name: str | None = None  # the step writes --json OUT/<json_name>
    code: int | None = None
    seconds: float = 0.0
    output: str = ""
    data: Any = None
    error: str | None = None


def steps(args: argparse.Namespace, out: Path) -> list[Step]:
    tmp = args.tmp
    scan_files, scan_dirs = (1_000_000, 10_000) if args.full else (200_000, 2_000)
    scale = ["scale_bench.py", "--tmp", tmp] + ([] if args.full else ["--quick", "--dirs", "10000"])
    all_steps = [
        Step("inspect", ["inspect_bench.py"], 10, 600, "inspect.json"),
        Step("scan", ["scan_bench.py", "--files", str(scan_files), "--dirs", str(scan_dirs),
                      "--root", f"{tmp}/exrwatchd-tree-{scan_files}"],
             180 if args.full else 30, 3600 if args.full else 600),
        Step("burst", ["daemon_bench.py", "--only", "burst", "--backends", "inotify",
                       "--tmp", tmp], 35, 900, "burst.json"),
        Step("catchup", ["catchup_bench.py"], 45, 900, "catchup.json"),
        Step("latency", ["daemon_bench.py", "--only", "latency", "--backends", "inotify",
                         "--tmp", tmp], 35, 600, "latency.json"),
        Step("vast", ["vast_bench.py"], 10, 600, "vast.json"),
        Step("scale", scale, 120 if args.full else 25, 3600 if args.full else 900,
             "scale.json"),
    ]  # fmt: skip
    for s in all_steps:
        if s.json_name:
            s.argv += ["--json", str(out / s.json_name)]
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {s.name for s in all_steps}
        if unknown:
            raise SystemExit(f"--only: unknown step(s) {', '.join(sorted(unknown))}")
        all_steps = [s for s in all_steps if s.name in wanted]
    return all_steps


def clock(t0: float) -> str:
    s = int(time.monotonic() - t0)
    return f"{s // 60:02d}:{s % 60:02d}"


def run_step(step: Step, out: Path, t0: float) -> None:
    """Run one script in its own process group, echo its lines, kill it at its timeout."""
    cmd = [sys.executable, str(BENCH / step.argv[0]), *step.argv[1:]]
    print(f"[{clock(t0)}] $ {' '.join(cmd[1:])}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(step.timeout_s, kill)
    timer.start()
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            print(f"    {line}", end="", flush=True)
        step.code = proc.wait()
    except KeyboardInterrupt:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    finally:
        timer.cancel()
    step.seconds = time.monotonic() - started
    step.output = "".join(lines)
    (out / f"{step.name}.log").write_text(step.output)
    if timed_out.is_set():
        step.error = f"killed after {step.timeout_s} s"
    elif step.code != 0:
        step.error = f"exit status {step.code}"
    if step.json_name:
        path = out / step.json_name
        try:
            step.data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            step.error = step.error or f"no results in {path.name}: {exc}"
    elif step.error is None:
        try:
            step.data = parse_scan(step.output)
        except ValueError as exc:
            step.error = f"could not read its table: {exc}"
    status = "ok" if step.error is None else f"FAILED ({step.error})"
    print(f"[{clock(t0)}] {step.name}: {status} in {step.seconds:.0f} s", flush=True)


# --------------------------------------------------------------------------- parsing


def _seconds_cell(cell: str) -> float:
    return float(cell.strip())


def _ratio_cell(cell: str) -> float:
    m = re.match(r"\s*([0-9.]+)x", cell)
    if not m:
        raise ValueError(f"not a ratio: {cell!r}")
    return float(m.group(1))


def parse_scan(text: str) -> dict[str, Any]:
    """scan_bench.py prints only Markdown: its tree line and the table, row by row."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells
    find = next((cells for label, cells in rows.items() if label.startswith("find ")), None)
    full = rows.get("PollScanner full rescan, journal knows all")
    pruned = rows.get("PollScanner pruned rescan, unchanged tree")
    if find is None or full is None or pruned is None:
        raise ValueError("missing the find, full rescan or pruned rescan row")
    tree = re.search(r"^tree: ([0-9,]+) files in ([0-9,]+) leaf directories", text, re.M)
    return {
        "files": int(tree.group(1).replace(",", "")) if tree else None,
        "dirs": int(tree.group(2).replace(",", "")) if tree else None,
        "find_median_s": _seconds_cell(find[2]),
        "full_median_s": _seconds_cell(full[2]),
        "full_wall_ratio": _ratio_cell(full[3]),
        "full_cpu_ratio": _ratio_cell(full[4]),
        "full_peak_rss_mb": float(full[6]),
        "pruned_median_s": _seconds_cell(pruned[2]),
        "pruned_wall_ratio": _ratio_cell(pruned[3]),
        "table": "\n".join(line for line in text.splitlines() if line.startswith("|")),
    }


# --------------------------------------------------------------------------- the machine


def git(*cmd: str) -> str:
    try:
        done = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return done.stdout.strip()


def machine(tmp: str) -> dict[str, Any]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        import OpenImageIO

        oiio = OpenImageIO.__version__
    except ImportError:
        oiio = "not installed"
    fs = subprocess.run(["stat", "-f", "-c", "%T", tmp], capture_output=True, text=True)

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "openimageio": oiio,
        "watchdog": version("watchdog"),
        "vastdb": version("vastdb"),
        "tmp_fs": fs.stdout.strip() or "?",
        "max_user_watches": Path("/proc/sys/fs/inotify/max_user_watches").read_text().strip(),
    }


def git_state() -> dict[str, str]:
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": git("status", "--porcelain", "--", "exrwatchd"),
    }


# --------------------------------------------------------------------------- the table


@dataclass
class Row:
    figure: str
    value: str
    baseline: str = "-"
    ratio: str = "-"
    target: str = "-"
    met: str = "-"  # "yes", "no", "-" (no target), "FAILED"
    notes: list[str] = field(default_factory=list)


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def fmt_rate(x: float) -> str:
    return f"{x:,.0f} files/s"


def guarded(step: Step | None, figure: str, build: Callable[[Any], list[Row]]) -> list[Row]:
    if step is None:
        return []
    if step.data is None:
        return [Row(figure, f"FAILED: {step.error} (log: {step.name}.log)", met="FAILED")]
    try:
        rows = build(step.data)
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as exc:
        return [Row(figure, f"FAILED: unexpected results ({exc!r})", met="FAILED")]
    if step.error:  # results came, but the step also failed: say so on its rows
        for r in rows:
            r.met = "FAILED"
            r.value += f" ({step.error})"
    return rows


def rows_inspect(d: dict[str, Any]) -> list[Row]:
    out = []
    for s in d["sets"]:
        label = (
            f"inspection, {s['files']:,} generated files"
            if s["name"].startswith("generated")
            else f"inspection, {s['files']} files of the reference corpus"
        )
        out.append(
            Row(
                label,
                fmt_rate(s["exrwatchd_files_per_s"]),
                f"OpenImageIO walk {fmt_rate(s['oiio_files_per_s'])}",
                f"{s['ratio']:.2f}x",
                ">= 1.0x",
                yes(s["ratio"] >= 1.0),
            )
        )
    return out


def rows_scan(d: dict[str, Any]) -> list[Row]:
    files = f"{d['files']:,} files" if d["files"] else "?"
    return [
        Row(
            f"poll scan, full rescan (journal knows all), {files}",
            f"{d['full_median_s']:.2f} s (CPU {d['full_cpu_ratio']:.2f}x find)",
            f"find {d['find_median_s']:.2f} s",
            f"{d['full_wall_ratio']:.2f}x",
            "<= 1.5x find",
            yes(d["full_wall_ratio"] <= 1.5),
        ),
        Row(
            f"poll scan, unchanged tree (pruned), {files}",
            f"{d['pruned_median_s']:.3f} s",
            f"find {d['find_median_s']:.2f} s",
            f"{d['pruned_wall_ratio']:.2f}x",
        ),
    ]


def rows_burst(d: dict[str, Any]) -> list[Row]:
    r = next(r for r in d["results"] if r["kind"] == "burst")
    return [
        Row(
            f"daemon burst, {r['files']:,} files written on the box, inotify",
            fmt_rate(r["files_per_s"]),
            f"writer {fmt_rate(r['write_files_per_s'])}",
            f"{r['files_per_s'] / r['write_files_per_s']:.2f}x",
            f">= {RATE_TARGET:,.0f} files/s",
            yes(r["files_per_s"] >= RATE_TARGET),
        ),
        Row(
            "peak RSS during that burst, main process only (daemon_bench does not read the "
            "sink process)",
            f"{r['peak_rss_mb']:.0f} MB",
            f"idle {r['rss_idle_mb']:.0f} MB",
            f"{r['peak_rss_mb'] / r['rss_idle_mb']:.2f}x" if r["rss_idle_mb"] else "-",
            f"<= {RSS_TARGET_MB:.0f} MB (all processes)",
            "-",
        ),
    ]


def rows_catchup(d: dict[str, Any]) -> list[Row]:
    procs = d["processes"]
    total = sum(p["peak_rss_mb"] for p in procs)
    complete = d["catalogued"] >= d["files"]
    return [
        Row(
            f"daemon catch-up, {d['files']:,} files moved in at once, inotify",
            fmt_rate(d["files_per_s"])
            + ("" if complete else f" (only {d['catalogued']:,} catalogued)"),
            "-",
            "-",
            f">= {RATE_TARGET:,.0f} files/s",
            yes(complete and d["files_per_s"] >= RATE_TARGET),
        ),
        Row(
            "peak RSS during that catch-up, daemon + child processes (sum of peaks)",
            f"{total:.0f} MB (" + " + ".join(f"{p['peak_rss_mb']:.0f}" for p in procs) + ")",
            "-",
            "-",
            f"<= {RSS_TARGET_MB:.0f} MB",
            yes(total <= RSS_TARGET_MB),
        ),
    ]


def rows_latency(d: dict[str, Any]) -> list[Row]:
    r = next(r for r in d["results"] if r["kind"] == "latency")
    return [
        Row(
            f"latency file -> catalog row, {r['rate']:.0f} files/s for {r['files']:,} files, "
            f"inotify, quiet_seconds {r['quiet_seconds']}",
            f"p99 {r['p99']:.2f} s (p50 {r['p50']:.2f}, max {r['max']:.2f})",
            "-",
            "-",
            f"p99 <= {r['target_p99_s']} s",
            yes(r["p99"] <= r["target_p99_s"]),
        )
    ]


def rows_vast(d: dict[str, Any]) -> list[Row]:
    return [
        Row(
            f"VAST sink, {d['files']:,} files to the loopback emulator (real SDK)",
            fmt_rate(d["files_per_s"]),
            "-",
            "-",
            ">= 1,000 files/s",
            yes(d["files_per_s"] >= 1000),
        ),
        Row(
            "VAST sink, HTTP requests per file",
            f"{d['requests_per_file']:.4f} ({d['requests']} requests)",
            "-",
            "-",
            "<= 0.05",
            yes(d["requests_per_file"] <= 0.05),
        ),
    ]


def rows_scale(d: dict[str, Any]) -> list[Row]:
    out = []
    recs = d.get("reconcile") or []
    if recs:
        large, small = recs[-1], recs[0]
        ok = all(r["correct"] for r in recs)
        out.append(
            Row(
                f"reconcile against a real journal, {large['files']:,} files",
                f"{large['reconcile_seconds']:.2f} s ({large['files_per_s']:,} files/s)"
                + ("" if ok else ", WRONG changes found"),
                f"find {large['find_seconds']:.2f} s",
                f"{large['ratio_to_find']:.2f}x",
                "finds exactly the planted changes",
                yes(ok),
            )
        )
        growth = large["peak_rss_mb"] / small["peak_rss_mb"]
        out.append(
            Row(
                f"reconcile peak RSS, {large['files']:,} vs {small['files']:,} files",
                f"{large['peak_rss_mb']:.0f} MB",
                f"{small['peak_rss_mb']:.0f} MB",
                f"{growth:.2f}x for {large['files'] / small['files']:.0f}x the files",
                "not proportional: <= 1.25x (ours)",
                yes(growth <= 1.25),
            )
        )
        f = large["fill"]
        out.append(
            Row(
                f"journal fill, {f['paths']:,} paths (Journal.write, batches of 10,000)",
                f"{f['seconds']:.1f} s ({f['paths_per_s']:,} paths/s, stat walk included)",
                "-",
                "-",
                "-",
                "-",
            )
        )
    dirs = d.get("dirs")
    if dirs:
        if "skipped" in dirs:
            out.append(Row(f"daemon on {dirs['dirs']:,} directories", "skipped: "
                           + dirs["skipped"]))  # fmt: skip
        else:
            b, base = dirs["big"], dirs["baseline"]
            rss = b["peak_rss_mb"] + sum(b["children_peak_rss_mb"])
            out.append(
                Row(
                    f"daemon on {dirs['dirs']:,} directories, inotify: process start -> "
                    "watch.started",
                    f"{b['watch_started_s']:.2f} s ({b['inotify_watches']:,} watches)",
                    f"root only {base['watch_started_s']:.2f} s",
                    f"{b['watch_started_s'] / base['watch_started_s']:.2f}x",
                    "-",
                    "-",
                )
            )
            out.append(
                Row(
                    f"daemon on {dirs['dirs']:,} directories: a file written in the last "
                    "one -> catalog row",
                    f"{b['probe_catalogued_s']:.2f} s",
                    "-",
                    "-",
                    "catalogued",
                    yes(bool(dirs.get("correct"))),
                )
            )
            out.append(
                Row(
                    f"daemon on {dirs['dirs']:,} directories: peak RSS, daemon + children",
                    f"{rss:.0f} MB",
                    f"root only {base['peak_rss_mb'] + sum(base['children_peak_rss_mb']):.0f} MB",
                    "-",
                    f"<= {RSS_TARGET_MB:.0f} MB",
                    yes(rss <= RSS_TARGET_MB),
                )
            )
    return out


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(
    by_name: dict[str, Step], info: dict[str, Any], args: argparse.Namespace, total_s: float
) -> str:
    rows: list[Row] = []
    rows += guarded(by_name.get("inspect"), "inspection", rows_inspect)
    rows += guarded(by_name.get("scan"), "poll scan", rows_scan)
    rows += guarded(by_name.get("burst"), "daemon burst", rows_burst)
    rows += guarded(by_name.get("catchup"), "daemon catch-up", rows_catchup)
    rows += guarded(by_name.get("latency"), "latency", rows_latency)
    rows += guarded(by_name.get("vast"), "VAST sink", rows_vast)
    rows += guarded(by_name.get("scale"), "scale", rows_scale)
    m, g0, g1 = info["machine"], info["git_before"], info["git_after"]
    dirty = ""
    if g0["dirty"]:
        names = [
            line.split(None, 1)[-1].removeprefix("exrwatchd/") for line in g0["dirty"].splitlines()
        ]
        dirty = f" plus uncommitted changes to exrwatchd/ ({', '.join(names)})"
    changed = ""
    if g1["commit"] != g0["commit"]:
        changed = f"; HEAD moved to {g1['commit']} during the run"
    elif g1["dirty"] != g0["dirty"]:
        changed = "; exrwatchd/ was edited during the run"
    lines = [
        BEGIN,
        "",
        "## Latest `bench/run_all`",
        "",
        "Generated by `bench/run_all" + (" --full" if args.full else "") + "`; do not edit "
        "between the markers (the next run rewrites it). Every baseline ran in the same run, "
        "on the same machine, right beside the figure it is compared with.",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}, SQLite {m['sqlite']}, OpenImageIO {m['openimageio']}, "
        f"watchdog {m['watchdog']}, vastdb {m['vastdb']}; temp dirs on {m['tmp_fs']}. "
        f"Date: {info['date']}. Commit: {g0['commit']}{dirty}{changed}. "
        f"Total run time: {total_s / 60:.1f} min. Load average before {info['load_before']}, "
        f"after {info['load_after']}.",
        "",
        "| figure | value | baseline (same run) | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {cell(r.figure)} | {cell(r.value)} | {cell(r.baseline)} | {cell(r.ratio)} "
            f"| {cell(r.target)} | {r.met} |"
        )
    lines += [
        "",
        "Commands (`--json` files and logs are kept in the run's output directory):",
        "",
    ]
    for step in by_name.values():
        argv = list(step.argv)
        if "--json" in argv:
            del argv[argv.index("--json") : argv.index("--json") + 2]
        lines.append(f"- {step.name}: `python bench/{' '.join(argv)}` ({step.seconds:.0f} s)")
    scan = by_name.get("scan")
    if scan is not None and scan.data:
        lines += ["", "Poll scan details (`scan_bench.py`):", "", scan.data["table"]]
    scale = by_name.get("scale")
    if scale is not None and scale.data:
        sys.path.insert(0, str(BENCH))
        from scale_bench import markdown as scale_markdown

        lines += ["", "Scale details (`scale_bench.py`):", "", scale_markdown(scale.data)]
    lines += ["", END]
    return "\n".join(lines)


def write_doc(section: str) -> None:
    text = DOC.read_text()
    begin, end = text.find(BEGIN), text.find(END)
    if begin == -1 or end == -1 or end < begin:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    else:
        text = text[:begin] + section + text[end + len(END) :]
    DOC.write_text(text)


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--full",
        action="store_true",
        help="1M-file scan and the 100k/1M scale run (about 6 minutes)",
    )
    ap.add_argument("--only", help="comma-separated steps: inspect,scan,burst,catchup,"
                    "latency,vast,scale (implies --no-write unless --write)")  # fmt: skip
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    ap.add_argument("--write", action="store_true", help="write the doc even with --only")
    ap.add_argument("--tmp", default="/tmp", help="trees and temp dirs (a local disk)")
    ap.add_argument("--out", type=Path, help="logs and JSON (default /tmp/exrwatchd-run_all-DATE)")
    args = ap.parse_args()

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = (args.out or Path(args.tmp) / f"exrwatchd-run_all-{stamp}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    todo = steps(args, out)
    t0 = time.monotonic()
    info: dict[str, Any] = {
        "machine": machine(args.tmp),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git_before": git_state(),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    m = info["machine"]
    estimate = sum(s.estimate_s for s in todo)
    print(f"run_all: {len(todo)} steps, about {estimate / 60:.0f} min; {m['nproc']} CPUs "
          f"({m['cpu']}), load {info['load_before']}; output in {out}", flush=True)  # fmt: skip
    if os.getloadavg()[0] > m["nproc"] / 2:
        print("run_all: WARNING: the machine is busy; ratios hold up better than absolute "
              "numbers", flush=True)  # fmt: skip
    done: dict[str, Step] = {}
    try:
        for i, step in enumerate(todo, 1):
            left = sum(s.estimate_s for s in todo[i - 1 :])
            print(f"\n[{clock(t0)}] step {i}/{len(todo)}: {step.name} (about {step.estimate_s} "
                  f"s; about {left / 60:.0f} min left)", flush=True)  # fmt: skip
            run_step(step, out, t0)
            done[step.name] = step
    except KeyboardInterrupt:
        print("\nrun_all: interrupted; nothing written", file=sys.stderr)
        return 130
    total = time.monotonic() - t0
    info["git_after"] = git_state()
    info["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    section = render(done, info, args, total)
    (out / "section.md").write_text(section + "\n")
    (out / "run_all.json").write_text(json.dumps(
        {"info": info, "seconds": round(total, 1),
         "steps": {s.name: {"argv": s.argv, "seconds": round(s.seconds, 1), "error": s.error,
                            "data": s.data} for s in done.values()}},
        indent=1, default=str,
    ))  # fmt: skip
    print("\n" + section)
    write = args.write or not (args.no_write or args.only)
    if write:
        write_doc(section)
        print(f"\nrun_all: wrote {DOC.relative_to(ROOT)}; ", end="")
    else:
        print("\nrun_all: docs/benchmarks.md not touched; ", end="")
    print(f"total {total / 60:.1f} min; logs and JSON in {out}")
    return 0 if all(s.error is None for s in done.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
