"""kill -9 experiments on the real daemon, shared by tests/test_crash.py, tests/test_faults.py
and bench/crash_soak.py.

One experiment (`crash_run`) for a seed: a writer thread lays down a burst of files (distinct
paths, several templates so that header hashes differ, some written under a temporary name
and renamed), while the daemon is killed with SIGKILL at a seeded random moment 0.2-3 s after
each round's burst starts, then restarted. Half the rounds (seeded) start their burst as the
daemon is launched (start-up takes ~0.8 s here, so some kills land in the start-up), the
others once it is ready; half the kills also SIGKILL the daemon's children at the same moment
(the sink process, mid-batch or not), as systemd does to a service's control group. A burst
goes on writing after the kill, through the restart. After the last kill a clean run drains
everything and stops with SIGTERM. Then the catalog (local SQLite or the VAST emulator) must
hold every file exactly once with the header hash `inspect_path` computes, no child row
without its files row, the journal outbox must be empty, and every process the killed
daemons had spawned must be gone.

Only the kill delays and the burst pacing sleep; every wait on the daemon polls a condition
with a deadline (harness.wait_for).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vastdb
from exrgen import PartSpec, write_multipart, write_scanline, write_tiled
from harness import Catalog, DaemonProcess, children, wait_for, write_config
from vastdb.config import SessionConfig

from exrwatchd.exr import inspect_path
from exrwatchd.journal import Journal, JournalStats

BUCKET, SCHEMA = "exrwatch", "exr_metadata"
KILL_DELAY = (0.2, 3.0)  # seconds after a round's burst starts


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class Template:
    name: str
    data: bytes
    header_hash: str


def make_templates(directory: Path) -> list[Template]:
    """Six small complete EXRs with six different headers (so six header hashes)."""
    directory.mkdir(parents=True, exist_ok=True)
    made = {
        "rgba_zip": write_scanline(directory / "rgba_zip.exr"),
        "rgb_piz": write_scanline(directory / "rgb_piz.exr", channels=("R", "G", "B"),
                                  compression="piz", size=(48, 20)),
        "y_float": write_scanline(directory / "y_float.exr", channels=("Y",),
                                  pixel_type="float", compression="none", size=(16, 16)),
        "tiled": write_tiled(directory / "tiled.exr"),
        "multipart": write_multipart(directory / "multipart.exr"),
        "aov": write_multipart(directory / "aov.exr", [
            PartSpec("beauty"), PartSpec("diffuse", channels=("R", "G", "B")),
            PartSpec("specular", channels=("R", "G", "B")), PartSpec("N", channels=("X", "Y", "Z"),
                                                                     pixel_type="float"),
        ]),
    }  # fmt: skip
    out = []
    for name, path in made.items():
        inspection = inspect_path(str(path))
        assert inspection.error is None and inspection.complete, (name, inspection)
        assert inspection.header_hash is not None
        out.append(Template(name, path.read_bytes(), inspection.header_hash))
    assert len({t.header_hash for t in out}) == len(out), "templates must differ in header"
    return out


@dataclass(frozen=True)
class PlannedFile:
    path: Path
    template: Template
    via_rename: bool  # written as NAME.tmp (excluded by the default filters), then renamed


def plan_files(root: Path, templates: list[Template], count: int, rng: random.Random,
               *, dirs: int = 8, prefix: str = "f") -> list[PlannedFile]:  # fmt: skip
    """`count` distinct paths spread over `dirs` subdirectories, templates chosen by `rng`."""
    return [
        PlannedFile(root / f"d{i % dirs:02d}" / f"{prefix}.{i:06d}.exr",
                    templates[rng.randrange(len(templates))], rng.random() < 0.25)
        for i in range(count)
    ]  # fmt: skip


def write_planned(item: PlannedFile) -> None:
    item.path.parent.mkdir(parents=True, exist_ok=True)
    if item.via_rename:
        tmp = item.path.with_name(item.path.name + ".tmp")
        tmp.write_bytes(item.template.data)
        os.replace(tmp, item.path)
    else:
        item.path.write_bytes(item.template.data)


class Burst:
    """Write `files` from a thread, evenly over `seconds` (0: as fast as possible)."""

    def __init__(self, files: list[PlannedFile], seconds: float) -> None:
        self.files = files
        self.seconds = seconds
        self.written = 0
        self.error: BaseException | None = None
        self.started = 0.0
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="burst", daemon=True)

    def start(self) -> Burst:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for i, item in enumerate(self.files):
                if self.seconds:  # pacing: file i is due at i/n of the burst
                    ahead = self.started + self.seconds * i / len(self.files) - time.monotonic()
                    if ahead > 0 and self._cancel.wait(ahead):
                        return
                if self._cancel.is_set():
                    return
                write_planned(item)
                self.written += 1
        except BaseException as exc:
            self.error = exc
            raise

    def join(self, timeout: float = 120.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"burst still writing after {timeout} s"
        assert self.error is None, f"burst failed: {self.error!r}"

    def cancel(self) -> None:
        """Stop writing (when an experiment fails half-way)."""
        self._cancel.set()
        self._thread.join(30)


# --------------------------------------------------------------------------- processes


def alive(pid: int) -> bool:
    """Running (a zombie, or a pid reused by a process of another name, does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def describe_processes(pids: list[int]) -> str:
    lines = []
    for pid in pids:
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            lines.append(f"{pid}: {cmd[:200]}")
    return "; ".join(lines) or "none"


def kill_9(daemon: DaemonProcess, timeout: float = 20.0, *, everyone: bool = False) -> list[int]:
    """SIGKILL the daemon (`everyone`: and its children at the same moment, as systemd kills
    a service's control group), then wait until every child it had is gone. Returns them."""
    kids = children(daemon.proc.pid)
    if daemon.proc.poll() is None:
        os.kill(daemon.proc.pid, signal.SIGKILL)
    if everyone:
        for pid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    daemon.proc.wait(timeout=10)
    wait_for(lambda: not any(alive(pid) for pid in kids), timeout,
             lambda: "children of the killed daemon to exit: still running: "
             + describe_processes([p for p in kids if alive(p)]))  # fmt: skip
    return kids


# --------------------------------------------------------------------------- configs


def local_config(tmp: Path, renders: Path, **overrides: Any) -> tuple[Path, Path]:
    state = tmp / "state"
    # debug: the suites count per-file events (sink.persisted, file.inspected), which info
    # sums up in progress lines
    sections: dict[str, Any] = {"log": {"level": "debug"}}
    sections.update(overrides)
    return write_config(tmp / "c.toml", state, [{"path": str(renders)}], **sections), state


def vast_config(tmp: Path, renders: Path, endpoint: str, **overrides: Any) -> tuple[Path, Path]:
    sink = {"kind": "vast", "backoff_initial_seconds": 0.2, "backoff_max_seconds": 1.0,
            "batch_size": 100} | overrides.pop("sink", {})  # fmt: skip
    vast = {"endpoint": endpoint, "bucket": BUCKET, "schema": SCHEMA, "create_tables": True,
            "connect_timeout": 1.0, "read_timeout": 2.0} | overrides.pop("vast", {})  # fmt: skip
    return local_config(tmp, renders, sink=sink, vast=vast, **overrides)


def vast_env(emu: Any) -> dict[str, str]:
    return {"VAST_DB_ACCESS_KEY": emu.access_key, "VAST_DB_SECRET_KEY": emu.secret_key}


# --------------------------------------------------------------------------- reading back


@dataclass
class CatalogView:
    """What a sink holds: path -> header hashes of its files rows (one per row), and how
    many parts/channels/attributes rows have no files row."""

    rows: dict[str, list[str | None]]
    incomplete: list[str]
    orphans: int

    @property
    def paths(self) -> set[str]:
        return set(self.rows)

    def duplicates(self) -> dict[str, int]:
        return {p: len(h) for p, h in self.rows.items() if len(h) != 1}


def local_view(state: Path) -> CatalogView:
    catalog = Catalog(state)
    rows: dict[str, list[str | None]] = {}
    incomplete = []
    for path, header_hash, complete, _error in catalog.query(
        "SELECT file_path, header_hash, is_complete, error_kind FROM files"
    ):
        rows.setdefault(path, []).append(header_hash)
        if not complete:
            incomplete.append(path)
    return CatalogView(rows, incomplete, catalog.orphans() if rows else 0)


class _NoVips(logging.Filter):
    # Our sessions pin the endpoint; the SDK still warns on every select (as in the sink).
    def filter(self, record: logging.LogRecord) -> bool:
        return "No vips returned" not in str(record.msg)


def vast_session(emu: Any) -> Any:
    """A real SDK session on the emulator, as a user reading back what the daemon wrote."""
    return vastdb.connect(endpoint=emu.endpoint, access=emu.access_key,
                          secret=emu.secret_key, timeout=(5, 5),
                          config=SessionConfig(data_endpoints=[emu.endpoint]))  # fmt: skip


def vast_view(emu: Any) -> CatalogView:
    for name in ("vastdb", "vastdb._session_context"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoVips) for f in logger.filters):
            logger.addFilter(_NoVips())

    session = vast_session(emu)
    with session.transaction() as tx:
        schema = tx.bucket(BUCKET).schema(SCHEMA, fail_if_missing=False)
        table = None if schema is None else schema.table("files", fail_if_missing=False)
        if table is None:
            return CatalogView({}, [], 0)
        files = table.select(columns=["file_path", "file_id", "header_hash", "is_complete"]
                             ).read_all().to_pylist()  # fmt: skip
        child_ids = [
            schema.table(name).select(columns=["file_id"]).read_all().column("file_id")
            .to_pylist() for name in ("parts", "channels", "attributes")
        ]  # fmt: skip
    rows: dict[str, list[str | None]] = {}
    for row in files:
        rows.setdefault(row["file_path"], []).append(row["header_hash"])
    ids = {row["file_id"] for row in files}
    orphans = sum(1 for ids_ in child_ids for i in ids_ if i not in ids)
    incomplete = [row["file_path"] for row in files if not row["is_complete"]]
    return CatalogView(rows, incomplete, orphans)


