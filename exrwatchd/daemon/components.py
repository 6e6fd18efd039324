"""The daemon's durable parts, built from the config: the journal and the sink.

Shared by the daemon and the sink process (sink_process.py), which builds its own.
"""

from __future__ import annotations

import errno

from exrwatchd.config import Config
from exrwatchd.errors import StartupError
from exrwatchd.journal import Journal, JournalError
from exrwatchd.pipeline import full_reason
from exrwatchd.sinks import Sink
from exrwatchd.watch.mounts import is_network_fs, mount_fstype

_TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EAGAIN})
_TRANSIENT_TEXT = ("disk i/o error", "database or disk is full", "no space left", "locked")


def is_transient_start_error(exc: BaseException) -> bool:
    """A start-up failure that waiting can fix: a full disk or quota, an I/O error, a lock."""
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _TRANSIENT_TEXT)


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
