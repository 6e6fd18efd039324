"""End-to-end daemon benchmark: the real `exrwatchd run` process, local catalog sink, /tmp.

    .venv/bin/python bench/daemon_bench.py                  # 20k burst (inotify, poll) + latency
    .venv/bin/python bench/daemon_bench.py --big            # 100k burst, inotify: memory
    .venv/bin/python bench/daemon_bench.py --profile cpu    # 20k burst, inotify, under py-spy
    .venv/bin/python bench/daemon_bench.py --only latency --backends inotify
    .venv/bin/python bench/daemon_bench.py --only burst --backends inotify --repeat 3

Measurements (docs/bench-daemon.md has the numbers and the exact commands):

- burst: N small EXRs (copies of three templates made with tests/exrgen.py: 64x64 RGBA half
  zip, the default 3-part multipart, a 41-channel AOV file) written with one write_bytes each,
  round-robin into `--dirs` existing subdirectories of the watched tree, as fast as this
  process can. Time from the first write until catalog.db's `files` table holds N rows
  (`SELECT count(*)` every 0.2 s). Peak RSS is the daemon's VmHWM, read from /proc just
  before it is stopped. settle.quiet_seconds 0.5, 2 workers, log level info (as deployed:
  per-file lines are at debug since 2026-12-03, so the per-stage table below stays empty).
- latency: a steady `--latency-rate` files/s for `--latency-seconds` s, quiet_seconds 2.0,
  log level debug (the per-file lines below).
  Per file: the `sink.persisted` log line's timestamp minus the wall-clock time its
  write_bytes returned. p50 / p99 / max, and the same split at `file.settled` and
  `file.inspected`.
- where the time goes, in every burst: CPU seconds per daemon thread (from
  /proc/PID/task/TID/stat; thread names from `py-spy dump`, when py-spy is installed), the
  daemon's total CPU, CPU milliseconds per file of the main process, the sink process and
  the benchmark's own writes (their system time, which a busy machine inflates), and the
  per-stage finishing times from its own log lines (settled,
  inspected, persisted) plus a timeline of its backlogs (status.json, journal outbox,
  catalog rows). `--profile cpu|gil` also records the burst with `py-spy record` (on-CPU
  samples, or only the thread holding the GIL) and prints the hottest functions per thread.

The daemon is started and read exactly as the tests do it (tests/harness.py), so its stdout
is parsed by this process while the daemon runs; this process also writes the files, on the
same cores. Every wait has a deadline and fails with what it saw; the daemon is stopped with
SIGTERM; temp dirs are removed together at the end (`--keep` keeps them), and a burst starts
only once the disk reuses the inodes of the last run's removed tree (on ext4 without a
journal, up to 6.5 minutes) and nothing is left to write back (bench/quiet_disk.py). Not a
test: pytest never collects it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import exrgen  # noqa: E402
import quiet_disk  # noqa: E402
from as_deployed import deployed_env  # noqa: E402
from harness import Catalog, DaemonProcess, write_config  # noqa: E402

from exrwatchd.watch.mounts import is_network_fs, mount_fstype  # noqa: E402

PER_FILE_EVENTS = ("file.detected", "file.settled", "file.inspected", "sink.persisted")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PY_SPY = shutil.which("py-spy") or (
    str(Path(sys.executable).parent / "py-spy")
    if (Path(sys.executable).parent / "py-spy").exists()
    else None
)
AOV_LAYERS = (
    "diffuse",
    "diffuse_indirect",
    "specular",
    "specular_indirect",
    "sss",
    "transmission",
    "emission",
    "normal",
    "position",
    "motion",
    "albedo",
    "crypto00",
)


class BenchFailure(RuntimeError):
    """A deadline passed or the daemon misbehaved; the message says what was seen."""


# --------------------------------------------------------------------------- the daemon


class BenchDaemon(DaemonProcess):
    """harness.DaemonProcess that keeps per-file events compact (100k files make 300k lines).

    Per-file events are kept as (path, timestamp) tuples per event name; every other event
    is kept whole in `events` (so `wait_event` works as in the tests); the last 300 raw lines
    are kept for error messages.
    """

    def __init__(self, config: Path, state_dir: Path, env: dict[str, str]) -> None:
        self.file_events: dict[str, list[tuple[str, str]]] = {e: [] for e in PER_FILE_EVENTS}
        self.counts: Counter[str] = Counter()
        self.tail_lines: deque[str] = deque(maxlen=300)
        super().__init__(config, state_dir, env=env)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            with self._lock:
                self.tail_lines.append(line)
                if not isinstance(event, dict):
                    continue
                name = event.get("event")
                self.counts[name] += 1
                if name in self.file_events:
                    self.file_events[name].append((event.get("path"), event.get("timestamp")))
                else:
                    self.events.append(event)

    def tail(self, n: int = 30) -> str:
        with self._lock:
            return "\n".join(list(self.tail_lines)[-n:])

    def count(self, event: str) -> int:
        with self._lock:
            return self.counts[event]

    def per_file(self, event: str) -> list[tuple[str, str]]:
        with self._lock:
            return list(self.file_events[event])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None


def make_config(
    work: Path, watch_dir: Path, backend: str, args: argparse.Namespace, quiet: float,
    level: str = "info",
) -> Path:
    """Production defaults except what the brief fixes (quiet_seconds, workers, log level:
    info for bursts, as deployed; debug for latency, which reads the per-file lines)."""
    return write_config(
        work / "exrwatchd.toml",
        work / "state",
        [{"path": watch_dir, "backend": backend, "poll_interval": args.poll_interval}],
        settle={
            "quiet_seconds": quiet,
            "max_wait_seconds": 3600.0,
            "recheck_initial_seconds": 1.0,
            "recheck_max_seconds": 60.0,
        },
        daemon={"workers": args.workers, "shutdown_timeout": 30.0,
                "cpu_affinity": args.cpu_affinity},
        sink={
            "kind": "local",
            "batch_size": int(os.environ.get("BENCH_SINK_BATCH", "500")),
            "batch_wait_ms": 200,
        },
        log={"level": level},
    )


def start_daemon(config: Path, state_dir: Path, env: dict[str, str]) -> BenchDaemon:
    daemon = BenchDaemon(config, state_dir, env)
    try:
        for event in ("daemon.ready", "watch.started", "scan.finished"):
            daemon.wait_event(event, timeout=60.0)
    except AssertionError as exc:
        daemon.kill()
        raise BenchFailure(f"daemon did not start: {exc}") from None
    return daemon


def stop_daemon(daemon: BenchDaemon) -> dict[str, Any]:
    started = time.monotonic()
    try:
        code = daemon.stop(signal.SIGTERM, timeout=60.0)
    except AssertionError as exc:  # harness killed it after the timeout
        return {"exit_code": None, "stop_seconds": None, "error": str(exc)[:2000]}
    return {"exit_code": code, "stop_seconds": round(time.monotonic() - started, 2)}


# --------------------------------------------------------------------------- /proc readers


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM... in kB."""
    out = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.startswith("Vm") and value.strip().endswith("kB"):
                out[key] = int(value.split()[0])
    return out


