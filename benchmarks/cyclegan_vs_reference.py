"""Benchmark: diptych's CycleGAN against the reference pytorch-CycleGAN-and-pix2pix's, side by side on this machine.

The reference checkout is the one vs_reference.py uses (upstream commit 2a7afba, in the git-ignored
.reference/ folder; see that script's docstring):

    python benchmarks/cyclegan_vs_reference.py --reference .reference/pytorch-CycleGAN-and-pix2pix

Measured at the reference's default cycle_gan settings (resnet_9blocks, instance norm, no dropout, 70x70
PatchGAN per domain, LSGAN, image pools of 50, lambda_A = lambda_B = 10, identity 0.5, Adam 2e-4/0.5,
batch 1, 256x256) against diptych's cyclegan recipe at its defaults: the mean wall and CPU time of a training
step after warm-up steps, and peak RSS, each framework in its own process; diptych in its default precision (auto: bf16
autocast on CPUs with native bf16) and in fp32. Both see the same two unpaired domains of real photographs
(crops of the astronaut photo as A, of the coffee photo as B).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from vs_reference import (
    SIZE,
    diptych_recipe,
    peak_rss_mib,
    photo_crops,
    print_table,
    reference_options,
    side_by_side,
    timed_steps,
)


def unpaired_batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One crop of each domain: A from the astronaut photo, B from the coffee photo."""
    return photo_crops("astronaut", 1, size=size), photo_crops("coffee", 1, seed=1, size=size)


def reference_cyclegan(reference: Path, workdir: Path, ngf: int) -> object:
    """The reference's CycleGANModel at its defaults (`ngf` for both nets' width), built from its own code."""
    sys.path.insert(0, str(reference))
    from models.cycle_gan_model import CycleGANModel  # the reference's code, from its checkout

    opt = reference_options(
        workdir, model="cycle_gan", netG="resnet_9blocks", norm="instance", no_dropout=True, gan_mode="lsgan",
        pool_size=50, lambda_A=10.0, lambda_B=10.0, lambda_identity=0.5, ngf=ngf, ndf=ngf,
    )  # fmt: skip
    model = CycleGANModel(opt)
    for net in (model.netG_A, model.netG_B, model.netD_A, model.netD_B):
        net.train()
    return model


def diptych_cyclegan(precision: str, ngf: int) -> object:
    """diptych's cyclegan recipe at its defaults (`ngf` for both nets' width) for 3-channel domains."""
    from diptych.config import RunConfig

    cfg = RunConfig().use_recipe("cyclegan")
    cfg.generator.in_channels = cfg.generator.out_channels = 3
    cfg.generator.ngf = cfg.discriminator.ndf = ngf
    return diptych_recipe(cfg, precision)


def run(framework: str, reference: Path, steps: int, warmup: int, precision: str, size: int, ngf: int) -> dict:
    """Time CycleGAN training steps for one framework in this process."""
    torch.manual_seed(0)
    a, b = unpaired_batch(size)
    with tempfile.TemporaryDirectory() as tmp:
        if framework == "reference":
            model = reference_cyclegan(reference, Path(tmp), ngf)

            def step() -> None:
                model.set_input({"A": a, "B": b, "A_paths": ["a"], "B_paths": ["b"]})  # type: ignore[attr-defined]
                model.optimize_parameters()  # type: ignore[attr-defined]

        else:
            recipe = diptych_cyclegan(precision, ngf)

            def step() -> None:
                recipe.train_step({"A": a, "B": b})  # type: ignore[attr-defined]

        wall_s, cpu_s = timed_steps(step, steps, warmup)
    return {"train_step_s": wall_s, "train_step_cpu_s": cpu_s, "peak_rss_mib": peak_rss_mib()}


def profile(steps: int, warmup: int, precision: str, size: int, ngf: int) -> None:
    """Print where diptych's step spends its time: per operator, the sum over its input shapes of calls x the
    shortest such call's self CPU time.

    The shortest of the many calls of an operator on the same shapes is the one least disturbed by other
    processes, so this estimate holds on a busy machine where mean times do not (run it with --threads 1)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    a, b = unpaired_batch(size)
    recipe = diptych_cyclegan(precision, ngf)
    for _ in range(warmup):
        recipe.train_step({"A": a, "B": b})
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            recipe.train_step({"A": a, "B": b})
    times: dict[tuple[str, str], list[float]] = {}
    for event in prof.events():
        times.setdefault((event.name, str(event.input_shapes)), []).append(event.self_cpu_time_total / 1e3)
    estimate: dict[str, float] = {}
    for (name, _), ms in times.items():
        estimate[name] = estimate.get(name, 0.0) + min(ms) * len(ms) / steps
    total = sum(estimate.values())
    print(f"diptych {precision} step, {size}x{size}: about {total:.0f} ms undisturbed")
    for name, ms in sorted(estimate.items(), key=lambda kv: -kv[1])[:20]:
        print(f"{ms:9.1f} ms {100 * ms / total:5.1f}%  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, default=Path(".reference/pytorch-CycleGAN-and-pix2pix"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, default=SIZE, help="crop side (default: the reference's 256)")
    parser.add_argument("--ngf", type=int, default=64, help="generator and discriminator width (default: 64)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in each process (default: torch's)")
    parser.add_argument("--profile", action="store_true", help="profile diptych's step (per operator) instead")
    parser.add_argument("--only", choices=("reference", "diptych"), help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile:
        profile(args.steps, args.warmup, args.precision, args.size, args.ngf)
        return
    if args.only:
        figures = run(args.only, args.reference.resolve(), args.steps, args.warmup, args.precision, args.size, args.ngf)
        print(json.dumps(figures))
        return
    if not (args.reference / "models" / "cycle_gan_model.py").is_file():
        sys.exit(f"{args.reference}: no reference checkout there; see vs_reference.py's docstring")
    extra = ("--size", str(args.size), "--ngf", str(args.ngf), "--threads", str(args.threads))
    results = side_by_side(Path(__file__), args.reference, args.steps, args.warmup, extra)
    threads = f", {args.threads} thread(s)" if args.threads else ""
    print(f"\nCycleGAN, {args.size}x{args.size}, batch 1, ngf {args.ngf}{threads}: ", end="")
    print(f"mean of {args.steps} steps after {args.warmup}")
    print_table(results, (("train_step_s", "training step (s)"), ("train_step_cpu_s", "training step, CPU time (s)")))


if __name__ == "__main__":
    main()
