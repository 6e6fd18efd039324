"""Pixel-health throughput: exrwatchd.exr.pixels.pixel_health vs OpenImageIO's own tools.

    python bench/pixel_bench.py [--frames 50] [--rounds 3] [--corpus DIR] [--json PATH]

Same files, same run, warm page cache:
- a burst of generated 2K frames (2048x1080, RGBA half, ZIP; a gradient plus noise, so ZIP
  has real work), written once into a temp dir;
- the reference corpus outside Damaged/ (when found).
Readers:
- pixel_health, one thread (as one daemon worker runs it), and with one worker thread per
  core (the daemon's lane: OIIO releases the GIL while it decodes);
- a plain OIIO loop: ImageBuf read + computePixelStats per part, one thread (the floor
  pixel_health's own work sits on);
- `oiiotool -a --stats` over all files in one call (no per-file start-up), with --threads 1
  and with its default of one thread per core. It also computes every MIP level and a deep
  sample histogram, so it reads more than level 0 of mipmapped files, and it stops at the first
  file it cannot read, so files OIIO refuses (sub-sampled channels) are left out of its list.
MB/s counts file bytes (compressed, what comes off the disk); Mpix/s counts level-0 pixels.
Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import OpenEXR
import OpenImageIO as oiio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exrwatchd.exr.pixels import pixel_health  # also sets OIIO threads to 1


def generate(dst: Path, count: int, size: tuple[int, int] = (2048, 1080)) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    w, h = size
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paths = []
    for i in range(count):
        path = dst / f"beauty.{i + 1001:04d}.exr"
        paths.append(path)
        if path.exists():
            continue
        base = (xx / w + yy / h + i / count) / 3.0
        channels = {
            c: (base * (k + 1) + rng.normal(0, 0.02, (h, w))).astype(np.float16)
            for k, c in enumerate("RGB")
        }
        channels["A"] = np.ones((h, w), np.float16)
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        OpenEXR.File(header, channels).write(str(path))
    return paths


def ours(paths: list[Path]) -> None:
    for path in paths:
        pixel_health(str(path))


def ours_parallel(paths: list[Path]) -> None:
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(lambda p: pixel_health(str(p)), paths))


def plain_oiio(paths: list[Path]) -> None:
    for path in paths:
        sub = 0
        while True:
            buf = oiio.ImageBuf(str(path), sub, 0)
            if not buf.read(sub, 0, force=True):
                buf.geterror()
                break
            oiio.ImageBufAlgo.computePixelStats(buf, oiio.ROI.All, 1)
            sub += 1
            if sub >= buf.nsubimages:
                break


def oiiotool_binary() -> Path | None:
    """The native oiiotool the OpenImageIO wheel ships (bin/oiiotool in the venv is a Python
    wrapper that would add an interpreter start-up to the timing)."""
    native = Path(oiio.__file__).parent / "bin" / "oiiotool"
    if native.is_file() and os.access(native, os.X_OK):
        return native
    found = shutil.which("oiiotool")
    return Path(found) if found else None


def oiiotool_stats(binary: Path, threads: int) -> Callable[[list[Path]], None]:
    def run(paths: list[Path]) -> None:
        cmd = [str(binary), "--threads", str(threads), "-a", "--stats", *map(str, paths)]
        done = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
        if done.returncode != 0 or "ERROR" in done.stdout + done.stderr:
            raise RuntimeError(f"oiiotool failed: {(done.stdout + done.stderr)[-500:]}")

    return run


def best_seconds(
    readers: list[tuple[str, Callable[[list[Path]], None], list[Path]]], rounds: int
) -> list[float]:
    """Best time of each reader. Rounds are interleaved (every reader once per round) so that
    load from anything else on the machine falls on all of them alike."""
    for _, fn, files in readers:
        fn(files)  # warm: page cache, OIIO's plugin load
    best = [float("inf")] * len(readers)
    for _ in range(rounds):
        for i, (_, fn, files) in enumerate(readers):
            t = time.perf_counter()
            fn(files)
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--corpus",
        default=os.environ.get(
            "EXRWATCHD_CORPUS",
            str(Path(__file__).resolve().parents[2] / "shared/corpus/openexr-images"),
        ),
    )
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "exrwatchd-bench-pixels"))
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    sets = {
        f"{args.frames} generated 2K RGBA half ZIP frames": generate(Path(args.dir), args.frames)
    }
    corpus = Path(args.corpus)
    if corpus.is_dir():
        sets["reference corpus (no Damaged/)"] = sorted(
            p for p in corpus.rglob("*.exr") if "Damaged" not in p.parts
        )
    binary = oiiotool_binary()
    cpus = os.cpu_count() or 1
    rows = []
    for name, paths in sets.items():
        pixels = {p: pixel_health(str(p)).pixel_count for p in paths}  # 0 when unavailable
        readable = [p for p in paths if pixels[p]]
        readers: list[tuple[str, Callable[[list[Path]], None], list[Path]]] = [
            ("pixel_health, 1 thread", ours, paths),
            (f"pixel_health, {cpus} worker threads", ours_parallel, paths),
            ("ImageBuf read + computePixelStats, 1 thread", plain_oiio, paths),
        ]
        if binary is not None:
            readers += [
                ("oiiotool -a --stats --threads 1", oiiotool_stats(binary, 1), readable),
                (f"oiiotool -a --stats ({cpus} threads)", oiiotool_stats(binary, 0), readable),
            ]
        for (reader, _, files), seconds in zip(
            readers, best_seconds(readers, args.rounds), strict=True
        ):
            mbytes = sum(p.stat().st_size for p in files) / 1e6
            mpix = sum(pixels[p] for p in files) / 1e6
            rows.append((name, reader, len(files), mbytes, mpix, seconds))
    print(
        f"machine: {platform.machine()}, {cpus} cpus, Python {platform.python_version()}, "
        f"OpenImageIO {oiio.__version__}, best of {args.rounds} interleaved rounds, "
        f"load average at the end {os.getloadavg()[0]:.2f}"
    )
    if binary is None:
        print("oiiotool: not found (neither in the OpenImageIO wheel nor on PATH); "
              "the plain ImageBuf + computePixelStats loop is the baseline")  # fmt: skip
    else:
        print(f"oiiotool: {binary}")
    print("| files | reader | count | MB | files/s | MB/s | Mpix/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, reader, n, mb, mp, s in rows:
        print(f"| {name} | {reader} | {n} | {mb:,.1f} | {n / s:,.1f} | {mb / s:,.1f} | "
              f"{mp / s:,.1f} |")  # fmt: skip
    if args.json:
        out = [
            {"set": name, "reader": reader, "files": n, "mb": round(mb, 3),
             "files_per_s": round(n / s, 2), "mb_per_s": round(mb / s, 2),
             "mpix_per_s": round(mp / s, 2)}
            for name, reader, n, mb, mp, s in rows
        ]  # fmt: skip
        args.json.write_text(json.dumps(
            {"openimageio": oiio.__version__, "rounds": args.rounds,
             "oiiotool": str(binary) if binary else None, "rows": out}, indent=1
        ))  # fmt: skip


if __name__ == "__main__":
    main()
