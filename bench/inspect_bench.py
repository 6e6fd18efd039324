"""Inspection throughput: exrwatchd (header + completeness + embeddings) vs OpenImageIO.

    python bench/inspect_bench.py [--files 2000] [--rounds 5] [--corpus DIR] [--json PATH]

Both readers run in this process, one thread, warm page cache, on the same files:
- 2,000 generated small files (scanline/tiled/multipart/deep mix, 8-24 channels, typical
  render attributes), written once into a temp dir;
- the reference corpus (when found).
OpenImageIO's walk is what a header-only tool must do to see everything: open, every
subimage and mip level, the spec and every extra attribute. Files OpenImageIO refuses
(sub-sampled channels) are counted as it handles them: open fails fast.
Prints files/s for each, the ratio, and a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import OpenEXR
import OpenImageIO as oiio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exrwatchd.exr import inspect_path
from exrwatchd.exr.embed import channel_fingerprint, metadata_embedding


def _attrs(i: int) -> dict:
    return {
        "owner": "studio",
        "comments": f"shot {i // 100} frame {i}",
        "capDate": "2026:11:26 12:00:00",
        "software": "renderer 7.1",
        "framesPerSecond": 24.0,
        "timeCode": OpenEXR.TimeCode(1, 2, 3, i % 24, *[0] * 14),
        "worldToCamera": np.eye(4, dtype="f"),
        "worldToNDC": np.eye(4, dtype="f"),
        "screenWindowWidth": 1.0,
        "pixelAspectRatio": 1.0,
    }


def generate(dst: Path, count: int) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    paths = []
    layers = ["", "diffuse.", "specular.", "normal.", "depth.", "crypto00.", "emission."]
    for i in range(count):
        path = dst / f"shot_{i % 20:03d}.{i:05d}.exr"
        paths.append(path)
        if path.exists():
            continue
        n_layers = 1 + i % len(layers)
        channels = {
            f"{layer}{c}": np.zeros((16, 16), "e") for layer in layers[:n_layers] for c in "RGBA"
        }
        header = {
            "compression": [
                OpenEXR.ZIP_COMPRESSION,
                OpenEXR.PIZ_COMPRESSION,
                OpenEXR.DWAA_COMPRESSION,
            ][i % 3]
        }
        header.update(_attrs(i))
        if i % 5 == 0:
            header["type"] = OpenEXR.tiledimage
            tiles = OpenEXR.TileDescription()
            tiles.xSize = tiles.ySize = 16
            header["tiles"] = tiles
        with OpenEXR.File(header, channels) as f:
            f.write(str(path))
    return paths


def ours(paths: list[Path]) -> None:
    for path in paths:
        result = inspect_path(str(path))
        if result.error is None:
            metadata_embedding(result.parts)
            channel_fingerprint(result.parts)


def oiio_walk(paths: list[Path]) -> None:
    for path in paths:
        inp = oiio.ImageInput.open(str(path))
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


def best_rate(fn, paths: list[Path], rounds: int) -> float:
    fn(paths)  # warm caches (page cache, our lru caches, OIIO's plugin load)
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        fn(paths)
        best = max(best, len(paths) / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--corpus",
        default=os.environ.get(
            "EXRWATCHD_CORPUS",
            str(Path(__file__).resolve().parents[2] / "shared/corpus/openexr-images"),
        ),
    )
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "exrwatchd-bench-inspect"))
    ap.add_argument("--json", type=Path, help="also write the numbers here (for bench/run_all)")
    args = ap.parse_args()
    sets = {"generated small files": generate(Path(args.dir), args.files)}
    corpus = Path(args.corpus)
    if corpus.is_dir():
        sets["reference corpus"] = sorted(
            p for p in corpus.rglob("*.exr") if "Damaged" not in p.parts
        )
    rows = []
    for name, paths in sets.items():
        a = best_rate(ours, paths, args.rounds)
        b = best_rate(oiio_walk, paths, args.rounds)
        rows.append((name, len(paths), a, b))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}, OpenImageIO {oiio.__version__}"
    )
    print("| files | count | exrwatchd files/s | OpenImageIO walk files/s | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, n, a, b in rows:
        print(f"| {name} | {n} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x |")
    if args.json:
        sets_out = [
            {"name": name, "files": n, "exrwatchd_files_per_s": round(a, 1),
             "oiio_files_per_s": round(b, 1), "ratio": round(a / b, 4)}
            for name, n, a, b in rows
        ]  # fmt: skip
        args.json.write_text(json.dumps(
            {"openimageio": oiio.__version__, "rounds": args.rounds, "sets": sets_out}, indent=1
        ))  # fmt: skip


if __name__ == "__main__":
    main()
