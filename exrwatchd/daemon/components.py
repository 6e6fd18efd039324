"""The daemon's durable parts, built from the config: the journal and the sink, and what is
checked between them at start: whose journal this is; and the hook loop.

Shared by the daemon and the sink process (sink_process.py), which builds its own.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from exrwatchd._cpus import CpuPlan, pin_process, plan_cpus
from exrwatchd.config import Config
from exrwatchd.errors import StartupError
from exrwatchd.journal import Journal, JournalError
from exrwatchd.logs import get_logger
from exrwatchd.pipeline import HookLoop, full_reason
from exrwatchd.sinks import Sink, SinkUnavailable
from exrwatchd.telemetry import read_status_file
from exrwatchd.watch.mounts import is_network_fs, mount_fstype

_TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EAGAIN})
_TRANSIENT_TEXT = ("disk i/o error", "database or disk is full", "no space left", "locked")

log = get_logger("exrwatchd.daemon")


def is_transient_start_error(exc: BaseException) -> bool:
    """A start-up failure that waiting can fix: a full disk or quota, an I/O error, a lock."""
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _TRANSIENT_TEXT)


def pin_cpus(cfg: Config) -> CpuPlan:
    """Pin this process's threads as [daemon] cpu_affinity says (exrwatchd/_cpus.py), before
    it starts any: threads and the sink process inherit the CPU of the thread that starts them.
    """
    allowed = sorted(os.sched_getaffinity(0))
    try:
        plan = plan_cpus(cfg.daemon.cpu_affinity, allowed, sink_process=cfg.daemon.sink_process)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    if plan.main is not None:
        try:
            pin_process(plan.main)
        except OSError as exc:  # a sandbox that forbids it: run as if "off", and say so
            log.warning("daemon.cpus_not_pinned", cpu=plan.main, error=str(exc),
                        reason="the kernel refused sched_setaffinity")  # fmt: skip
            plan = CpuPlan(None, None, "the kernel refused to pin")
    log.info("daemon.cpus", main=plan.main, sink=plan.sink, allowed=allowed, why=plan.why)
    return plan


def check_local_disk(state_dir: str, mounts_text: str | None = None) -> None:
    """Refuse a state_dir on a network file system: SQLite's WAL needs a local disk."""
    fstype, mount_point = mount_fstype(state_dir, mounts_text)
    if is_network_fs(fstype):
        raise StartupError(
            f"daemon.state_dir {state_dir} is on a {fstype} mount ({mount_point}); the journal "
            "needs a local disk (SQLite WAL does not work on network file systems)"
        )


def open_journal(cfg: Config) -> Journal:
    # Before the journal creates the directory: a network file system is refused untouched.
    check_local_disk(str(cfg.daemon.state_dir))
    try:
        return Journal.open(
            cfg.daemon.state_dir, max_attempts=cfg.sink.max_attempts,
            backoff_initial=cfg.sink.backoff_initial_seconds,
            backoff_max=cfg.sink.backoff_max_seconds,
        )  # fmt: skip
    except JournalError as exc:
        # Opening needs a little space (the -shm file): a full disk at start fails here,
        # and waiting is the cure (exit 75: systemd tries again), unlike a full disk later,
        # which the running daemon rides out.
        reason = full_reason(exc, cfg.daemon.state_dir / "journal.db")
        if reason is None:
            raise
        raise StartupError(f"{exc}: {reason}; free some space, exrwatchd starts again by "
                           "itself under systemd", transient=True) from exc  # fmt: skip


def build_sink(cfg: Config) -> Sink:
    if cfg.sink.kind == "local":
        from exrwatchd.sinks import LocalSink

        return LocalSink(cfg.daemon.state_dir / "catalog.db")
    from exrwatchd.sinks.vast import VastSink

    return VastSink(cfg.vast)


# ---- at start: whose journal is this (issue 12, case 7) -----------------------------------


