"""Records: how the journal keeps a summary and queues it for the sinks."""


from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from exrwatchd.sequences._summary import (
    SequenceSummary,
    notation,
)

#: path, even of a file literally named `beauty.%04d.exr`.
SEQUENCE_KEY_PREFIX = "sequence:"


def sequence_path(directory: str, pattern: str) -> str:
    """The outbox key of a sequence: its prefix, then where its pattern would sit as a file."""
    return SEQUENCE_KEY_PREFIX + os.path.join(directory, pattern)


def summary_record(summary: SequenceSummary, updated_at: datetime) -> dict[str, Any]:
    """The journal record of a sequence (JSON-ready), `notation` included."""
    return {
        "directory": summary.directory,
        "pattern": summary.pattern,
        "first": summary.first,
        "last": summary.last,
        "count": summary.count,
        "missing": [list(r) for r in summary.missing],
        "incomplete": list(summary.incomplete),
        "unhealthy": list(summary.unhealthy),
        "structure_consistent": summary.structure_consistent,
        "layout": summary.layout,
        "odd_layout": list(summary.odd_layout),
        "in_progress": list(summary.in_progress),
        "notation": notation(summary),
        "updated_at": updated_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def summary_from_record(record: Mapping[str, Any]) -> SequenceSummary:
    """The summary a record was made from (the journal compares old and new summaries)."""
    return SequenceSummary(
        directory=record["directory"], pattern=record["pattern"], first=record["first"],
        last=record["last"], count=record["count"],
        missing=tuple((a, b) for a, b in record["missing"]),
        incomplete=tuple(record["incomplete"]), unhealthy=tuple(record["unhealthy"]),
        structure_consistent=record["structure_consistent"], layout=record["layout"],
        odd_layout=tuple(record["odd_layout"]),
        in_progress=tuple(record.get("in_progress", ())),  # absent from older records
    )  # fmt: skip
