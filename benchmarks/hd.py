"""Benchmark: pix2pixHD-class models on this machine (issue 4).

- inference of the global + local generator (ngf 32, one local enhancer, 4 global downsamplings,
  9 + 3 residual blocks, instance norm) on a 2048x1024 image: seconds and peak RSS;
- one training step of the pix2pixhd recipe (that generator, 2 discriminators, LSGAN + feature
  matching) on 512x512 crops, batch 1: seconds per step and peak RSS;
each in fp32 and bf16 autocast, the training step also with gradient checkpointing. Every variant runs in
a fresh process so its peak RSS is its own.

    python benchmarks/hd.py            # a few minutes on 2 cores
    python benchmarks/hd.py --quick    # tiny sizes, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
from machine import cpu_model


def hd_config(quick: bool) -> object:
    from diptych.config import RunConfig

    cfg = RunConfig().use_recipe("pix2pixhd")
    cfg.generator.in_channels = cfg.generator.out_channels = 3
    if quick:
        cfg.generator.ngf, cfg.generator.n_blocks_global, cfg.discriminator.ndf = 4, 2, 8
    return cfg


def infer(quick: bool, precision: str) -> dict[str, float]:
    """The generator as `diptych translate` runs it: a Translator's own copy (channels-last, inference rewrites)."""
    from diptych.nets import create_generator
    from diptych.translate import Translator

    cfg = hd_config(quick)
    cfg.data.sample_type = "uint8"
    generator = create_generator(cfg.generator)
    params = sum(p.numel() for p in generator.parameters()) / 1e6
    translator = Translator(generator, cfg, torch.device("cpu"), "eval", precision=precision, optimize=True)
    h, w = (128, 256) if quick else (1024, 2048)
    x = torch.rand(1, 3, h, w) * 2 - 1
    translator.translate_tensor(x)  # warm-up: one-off kernel set-up
    start = time.perf_counter()
    translator.translate_tensor(x)
    return {"seconds": time.perf_counter() - start, "params_m": params}


def train_step(quick: bool, precision: str, checkpointing: bool) -> dict[str, float]:
    from diptych.precision import use_precision
    from diptych.recipes import create_recipe

    cfg = hd_config(quick)
    recipe = create_recipe(cfg, torch.device("cpu"))
    for module in recipe.networks.values():
        use_precision(module, precision, torch.device("cpu"))
    recipe.networks["generator"].checkpointing = checkpointing
    side = 64 if quick else 512
    batch = {"A": torch.rand(1, 3, side, side) * 2 - 1, "B": torch.rand(1, 3, side, side) * 2 - 1}
    recipe.train_step(batch)  # warm-up
    times = []
    for _ in range(2):
        start = time.perf_counter()
        recipe.train_step(batch)
        times.append(time.perf_counter() - start)
    return {"seconds": min(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "PRECISION", "CHECKPOINTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, precision, ckpt = args.child
        result = infer(args.quick, precision) if kind == "infer" else train_step(args.quick, precision, ckpt == "1")
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    size = "256x128" if args.quick else "2048x1024"
    crop = "64x64" if args.quick else "512x512"
    rows = []
    variants = [("infer", p, "0") for p in ("fp32", "bf16")] + [
        ("train", p, c) for p in ("fp32", "bf16") for c in ("0", "1")
    ]
    for kind, precision, ckpt in variants:
        cmd = [sys.executable, __file__, "--child", kind, precision, ckpt] + (["--quick"] if args.quick else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
        r = json.loads(out)
        what = (
            f"G inference {size}"
            if kind == "infer"
            else f"train step {crop}" + (", grad checkpointing" if ckpt == "1" else "")
        )
        rows.append((what, precision, r["seconds"], r["peak_rss_mib"]))
        print(f"  {what}, {precision}: {r['seconds']:.2f} s, peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
    print("\n| what | precision | seconds | peak RSS (MiB) |\n|---|---|---|---|")
    for what, precision, sec, rss in rows:
        print(f"| {what} | {precision} | {sec:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
