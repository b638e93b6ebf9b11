"""Benchmark: super-resolution training throughput on this machine (issue 14's "training-throughput figure per
generator"): optimisation steps per second of each recipe and generator family at the recipe's default crop and
batch (x4, `--lr-crop 32` / 64, batch 16 / 12), fp32 and bf16, on crops of a real photo made into HR images.

The GAN recipes are timed without the perceptual loss (it needs VGG19 weights, which are never downloaded), so
they show the generator + discriminator cost; the VGG19 forward on the HR crops adds to it.

    python benchmarks/sr_training.py --threads 2
    python benchmarks/sr_training.py --quick        # tiny networks and crops, one timed step: a smoke run
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_model

# recipe, generator family (its standard configuration), as trained by default.
RUNS = (
    ("sr", "msrresnet", {"n_blocks": 16}),
    ("sr", "rrdbnet", {"n_blocks": 23}),
    ("sr", "compact", {"n_convs": 16}),
    ("esrgan", "rrdbnet", {"n_blocks": 23}),
    ("realesrgan", "rrdbnet", {"n_blocks": 23}),
)
PRECISIONS = ("fp32", "bf16")


def write_hr_images(folder: Path, side: int) -> Path:
    """Four side x side crops of a bundled real photo, as the HR training images."""
    from diptych.data.io import write_image
    from diptych.data.samples import sample_photo

    photo = sample_photo("astronaut")
    for i, (y, x) in enumerate(((0, 0), (0, 256), (256, 0), (256, 256))):
        write_image(folder / f"hr_{i}.png", photo[y : y + side, x : x + side])
    return folder


def steps_per_second(
    hr: Path, run: Path, recipe: str, arch: str, fields: dict, precision: str, steps: int, quick: bool
) -> tuple[float, int, int]:
    """Steps per second after one warm-up step of a fresh run (its default crop and batch); the crop and batch."""
    from diptych.config import RunConfig
    from diptych.train import Trainer

    config = RunConfig().use_recipe(recipe)
    g = config.use_generator(arch) if config.generator.arch != arch else config.generator
    for name, value in ({"n_blocks": 1, "n_convs": 2, "ngf": 8} if quick else fields).items():
        if hasattr(g, name):
            setattr(g, name, value)
    if recipe != "sr":
        config.method.lambda_perceptual = 0.0
    if quick:
        config.method.lr_crop, config.data.batch_size, config.discriminator.ndf = 16, 2, 8
    config.data.root, config.data.workers = str(hr), 0
    config.train.precision, config.train.max_steps, config.train.save_every = precision, steps + 1, 10**6
    trainer = Trainer(config, run, progress=False)
    times: list[float] = []
    original = trainer.recipe.train_step

    def timed(batch: dict) -> dict:
        start = time.perf_counter()
        losses = original(batch)
        times.append(time.perf_counter() - start)
        return losses

    trainer.recipe.train_step = timed  # type: ignore[method-assign]
    trainer.fit()
    return len(times[1:]) / sum(times[1:]), config.method.lr_crop, config.data.batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per run (after one warm-up step)")
    parser.add_argument("--quick", action="store_true", help="tiny networks and crops, one timed step")
    parser.add_argument("--only", nargs="+", metavar="RECIPE:ARCH", help="time these runs only, e.g. sr:rrdbnet")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = 1 if args.quick else args.steps
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {args.threads} threads")
    print(f"load average before: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print("\n| recipe | generator (x4) | LR crop, batch | fp32 steps/s | bf16 steps/s |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        hr = write_hr_images(Path(tmp) / "hr", 256)
        for k, (recipe, arch, fields) in enumerate(RUNS):
            if args.only and f"{recipe}:{arch}" not in args.only:
                continue
            rates = []
            for precision in PRECISIONS:
                run = Path(tmp) / f"run_{k}_{precision}"
                rate, crop, batch = steps_per_second(hr, run, recipe, arch, fields, precision, steps, args.quick)
                rates.append(rate)
            shown = "tiny" if args.quick else ", ".join(f"{key} {v}" for key, v in fields.items())
            name = f"{arch} ({shown})"
            print(f"| {recipe} | {name} | {crop}, {batch} | {rates[0]:.3g} | {rates[1]:.3g} |", flush=True)
    print(f"\nload average after: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
