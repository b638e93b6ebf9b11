"""Benchmark: diptych against the reference pytorch-CycleGAN-and-pix2pix, side by side on this machine.

The reference is junyanz/pytorch-CycleGAN-and-pix2pix at upstream commit 2a7afba (the fork
premsuggu/pytorch-CycleGAN-and-pix2pix holds it unchanged). Check it out into a git-ignored folder; it is
never committed:

    git clone <fork> .reference/pytorch-CycleGAN-and-pix2pix      # or: fetch it with the project's tools
    python benchmarks/vs_reference.py --reference .reference/pytorch-CycleGAN-and-pix2pix

Measured at the reference's default pix2pix settings (unet_256, 70x70 PatchGAN, batch norm, vanilla GAN,
lambda 100, Adam 2e-4/0.5, batch 1, 256x256): the mean time of a training step (after warm-up steps) and
of generator inference at batch 1 and 8, each framework in its own process (so each peak RSS is its own);
diptych with its default precision (auto: bf16 autocast on CPUs with native bf16) and with fp32.
The reference's model code needs only torch; its options are given as a namespace. The reference's own
`train.py` and `test.py`, end to end, are compared in vs_reference_cli.py.
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
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from machine import cpu_model

SIZE = 256


def photo_crops(name: str, batch: int, seed: int = 0, size: int = SIZE) -> torch.Tensor:
    """`batch` random size x size crops of one installed photo, in [-1, 1]."""
    from diptych.data.io import to_tensor
    from diptych.data.samples import sample_photo

    photo = sample_photo(name)
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(batch):
        y, x = (int(v) for v in rng.integers(0, min(photo.shape[:2]) - size, 2))
        crops.append(to_tensor(np.ascontiguousarray(photo[y : y + size, x : x + size])))
    return torch.stack(crops)


def photo_batch(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Real-photo crops (A) and their colour inversions (B) in [-1, 1], so both models see real statistics."""
    a = photo_crops("astronaut", batch, seed)
    return a, -a


def reference_options(workdir: Path, **changes: Any) -> SimpleNamespace:
    """The reference's training options at its defaults for pix2pix, with `changes` (another model's defaults)."""
    opt = SimpleNamespace(
        isTrain=True, checkpoints_dir=str(workdir), name="bench", device=torch.device("cpu"), gpu_ids=[],
        preprocess="resize_and_crop", input_nc=3, output_nc=3, ngf=64, ndf=64, netG="unet_256", netD="basic",
        n_layers_D=3, norm="batch", no_dropout=False, init_type="normal", init_gain=0.02, gan_mode="vanilla",
        lr=2e-4, beta1=0.5, lambda_L1=100.0, direction="AtoB", lr_policy="linear", n_epochs=100,
        n_epochs_decay=100, epoch_count=1, continue_train=False, load_iter=0, epoch="latest", verbose=False,
        model="pix2pix", pool_size=0, lr_decay_iters=50, isTrain_phase="train",
    )  # fmt: skip
    vars(opt).update(changes)
    return opt


def reference_model(reference: Path, workdir: Path) -> object:
    """The reference's Pix2PixModel at its defaults, built from its own code."""
    sys.path.insert(0, str(reference))
    from models.pix2pix_model import Pix2PixModel  # the reference's code, from its checkout

    opt = reference_options(workdir)
    model = Pix2PixModel(opt)
    model.netG.train()
    model.netD.train()
    return model


def diptych_recipe(cfg: Any, precision: str) -> Any:
    """diptych's recipe for `cfg` on the CPU, its networks in `precision` as the trainer sets them."""
    from diptych.allocator import retain_freed_memory
    from diptych.precision import resolve_precision, use_precision
    from diptych.recipes import create_recipe

    retain_freed_memory()  # as the trainer does when training starts
    cpu = torch.device("cpu")
    cfg.train.precision = precision
    recipe = create_recipe(cfg, cpu)
    for net in recipe.networks.values():  # as the trainer does
        use_precision(net, resolve_precision(precision, cpu), cpu)
    return recipe


def mean_step_s(step: Callable[[], None], steps: int, warmup: int) -> float:
    """Mean seconds of `steps` calls of `step` after `warmup` untimed ones."""
    return timed_steps(step, steps, warmup)[0]


