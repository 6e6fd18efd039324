"""`exrwatchd sequences`: the frame sequences the journal knows, with their gaps and problems.

Read from the journal, which is local whatever the sink: the same summaries the sinks store
in their `sequences` table, without needing the sink. Sequences are printed in the notation
fileseq, Nuke and RV parse (`beauty.1001-1040,1042-1100#.exr`), frame lists as frame sets.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from exrwatchd.config import Config
from exrwatchd.journal import Journal
from exrwatchd.sequences import compress_frames, frame_set, notation, summary_from_record

#: Ranges shown per problem line; the rest are counted (`--json` has them all).
_SHOWN = 10


def gather(
    cfg: Config, *, gaps_only: bool = False, paths: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Sequence records (see sequences.summary_record), with their `notation`, optionally
    only those with missing frames and those in or below one of `paths`; [] when there is
    no journal yet."""
    path = cfg.daemon.state_dir / "journal.db"
    if not path.exists():
        return []
    with Journal(path) as journal:
        found = journal.sequences()
    prefixes = [_prefix(p) for p in paths]
    found = [s for s in found if not prefixes or _under(s["directory"], prefixes)]
    for record in found:  # records written before these fields existed lack them
        record.setdefault("in_progress", [])
        record.setdefault("notation", notation(summary_from_record(record)))
    return [s for s in found if s["missing"]] if gaps_only else found


def _prefix(path: str) -> str:
    return os.path.join(os.path.abspath(path), "")  # "/r/sh01/": never matches /r/sh010


def _under(directory: str, prefixes: Iterable[str]) -> bool:
    return any(os.path.join(directory, "").startswith(p) for p in prefixes)


def _frames(ranges: Sequence[Sequence[int]]) -> str:
    shown = frame_set((a, b) for a, b in ranges[:_SHOWN])
    more = len(ranges) - _SHOWN
    return shown + (f" (+{more} more ranges)" if more > 0 else "")


def render(sequences: list[Mapping[str, Any]]) -> str:
    """A readable listing: one line per sequence, problems indented under it."""
    if not sequences:
        return "no frame sequences"
    lines = []
    for s in sequences:
        missing = sum(b - a + 1 for a, b in s["missing"])
        problems = [f"missing {missing}: {_frames(s['missing'])}"] if missing else []
        for label, frames in (("in progress (being written)", s.get("in_progress")),
                              ("incomplete", s["incomplete"]), ("unhealthy", s["unhealthy"]),
                              ("different layout", s["odd_layout"])):  # fmt: skip
            if frames:
                problems.append(f"{label}: {_frames(compress_frames(frames))}")
        state = "whole" if not problems else "PROBLEMS"
        if s.get("in_progress") and len(problems) == 1:
            state = "IN PROGRESS"  # nothing wrong yet: frames are still landing
        name = os.path.join(s["directory"], s["notation"])
        lines.append(f"{name}  {s['count']} frames, {state}")
        lines += [f"    {p}" for p in problems]
    return "\n".join(lines)
