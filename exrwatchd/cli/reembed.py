"""`exrwatchd reembed`: have the daemon read files again, so that they get the current
embeddings (docs/embeddings.md) and their catalog rows are replaced.

It only marks paths in the journal, as if the files had changed; the running daemon reads
them at its next reconciliation (every `rescan_interval`, and at every start), or
`exrwatchd scan` does it at once while the daemon is stopped. Safe while the daemon runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from exrwatchd.cli.journal import with_journal
from exrwatchd.errors import EXIT_OK

if TYPE_CHECKING:  # the journal loads structlog and sqlite: only for the command itself
    from exrwatchd.journal import Journal

DESCRIPTION = (
    "Mark catalogued files to be read again, so that they get the current embeddings (after "
    "an exrwatchd upgrade that changed them: `exrwatchd similar` leaves rows of other versions "
    "out) and their rows are replaced. The daemon reads them at its next rescan or start; "
    "`exrwatchd scan` does it at once while the daemon is stopped."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directories", nargs="*", metavar="DIR",
                   help="only files at or under these directories (default: every file)")


def _reembed(args: argparse.Namespace, journal: Journal) -> int:
    directories = [os.path.abspath(d) for d in args.directories]
    marked = journal.mark_for_inspection(directories)
    where = ", ".join(directories) if directories else "every watched tree"
    print(f"{marked} files in {where} marked to be read again: the daemon reads them at its "
          "next rescan (daemon.rescan_interval) or start; `exrwatchd scan` does it now while "
          "the daemon is stopped", file=sys.stderr)  # fmt: skip
    return EXIT_OK


cmd_reembed = with_journal(_reembed)
