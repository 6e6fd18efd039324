"""Command line: `exrwatchd inspect | check-config | run | scan | status`.

Exit codes are named constants; 2 is usage (argparse's own convention).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from exrwatchd import __version__
from exrwatchd.cli._output import flush_out, json_line, write_out
from exrwatchd.errors import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TEMPFAIL,
    ConfigError,
)


def _inspect_targets(paths: Sequence[str]) -> Iterator[str]:
    from exrwatchd.watch import NameFilter
    from exrwatchd.watch.tree import walk_files

    accept = NameFilter()
    for path in paths:
        if os.path.isdir(path):
            # A directory is walked for included names; a named file is inspected whatever
            # its name, because the user asked for it explicitly.
            for found in walk_files(path, accept.accepts):
                yield found.path
        else:
            yield path


def cmd_inspect(args: argparse.Namespace) -> int:
    from exrwatchd.exr import inspect_path
    from exrwatchd.exr.report import inspection_to_dict, pixel_summary, summary_line

    if args.pixels:
        # Only now: importing it loads OpenImageIO and sets its thread count.
        from exrwatchd.exr.pixels import pixel_health
        from exrwatchd.exr.report import pixel_stats_to_dict

    failed = incomplete = 0
    for path in _inspect_targets(args.paths):
        result = inspect_path(path)
        failed += result.error is not None
        incomplete += result.error is None and not result.complete
        # As the daemon does: pixels of whole files only (a partial file's would mislead).
        stats = None
        if args.pixels and result.error is None and result.complete:
            stats = pixel_stats_to_dict(pixel_health(path))
        if args.json:
            record = inspection_to_dict(result, embeddings=args.embeddings)
            if args.pixels:
                record["pixel_stats"] = stats
            write_out(json_line(record), flush=False)
        else:
            text = summary_line(result)
            if args.pixels and result.error is None:
                text += "\n" + pixel_summary(stats)
            write_out(text.encode("utf-8", errors="backslashreplace") + b"\n", flush=False)
    flush_out()
    if failed or (args.strict and incomplete):
        return EXIT_FAILED
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from exrwatchd.config import config_to_dict, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILED
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(config_to_dict(cfg), indent=2))
    print(f"{args.config}: OK", file=sys.stderr)
    return EXIT_OK


def _load(path: str, *, credentials: bool = True) -> Any:
    """Load and validate the config, configure logging from it; exits 78 on a bad config.
    `credentials=False` for commands that read only the local state (see load_config)."""
    from exrwatchd.config import load_config
    from exrwatchd.logs import apply_logging, get_logger

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
    from exrwatchd.daemon import Daemon
    from exrwatchd.daemon.lifecycle import StartupError

    try:
        cfg.require_watches()
        daemon = Daemon(cfg)
        daemon.install_signal_handlers()
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
    return _run_daemon(_load(args.config), once=False)


def cmd_scan(args: argparse.Namespace) -> int:
    import dataclasses

    from exrwatchd.config import WatchConfig

    cfg = _load(args.config)
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
    from exrwatchd.cli.status import gather_status, render_status

    # The journal and status.json only: checking a stuck daemon needs no VAST keys.
    cfg = _load(args.config, credentials=False)
    status = gather_status(cfg)
    if args.json:
        write_out(json_line(status))
    else:
        print(render_status(status))
    return EXIT_OK


def cmd_sequences(args: argparse.Namespace) -> int:
    from exrwatchd.cli.sequences import gather, render

    found = gather(_load(args.config, credentials=False), gaps_only=args.gaps)
    if args.json:
        for sequence in found:
            write_out(json_line(sequence))
    else:
        print(render(found))
    return EXIT_OK


def cmd_vast_init(args: argparse.Namespace) -> int:
    from exrwatchd.sinks import SinkUnavailable
    from exrwatchd.sinks.vast import init_catalog

    cfg = _load(args.config)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exrwatchd",
        description="Watch mounts for OpenEXR frames, inspect them, catalog them.",
    )
    parser.add_argument("--version", action="version", version=f"exrwatchd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="inspect EXR files (directories are walked)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="one JSON object per file per line")
    p.add_argument("--embeddings", action="store_true", help="add the structural vectors")
    p.add_argument("--strict", action="store_true", help="exit 1 for incomplete files too")
    p.add_argument("--pixels", action="store_true", help="also read the pixels: per-channel "
                   "min/max/mean, NaN and Inf counts, constant frames")  # fmt: skip
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("check-config", help="validate a config and print the effective values")
    p.add_argument("config", metavar="PATH")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("run", help="run the daemon in the foreground")
    p.add_argument("--config", required=True, metavar="PATH")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("scan", help="one-shot: reconcile, inspect and persist, then exit")
    p.add_argument("--config", required=True, metavar="PATH")
    p.add_argument("paths", nargs="*", metavar="PATH", help="trees to scan (default: all watches)")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("vast", help="VAST DataBase administration")
    vast = p.add_subparsers(dest="vast_command", required=True, metavar="VAST_COMMAND")
    v = vast.add_parser("init", help="create the schema, tables and missing columns")
    v.add_argument("--config", required=True, metavar="PATH")
    v.set_defaults(func=cmd_vast_init)

    from exrwatchd.cli.journal import register as register_journal

    register_journal(sub)

    p = sub.add_parser("sequences", help="frame sequences: gaps, incomplete and odd frames")
    p.add_argument("--config", required=True, metavar="PATH")
    p.add_argument("--gaps", action="store_true", help="only sequences with missing frames")
    p.add_argument("--json", action="store_true", help="one JSON object per sequence")
    p.set_defaults(func=cmd_sequences)

    p = sub.add_parser("status", help="journal counts, daemon progress and sink health")
    p.add_argument("--config", required=True, metavar="PATH")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    return parser


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
