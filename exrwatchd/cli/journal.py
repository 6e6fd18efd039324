"""`exrwatchd journal stats | failed | retry | purge`: look into and repair the journal.

Every command works while the daemon runs: the journal is SQLite in WAL mode, so reading
never blocks the daemon, and each write here is a short transaction (a purge is cut into
slices) that the daemon's own transactions wait for (busy_timeout) rather than fail on.

cli/main.py adds the command with ``register(sub)`` inside build_parser. This module
imports nothing heavy at module level, so that building the parser stays cheap. What the
commands print is laid out in exrwatchd/cli/_journal_render.py (`shown` is re-exported here).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from exrwatchd.cli._help import CONFIG_HELP, Formatter, epilog
from exrwatchd.cli._journal_render import (
    ERROR_COLUMN_CHARS,
    failed_doc,
    failed_text,
    json_out,
    no_dead_letter_reason,
    out,
    purged_text,
    requeued_text,
    shown,
    stats_doc,
    stats_text,
)
from exrwatchd.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_USAGE, ConfigError

if TYPE_CHECKING:
    from exrwatchd.config import Config
    from exrwatchd.journal import Journal, PathStatus

__all__ = [
    "DEFAULT_KINDS",
    "DEFAULT_LIMIT",
    "ERROR_COLUMN_CHARS",
    "KINDS",
    "PROG",
    "Duration",
    "UsageError",
    "cmd_failed",
    "cmd_purge",
    "cmd_retry",
    "cmd_stats",
    "parse_duration",
    "register",
    "shown",
]

PROG = "exrwatchd journal"

# Sections of `failed`, in the order they print: kind -> the path status it lists (None for
# the dead letters, which live in the outbox, not in the path states).
KINDS: dict[str, str | None] = {"dead": None, "broken": "failed", "incomplete": "incomplete"}
DEFAULT_KINDS = ("dead", "broken")
DEFAULT_LIMIT = 100

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"([0-9]{1,9})([smhdw])")
_MAX_DURATION = 100 * 365 * 86400

_DESCRIPTION = """\
Look into the journal (<state_dir>/journal.db) and repair its outbox. Safe while the daemon
runs: reads never block it and every change is a short transaction.

The outbox holds only what has not reached the sink yet: 'ready' entries wait for their
(next) attempt, 'inflight' ones are being delivered, 'dead' ones failed for good (rejected
by the sink, or out of attempts) and wait for an operator: `retry` them once the cause is
fixed. A file that could not be read (not an EXR, truncated, unreadable) is not a dead
letter: it is recorded, with status 'failed', and `failed` lists it as broken. Events for
[[hook]]s wait in a table of their own; a hook's dead letters (op "hook NAME EVENT") are
listed and retried with the outbox's."""

_PURGE_DESCRIPTION = """\
Remove what the journal no longer needs: tombstones of deleted files whose deletion has
reached the sink (nothing left in the outbox for the path), last changed longer ago than
DURATION. That is all "done" can mean here:

  - delivered outbox entries are removed the moment the sink confirms them, so there is
    never a backlog of delivered entries to purge;
  - complete, incomplete and failed (broken) files are live state, not history: their row
    is what keeps the daemon from inspecting every file again at each rescan;
  - dead letters are undelivered data, never purged: `retry` them; a new write of the
    same path also replaces its dead letter.

A tombstone keeps the last signature of a deleted file, for reference: once the deletion
has reached the sink nothing depends on it, and a file that reappears is recorded anew.
The purge goes in slices of a few thousand paths, each its own short transaction, so a
running daemon never waits long. The journal file does not shrink: SQLite reuses the
freed pages."""


class UsageError(Exception):
    """A bad command line caught after parsing; exits 2 like argparse's own errors."""


class Duration(NamedTuple):
    text: str  # as given: "7d"
    seconds: float


# -- entry point ----------------------------------------------------------------------------


Command = Callable[..., argparse.ArgumentParser]