def _cpu_of(stat_path: str) -> float | None:
    try:
        with open(stat_path) as f:
            text = f.read()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK  # utime + stime


def proc_cpu(pid: int) -> float:
    return _cpu_of(f"/proc/{pid}/stat") or 0.0


def children_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each child process of `pid` (the sink process), by pid."""
    out = {}
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    cpu = _cpu_of(f"/proc/{child}/stat")
                    if cpu is not None:
                        out[int(child)] = cpu
    return out


def thread_cpu(pid: int) -> dict[int, float]:
    out = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            cpu = _cpu_of(f"/proc/{pid}/task/{tid}/stat")
            if cpu is not None:
                out[int(tid)] = cpu
    return out


def thread_names(pid: int) -> dict[int, str]:
    """tid -> Python thread name, from `py-spy dump` (empty without py-spy)."""
    if PY_SPY is None:
        return {}
    try:
        dump = subprocess.run(
            [PY_SPY, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r'^Thread (\d+) \([^)]*\): "([^"]*)"', dump.stdout, re.M)
    }


def thread_group(name: str) -> str:
    if name.startswith("worker-"):
        return "workers (inspection)"
    if name == "MainThread":
        return "main (settle loop)"
    if name in ("journal-writer", "sink", "reconciler"):
        return {"sink": "sink loop"}.get(name, name)
    if name.startswith("poll:"):
        return "poll scanner"
    if name == "?":
        return "other (unnamed)"
    if "Thread-" in name or "Inotify" in name or name == "inotify-reader":
        return "watchdog (inotify)"
    return "other named"  # the WAL checkpointers, hooks, telemetry


# --------------------------------------------------------------------------- files


def make_templates(dst: Path) -> list[tuple[str, bytes]]:
    dst.mkdir(parents=True, exist_ok=True)
    attrs = {"owner": "studio", "software": "renderer 7.1", "comments": "daemon bench"}
    layers = [f"{layer}.{c}" for layer in AOV_LAYERS for c in "RGB"]
    aov_channels = ("A", "B", "G", "R", "Z", *layers)
    paths = {
        "rgba": exrgen.write_scanline(dst / "rgba.exr", size=(64, 64), compression="zip"),
        "multipart": exrgen.write_multipart(dst / "multipart.exr"),
        "aov": exrgen.write_scanline(
            dst / "aov.exr",
            channels=aov_channels,
            size=(64, 64),
            compression="zip",
            extra_attrs=attrs,
        ),
    }
    return [(name, p.read_bytes()) for name, p in paths.items()]


def file_path(dirs: list[Path], templates: list[tuple[str, bytes]], i: int) -> tuple[Path, bytes]:
    name, data = templates[i % len(templates)]
    return dirs[i % len(dirs)] / f"{name}.{i:07d}.exr", data


# --------------------------------------------------------------------------- helpers


def wait_until(
    condition: Any, timeout: float, what: Any, daemon: BenchDaemon, interval: float = 0.2
) -> float:
    """Poll `condition` every `interval` s; return monotonic time it held. Fails on a dead
    daemon or at the deadline, with `what()` and the daemon's last lines."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return time.monotonic()
        if not daemon.alive():
            raise BenchFailure(
                f"daemon exited ({daemon.proc.returncode}) while waiting for {what()}:\n"
                + daemon.tail()
            )
        if time.monotonic() > deadline:
            raise BenchFailure(
                f"timed out after {timeout:.0f} s waiting for {what()}:\n" + daemon.tail()
            )
        time.sleep(interval)


