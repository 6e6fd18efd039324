"""Command line: `exrwatchd inspect | check-config | run | scan | status`.

Exit codes are named constants; 2 is usage (argparse's own convention).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from exrwatchd import __version__
from exrwatchd.errors import ConfigError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def json_line(obj: Any) -> bytes:
    """One JSON object as a UTF-8 line.

    File names may hold bytes that are not UTF-8 (Python keeps them as lone surrogates);
    backslashreplace turns each into a `\\udcXX` escape, which is still valid JSON and
    decodes back to the same name.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8", errors="backslashreplace") + b"\n"


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _inspect_targets(paths: Sequence[str]) -> Iterator[str]:
    from exrwatchd.watch.filters import NameFilter
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
    from exrwatchd.exr.inspect import inspect_path
    from exrwatchd.exr.report import inspection_to_dict, summary_line

    failed = incomplete = 0
    for path in _inspect_targets(args.paths):
        result = inspect_path(path)
        failed += result.error is not None
        incomplete += result.error is None and not result.complete
        if args.json:
            _write(json_line(inspection_to_dict(result, embeddings=args.embeddings)))
        else:
            _write(summary_line(result).encode("utf-8", errors="backslashreplace") + b"\n")
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
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("check-config", help="validate a config and print the effective values")
    p.add_argument("config", metavar="PATH")
    p.set_defaults(func=cmd_check_config)
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
