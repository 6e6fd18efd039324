"""`exrwatchd inspect --json` over a directory of small frames, the whole process, against
OpenImageIO's header walk of the same files, also a whole Python process, in the same run.

    python bench/inspect_cli_bench.py [--files 10000] [--runs 3] [--json PATH]

Frames: 8 half channels, ZIP, 64x32 (tests/exrgen.py), one per file. Each side runs as its own
process over the same directory (page cache warm: one untimed pass first), output to
/dev/null; reported per side: the median wall time of `--runs` runs, files/s, and CPU seconds
per file (user + system of the child). Both run byte-compiled, as a wheel install leaves
them (PYTHONPYCACHEPREFIX in the temp dir, written by the untimed pass; a PYTHONDONTWRITEBYTECODE
in the environment would otherwise have every run compile exrwatchd's ~150 modules first,
~0.1 s that no installed copy pays). OpenImageIO's walk is what bench/inspect_bench.py
times in-process: open, every subimage and MIP level, the spec and every extra attribute.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

import quiet_disk  # noqa: E402
from as_deployed import deployed_env  # noqa: E402
from exrgen import write_scanline  # noqa: E402

CHANNELS = ("R", "G", "B", "A", "diffuse.R", "diffuse.G", "diffuse.B", "Z")

# bench/inspect_bench.py's oiio_walk, as a script of its own: importing that module would
# load exrwatchd into the OpenImageIO process and charge its start-up to the baseline.
OIIO_WALK = """
import os, sys
import OpenImageIO as oiio
root = sys.argv[1]
for name in sorted(os.listdir(root)):
    inp = oiio.ImageInput.open(os.path.join(root, name))
    if inp is None:
        oiio.geterror()
        continue
    sub = 0
    while inp.seek_subimage(sub, 0):
        for attr in inp.spec().extra_attribs:
            _ = attr.name, attr.value
        level = 1
        while inp.seek_subimage(sub, level):
            inp.spec()
            level += 1
        sub += 1
    inp.close()
"""


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process, its output thrown away."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the numbers here (for bench/run_all)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="exrwatchd-inspect-cli-"))
    try:
        template = write_scanline(tmp / "template.exr", channels=CHANNELS, size=(64, 32))
        frames = tmp / "frames"
        frames.mkdir()
        data = template.read_bytes()
        for i in range(args.files):
            (frames / f"beauty.{i:06d}.exr").write_bytes(data)
        sides = {
            "exrwatchd inspect --json": [sys.executable, "-m", "exrwatchd", "inspect", "--json",
                                         str(frames)],
            "OpenImageIO header walk": [sys.executable, "-c", OIIO_WALK, str(frames)],
        }  # fmt: skip
        env = deployed_env()
        for cmd in sides.values():
            run(cmd, env)  # warm the page cache
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        for _ in range(args.runs):  # interleaved: both sides see the same machine
            for name, cmd in sides.items():
                times[name].append(run(cmd, env))
    finally:
        quiet_disk.remove_tree(tmp)
    result = {}
    for name, runs in times.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        result[name] = {"seconds": round(wall, 3), "files_per_s": round(args.files / wall, 1),
                        "cpu_ms_per_file": round(cpu / args.files * 1000, 4)}  # fmt: skip
    ours, theirs = result["exrwatchd inspect --json"], result["OpenImageIO header walk"]
    ratio = ours["files_per_s"] / theirs["files_per_s"]
    print(f"| side | files | seconds (median of {args.runs}) | files/s | CPU ms per file |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in result.items():
        print(f"| {name} | {args.files} | {r['seconds']} | {r['files_per_s']:,.0f} | "
              f"{r['cpu_ms_per_file']} |")  # fmt: skip
    print(f"ratio (ours / OpenImageIO, files/s): {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"files": args.files, "runs": args.runs,
                                         "sides": result, "ratio": round(ratio, 3)}, indent=1))


if __name__ == "__main__":
    main()
