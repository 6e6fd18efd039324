"""The inspect stage as the daemon runs it: one settled file in, one verdict out.

`inspect_settled` is what a worker calls; `Verdict` tells the settle loop what to do next:
record it, look again later (incomplete, or caught mid-write), or treat it as gone.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from exrwatchd.exr import Inspection, inspect_path
from exrwatchd.exr.embed import as_float32_base64, embedding_fields
from exrwatchd.exr.report import inspection_to_dict
from exrwatchd.filesig import FileSig
from exrwatchd.journal import PathStatus
from exrwatchd.sequences import layout_key
from exrwatchd.watch import SettledFile

#: Errors a writer can cause just by not having finished yet: worth another look.
TRANSIENT_ERRORS = frozenset({"empty", "truncated_header"})

VerdictKind = Literal["record", "recheck", "changed", "vanished"]


@dataclass(frozen=True, slots=True)
class Verdict:
    settled: SettledFile
    kind: VerdictKind
    status: PathStatus  # what to record if the verdict is (or becomes) "record"
    sig: FileSig | None
    header_hash: str | None
    reason: str | None  # why it is incomplete or failed, for logs
    record: dict[str, Any] | None  # the JSON record (docs/architecture.md)


# Inspection ids: a random 64-bit prefix per process and a counter. As unique as a uuid4 for
# what they are for (telling a replay of one record from a new inspection of the same
# file), without a getrandom() system call per file, which showed in the daemon's profile.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


def new_inspection_id() -> str:
    """32 hex characters, unique across processes and restarts (random prefix + counter)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def make_record(result: Inspection, inspected_at: datetime | None = None) -> dict[str, Any]:
    """The record the journal stores and the sinks turn into rows.

    As `inspect --json --embeddings` prints it, except that the two vectors are base64 of
    little-endian float32 (exrwatchd.exr.embed.as_float32_base64).
    """
    record = inspection_to_dict(result)
    record.update(embedding_fields(result, as_float32_base64))
    moment = inspected_at or datetime.now(tz=UTC)
    record["inspection_id"] = new_inspection_id()
    record["inspected_at"] = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    record["inode"] = result.stat.inode if result.stat else None
    # Filled in by the pixel lane (pixel_lane.py) when [inspect] pixel_stats is on.
    record["pixel_stats"] = None
    # The structure key frame sequences compare (exrwatchd/sequences/): kept with the
    # record because after a restart the journal has records, not parsed headers.
    record["layout_key"] = layout_key(result.parts) if result.error is None else None
    return record


def _status(result: Inspection) -> PathStatus:
    if result.error is not None:
        return "failed"
    return "complete" if result.complete else "incomplete"


def inspect_settled(settled: SettledFile) -> Verdict:
    """Inspect one settled file. Pure apart from reading the file itself."""
    result = inspect_path(settled.path)
    sig = result.stat
    error = result.error
    if error is not None and error.kind == "vanished":
        return Verdict(settled, "vanished", "deleted", None, None, error.message, None)
    if sig is not None and sig != settled.sig:
        # Written to again between settling and reading: settle it again.
        return Verdict(settled, "changed", _status(result), sig, None, "changed", None)
    status = _status(result)
    reason = error.message if error else result.incomplete_reason
    record = make_record(result)
    if status == "incomplete" or (error is not None and error.kind in TRANSIENT_ERRORS):
        return Verdict(settled, "recheck", status, sig, result.header_hash, reason, record)
    return Verdict(settled, "record", status, sig, result.header_hash, reason, record)
