"""Benchmark: tiled translation of a large label map (one-hot classes) through a unet_256 on this machine.

A label map of N classes becomes N input channels. Tiled translation encodes each tile on its own, so the
one-hot input never exists at band size; this prints the time and peak RSS of one run (a fresh process).

    python benchmarks/tiled_labels.py                          # 8192x8192, 35 classes, 1024 px tiles
    python benchmarks/tiled_labels.py --size 1024 --ngf 8      # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from machine import cpu_model
from untrained import save_untrained


def make_checkpoint(folder: Path, classes: int, ngf: int) -> Path:
    """A unet_256 for `classes`-class label maps with pix2pix's initialisation (timing needs no training)."""
    from diptych.config import RunConfig

    config = RunConfig()
    config.data.label_nc = config.generator.in_channels = classes
    config.generator.out_channels, config.generator.ngf = 3, ngf
    config.data.sample_type = "uint8"
    return save_untrained(folder, config)


def make_labels(path: Path, size: int, classes: int) -> Path:
    """An uncompressed size x size uint8 label map of diagonal class stripes, written by rows (little RAM)."""
    labels = tifffile.memmap(path, shape=(size, size), dtype=np.uint8)
    rows = 512
    yy, xx = np.mgrid[0:rows, 0:size]
    for y in range(0, size, rows):
        n = min(rows, size - y)
        labels[y : y + n] = ((xx[:n] // 300 + (yy[:n] + y) // 300) % classes).astype(np.uint8)
    labels.flush()
    del labels
    return path


def run_one(checkpoint: Path, image: Path, tile: int, overlap: int, threads: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    from diptych import Translator

    translator = Translator.load(checkpoint, device="cpu", precision="auto")
    settings = translator.tile_settings(tile, overlap, None)
    start = time.perf_counter()
    translator.translate_file_tiled(image, image.with_name("out.tif"), settings)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--classes", type=int, default=35)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", nargs=2, metavar=("CHECKPOINT", "IMAGE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = run_one(Path(args.child[0]), Path(args.child[1]), args.tile, args.overlap, args.threads)
        print(json.dumps(result))
        return
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {args.threads} threads")
    print(f"unet_256 (ngf {args.ngf}), {args.classes}-class label map {args.size}x{args.size}, tile {args.tile}")
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = make_checkpoint(Path(tmp) / "ckpt", args.classes, args.ngf)
        image = make_labels(Path(tmp) / "labels.tif", args.size, args.classes)
        cmd = [sys.executable, __file__, "--child", str(checkpoint), str(image)]
        cmd += ["--tile", str(args.tile), "--overlap", str(args.overlap), "--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
        result = json.loads(out)
    mp = args.size * args.size / 1e6
    print(
        f"{result['seconds']:.1f} s ({result['seconds'] / mp:.2f} s/MP), peak RSS {result['peak_rss_mib']:.0f} MiB; "
        f"a band of one-hot input would be {args.classes * args.tile * args.size * 4 / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
