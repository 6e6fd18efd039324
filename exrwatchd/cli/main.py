"""Command line: `exrwatchd inspect | check-config | run | scan | status | ...`.

Every command that reads the config takes `--config PATH`, else `$EXRWATCHD_CONFIG`, else
/etc/exrwatchd/config.toml (config/paths.py). Exit codes are named constants (errors.py),
listed in each command's `--help` (cli/_help.py); 2 is usage (argparse's own convention).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exrwatchd import __version__
from exrwatchd.cli import export, reembed, similar
from exrwatchd.cli._help import CONFIG_HELP, Formatter, epilog
from exrwatchd.cli._inspect_pool import default_jobs
from exrwatchd.cli._output import json_line, write_out
from exrwatchd.cli.inspect import cmd_inspect
from exrwatchd.cli.journal import register as register_journal
from exrwatchd.errors import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TEMPFAIL,
    EXIT_USAGE,
    ConfigError,
)


def _config_file(args: argparse.Namespace) -> Path:
    """The config file the command reads (--config, $EXRWATCHD_CONFIG, the default); exits 78
    naming what was tried when there is none."""
    from exrwatchd.config import config_path

    try:
        return config_path(args.config)
    except ConfigError as exc:
        print(f"exrwatchd: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    from exrwatchd.cli.check import check_config

    if args.config and args.config_positional and args.config != args.config_positional:
        print("exrwatchd check-config: two config files given: "
              f"{args.config_positional} and --config {args.config}", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    args.config = args.config or args.config_positional
    return check_config(_config_file(args), connect=args.connect)


def _load(args: argparse.Namespace, *, credentials: bool = True) -> Any:
    """Load and validate the config, configure logging from it; exits 78 on a bad config.
    `credentials=False` for commands that read only the local state (see load_config)."""
    from exrwatchd.config import load_config
    from exrwatchd.logs import apply_logging, get_logger

    path = _config_file(args)
    try:
        cfg = load_config(path, credentials=credentials)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    apply_logging(cfg.log.format, cfg.log.level, cfg.secrets(), cfg.log.file,
                  cfg.log.rate_limit, cfg.log.burst)  # fmt: skip
    for warning in cfg.warnings:
        get_logger("exrwatchd").warning("config.warning", message=warning)
    return cfg


def _run_daemon(cfg: Any, *, once: bool) -> int:
    """Run the daemon (or, with `once`, the one-shot scan) and map start errors to 78."""
    from exrwatchd.cli.progress import Progress
    from exrwatchd.daemon import Daemon, install_signal_handlers
    from exrwatchd.daemon.lifecycle import StartupError

    try:
        cfg.require_watches()  # check-config applies the same rule
        daemon = Daemon(cfg)
        install_signal_handlers(daemon)
        progress = Progress(sys.stderr) if once and sys.stderr.isatty() else None
        code = daemon.run(once=once, progress=progress)
        if progress:
            progress.finish(daemon)
        return code
    except StartupError as exc:
        print(f"exrwatchd: cannot start: {exc}", file=sys.stderr)
        if exc.transient:
            return EXIT_TEMPFAIL
    except ConfigError as exc:
        print(f"exrwatchd: {exc}", file=sys.stderr)
    return EXIT_CONFIG


def cmd_run(args: argparse.Namespace) -> int:
    return _run_daemon(_load(args), once=False)


def cmd_scan(args: argparse.Namespace) -> int:
    import dataclasses

    from exrwatchd.config import WatchConfig

    cfg = _load(args)
    if args.paths:
        # Scan the given trees with the filters of the watch that holds each, if any.
        watches = []
        for raw in args.paths:
            path = os.path.abspath(raw)
            owner = next((w for w in cfg.watch if path == str(w.path)
                          or path.startswith(str(w.path) + os.sep)), None)  # fmt: skip
            base = owner or WatchConfig(path=Path(path))
            watches.append(dataclasses.replace(base, path=Path(path)))
        cfg = dataclasses.replace(cfg, watch=tuple(watches))
    return _run_daemon(cfg, once=True)


def cmd_status(args: argparse.Namespace) -> int:
    from exrwatchd.cli.status import assess, gather_status, render_status

    # The journal and status.json only: checking a stuck daemon needs no VAST keys.
    cfg = _load(args, credentials=False)
    status = gather_status(cfg)
    code, problems = assess(status)
    if args.json:
        write_out(json_line(status))
    else:
        print(render_status(status, code, problems))
    return code


def cmd_sequences(args: argparse.Namespace) -> int:
    from exrwatchd.cli.sequences import gather, render

    found = gather(_load(args, credentials=False), gaps_only=args.gaps, paths=args.paths)
    if args.json:
        for sequence in found:
            write_out(json_line(sequence))
    else:
        print(render(found))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    return export.export(_load(args, credentials=False), args)


def cmd_similar(args: argparse.Namespace) -> int:
    return similar.run_similar(args, _load(args))


def cmd_vast_init(args: argparse.Namespace) -> int:
    from exrwatchd.sinks import SinkUnavailable
    from exrwatchd.sinks.vast import init_catalog

    cfg = _load(args)
    vast = cfg.vast
    if not (vast.endpoint and vast.bucket and vast.access_key and vast.secret_key):
        print(f"{cfg.source}: vast: endpoint, bucket, access_key and secret_key are required "
              "for `vast init`", file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    try:
        counts = init_catalog(vast)
    except SinkUnavailable as exc:
        print(f"exrwatchd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for table, rows in counts.items():
        print(f"{vast.bucket}/{vast.schema}/{table}: ready ({rows} rows)")
    return EXIT_OK


def _command(
    sub: Any, name: str, help_text: str, description: str, full_name: str | None = None
) -> argparse.ArgumentParser:
    """A command parser with its description, example and exit codes (cli/_help.py)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=description, epilog=epilog(full_name or name),
        formatter_class=Formatter,
    )  # fmt: skip
    return parser