def journal_stats(state: Path) -> JournalStats:
    with Journal(state / "journal.db") as journal:
        return journal.stats()


def outbox_empty(state: Path, live_paths: int = 0) -> JournalStats | None:
    """The journal's stats once everything is delivered: at least `live_paths` files journaled
    and none of them still to be read again (an outbox that is empty between two batches, while
    files are still being inspected, is not the end: with a catalog that already had them, the
    catalog alone cannot tell; a rebuilt journal knows every catalogued path before it has read
    a single one), nothing ready or in flight, and no sequence summary still waiting for its
    refresh (which would queue a `sequence` entry a moment later, during the stop that
    follows)."""
    with Journal(state / "journal.db") as journal:
        # Pending summaries first: the refresh that clears them queues their entries in the
        # same commit, so stats read after it see those entries. In the other order, a
        # refresh between the two reads passed for drained with 8 entries about to be ready.
        if journal.sequences_pending():
            return None
        stats = journal.stats()
    journaled = sum(n for status, n in stats.paths_by_status.items() if status != "deleted")
    if journaled < live_paths or stats.to_read_again or stats.ready or stats.inflight:
        return None
    return stats


def check_catalog(view: CatalogView, expected: dict[str, str]) -> list[str]:
    """Problems with `view` against path -> header hash (empty when all is well)."""
    problems = []
    missing = sorted(set(expected) - view.paths)
    extra = sorted(view.paths - set(expected))
    if missing:
        problems.append(f"{len(missing)} files missing, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{len(extra)} unexpected paths, e.g. {extra[:3]}")
    dups = view.duplicates()
    if dups:
        problems.append(f"{len(dups)} paths with more than one files row, e.g. "
                        f"{sorted(dups.items())[:3]}")  # fmt: skip
    wrong = sorted(p for p, hashes in view.rows.items()
                   if p in expected and any(h != expected[p] for h in hashes))  # fmt: skip
    if wrong:
        problems.append(f"{len(wrong)} wrong header_hash, e.g. "
                        f"{[(p, view.rows[p], expected[p]) for p in wrong[:2]]}")  # fmt: skip
    if view.incomplete:
        problems.append(f"{len(view.incomplete)} recorded as incomplete, e.g. "
                        f"{view.incomplete[:3]}")  # fmt: skip
    if view.orphans:
        problems.append(f"{view.orphans} child rows without a files row")
    return problems


