"""The state of the disk a burst starts from: no inodes held back after a removal, nothing
left to write back.

    .venv/bin/python bench/quiet_disk.py [--tmp /tmp]    # the state of --tmp's disk

Measured 2026-12-03 (docs/benchmarks.md, "The burst's noise was the benchmark's own
cleanup"): ext4 without a journal, this machine's root file system, will not reuse an inode
deleted in the last 60 s, or 360 s while its inode-table block is still dirty (fs/ext4/
ialloc.c, `recently_deleted`). Until then every create walks the free inodes of its block
group, looking each one up, before it takes one. After a benchmark removed its 20,000-file
tree, the next run's 20,000 creates cost 4-15 s of kernel CPU instead of about 1 s, on the
two cores the daemon under test uses, for about six minutes. Back-to-back burst runs
measured that policy more than the daemon.

So the benchmarks remove their trees through `remove_tree`, which notes the time in a stamp
file beside the tree (in `--tmp`, /tmp by default), and a burst starts only after `wait_out`
has let that window pass. A stamp does not see files removed by anything else (a test run,
say): the burst's own writer time per file, printed with every run, shows that. And a burst
starts after `write_back`, so that the last run's files and databases (~170 MB of files for
20,000) are not written back, 30 s after they were made, on the cores this run measures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

# RECENTCY_MIN + RECENTCY_DIRTY in fs/ext4/ialloc.c, plus one dirty-writeback interval.
WINDOW_S = 60 + 300 + 30
STAMP_NAME = "exrwatchd-bench-removed-at"


def ext4_without_journal(path: str | Path) -> bool:
    """True when `path` is on ext4 mounted without a journal (no /proc/fs/jbd2 entry for its
    device). False when unknown: not ext4, or no sysfs entry for the device."""
    dev = os.stat(path).st_dev
    try:
        uevent = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/uevent").read_text()
    except OSError:
        return False
    names = [line.split("=", 1)[1] for line in uevent.splitlines() if line.startswith("DEVNAME=")]
    if not names or not Path(f"/proc/fs/ext4/{names[0]}").is_dir():
        return False
    return not any(Path("/proc/fs/jbd2").glob(f"{names[0]}-*"))


def _stamp(tmp: str | Path) -> Path:
    return Path(tmp) / STAMP_NAME


def remove_tree(tree: str | Path) -> None:
    """Remove a benchmark tree and note when, beside it, for the next run's `wait_out`. The
    stamp is rewritten in place, never removed, so it frees no inode of its own."""
    shutil.rmtree(tree, ignore_errors=True)
    _stamp(Path(tree).parent).write_text(f"{time.time():.3f}\n")


def seconds_left(tmp: str | Path) -> float:
    """How long until inodes a benchmark removed under `tmp` may be reused (0: now, or the
    disk does not hold them back)."""
    if not ext4_without_journal(tmp):
        return 0.0
    try:
        removed_at = float(_stamp(tmp).read_text())
    except (OSError, ValueError):
        return 0.0
    return max(0.0, removed_at + WINDOW_S - time.time())


def wait_out(tmp: str | Path) -> float:
    """Sleep until `seconds_left(tmp)` is 0, saying why; returns the seconds waited."""
    left = seconds_left(tmp)
    if left > 0:
        print(
            f"   waiting {left:.0f} s: {tmp} is ext4 without a journal, which does not reuse the "
            f"inodes a benchmark removed in the last {WINDOW_S} s, and every create walks them "
            "(bench/quiet_disk.py)",
            flush=True,
        )
        time.sleep(left)
    return round(left, 1)


def write_back() -> float:
    """Write every dirty page back now (`sync`); returns the seconds it took."""
    started = time.monotonic()
    os.sync()
    return round(time.monotonic() - started, 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tmp", default="/tmp", help="the benchmarks' temp dir parent")
    args = ap.parse_args(argv)
    print(
        f"{args.tmp}: ext4 without a journal: {ext4_without_journal(args.tmp)}; "
        f"a benchmark may start in {seconds_left(args.tmp):.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