def timed_steps(step: Callable[[], None], steps: int, warmup: int) -> tuple[float, float]:
    """Mean wall and CPU (this process, all threads) seconds of `steps` calls of `step` after `warmup` untimed ones.

    With one thread, CPU time is what the step costs with a core to itself: other processes on a busy machine
    stretch the wall time, hardly the CPU time."""
    for _ in range(warmup):
        step()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(framework: str, reference: Path | None, steps: int, warmup: int, precision: str = "auto") -> dict[str, float]:
    """Time training steps and inference for one framework in this process."""
    torch.manual_seed(0)
    a, b = photo_batch(1)
    with tempfile.TemporaryDirectory() as tmp:
        if framework == "reference":
            model = reference_model(reference, Path(tmp))  # type: ignore[arg-type]

            def step() -> None:
                model.set_input({"A": a, "B": b, "A_paths": ["x"], "B_paths": ["x"]})  # type: ignore[attr-defined]
                model.optimize_parameters()  # type: ignore[attr-defined]

            generator = model.netG  # type: ignore[attr-defined]
        else:
            from diptych.config import RunConfig

            cfg = RunConfig()
            cfg.generator.in_channels = cfg.generator.out_channels = 3
            recipe = diptych_recipe(cfg, precision)

            def step() -> None:
                recipe.train_step({"A": a, "B": b})

            generator = recipe.networks["generator"]
        train_s = mean_step_s(step, steps, warmup)
        generator.eval()
        out: dict[str, float] = {"train_step_s": train_s}
        with torch.no_grad():
            for batch in (1, 8):
                x, _ = photo_batch(batch, seed=batch)
                generator(x)
                times = []
                for _ in range(5):
                    start = time.perf_counter()
                    generator(x)
                    times.append(time.perf_counter() - start)
                out[f"infer_b{batch}_ms_per_image"] = min(times) / batch * 1000  # best of 5: least disturbed
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, default=Path(".reference/pytorch-CycleGAN-and-pix2pix"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--only", choices=("reference", "diptych"), help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(run(args.only, args.reference.resolve(), args.steps, args.warmup, args.precision)))
        return
    if not (args.reference / "models" / "pix2pix_model.py").is_file():
        sys.exit(f"{args.reference}: no reference checkout there; see this script's docstring")
    results = side_by_side(Path(__file__), args.reference, args.steps, args.warmup)
    print_table(
        results,
        (
            ("train_step_s", "training step (s)"),
            ("infer_b1_ms_per_image", "G inference, batch 1 (ms/image)"),
            ("infer_b8_ms_per_image", "G inference, batch 8 (ms/image)"),
        ),
    )


def side_by_side(
    script: Path, reference: Path, steps: int, warmup: int, extra: tuple[str, ...] = ()
) -> dict[str, dict[str, float]]:
    """Print the machine, then run `script --only ... *extra` for the reference, diptych auto and diptych fp32,
    each in a fresh process (so each peak RSS is its own); return each one's figures by name."""
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    results = {}
    for name, framework, precision in (
        ("reference", "reference", "fp32"),
        ("diptych (default: auto)", "diptych", "auto"),
        ("diptych fp32", "diptych", "fp32"),
    ):
        cmd = [sys.executable, str(script), "--only", framework, "--reference", str(reference)]
        cmd += ["--steps", str(steps), "--warmup", str(warmup), "--precision", precision, *extra]
        line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
        results[name] = json.loads(line)
        print(f"  {name}: {results[name]}", flush=True)
    return results


def print_table(results: dict[str, dict[str, float]], rows: tuple[tuple[str, str], ...]) -> None:
    """A Markdown table: each timing row with its speed-up over the reference, then peak RSS."""
    ref = results["reference"]
    names = list(results)
    print("\n| measure | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for key, label in rows:
        cells = [f"{results[n][key]:.3f} ({ref[key] / results[n][key]:.2f}x)" for n in names]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("| peak RSS (MiB) | " + " | ".join(f"{results[n]['peak_rss_mib']:.0f}" for n in names) + " |")


if __name__ == "__main__":
    main()