# --------------------------------------------------------------------------- the experiment


@dataclass
class Tally:
    sink: str
    seed: int
    files: int
    kills: int = 0
    restarts: int = 0
    seconds: float = 0.0
    kill_delays: list[float] = field(default_factory=list)
    # Burst started at the daemon's launch or once ready; "/all": the children were killed
    # along with the daemon (otherwise they get the parent-death SIGTERM and stop cleanly).
    kill_points: list[str] = field(default_factory=list)
    persisted_events: int = 0  # sink.persisted lines over all runs (>= files: replays)
    children_reaped: int = 0  # child processes of killed daemons seen to exit
    # Right after each kill: (files written, journaled, outbox ready, in flight, in catalog)
    at_kill: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        delays = ", ".join(f"{p}+{d:.2f}" for p, d in zip(self.kill_points, self.kill_delays,
                                                             strict=False))  # fmt: skip
        return (f"crash tally: sink={self.sink} seed={self.seed} files={self.files} "
                f"kills={self.kills} restarts={self.restarts} seconds={self.seconds:.1f} "
                f"kill_delays=[{delays}] persisted_events={self.persisted_events} "
                f"children_reaped={self.children_reaped} "
                f"at_kill(written,journaled,ready,inflight,catalog)={self.at_kill} "
                f"problems={self.problems or 'none'}")  # fmt: skip