def ro_query(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return []
    try:
        return con.execute(sql).fetchall()
    except sqlite3.Error:
        return []
    finally:
        con.close()


def files_count(catalog: Catalog) -> int:
    rows = catalog.query("SELECT count(*) FROM files")
    return rows[0][0] if rows else 0


def parse_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


class Sampler:
    """A thread sampling the daemon's backlogs every `interval` s (for the timeline)."""

    def __init__(self, daemon: BenchDaemon, state_dir: Path, t0: float, interval: float) -> None:
        self.daemon, self.state_dir, self.t0, self.interval = daemon, state_dir, t0, interval
        self.rows: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a sample is best effort, never fatal
                self.rows.append(self.sample())

    def sample(self) -> dict[str, Any]:
        try:
            status = json.loads((self.state_dir / "status.json").read_text())
        except (OSError, ValueError):
            status = {}
        outbox = dict(
            ro_query(
                self.state_dir / "journal.db", "SELECT state, count(*) FROM outbox GROUP BY state"
            )
        )
        journaled = ro_query(self.state_dir / "journal.db", "SELECT count(*) FROM paths")
        catalog = ro_query(self.state_dir / "catalog.db", "SELECT count(*) FROM files")
        d = self.daemon
        return {
            "t": round(time.time() - self.t0, 2),
            "settled": d.count("file.settled"),
            "inspected": d.count("file.inspected"),
            "journaled": journaled[0][0] if journaled else 0,
            "outbox_ready": outbox.get("ready", 0),
            "outbox_inflight": outbox.get("inflight", 0),
            "catalog": catalog[0][0] if catalog else 0,
            "st_pending": status.get("pending"),
            "st_queue": status.get("queue_depth"),
            "st_journal_queue": status.get("journal_queue"),
            "rss_mb": round(proc_status(d.pid).get("VmRSS", 0) / 1024, 1),
            "cpu_s": round(proc_cpu(d.pid), 2),
        }


# --------------------------------------------------------------------------- profiling


def start_py_spy(pid: int, mode: str, out: Path) -> subprocess.Popen:
    if PY_SPY is None:
        raise BenchFailure("--profile needs py-spy: .venv/bin/pip install py-spy")
    cmd = [
        PY_SPY,
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--output",
        str(out),
        "--threads",
        "--nonblocking",
        "--rate",
        "100",
    ]
    if mode == "gil":
        cmd.append("--gil")
    spy = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(1.0)  # attach before the burst starts
    if spy.poll() is not None:
        text = spy.stdout.read().decode(errors="replace") if spy.stdout else ""
        raise BenchFailure(f"py-spy record exited at once ({spy.returncode}): {text}")
    return spy


def stop_py_spy(spy: subprocess.Popen) -> str:
    if spy.poll() is None:
        spy.send_signal(signal.SIGINT)
    try:
        out, _ = spy.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        spy.kill()
        out, _ = spy.communicate(timeout=10)
    return (out or b"").decode(errors="replace")


_LINE_NO = re.compile(r":\d+\)$")


def summarize_profile(raw: Path, top: int = 12) -> dict[str, Any]:
    """Samples per thread group, and per group the functions with the most inclusive samples
    (each function counted once per stack), leaving out thread bootstrap frames."""
    groups: Counter[str] = Counter()
    inclusive: dict[str, Counter[str]] = {}
    leaves: dict[str, Counter[str]] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        head = frames[0]
        name = head.split(": ", 1)[1] if head.startswith("thread (") and ": " in head else "?"
        if head.startswith("thread ("):
            frames = frames[1:]
        group = thread_group(name)
        total += count
        groups[group] += count
        keys = [_LINE_NO.sub(")", f) for f in frames]
        keys = [k for k in keys if "threading.py" not in k]
        inc = inclusive.setdefault(group, Counter())
        for key in set(keys):
            inc[key] += count
        if keys:
            leaves.setdefault(group, Counter())[keys[-1]] += count
    return {
        "samples": total,
        "groups": dict(groups.most_common()),
        "inclusive": {g: c.most_common(top) for g, c in inclusive.items()},
        "self": {g: c.most_common(top) for g, c in leaves.items()},
    }


# --------------------------------------------------------------------------- burst


def run_burst(
    args: argparse.Namespace,
    backend: str,
    n: int,
    templates: list[tuple[str, bytes]],
    profile: str | None = None,
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"exrwatchd-bench-{backend}-", dir=args.tmp))
    args.trees.append(work)
    watch_dir, state_dir = work / "renders", work / "state"
    dirs = [watch_dir / f"shot_{d:03d}" for d in range(args.dirs)]
    for d in dirs:
        d.mkdir(parents=True)
    config = make_config(work, watch_dir, backend, args, quiet=args.burst_quiet)
    timeout = args.timeout or max(180.0, n / 40)
    result: dict[str, Any] = {
        "kind": "burst",
        "backend": backend,
        "files": n,
        "quiet_seconds": args.burst_quiet,
        "workers": args.workers,
        "dirs": args.dirs,
        "profile": profile,
    }
    if backend == "poll":
        result["poll_interval"] = args.poll_interval
    result["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    print(
        f"\n== burst: {n} files, backend {backend}"
        + (f", py-spy {profile}" if profile else "")
        + f" ({work})",
        flush=True,
    )
    daemon: BenchDaemon | None = None
    spy: subprocess.Popen | None = None
    result["sync_before_s"] = quiet_disk.write_back()
    try:
        daemon = start_daemon(config, state_dir, args.env)
        pid = daemon.pid
        catalog = Catalog(state_dir)
        rss_before = proc_status(pid)
        spy_out = work / "profile.raw"
        if profile:
            spy = start_py_spy(pid, profile, spy_out)
        cpu0, threads0 = proc_cpu(pid), thread_cpu(pid)
        children0 = children_cpu(pid)
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.time()
        m0 = time.monotonic()
        with Sampler(daemon, state_dir, t0, args.sample_interval) as sampler:
            for i in range(n):
                path, data = file_path(dirs, templates, i)
                path.write_bytes(data)
            m_written = time.monotonic()
            print(
                f"   wrote {n} files in {m_written - m0:.2f} s; waiting for the catalog", flush=True
            )
            m_done = wait_until(
                lambda: files_count(catalog) >= n,
                timeout,
                lambda: f"{n} rows in catalog.db files (have {files_count(catalog)})",
                daemon,
            )
            status = proc_status(pid)
            cpu1, threads1 = proc_cpu(pid), thread_cpu(pid)
            children1 = children_cpu(pid)
            self1 = resource.getrusage(resource.RUSAGE_SELF)
        # At the end: at the start py-spy may not read the interpreter yet, and some threads
        # (the WAL checkpointers) only start with the first commit.
        names = thread_names(pid)
        if spy is not None:
            spy_log = stop_py_spy(spy)
            spy = None
            if spy_out.exists():
                result["py_spy"] = summarize_profile(spy_out)
                kept = Path(args.tmp) / f"exrwatchd-bench-profile-{profile}.raw"
                shutil.copyfile(spy_out, kept)
                result["py_spy"]["raw"] = str(kept)
            else:
                result["py_spy_error"] = spy_log[-2000:]
        elapsed = m_done - m0
        wall = elapsed
        result.update(
            write_seconds=round(m_written - m0, 3),
            write_files_per_s=round(n / max(1e-9, m_written - m0)),
            seconds=round(elapsed, 3),
            files_per_s=round(n / elapsed, 1),
            peak_rss_mb=round(status.get("VmHWM", 0) / 1024, 1),
            rss_end_mb=round(status.get("VmRSS", 0) / 1024, 1),
            rss_idle_mb=round(rss_before.get("VmRSS", 0) / 1024, 1),
            daemon_cpu_s=round(cpu1 - cpu0, 2),
            daemon_cores=round((cpu1 - cpu0) / wall, 2),
            bench_cpu_s=round(
                (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime), 2
            ),
            # The sink process (a child started at daemon start), for CPU per file of each
            # process: steadier than files/s on a shared machine.
            sink_cpu_s=round(
                sum(cpu - children0.get(child, 0.0) for child, cpu in children1.items()), 2
            ),
            # The benchmark's own writes, mostly kernel time: it moves files/s more than the
            # daemon does on a busy machine, so it is shown beside it.
            writer_sys_s=round(self1.ru_stime - self0.ru_stime, 2),
        )
        groups: Counter[str] = Counter()
        for tid, cpu in threads1.items():
            groups[thread_group(names.get(tid, "?"))] += cpu - threads0.get(tid, 0.0)
        result["thread_cpu_s"] = {g: round(c, 2) for g, c in groups.most_common()}
        result["thread_names_known"] = bool(names)
        # correctness and the daemon's own view
        rows = catalog.query(
            "SELECT count(*), sum(is_complete), sum(error_kind IS NOT NULL) FROM files"
        )
        result["catalog_rows"], result["complete_rows"], result["error_rows"] = rows[0]
        result["events"] = {
            e: daemon.count(e)
            for e in (
                *PER_FILE_EVENTS,
                "watch.events_lost",
                "scan.started",
                "file.incomplete",
                "file.failed",
                "sink.retry",
            )
        }
        result["stages"] = stage_times(daemon, t0)
        result["timeline"] = sampler.rows
    finally:
        if spy is not None:
            stop_py_spy(spy)
        if daemon is not None:
            result["stop"] = stop_daemon(daemon)
    print(
        f"   {result['files_per_s']} files/s, peak RSS {result['peak_rss_mb']} MB, "
        f"daemon CPU {result['daemon_cores']} cores",
        flush=True,
    )
    return result


