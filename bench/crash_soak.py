"""kill -9 soak: the real daemon killed at random moments during bursts, at full size.

    .venv/bin/python bench/crash_soak.py --seeds 20 --files 5000 --sink local
    .venv/bin/python bench/crash_soak.py --seeds 20 --files 5000 --sink vast   # VAST emulator
    .venv/bin/python bench/crash_soak.py --seeds 3 --files 600 --kills 3       # the CI size

Per seed: tests/crash_support.py's `crash_run` (the same experiment as tests/test_crash.py):
a thread writes `--files` files in `--kills` rounds; each round's daemon is killed with
SIGKILL 0.2-3 s (seeded) after its burst starts and restarted; a clean run drains; then every
file must be in the catalog exactly once with its header hash, no orphan child rows, the
journal outbox empty and no child process of a killed daemon left. With `--sink vast`, each
seed gets a fresh loopback VAST emulator (tests/vast_emulator) driven through the real SDK.

Prints one tally line per seed as it goes, then a Markdown table. Exit status 1 when any seed
found a problem (the others still run). Not a test: pytest never collects it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from crash_support import BUCKET, Tally, crash_run, markdown_table  # noqa: E402
from vast_emulator import VastEmulator  # noqa: E402


def one_seed(args: argparse.Namespace, seed: int, tmp: Path) -> Tally:
    work = tmp / f"{args.sink}-seed{seed}"
    size = {"files": args.files, "kills": args.kills, "burst_seconds": args.burst_seconds}
    try:
        if args.sink == "vast":
            with VastEmulator(buckets={BUCKET}) as emu:
                return crash_run(work, seed=seed, sink="vast", emu=emu, **size)
        return crash_run(work, seed=seed, sink="local", **size)
    except Exception as exc:  # the experiment could not finish: that is a finding too
        traceback.print_exc()
        tally = Tally(args.sink, seed, args.files)
        tally.problems.append(f"{type(exc).__name__}: {str(exc)[:2000]}")
        return tally
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds (default 20)")
    parser.add_argument("--first-seed", type=int, default=100,
                        help="the first seed; seeds are consecutive (default 100, as the "
                        "slow test)")  # fmt: skip
    parser.add_argument("--files", type=int, default=5000, help="files per seed (default 5000)")
    parser.add_argument("--kills", type=int, default=5, help="kills per seed (default 5)")
    parser.add_argument("--sink", choices=("local", "vast"), default="local")
    parser.add_argument("--burst-seconds", type=float, default=None,
                        help="how long each round's burst takes (default: max(2.5, "
                        "files per round / 1000))")  # fmt: skip
    parser.add_argument("--tmp", type=Path, default=None, help="where to work (default: /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep each seed's directory")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="exrwatchd-crash-soak-", dir=args.tmp))
    started = time.monotonic()
    tallies = []
    try:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            tallies.append(one_seed(args, seed, tmp))
            sys.stdout.flush()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"crash soak: sink={args.sink}, {len(tallies)} seeds x {args.files:,} files x "
          f"{args.kills} kills, {time.monotonic() - started:.0f} s")  # fmt: skip
    print()
    print(markdown_table(tallies))
    return 1 if any(t.problems for t in tallies) or len(tallies) < args.seeds else 0


if __name__ == "__main__":
    raise SystemExit(main())