@contextlib.contextmanager
def stopped_on_exit(daemon: DaemonProcess) -> Iterator[DaemonProcess]:
    try:
        yield daemon
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()


def crash_run(
    tmp: Path, *, seed: int, files: int, kills: int = 3, sink: str = "local", emu: Any = None,
    burst_seconds: float | None = None, drain_timeout: float | None = None,
    log: Callable[[str], None] = print,
) -> Tally:  # fmt: skip
    """The experiment described in the module docstring. Never raises for a finding: the
    problems are in the tally (the caller asserts). Raises when the daemon misbehaves in a
    way that stops the experiment (does not start, does not drain in time)."""
    assert sink in ("local", "vast") and (emu is not None) == (sink == "vast")
    rng = random.Random(seed)
    started = time.monotonic()
    tmp.mkdir(parents=True, exist_ok=True)
    renders = tmp / "renders"
    renders.mkdir()
    templates = make_templates(tmp / "templates")
    planned = plan_files(renders, templates, files, rng, prefix=f"s{seed}")
    expected = {str(p.path): p.template.header_hash for p in planned}
    if sink == "local":
        config, state = local_config(tmp, renders)
        env: dict[str, str] = {}
    else:
        config, state = vast_config(tmp, renders, emu.endpoint)
        env = vast_env(emu)
    per_round = -(-files // kills)
    if burst_seconds is None:  # spread so that most kills (0.2-3 s) land inside the burst
        burst_seconds = max(2.5, per_round / 1000)
    tally = Tally(sink, seed, files)
    view: Callable[[], CatalogView] = (lambda: local_view(state)) if sink == "local" else (
        lambda: vast_view(emu))  # fmt: skip
    daemons: list[DaemonProcess] = []
    bursts: list[Burst] = []  # a burst may go on writing while the daemon is down
    try:
        for round_ in range(kills):
            daemon = DaemonProcess(config, state, env=env)
            daemons.append(daemon)
            tally.restarts += round_ > 0
            with stopped_on_exit(daemon):
                # Half the rounds (seeded) start their burst as the daemon is launched, so
                # that kills also land in the start-up (journal open, reset of in-flight
                # entries, sink process start, first scan); the others once it is ready.
                point = "ready" if rng.random() < 0.5 else "launch"
                if point == "ready":
                    daemon.wait_event("daemon.ready", timeout=60)
                # Half the kills (seeded) hit the sink process too, mid-batch or not.
                everyone = rng.random() < 0.5
                tally.kill_points.append(point + ("/all" if everyone else ""))
                chunk = planned[round_ * per_round : (round_ + 1) * per_round]
                burst = Burst(chunk, burst_seconds).start()
                bursts.append(burst)
                delay = rng.uniform(*KILL_DELAY)
                tally.kill_delays.append(delay)
                time.sleep(max(0.0, burst.started + delay - time.monotonic()))  # the experiment
                assert daemon.proc.poll() is None, f"daemon exited by itself:\n{daemon.tail()}"
                tally.children_reaped += len(kill_9(daemon, everyone=everyone))
                tally.kills += 1
                written = sum(b.written for b in bursts)
                if (state / "journal.db").exists():  # (not when killed before creating it)
                    stats = journal_stats(state)
                    tally.at_kill.append((
                        written, sum(stats.paths_by_status.values()), stats.ready,
                        stats.inflight, len(view().rows),
                    ))  # fmt: skip
                else:
                    tally.at_kill.append((written, 0, 0, 0, 0))

        # The clean run: everything must arrive, then a SIGTERM must stop it with 0.
        daemon = DaemonProcess(config, state, env=env)
        daemons.append(daemon)
        tally.restarts += 1
        timeout = drain_timeout or max(60.0, files / 20)
        with stopped_on_exit(daemon):
            daemon.wait_event("daemon.ready", timeout=60)
            for burst in bursts:  # the last one may still be writing
                burst.join()
            wait_for(lambda: not check_catalog(view(), expected)
                     and outbox_empty(state, live_paths=len(expected)), timeout,
                     lambda: f"all {files} files in the catalog and the outbox empty: "
                     f"{check_catalog(view(), expected)}; {journal_stats(state)}; "
                     f"last lines:\n{daemon.tail(10)}",
                     interval=0.1 if sink == "local" else 0.5)  # fmt: skip
            final_children = children(daemon.proc.pid)
            code = daemon.stop()
    finally:
        for burst in bursts:
            burst.cancel()
    if code != 0:
        tally.problems.append(f"the clean run exited with {code}:\n{daemon.tail()}")
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not any(alive(p) for p in final_children), 20)
    if any(alive(p) for p in final_children):
        tally.problems.append("children left after a clean stop: "
                              + describe_processes(final_children))  # fmt: skip

    tally.problems += check_catalog(view(), expected)
    stats = journal_stats(state)
    if (stats.ready, stats.inflight, stats.dead) != (0, 0, 0):
        tally.problems.append(f"journal outbox not empty: {stats}")
    if stats.paths_by_status.get("complete") != files:
        tally.problems.append(f"journal path states: {stats.paths_by_status}")
    dead = [e for d in daemons for e in d.seen("sink.dead_letter")]
    if dead:
        tally.problems.append(f"{len(dead)} sink.dead_letter events, e.g. {dead[:2]}")
    tally.persisted_events = sum(len(d.seen("sink.persisted")) for d in daemons)
    tally.seconds = time.monotonic() - started
    log(tally.line())
    return tally