def register(subparsers: Any) -> None:
    """Add the `journal` command to cli/main.py's ``parser.add_subparsers(...)`` object."""
    journal = subparsers.add_parser(
        "journal",
        help="journal stats, dead letters and broken files; retry and purge",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # laid out by hand
    )
    _config_option(journal, default=None)
    commands = journal.add_subparsers(dest="journal_command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[..., int], **kw: Any) -> argparse.ArgumentParser:
        kw.setdefault("formatter_class", Formatter)  # the epilog as laid out, the rest wrapped
        p = commands.add_parser(name, epilog=epilog(f"journal {name}"), **kw)
        # Also accepted after the command, like `exrwatchd status --config PATH`; SUPPRESS
        # keeps an absent one from overwriting the value given before the command.
        _config_option(p, default=argparse.SUPPRESS)
        p.set_defaults(func=_runner(p, func))
        return p

    for add in (_add_stats, _add_failed, _add_retry, _add_purge):
        add(command)


def _add_stats(command: Command) -> None:
    p = command(
        "stats",
        cmd_stats,
        help="outbox counts by state, paths by status, oldest ready age, last error",
        description="Outbox counts by state (ready, inflight, dead), path counts by status, "
        "the age of the oldest ready entry and the most recent delivery error.",
    )
    p.add_argument("--json", action="store_true", help="one JSON object")


def _add_failed(command: Command) -> None:
    p = command(
        "failed",
        cmd_failed,
        help="dead letters and broken files, most recent first",
        description="Dead letters (entries the sink rejected, or that ran out of attempts: "
        "`retry` them) and broken files (recorded with status 'failed': fix or replace the "
        "file, the daemon inspects it again when it changes), most recent first. Names are "
        "shown escaped in the table (\\n, \\t, \\\\, and \\udcXX for each byte that is not "
        "UTF-8) and exact in --json.",
    )
    p.add_argument("--json", action="store_true", help="one JSON object with every section")
    p.add_argument(
        "--kind",
        action="append",
        choices=tuple(KINDS),
        help="what to list (repeatable): dead letters, broken files (status 'failed'), "
        "files that stayed incomplete; default: dead and broken",
    )
    p.add_argument(
        "--limit",
        type=_positive_int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N entries per section (default {DEFAULT_LIMIT})",
    )


def _add_retry(command: Command) -> None:
    p = command(
        "retry",
        cmd_retry,
        help="put dead letters back in the outbox",
        description="Put dead letters back in the outbox, due now with their attempts reset; "
        "the daemon delivers them with its next batch. PATH is the file's path as the daemon "
        "saw it (a relative one is taken from the current directory), or a sequence as "
        "`sequences` prints it (a hook's event). Exits 1 when PATH has no dead letter.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("path", nargs="?", metavar="PATH", help="the dead letter of this path")
    which.add_argument("--all", action="store_true", help="every dead letter")


def _add_purge(command: Command) -> None:
    p = command(
        "purge",
        cmd_purge,
        help="remove tombstones of deletions delivered long ago",
        description=_PURGE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--done-older-than",
        required=True,
        type=parse_duration,
        metavar="DURATION",
        help="a whole number and a unit: s, m, h, d or w (90s, 15m, 12h, 7d, 2w)",
    )
    p.add_argument("--dry-run", action="store_true", help="count, remove nothing")


def _config_option(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument("--config", default=default, metavar="PATH", help=CONFIG_HELP)


def _runner(
    parser: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from exrwatchd.journal import JournalError

        try:
            return func(args)
        except UsageError as exc:
            parser.print_usage(sys.stderr)
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except JournalError as exc:  # corrupt, unreadable, or locked for over 10 s
            print(f"{PROG}: {exc}", file=sys.stderr)
            return EXIT_FAILED

    return run


# -- argument types -----------------------------------------------------------------------


def parse_duration(text: str) -> Duration:
    """A duration like 90s, 15m, 12h, 7d or 2w; nothing else is accepted."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: expected a whole number followed by s, m, h, d or w "
            "(90s, 15m, 12h, 7d, 2w)"
        )
    seconds = int(match[1]) * _UNITS[match[2]]
    if seconds > _MAX_DURATION:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: more than 100 years")
    return Duration(text, float(seconds))


def _positive_int(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: expected a whole number >= 1")
    return int(text)


# -- opening --------------------------------------------------------------------------------


def _load_config(option: str | None) -> Config:
    """The config (--config, $EXRWATCHD_CONFIG, the default); its errors are printed as
    cli/main.py's _load prints them (exit 78), but no logging is set up: these commands print
    to stdout, and log lines would go there too."""
    from exrwatchd.config import config_path, load_config

    try:
        # The journal only: no VAST keys needed.
        cfg = load_config(config_path(option), credentials=False)
    except ConfigError as exc:
        raise _BadConfig(str(exc)) from None
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return cfg


class _NoJournal(Exception):
    pass


_AS_DAEMON = " (run this as the daemon's user)"


class _BadConfig(Exception):
    pass


@contextmanager
def _journal(args: argparse.Namespace) -> Iterator[Journal]:
    """The journal of the config's state_dir; never creates one (Journal() would)."""
    from exrwatchd.journal import Journal

    cfg = _load_config(args.config)
    path = cfg.daemon.state_dir / "journal.db"
    try:
        os.stat(path)
    except FileNotFoundError:
        raise _NoJournal(
            f"no journal at {path}: the daemon has not run with this state_dir "
            f"(daemon.state_dir in {cfg.source})"
        ) from None
    except OSError as exc:
        hint = _AS_DAEMON if isinstance(exc, PermissionError) else ""
        raise _NoJournal(f"cannot reach the journal at {path}: {exc.strerror}{hint}") from None
    if not os.access(path, os.R_OK | os.W_OK):  # SQLite would only say "unable to open"
        raise _NoJournal(f"cannot open the journal at {path}: permission denied{_AS_DAEMON}")
    with Journal(path) as journal:
        yield journal


def with_journal(
    func: Callable[[argparse.Namespace, Journal], int],
) -> Callable[[argparse.Namespace], int]:
    """A command on the config's journal: exits 78 on a bad config, 1 when there is none."""
    def run(args: argparse.Namespace) -> int:

        try:
            with _journal(args) as journal:
                return func(args, journal)
        except _BadConfig as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_CONFIG
        except _NoJournal as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return EXIT_FAILED

    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    return run


# -- commands -------------------------------------------------------------------------------


@with_journal
def cmd_stats(args: argparse.Namespace, journal: Journal) -> int:
    stats = journal.stats()
    if args.json:
        json_out(stats_doc(str(journal.path), stats))
    else:
        out(stats_text(str(journal.path), stats))
    return 0


@with_journal
def cmd_failed(args: argparse.Namespace, journal: Journal) -> int:
    kinds = [k for k in KINDS if k in (args.kind or DEFAULT_KINDS)]
    stats = journal.stats()
    hooks_dead = journal.hook_counts()["dead"]
    totals = {"dead": stats.dead + hooks_dead,
              **{k: stats.paths_by_status[s] for k, s in KINDS.items() if s}}  # fmt: skip
    listed: dict[str, list[Any]] = {}
    for kind in kinds:
        status = KINDS[kind]
        if status is None:  # the outbox's and the hooks' dead letters, most recent first
            both = [*journal.dead_letters(args.limit), *journal.hook_dead_letters(args.limit)]
            both.sort(key=lambda e: e.updated_at, reverse=True)
            listed[kind] = both[: args.limit]
        else:
            listed[kind] = journal.paths_with_status(cast("PathStatus", status), args.limit)
    if args.json:
        json_out(failed_doc(str(journal.path), listed, totals))
    else:
        out(failed_text(listed, totals))
    return 0


@with_journal
def cmd_retry(args: argparse.Namespace, journal: Journal) -> int:

    if args.all:
        out(requeued_text(journal.requeue_dead() + journal.requeue_dead_hooks(), None))
        return 0
    # Journal keys are the absolute paths the daemon saw; a relative PATH means from here.
    path = args.path if os.path.isabs(args.path) else os.path.abspath(args.path)
    count = journal.requeue_dead(path) + journal.requeue_dead_hooks(path)
    if count:
        out(requeued_text(count, path))
        return 0
    reason = no_dead_letter_reason(journal.path_state(path))
    print(f"{PROG}: no dead letter for {shown(path)}: {reason}", file=sys.stderr)
    return EXIT_FAILED


@with_journal
def cmd_purge(args: argparse.Namespace, journal: Journal) -> int:
    older_than: Duration = args.done_older_than
    if args.dry_run:
        count = journal.count_purgeable_tombstones(older_than.seconds)
    else:
        count = journal.purge_tombstones(older_than.seconds)
    out(purged_text(count, older_than.text, dry_run=args.dry_run))
    return 0