def status_journal_id(state_dir: Path) -> str | None:
    """The journal id the last status.json recorded; None without one (none written yet, or
    by a version before journal ids), or when it cannot be read: then the catalog decides."""
    status = read_status_file(state_dir)
    found = status.get("journal_id") if status is not None else None
    return found if isinstance(found, str) else None


def check_journal_identity(cfg: Config, journal: Journal, sink: Sink) -> None:
    """Make sure `journal` is the one the catalog and status.json were written from, then
    record it in the catalog. `sink` is open.

    An empty journal that they do not know (a journal.db truncated or deleted while the
    daemon was stopped: the issue's case) is rebuilt: everything it held can be found again
    from the catalog and the disk (Journal.rebuild), and refusing would only leave the
    gateway uncatalogued until someone ran that rebuild by hand. A journal with records of
    its own that they do not know (another gateway's, an old copy swapped in) is refused:
    which side is right cannot be told, and either way records would be lost.
    """
    state_dir = cfg.daemon.state_dir
    journal_id, replaces = journal.identity()
    known = (journal_id, replaces)
    recorded = {f"{getattr(sink, 'path', 'the catalog')}": sink.recorded_journal(),
                f"{state_dir / 'status.json'}": status_journal_id(state_dir)}  # fmt: skip
    strangers = {where: rid for where, rid in recorded.items()
                 if rid is not None and rid not in known}  # fmt: skip
    if strangers and journal.holds_nothing():
        _rebuild(cfg, journal, sink, strangers)
    elif any(strangers.values()):  # "": a catalog older than journal ids, whose is unknown
        sink.close()
        where, rid = next((w, r) for w, r in strangers.items() if r)
        message = (
            f"{journal.path} is journal {journal_id}, but {where} was written from journal "
            f"{rid}: they do not belong together (a journal.db or catalog restored from "
            "another gateway or state directory?). Put the right journal.db back; or, to "
            "keep this catalog, move the journal aside (its unsent records are lost; an "
            "empty journal is rebuilt from the catalog and the disk); or, to keep this "
            f"journal, move {where} aside"
        )
        log.critical("journal.refused", path=str(journal.path), journal_id=journal_id,
                     recorded_by=where, recorded_id=rid)  # fmt: skip
        raise StartupError(message)
    sink.record_journal(journal_id)


def _rebuild(cfg: Config, journal: Journal, sink: Sink, strangers: dict[str, str]) -> None:
    roots = [str(w.path).rstrip(os.sep) for w in cfg.watch]

    def watched(path: str) -> bool:  # rows of trees not watched here are not ours to check
        return any(path.startswith(root + os.sep) for root in roots)

    replaces = next((rid for rid in strangers.values() if rid), None)
    try:
        seeded = journal.rebuild(filter(watched, sink.catalog_paths()), replaces)
    except SinkUnavailable as exc:
        raise StartupError(f"{journal.path} must be rebuilt from the catalog, which cannot be "
                           f"read now: {exc}", transient=True) from exc  # fmt: skip
    log.warning(
        "journal.rebuilt", path=str(journal.path), journal_id=journal.journal_id,
        replaces=replaces, recorded_by=sorted(strangers), paths=seeded,
        action="the journal was empty or missing: every cataloged file is checked against "
        "the disk, inspected again if it is there, deleted from the catalog if it is gone",
    )  # fmt: skip


# ---- [[hook]]s ----------------------------------------------------------------------------


def start_hooks(cfg: Config, journal: Journal) -> HookLoop:
    """Tell the journal which hooks to queue events for, and start the loop that delivers
    them (also the rows a previous run left: it runs with no hook configured, too, and
    dead-letters rows of hooks removed since)."""
    journal.set_hooks(cfg.hook)
    loop = HookLoop(journal, cfg.hook)
    loop.start()
    return loop


def apply_hooks(cfg: Config, journal: Journal | None, loop: HookLoop | None) -> None:
    """A reload: events from the next journal write on go to the hooks of `cfg`."""
    if journal is not None:
        journal.set_hooks(cfg.hook)
    if loop is not None:
        loop.set_hooks(cfg.hook)