def markdown_table(tallies: list[Tally]) -> str:
    """The tallies as a Markdown table, with a totals line."""
    head = ("| sink | seed | files | kills | restarts | seconds | kills at (burst start+s) | "
            "persisted lines | result |")  # fmt: skip
    lines = [head, "|" + " --- |" * 9]
    for t in tallies:
        delays = " ".join(f"{p}+{d:.2f}" for p, d in zip(t.kill_points, t.kill_delays,
                                                         strict=False))  # fmt: skip
        result = "ok" if not t.problems else "FAIL: " + "; ".join(t.problems).replace("|", "/")
        lines.append(
            f"| {t.sink} | {t.seed} | {t.files:,} | {t.kills} | {t.restarts} | "
            f"{t.seconds:.1f} | {delays} | {t.persisted_events:,} | {result} |"
        )
    failed = sum(1 for t in tallies if t.problems)
    lines.append(
        f"| **total** | {len(tallies)} seeds | {sum(t.files for t in tallies):,} | "
        f"{sum(t.kills for t in tallies)} | {sum(t.restarts for t in tallies)} | "
        f"{sum(t.seconds for t in tallies):.1f} | | "
        f"{sum(t.persisted_events for t in tallies):,} | "
        f"{'ok' if not failed else f'{failed} failed'} |"
    )
    return "\n".join(lines)