def stage_times(daemon: BenchDaemon, t0: float) -> dict[str, Any]:
    """Per stage (from the daemon's log lines): when its first, median and last file passed,
    seconds after the first write, and its rate between the 10th and 90th percentile."""
    out = {}
    for event in ("file.settled", "file.inspected", "sink.persisted"):
        times = sorted(parse_ts(ts) - t0 for _, ts in daemon.per_file(event) if ts)
        if not times:
            continue
        p10, p90 = pct(times, 0.10), pct(times, 0.90)
        out[event] = {
            "count": len(times),
            "first": round(times[0], 2),
            "p50": round(pct(times, 0.5), 2),
            "last": round(times[-1], 2),
            "rate_p10_p90": round(0.8 * len(times) / (p90 - p10), 1) if p90 > p10 else None,
        }
    return out


# --------------------------------------------------------------------------- latency


def run_latency(
    args: argparse.Namespace, backend: str, templates: list[tuple[str, bytes]]
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"exrwatchd-bench-lat-{backend}-", dir=args.tmp))
    args.trees.append(work)
    watch_dir, state_dir = work / "renders", work / "state"
    dirs = [watch_dir / f"shot_{d:03d}" for d in range(args.dirs)]
    for d in dirs:
        d.mkdir(parents=True)
    config = make_config(work, watch_dir, backend, args, quiet=args.latency_quiet, level="debug")
    n = round(args.latency_rate * args.latency_seconds)
    result: dict[str, Any] = {
        "kind": "latency",
        "backend": backend,
        "files": n,
        "rate": args.latency_rate,
        "quiet_seconds": args.latency_quiet,
        "workers": args.workers,
    }
    if backend == "poll":
        result["poll_interval"] = args.poll_interval
    result["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    print(
        f"\n== latency: {args.latency_rate} files/s for {args.latency_seconds} s, backend "
        f"{backend}, quiet_seconds {args.latency_quiet} ({work})",
        flush=True,
    )
    daemon: BenchDaemon | None = None
    try:
        daemon = start_daemon(config, state_dir, args.env)
        written: dict[str, float] = {}
        start = time.monotonic()
        behind = 0.0
        for i in range(n):
            due = start + i / args.latency_rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            else:
                behind = max(behind, now - due)
            path, data = file_path(dirs, templates, i)
            path.write_bytes(data)
            written[str(path)] = time.time()
            if i % 250 == 0 and not daemon.alive():
                raise BenchFailure(f"daemon exited while writing:\n{daemon.tail()}")
        result["write_seconds"] = round(time.monotonic() - start, 2)
        result["writer_max_behind_s"] = round(behind, 3)

        def persisted() -> dict[str, float]:
            out: dict[str, float] = {}
            for path, ts in daemon.per_file("sink.persisted"):
                if path in written and path not in out:
                    out[path] = parse_ts(ts)
            return out

        wait_until(
            lambda: len(persisted()) >= n,
            args.latency_quiet + args.poll_interval + 120.0,
            lambda: f"sink.persisted for all {n} files (have {len(persisted())})",
            daemon,
            interval=0.5,
        )
        done = persisted()
        latencies = [done[p] - written[p] for p in written]
        result.update(summary(latencies))
        result["stages"] = {}
        previous = written
        for event in ("file.settled", "file.inspected", "sink.persisted"):
            first: dict[str, float] = {}
            for path, ts in daemon.per_file(event):
                if path in written and path not in first:
                    first[path] = parse_ts(ts)
            deltas = [first[p] - previous[p] for p in written if p in first and p in previous]
            result["stages"][event] = summary(deltas) if deltas else None
            previous = first
        result["events"] = {e: daemon.count(e) for e in (*PER_FILE_EVENTS, "watch.events_lost")}
        result["peak_rss_mb"] = round(proc_status(daemon.pid).get("VmHWM", 0) / 1024, 1)
        target = args.latency_quiet + 0.5
        result["target_p99_s"] = target
        result["meets_target"] = result["p99"] <= target
    finally:
        if daemon is not None:
            result["stop"] = stop_daemon(daemon)
    print(
        f"   p50 {result['p50']:.3f} s, p99 {result['p99']:.3f} s, max {result['max']:.3f} s",
        flush=True,
    )
    return result


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(pct(values, 0.5), 4),
        "p99": round(pct(values, 0.99), 4),
        "max": round(max(values), 4),
        "min": round(min(values), 4),
    }


