"""What `exrwatchd journal` prints (exrwatchd/cli/journal.py parses and runs the commands).

Every line a command writes to stdout is laid out here, and the reasons it gives on stderr:
names escaped for a terminal, times, ages, tables, the sections of `failed`, the JSON
documents, and the two ways out (text, one JSON object). Like cli/journal.py it imports
nothing heavy at module level.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from exrwatchd.cli._output import json_line, write_out

if TYPE_CHECKING:
    from exrwatchd.journal import DeadLetter, JournalStats, PathState

_SEE_FAILED = "(see `exrwatchd journal failed`)"

# In the table only; --json carries the whole message (the journal keeps up to 4000 chars).
ERROR_COLUMN_CHARS = 160

# kind of `failed` section -> (title, what to do about it)
_TITLES = {
    "dead": ("dead letters", "`exrwatchd journal retry PATH|--all` puts them back in the outbox"),
    "broken": ("broken files", "recorded with status 'failed'; inspected again when they change"),
    "incomplete": ("incomplete files", "never became whole; inspected again when they change"),
}


def shown(text: str) -> str:
    """`text` on one line and unambiguous, for a terminal: like repr() without the quotes.

    Printable characters stay; a backslash doubles; controls (newline, tab, escape
    sequences), invisible separators and lone surrogates are escaped as repr() escapes
    them, so the byte 0xff of a name that is not UTF-8 reads ``\\udcff``, as in --json.
    """
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        "\\\\" if ch == "\\"
        else ch if ch.isprintable()
        else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )  # fmt: skip


def out(text: str) -> None:
    write_out(text.encode("utf-8", "backslashreplace") + b"\n")


def json_out(obj: Any) -> None:
    write_out(json_line(obj))


def _count_of(count: int, noun: str) -> str:
    """1 tombstone, 2 tombstones, 0 dead letters."""
    return f"{count} {noun}{'s' if count != 1 else ''}"


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _age(seconds: float) -> str:
    """12.5s, 3m 20s, 5h 2m, 4d 7h."""
    if seconds < 60:
        return f"{max(0.0, seconds):.1f}s"
    whole = int(seconds)
    big, small, big_name, small_name = (
        (86400, 3600, "d", "h") if whole >= 86400
        else (3600, 60, "h", "m") if whole >= 3600
        else (60, 1, "m", "s")
    )  # fmt: skip
    return f"{whole // big}{big_name} {whole % big // small}{small_name}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    return [
        "  " + "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
        for r in (header, *rows)
    ]


def stats_doc(journal_path: str, stats: JournalStats) -> dict[str, Any]:
    import dataclasses

    return {"journal": journal_path, **dataclasses.asdict(stats)}


def stats_text(journal_path: str, stats: JournalStats) -> str:
    paths = ", ".join(f"{n} {status}" for status, n in stats.paths_by_status.items())
    oldest = "-" if stats.oldest_ready_age is None else _age(stats.oldest_ready_age)
    lines = [
        f"journal: {shown(journal_path)}",
        f"outbox: {stats.ready} ready, {stats.inflight} inflight, {stats.dead} dead "
        f"({stats.outbox_total} total)",
        f"oldest ready: {oldest}",
        f"paths: {paths}",
    ]
    if stats.last_error is None:
        lines.append("last error: none")
    else:
        lines.append(
            f"last error: {_when(stats.last_error_at)} {shown(stats.last_error_path or '')}: "
            f"{shown(stats.last_error)}"
        )
    return "\n".join(lines)


def failed_doc(
    journal_path: str, listed: dict[str, list[Any]], totals: dict[str, int]
) -> dict[str, Any]:
    """`journal failed --json`: per kind listed, its total and its entries."""
    import dataclasses

    doc: dict[str, Any] = {"journal": journal_path}
    for kind, entries in listed.items():
        total = max(totals[kind], len(entries))  # counted in another snapshot
        doc[kind] = {"total": total, "entries": [dataclasses.asdict(e) for e in entries]}
    return doc


def failed_text(listed: dict[str, list[Any]], totals: dict[str, int]) -> str:
    blocks = [_section(kind, entries, totals[kind]) for kind, entries in listed.items()]
    return "\n\n".join("\n".join(block) for block in blocks)


def _section(kind: str, entries: Sequence[Any], total: int) -> list[str]:
    """One section of `journal failed`: a title and a table (dead letters or path states)."""
    name, hint = _TITLES[kind]
    total = max(total, len(entries))  # the total was counted in another snapshot
    if not entries:
        return [f"{name}: none"]
    count = f"{len(entries)} of {total}" if len(entries) < total else str(total)
    title = f"{name}: {count}, most recent first ({hint})"
    if kind == "dead":
        header = ("FAILED AT", "ATTEMPTS", "OP", "PATH", "LAST ERROR")
        rows = [_dead_row(e) for e in entries]
    else:
        header = ("RECORDED AT", "PATH", "ERROR")
        rows = [_path_row(e) for e in entries]
    return [title, *_table(header, rows)]


def _dead_row(entry: DeadLetter) -> tuple[str, ...]:
    error = _error_cell(entry.last_error)
    op = entry.op if entry.hook is None else f"hook {shown(entry.hook)}"
    return (_when(entry.updated_at), str(entry.attempts), op, shown(entry.path), error)


def _path_row(state: PathState) -> tuple[str, ...]:
    return (_when(state.updated_at), shown(state.path), _error_cell(state.error))


def _error_cell(error: str | None) -> str:
    if error is None:
        return "-"
    text = shown(error)
    return text if len(text) <= ERROR_COLUMN_CHARS else text[: ERROR_COLUMN_CHARS - 3] + "..."


def requeued_text(count: int, path: str | None) -> str:
    """What `journal retry` says once `count` dead letters (all, or `path`'s) are requeued."""
    if path is None and count == 0:
        return "no dead letters: nothing to retry"
    where = "" if path is None else f" for {shown(path)}"
    them = "it" if path is not None or count == 1 else "them"
    return (
        f"requeued {_count_of(count, 'dead letter')}{where}: the daemon delivers {them} "
        "with its next batch"
    )


def no_dead_letter_reason(state: PathState | None) -> str:
    """Why `journal retry PATH` found nothing, from what the journal knows of PATH."""
    if state is None:
        return f"the journal has never seen this path {_SEE_FAILED}"
    if state.status == "failed":
        reason = f" ({shown(state.error)})" if state.error else ""
        return (
            f"it is a broken file{reason}, recorded as such, not an undelivered entry; "
            "fix or replace the file and the daemon inspects it again"
        )
    return (
        f"its last recorded state is {state.status!r} and it has no failed delivery {_SEE_FAILED}"
    )


def purged_text(count: int, older_than: str, *, dry_run: bool) -> str:
    verb = "would remove" if dry_run else "removed"
    return (
        f"{verb} {_count_of(count, 'tombstone')}: files deleted more than {older_than} ago, "
        "their deletion delivered to the sink"
    )
