"""The path of one file through the running daemon, after settling: inspection by workers
(inspector.py), the optional pixel lane (pixel_lane.py), the settle loop that turns verdicts
into journal writes (settle_loop.py), the journal writer (journal_writer.py), the sink
loop (sink_loop.py) and the hook loop (hook_loop.py, hook_delivery.py), with the one
disk-full wait the writers share (diskfull.py)."""

from exrwatchd.pipeline.diskfull import DiskFull, full_reason
from exrwatchd.pipeline.hook_loop import HookLoop
from exrwatchd.pipeline.inspector import Verdict, inspect_settled, make_record
from exrwatchd.pipeline.journal_writer import JournalWriter
from exrwatchd.pipeline.settle_loop import Pipeline
from exrwatchd.pipeline.sink_loop import (
    BatchReport,
    SinkLoop,
    report_to,
    resend_if_lost,
)

__all__ = [
    "BatchReport",
    "DiskFull",
    "HookLoop",
    "JournalWriter",
    "Pipeline",
    "SinkLoop",
    "Verdict",
    "full_reason",
    "inspect_settled",
    "make_record",
    "report_to",
    "resend_if_lost",
]