# --------------------------------------------------------------------------- report


def per_file(result: dict[str, Any]) -> str:
    """CPU milliseconds per file of the main process, the sink process and the benchmark's
    writer (its system time)."""
    n = max(1, result["files"])
    cells = [result["daemon_cpu_s"], result.get("sink_cpu_s"), result.get("writer_sys_s")]
    return ", ".join("?" if c is None else f"{c / n * 1000:.3f}" for c in cells)


def machine() -> dict[str, Any]:
    model = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "sqlite": sqlite3.sqlite_version,
        "watchdog": importlib.metadata.version("watchdog"),
    }


def git_state() -> dict[str, Any]:
    """The commit under test and whether exrwatchd/ differs from it (others edit the tree)."""

    def git(*cmd: str) -> str:
        try:
            done = subprocess.run(
                ["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "exrwatchd_dirty": git("status", "--porcelain", "--", "exrwatchd"),
    }


def burst_medians(bursts: list[dict[str, Any]]) -> list[str]:
    """The median files/s and CPU per file of each backend's repeated bursts, and a warning
    for runs whose writer the disk slowed (bench/quiet_disk.py)."""
    lines: list[str] = []
    for backend in dict.fromkeys(r["backend"] for r in bursts):
        runs = [r for r in bursts if r["backend"] == backend]
        if len(runs) > 1:
            main_ms, sink_ms = (
                statistics.median(r[key] / r["files"] * 1000 for r in runs)
                for key in ("daemon_cpu_s", "sink_cpu_s")
            )
            lines.append(
                f"\n{backend}: median of {len(runs)}: "
                f"{statistics.median(r['files_per_s'] for r in runs):,.0f} files/s, "
                f"CPU ms/file main {main_ms:.3f}, sink {sink_ms:.3f}"
            )
    slowed = [r for r in bursts if r["writer_sys_s"] / r["files"] * 1000 > WRITER_SLOWED_MS]
    if slowed:
        lines.append(
            f"\n{len(slowed)} of {len(bursts)} bursts: the writer's kernel time was over "
            f"{WRITER_SLOWED_MS} ms/file (quiet disk: ~0.03-0.05): something removed many files "
            "on this disk in the last minutes (bench/quiet_disk.py), and those runs measured it"
        )
    return lines


def markdown(results: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [
        f"machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory_gb']} GB, Python "
        f"{info['python']}, Linux {info['kernel']}, SQLite {info['sqlite']}, watchdog "
        f"{info['watchdog']}; {info['date']}; temp dirs on {info.get('tmp_fs', '?')}; "
        f"exrwatchd at {info['git']['commit']}"
        + (
            f"; waited {info['waited_for_inode_reuse_s']:.0f} s for inode reuse"
            if info.get("waited_for_inode_reuse_s")
            else ""
        )
        + (" (exrwatchd/ modified)" if info["git"]["exrwatchd_dirty"] else "")
        + (
            ""
            if info["git_after"] == info["git"]
            else f"; CHANGED during the run to {info['git_after']}"
        ),
        "",
    ]
    bursts = [r for r in results if r["kind"] == "burst"]
    if bursts:
        lines += [
            "| burst | backend | files | write s | to catalog s | files/s | peak RSS MB "
            "| daemon CPU cores | CPU ms/file main, sink, writer (sys) "
            "| complete rows | inspections | events lost |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in bursts:
            label = f"quiet {r['quiet_seconds']}" + (
                f", py-spy {r['profile']}" if r["profile"] else ""
            )
            backend = r["backend"] + (f" ({r['poll_interval']} s)" if "poll_interval" in r else "")
            lines.append(
                f"| {label} | {backend} | {r['files']:,} | {r['write_seconds']:.2f} | "
                f"{r['seconds']:.2f} | {r['files_per_s']:,.0f} | {r['peak_rss_mb']:.0f} | "
                f"{r['daemon_cores']:.2f} | {per_file(r)} | {r['complete_rows']:,} | "
                f"{r['events']['file.settled']:,} | {r['events']['watch.events_lost']} |"
            )
        lines += burst_medians(bursts)
        lines += [
            "",
            "Per-stage times (s after the first write, from the daemon's log lines):",
            "",
            "| backend | files | stage | first | median | last | files/s (p10-p90) |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
        ]
        for r in bursts:
            for event, s in r["stages"].items():
                lines.append(
                    f"| {r['backend']} | {r['files']:,} | {event} | {s['first']} | "
                    f"{s['p50']} | {s['last']} | {s['rate_p10_p90']} |"
                )
        lines += [
            "",
            "Daemon CPU seconds per thread during the burst:",
            "",
            "| backend | files | " + " | ".join(_GROUPS) + " | total |",
            "| --- | ---: |" + " ---: |" * (len(_GROUPS) + 1),
        ]
        for r in bursts:
            t = r["thread_cpu_s"]
            cells = [f"{t.get(g, 0.0):.1f}" for g in _GROUPS]
            lines.append(
                f"| {r['backend']} | {r['files']:,} | "
                + " | ".join(cells)
                + f" | {r['daemon_cpu_s']:.1f} |"
            )
    lats = [r for r in results if r["kind"] == "latency"]
    if lats:
        lines += [
            "",
            "| latency | backend | files | p50 s | p99 s | max s | target p99 | met |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in lats:
            backend = r["backend"] + (f" ({r['poll_interval']} s)" if "poll_interval" in r else "")
            lines.append(
                f"| {r['rate']}/s, quiet {r['quiet_seconds']} | {backend} | {r['files']:,} | "
                f"{r['p50']:.3f} | {r['p99']:.3f} | {r['max']:.3f} | "
                f"<= {r['target_p99_s']} | {'yes' if r['meets_target'] else 'NO'} |"
            )
        lines += [
            "",
            "Latency by stage (p50 / p99 s):",
            "",
            "| backend | write -> settled | settled -> inspected | inspected -> persisted |",
            "| --- | --- | --- | --- |",
        ]
        for r in lats:
            cells = [f"{s['p50']:.3f} / {s['p99']:.3f}" if s else "-" for s in r["stages"].values()]
            lines.append(f"| {r['backend']} | " + " | ".join(cells) + " |")
    for r in bursts:
        prof = r.get("py_spy")
        if not prof:
            continue
        total = max(1, prof["samples"])
        lines += [
            "",
            f"py-spy ({r['profile']}) samples per thread, {r['backend']} burst of "
            f"{r['files']:,} ({prof['samples']} samples at 100 Hz):",
            "",
            "| thread | share |",
            "| --- | ---: |",
        ]
        for g, c in prof["groups"].items():
            lines.append(f"| {g} | {100 * c / total:.1f}% |")
        for g, top in prof["inclusive"].items():
            lines += ["", f"{g}: most inclusive samples (% of all samples)", ""]
            lines += [f"- {100 * c / total:5.1f}%  {k}" for k, c in top[:10]]
    return "\n".join(lines)


# The benchmark writer's kernel CPU per file above which the disk, not the daemon, slowed it.
WRITER_SLOWED_MS = 0.1

_GROUPS = (
    "main (settle loop)",
    "workers (inspection)",
    "journal-writer",
    "sink loop",
    "watchdog (inotify)",
    "poll scanner",
    "reconciler",
    "other named",
    "other (unnamed)",
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20_000, help="burst size (default 20000)")
    ap.add_argument(
        "--big", action="store_true", help="only the 100,000-file burst (inotify unless --backends)"
    )
    ap.add_argument(
        "--profile",
        choices=("cpu", "gil"),
        help="only the burst (inotify unless --backends), under py-spy record",
    )
    ap.add_argument("--only", choices=("burst", "latency"), help="skip the other measurement")
    ap.add_argument("--backends", help="comma-separated (default inotify,poll)")
    ap.add_argument("--dirs", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cpu-affinity", default="auto", choices=("auto", "off"),
                    help="[daemon] cpu_affinity (default auto, the daemon's default)")
    ap.add_argument("--burst-quiet", type=float, default=0.5)
    ap.add_argument("--poll-interval", type=float, default=1.0)
    ap.add_argument("--latency-rate", type=float, default=50.0)
    ap.add_argument("--latency-seconds", type=float, default=30.0)
    ap.add_argument("--latency-quiet", type=float, default=2.0)
    ap.add_argument("--sample-interval", type=float, default=1.0, help="timeline sampling, s")
    ap.add_argument("--timeout", type=float, help="burst deadline, s (default max(180, N/40))")
    ap.add_argument("--tmp", default="/tmp", help="parent of the temp dirs (a local disk)")
    ap.add_argument("--json", type=Path, help="also write every number here")
    ap.add_argument(
        "--repeat", type=int, default=1, help="bursts per backend, and their median (default 1)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    args = ap.parse_args(argv)
    # Removed together at the end: a tree removed between runs slows the next run's writer
    # (bench/quiet_disk.py).
    args.trees = []

    fstype, _ = mount_fstype(args.tmp)
    if is_network_fs(fstype):
        ap.error(f"--tmp {args.tmp} is on {fstype}; the journal needs a local disk")
    info = machine() | {"tmp_fs": fstype, "argv": sys.argv[1:], "git": git_state()}
    special = args.big or args.profile
    backends = (args.backends or ("inotify" if special else "inotify,poll")).split(",")
    for backend in backends:
        if backend not in ("inotify", "poll"):
            ap.error(f"unknown backend {backend!r}")
    results: list[dict[str, Any]] = []
    template_dir = Path(tempfile.mkdtemp(prefix="exrwatchd-bench-templates-", dir=args.tmp))
    args.trees.append(template_dir)
    # The daemon runs from compiled bytecode, as deployed (bench/as_deployed.py).
    args.env = deployed_env()
    code = 0
    try:
        templates = make_templates(template_dir)
        info["templates_bytes"] = {name: len(data) for name, data in templates}
        n = 100_000 if args.big else args.files
        if special or args.only != "latency":
            # Not for latency: 50 creates a second are not slowed enough to matter.
            info["waited_for_inode_reuse_s"] = quiet_disk.wait_out(args.tmp)
            for backend in backends:
                for _ in range(args.repeat):
                    results.append(run_burst(args, backend, n, templates, profile=args.profile))
        if not special and args.only != "burst":
            for backend in backends:
                results.append(run_latency(args, backend, templates))
    except BenchFailure as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = 130
    finally:
        if not args.keep:
            for tree in args.trees:
                quiet_disk.remove_tree(tree)
    info["git_after"] = git_state()
    if results:
        print("\n" + markdown(results, info))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
