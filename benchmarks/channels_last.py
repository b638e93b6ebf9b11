"""Benchmark: a pix2pix-plus training step with NCHW against channels-last weights and images, side by side.

diptych trains the pix2pix family channels-last in bf16 on CPUs with AMX only (recipes/pix2pix.py). This measures
both layouts on this CPU, whatever it has, by deciding the check for each run, so the rule can be re-checked on
another machine (an AMD Zen 4 without AMX was slower channels-last at 256 px, batch 1: BENCHMARKS.md).

Each case (crop size, batch, input channels) times both layouts in turns, `--rounds` times, in this one process:
CPU seconds per step (one torch thread, so a busy machine stretches wall time, hardly CPU time), after warm-up
steps; the median of the rounds. One-channel inputs are colourisation's (grey -> RGB): a 1-channel image is
contiguous in both layouts, so only channels-last weights put the convolutions in that layout.

    python benchmarks/channels_last.py                    # 64 and 256 px, batch 1 and 4 (~10 min on 2 cores)
    python benchmarks/channels_last.py --cases 256x4x1 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
from unittest import mock

import torch
from machine import cpu_model
from vs_reference import diptych_recipe, timed_steps

DEFAULT_CASES = "64x4x1,64x1x1,256x4x1,256x1x1,256x4x3"
LAYOUTS = {"NCHW": False, "channels-last": True}


def step_seconds(size: int, batch: int, in_channels: int, channels_last: bool, steps: int, warmup: int) -> float:
    """CPU seconds per pix2pix-plus step (U-Net as deep as the crop allows, bf16) in the layout given."""
    from diptych.config import RunConfig

    cfg = RunConfig().use_recipe("pix2pix-plus")
    cfg.generator.in_channels, cfg.generator.out_channels = in_channels, 3
    cfg.generator.depth = max(3, size.bit_length() - 1)
    torch.manual_seed(0)
    with mock.patch("diptych.recipes.pix2pix.cpu_has_amx", lambda: channels_last):
        recipe = diptych_recipe(cfg, "bf16")
    assert recipe.memory_format == (torch.channels_last if channels_last else torch.contiguous_format)
    a = torch.rand(batch, in_channels, size, size) * 2 - 1
    b = torch.rand(batch, 3, size, size) * 2 - 1
    return timed_steps(lambda: recipe.train_step({"A": a, "B": b}), steps, warmup)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=DEFAULT_CASES, help="SIZExBATCHxINPUT_CHANNELS, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="turns of both layouts per case (median reported)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per turn")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per turn")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {cpu_model()}, 1 thread, bf16, torch {torch.__version__}")
    print("CPU seconds per pix2pix-plus step, median of the rounds")
    print("\n| crop | batch | input channels | NCHW | channels-last | speed-up |\n|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        size, batch, channels = map(int, case.split("x"))
        times: dict[str, list[float]] = {name: [] for name in LAYOUTS}
        for _ in range(args.rounds):
            for name, last in LAYOUTS.items():
                times[name].append(step_seconds(size, batch, channels, last, args.steps, args.warmup))
        nchw, last = (statistics.median(times[name]) for name in LAYOUTS)
        print(f"| {size} | {batch} | {channels} | {nchw:.3f} | {last:.3f} | {nchw / last:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
