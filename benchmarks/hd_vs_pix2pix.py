"""Benchmark: the pix2pixHD recipe against plain pix2pix on real paired data, at the same training budget.

Data: colourisation pairs from scikit-image's bundled photos (benchmarks/photo_pairs.py): random 512x512 crops
of six photos for training, crops of two other photos held out. Each recipe runs with its own defaults
(pix2pix: unet_256, 70x70 PatchGAN, vanilla GAN + 100 x L1; pix2pixhd: global generator + one local enhancer,
two multi-scale discriminators, LSGAN + feature matching), 512 crops, batch 1, precision auto, for the same
wall-clock budget: each recipe's step time is measured first and its step count set to fill the budget.
Both are scored on the held-out crops at full size (fp32): L1 on [0, 1], PSNR, SSIM.

    python benchmarks/hd_vs_pix2pix.py --minutes 6      # about 13 minutes on 2 cores
    python benchmarks/hd_vs_pix2pix.py --quick          # tiny networks, a smoke test
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_model
from photo_pairs import HELD_OUT_SOURCES, TRAIN_SOURCES, crops, write_folders


def config(recipe: str, data: Path, size: int, quick: bool) -> object:
    from diptych.config import RunConfig

    cfg = RunConfig().use_recipe(recipe)
    cfg.data.root, cfg.data.workers = str(data), 0
    cfg.data.preprocess, cfg.data.crop_size, cfg.data.load_size = "crop", size, size
    cfg.train.log_every = 20
    if quick:
        cfg.generator.ngf, cfg.discriminator.ndf = 8, 8
        if recipe == "pix2pix":
            cfg.generator.depth = 5
        else:
            cfg.generator.n_blocks_global, cfg.generator.n_down_global = 2, 2
    return cfg


def steps_for(cfg: object, data_dir: Path, work: Path, budget_s: float) -> tuple[int, float]:
    """Time a few steps of this configuration (after warm-up) and return the steps that fill the budget."""
    import copy

    from diptych.train import Trainer

    probe = copy.deepcopy(cfg)
    probe.train.max_steps, probe.train.save_every, probe.train.log_every = 8, 1000, 1
    trainer = Trainer(probe, work, progress=False)
    trainer.fit()
    times = [r["time_s"] for r in map(json.loads, (work / "log.jsonl").read_text().splitlines()) if "time_s" in r]
    per_step = (times[-1] - times[3]) / (len(times) - 4)  # steps 5-8: after the warm-up of kernels and caches
    return max(1, int(budget_s / per_step)), per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=6.0, help="training budget per recipe")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from diptych import train
    from diptych.evaluate import evaluate

    size = 64 if args.quick else 512
    budget = 20.0 if args.quick else args.minutes * 60
    print(
        f"machine: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}; budget {budget:.0f} s"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = write_folders(work / "data", crops(TRAIN_SOURCES, 12 if args.quick else 120, size, seed=0, short=size))
        test = write_folders(work / "test", crops(HELD_OUT_SOURCES, 4 if args.quick else 12, size, seed=1, short=size))
        for recipe in ("pix2pix", "pix2pixhd"):
            cfg = config(recipe, data, size, args.quick)
            steps, per_step = steps_for(cfg, data, work / f"probe_{recipe}", budget)
            cfg.train.max_steps, cfg.train.save_every = steps, steps
            start = time.perf_counter()
            result = train(cfg, work / recipe, progress=False)
            seconds = time.perf_counter() - start
            ev = evaluate(
                result.checkpoint,
                test,
                work / f"eval_{recipe}",
                phase=".",
                metrics=["l1", "psnr", "ssim"],
                progress=False,
            )
            scores = {m: round(float(v["mean"]), 4) for m, v in ev.summary["metrics"].items()}
            rows.append(
                {
                    "recipe": recipe,
                    "steps": steps,
                    "s_per_step": round(per_step, 3),
                    "train_s": round(seconds, 1),
                    **scores,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    print("\n| recipe | steps | s/step | train s | held-out L1 | PSNR (dB) | SSIM |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['recipe']} | {r['steps']} | {r['s_per_step']} | {r['train_s']} | {r['l1']} | {r['psnr']} | {r['ssim']} |"
        )


if __name__ == "__main__":
    main()
