"""Benchmark: does the fast default (precision auto = bf16 autocast here, fused Adam) train as well as fp32?

Trains the reference's default pix2pix (unet_256, 70x70 PatchGAN, batch norm, vanilla GAN, lambda 100,
batch 1, 286 -> 256 crops with flips) on real-photo colourisation pairs (benchmarks/photo_pairs.py: 6 training
photos, 2 held-out photos) for the same number of steps in fp32 and in the default precision, with two
seeds each, and scores every run on the held-out crops in fp32 (L1 on the [0, 1] scale, PSNR, SSIM).
"Within noise" means: the gap between the precisions' means is no larger than the spread between seeds.

    python benchmarks/precision_quality.py                 # about 15 minutes on 2 idle cores
    python benchmarks/precision_quality.py --quick         # tiny networks and data, a smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_model
from photo_pairs import HELD_OUT_SOURCES, TRAIN_SOURCES, crops, write_folders


def run(data: Path, test: Path, work: Path, precision: str, seed: int, steps: int, quick: bool) -> dict[str, float]:
    from diptych import RunConfig, train
    from diptych.evaluate import evaluate

    cfg = RunConfig()
    cfg.data.root = str(data)
    cfg.data.workers = 0
    cfg.train.max_steps, cfg.train.seed, cfg.train.precision = steps, seed, precision
    cfg.train.save_every, cfg.train.log_every = steps, 50
    if quick:
        cfg.generator.depth, cfg.generator.ngf, cfg.discriminator.ndf = 5, 8, 8
        cfg.data.load_size, cfg.data.crop_size = 72, 64
    run_dir = work / f"{precision}_{seed}"
    start = time.perf_counter()
    result = train(cfg, run_dir, progress=False)
    seconds = time.perf_counter() - start
    ev = evaluate(result.checkpoint, test, run_dir / "eval", phase=".", metrics=["l1", "psnr", "ssim"], progress=False)
    scores = {m: float(v["mean"]) for m, v in ev.summary["metrics"].items()}
    return {"precision": precision, "seed": seed, "train_s": round(seconds, 1), **scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    size = 64 if args.quick else 286
    steps = 6 if args.quick else args.steps
    from diptych.precision import resolve_precision

    default = resolve_precision("auto", torch.device("cpu"))
    print(f"machine: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}; auto = {default}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = write_folders(work / "data", crops(TRAIN_SOURCES, 8 if args.quick else 240, size, seed=0))
        test = write_folders(work / "test", crops(HELD_OUT_SOURCES, 4 if args.quick else 24, 256, seed=1))
        for precision in ("fp32", "auto"):
            for seed in args.seeds:
                row = run(data, test, work, precision, seed, steps, args.quick)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| precision | seeds | steps | L1 (mean, per seed) | PSNR | SSIM | train s/step |")
    print("|---|---|---|---|---|---|---|")
    for precision in ("fp32", "auto"):
        rs = [r for r in rows if r["precision"] == precision]
        l1 = [r["l1"] for r in rs]
        label = precision if precision == "fp32" else f"auto ({default})"
        print(
            f"| {label} | {len(rs)} | {steps} | {statistics.mean(l1):.4f} ({', '.join(f'{v:.4f}' for v in l1)}) "
            f"| {statistics.mean(r['psnr'] for r in rs):.2f} | {statistics.mean(r['ssim'] for r in rs):.3f} "
            f"| {statistics.mean(r['train_s'] for r in rs) / steps:.3f} |"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
