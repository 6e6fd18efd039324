"""`exrwatchd inspect`: what each PATH is, in name order, one line (or JSON object) per file.

The walk and the errors it finds (a PATH that does not exist, a directory that cannot be
listed) stay in this process; reading headers and rendering and writing the lines is shared
out to one process per core for long lists (_inspect_pool.py), in the same order.
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import sys
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from exrwatchd.cli._inspect_pool import WorkerDied, write_in_order
from exrwatchd.cli._output import flush_out, json_line, write_out
from exrwatchd.errors import EXIT_FAILED, EXIT_OK
from exrwatchd.exr import InspectError, Inspection, inspect_path
from exrwatchd.exr.report import inspection_json, inspection_to_dict, pixel_summary, summary_line


class _Options(NamedTuple):
    """What a worker needs to render a file (a NamedTuple: it travels to the workers)."""

    json: bool
    embeddings: bool
    pixels: bool


class _Counts(NamedTuple):
    """Of a batch of files: how many failed, how many are incomplete."""

    failed: int
    incomplete: int


def inspect_targets(paths: Sequence[str]) -> Iterator[str | Inspection]:
    """Each file to inspect (its path), or what is already known to be wrong (an error
    Inspection), in order: each PATH, a directory walked in name order."""
    from exrwatchd.watch import NameFilter
    from exrwatchd.watch.tree import walk_files

    accept = NameFilter()
    for path in paths:
        if os.path.isdir(path):
            # A directory is walked for included names; a named file is inspected whatever
            # its name, because the user asked for it explicitly.
            missed: list[tuple[str, OSError]] = []
            on_error = functools.partial(_note, missed)
            for file_path in walk_files(path, accept.accepts, ordered=True, on_error=on_error):
                yield from _walk_errors(missed)
                yield file_path  # gone since the walk listed it: inspect_path says vanished
            yield from _walk_errors(missed)
        elif not os.path.exists(path):
            # Named by the user but never there: not "vanished", which says it was seen.
            yield _error_record(path, "not_found", "no such file or directory")
        else:
            yield path


def inspect_results(paths: Sequence[str]) -> Iterator[Inspection]:
    """What `inspect` reports, in order, inspected in this process."""
    for target in inspect_targets(paths):
        yield inspect_path(target) if isinstance(target, str) else target


def _note(missed: list[tuple[str, OSError]], path: str, exc: OSError) -> None:
    missed.append((path, exc))


def _walk_errors(missed: list[tuple[str, OSError]]) -> Iterator[Inspection]:
    """What the walk listed but could not read: a file gone since (vanished), a directory
    it cannot list (unreadable)."""
    for path, exc in missed:
        gone = exc.errno in (errno.ENOENT, errno.ENOTDIR)
        yield _error_record(path, "vanished" if gone else "unreadable",
                            f"cannot read: {exc.strerror}")  # fmt: skip
    missed.clear()


def _error_record(path: str, kind: str, message: str) -> Inspection:
    # inspect_path fails on it too, and its error record has the right shape.
    return inspect_path(path)._replace(error=InspectError(kind, message))


def _render(options: _Options, target: str | Inspection) -> tuple[bytes, Inspection]:
    """Inspect one file (unless the walk already knows what is wrong) and render its line."""
    result = inspect_path(target) if isinstance(target, str) else target
    # As the daemon does: pixels of whole files only (a partial file's would mislead).
    stats = None
    if options.pixels and result.error is None and result.complete:
        # Only now: importing it loads OpenImageIO and sets its thread count.
        from exrwatchd.exr.pixels import pixel_health
        from exrwatchd.exr.report import pixel_stats_to_dict

        stats = pixel_stats_to_dict(pixel_health(result.path))
    if options.json and not options.pixels:
        return inspection_json(result, embeddings=options.embeddings), result
    if options.json:
        record = inspection_to_dict(result, embeddings=options.embeddings)
        record["pixel_stats"] = stats
        return json_line(record), result
    text = summary_line(result)
    if options.pixels and result.error is None:
        text += "\n" + pixel_summary(stats)
    return text.encode("utf-8", errors="backslashreplace") + b"\n", result


def _render_batch(options: _Options, targets: list[str | Inspection]) -> tuple[bytes, _Counts]:
    """The lines of a batch of files as one piece of output, with its counts."""
    lines, failed, incomplete = [], 0, 0
    for target in targets:
        line, result = _render(options, target)
        lines.append(line)
        failed += result.error is not None
        incomplete += result.error is None and not result.complete
    return b"".join(lines), _Counts(failed, incomplete)


def _write_unbuffered(data: bytes) -> None:
    write_out(data, flush=False)


def cmd_inspect(args: argparse.Namespace) -> int:
    options = _Options(json=args.json, embeddings=args.embeddings, pixels=args.pixels)
    # Pixel reading is OpenImageIO's, which uses every core for one file already.
    jobs = 1 if args.pixels else args.jobs
    failed = incomplete = 0
    render = functools.partial(_render_batch, options)
    flush_out()  # workers write to the descriptor: nothing may wait in the buffer before them
    try:
        for counts in write_in_order(render, inspect_targets(args.paths), jobs,
                                     _write_unbuffered, sys.stdout.fileno()):  # fmt: skip
            failed += counts.failed
            incomplete += counts.incomplete
    except WorkerDied as exc:
        first = exc.first.path if isinstance(exc.first, Inspection) else exc.first
        print("exrwatchd inspect: a worker process died (killed by a signal: out of memory?); "
              f"the output is whole up to {first}, which it lacks from there on, with every "
              "file after it (its line may be cut short)", file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    flush_out()
    if failed or (args.strict and incomplete):
        return EXIT_FAILED
    return EXIT_OK