def _config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)


def _json_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--json", action="store_true", help=what)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exrwatchd",
        description="Watch mounts for OpenEXR frames, inspect them, catalog them.",
    )
    parser.add_argument("--version", action="version", version=f"exrwatchd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_inspect(sub)
    _add_config_and_daemon(sub)
    _add_admin(sub)
    _add_catalog_commands(sub)
    _add_status(sub)
    return parser


def _add_inspect(sub: Any) -> None:
    p = _command(sub, "inspect", "inspect EXR files (directories are walked)",
                 "Read the headers of EXR files and check that they are whole. Directories are "
                 "walked in name order for *.exr (hidden and temporary names skipped); a file "
                 "named on the command line is read whatever its name.")  # fmt: skip
    p.add_argument("paths", nargs="+", metavar="PATH", help="files and directories to inspect")
    _json_option(p, "one JSON object per file per line")
    p.add_argument("--embeddings", action="store_true", help="add the structural vectors "
                   "(implies --json)")  # fmt: skip
    p.add_argument("--strict", action="store_true", help="exit 1 for incomplete files too")
    p.add_argument("--pixels", action="store_true", help="also read the pixels: per-channel "
                   "min/max/mean, NaN and Inf counts, constant frames")  # fmt: skip
    p.add_argument("--jobs", "-j", type=int, default=default_jobs(), metavar="N",
                   help="processes that read headers (default: one per core; more than 200 "
                   "files only; 1 with --pixels, which OpenImageIO spreads over the cores)")
    p.set_defaults(func=cmd_inspect)


def _add_config_and_daemon(sub: Any) -> None:
    p = _command(sub, "check-config", "validate a config: OK only when `run` would start",
                 "Validate the config as `run` does and print the effective values (secrets "
                 "masked). Watch paths that do not exist are warnings. --connect also checks "
                 "the state dir and the sink, changing nothing.")  # fmt: skip
    p.add_argument("config_positional", nargs="?", metavar="PATH",
                   help="the config file (the same as --config PATH)")  # fmt: skip
    _config_option(p)
    p.add_argument("--connect", action="store_true", help="also check that the state dir is "
                   "writable and the sink usable: the local catalog opens at a supported "
                   "version; VAST is reachable, takes the credentials, and has the bucket, "
                   "schema and tables with compatible columns")  # fmt: skip
    p.set_defaults(func=cmd_check_config)

    p = _command(sub, "run", "run the daemon in the foreground",
                 "Watch, inspect and catalog until SIGTERM or SIGINT; SIGHUP reloads the "
                 "config.")  # fmt: skip
    _config_option(p)
    p.set_defaults(func=cmd_run)

    p = _command(sub, "scan", "one-shot: reconcile, inspect and persist, then exit",
                 "Compare the trees with the journal, inspect and persist what changed, "
                 "then exit. A progress line on a terminal.")  # fmt: skip
    _config_option(p)
    p.add_argument("paths", nargs="*", metavar="PATH", help="trees to scan (default: all watches)")
    p.set_defaults(func=cmd_scan)


def _add_admin(sub: Any) -> None:
    """`vast init` and the `journal` commands."""
    p = sub.add_parser("vast", help="VAST DataBase administration")
    vast = p.add_subparsers(dest="vast_command", required=True, metavar="VAST_COMMAND")
    v = _command(vast, "init", "create the schema, tables and missing columns",
                 "Create the VAST schema and the catalog tables, or add missing columns; safe "
                 "to run twice, or from two gateways at once.", "vast init")  # fmt: skip
    _config_option(v)
    v.set_defaults(func=cmd_vast_init)

    register_journal(sub)


def _add_catalog_commands(sub: Any) -> None:
    """What reads the catalog and the journal's sequences: sequences, export, similar,
    reembed."""
    p = _command(sub, "sequences", "frame sequences: gaps, incomplete and odd frames",
                 "Frame sequences the journal knows, with their missing, incomplete, "
                 "unhealthy and odd-layout frames.")  # fmt: skip
    _config_option(p)
    p.add_argument("--gaps", action="store_true", help="only sequences with missing frames")
    _json_option(p, "one JSON object per sequence")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="only sequences in these directories or below them")
    p.set_defaults(func=cmd_sequences)

    p = _command(sub, "export", "a catalog table as Parquet or CSV, for pandas or DuckDB",
                 export.DESCRIPTION)  # fmt: skip
    _config_option(p)
    export.add_arguments(p)
    p.set_defaults(func=cmd_export)

    p = _command(sub, "similar", "catalogued files ranked by how alike their layout is",
                 similar.DESCRIPTION)  # fmt: skip
    similar.add_arguments(p)
    _config_option(p)
    _json_option(p, "one JSON object per file: path, score, differences")
    p.set_defaults(func=cmd_similar)

    p = _command(sub, "reembed", "read catalogued files again (current embeddings)",
                 reembed.DESCRIPTION)  # fmt: skip
    _config_option(p)
    reembed.add_arguments(p)
    p.set_defaults(func=reembed.cmd_reembed)


def _add_status(sub: Any) -> None:
    p = _command(sub, "status", "is the daemon running and healthy; journal counts",
                 "Whether the daemon runs and is healthy, what it last reported "
                 "(status.json, rewritten every 2 s) and what the journal holds. Needs no "
                 "VAST keys.")  # fmt: skip
    _config_option(p)
    _json_option(p, "one JSON object (the exit code is the same)")
    p.set_defaults(func=cmd_status)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "embeddings", False) and not getattr(args, "json", False):
        args.json = True  # vectors only make sense in the JSON form
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # `exrwatchd inspect ... | head` is normal use, not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
