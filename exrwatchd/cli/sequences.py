"""`exrwatchd sequences`: the frame sequences the journal knows, with their gaps and problems.

Read from the journal, which is local whatever the sink: the same summaries the sinks store
in their `sequences` table, without needing the sink.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from exrwatchd.config import Config
from exrwatchd.journal import Journal


def gather(cfg: Config, *, gaps_only: bool = False) -> list[dict[str, Any]]:
    """Sequence records (see catalog/sequence_rows.summary_record), optionally only those
    with missing frames; [] when there is no journal yet."""
    path = cfg.daemon.state_dir / "journal.db"
    if not path.exists():
        return []
    with Journal(path) as journal:
        found = journal.sequences()
    return [s for s in found if s["missing"]] if gaps_only else found


def _ranges(ranges: Iterable[Iterable[int]]) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)


def _frames(frames: list[int]) -> str:
    shown = ", ".join(map(str, frames[:10]))
    return shown + (f" (+{len(frames) - 10} more)" if len(frames) > 10 else "")


def render(sequences: list[Mapping[str, Any]]) -> str:
    """A readable listing: one line per sequence, problems indented under it."""
    if not sequences:
        return "no frame sequences"
    lines = []
    for s in sequences:
        missing = sum(b - a + 1 for a, b in s["missing"])
        problems = []
        if missing:
            problems.append(f"missing {missing}: {_ranges(s['missing'])}")
        if s["incomplete"]:
            problems.append(f"incomplete: {_frames(s['incomplete'])}")
        if s["unhealthy"]:
            problems.append(f"unhealthy: {_frames(s['unhealthy'])}")
        if s["odd_layout"]:
            problems.append(f"different layout: {_frames(s['odd_layout'])}")
        state = "whole" if not problems else "PROBLEMS"
        lines.append(f"{s['directory']}/{s['pattern']}  frames {s['first']}-{s['last']}, "
                     f"{s['count']} present, {state}")  # fmt: skip
        lines += [f"    {p}" for p in problems]
    return "\n".join(lines)
