"""Benchmark: super-resolution inference on this machine (issue 14's "Speed and memory").

1. Throughput of each generator family at x4 in output megapixels per second, fp32 and bf16, through the
   translator (standard configurations: RRDBNet 23 blocks, MSRResNet 16 blocks, compact 16 convolutions).
2. The target: the compact network upscaling a 1024x1024 image to 4096x4096 through tiles into a TIFF in under
   10 s with a peak RSS under 1.5 GiB, each precision in a fresh process so its peak RSS is its own.

The machine's load average is printed before and after: on a shared machine the figures move with it.

    python benchmarks/sr_inference.py --threads 2
    python benchmarks/sr_inference.py --quick        # small sizes, one repeat: a smoke run
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

import torch
from machine import cpu_model
from tiled_translate import make_input
from untrained import save_untrained

# The standard x4 models, and the input side each is timed on (an RRDBNet is ~30x slower per pixel than compact).
FAMILIES = {"rrdbnet": ({"n_blocks": 23}, 48), "msrresnet": ({"n_blocks": 16}, 96), "compact": ({"n_convs": 16}, 192)}
PRECISIONS = ("fp32", "bf16")


def make_checkpoint(folder: Path, arch: str, fields: dict[str, int]) -> Path:
    """An untrained x4 upscaler of a family (its own initialisation) for 8-bit RGB, as a checkpoint folder."""
    from diptych.config import RunConfig

    config = RunConfig()
    g = config.use_generator(arch)
    g.in_channels = g.out_channels = 3
    g.scale = 4
    for name, value in fields.items():
        setattr(g, name, value)
    config.data.sample_type = config.data.input_sample_type = "uint8"
    return save_untrained(folder, config)


def throughput(checkpoint: Path, side: int, precision: str, repeats: int) -> float:
    """Output megapixels per second of one forward pass on a side x side input (best of `repeats` after a warm-up)."""
    from diptych import Translator

    translator = Translator.load(checkpoint, device="cpu", precision=precision)
    x = torch.rand(1, 3, side, side) * 2 - 1
    translator.translate_tensor(x)  # (one-off kernel set-up)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        translator.translate_tensor(x)
        best = min(best, time.perf_counter() - start)
    return (side * 4) ** 2 / 1e6 / best


def run_tiled(
    checkpoint: Path, image: Path, tile: str, budget_gib: float | None, precision: str, threads: int, repeats: int
) -> dict:
    """Upscale one image through tiles into a TIFF (in this process); wall and CPU seconds of each run (the CPU
    time shows how much of the machine a run got when others share it), and peak RSS."""
    torch.set_num_threads(threads)
    from diptych import Translator

    translator = Translator.load(checkpoint, device="cpu", precision=precision)
    budget = int(budget_gib * 2**30) if budget_gib else None
    settings = translator.tile_settings(tile if tile == "auto" else int(tile), None, budget)
    out = image.with_name(image.stem + "_x4.tif")
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        translator.translate_file_tiled(image, out, settings)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        out.unlink()
    return {
        "times": times,
        "cpu": cpu,
        "tile": settings.tile,
        "overlap": settings.overlap,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--size", type=int, default=1024, help="input side of the tiled run (output: 4x)")
    parser.add_argument("--tile", default="512", help="tile side in input pixels, or auto")
    parser.add_argument("--memory-budget", type=float, default=None, help="GiB for --tile auto (default: translate's)")
    parser.add_argument("--no-throughput", action="store_true", help="only the tiled 1024 -> 4096 run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes and one repeat (a smoke run)")
    parser.add_argument("--child", nargs=3, metavar=("CHECKPOINT", "IMAGE", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        checkpoint, image, precision = args.child
        result = run_tiled(
            Path(checkpoint), Path(image), args.tile, args.memory_budget, precision, args.threads, args.repeats
        )
        print(json.dumps(result))
        return
    repeats = 1 if args.quick else args.repeats
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {args.threads} threads")
    print(f"load average before: {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoints = {arch: make_checkpoint(root / arch, arch, f) for arch, (f, _) in FAMILIES.items()}
        if not args.no_throughput:
            print("\n| generator (x4) | input | fp32 output MP/s | bf16 output MP/s |\n|---|---|---|---|")
        for arch, (fields, side) in {} if args.no_throughput else FAMILIES.items():
            side = side // 4 if args.quick else side
            rates = [throughput(checkpoints[arch], side, p, repeats) for p in PRECISIONS]
            name = f"{arch} ({', '.join(f'{k} {v}' for k, v in fields.items())})"
            print(f"| {name} | {side}x{side} | {rates[0]:.3f} | {rates[1]:.3f} |", flush=True)
        size = 64 if args.quick else args.size
        image = make_input(root / f"in_{size}.tif", size)
        print(f"\ncompact x4, {size}x{size} -> {4 * size}x{4 * size} through tiles (--tile {args.tile}) into a TIFF:")
        print("\n| precision | tile / overlap | seconds (each run) | CPU seconds (each run) | peak RSS (MiB) |")
        print("|---|---|---|---|---|")
        for precision in PRECISIONS:
            cmd = [sys.executable, __file__, "--child", str(checkpoints["compact"]), str(image), precision]
            cmd += ["--tile", args.tile, "--threads", str(args.threads), "--repeats", str(repeats)]
            cmd += ["--memory-budget", str(args.memory_budget)] if args.memory_budget else []
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
            result = json.loads(out)
            runs = ", ".join(f"{t:.1f}" for t in result["times"])
            cpu = ", ".join(f"{t:.1f}" for t in result["cpu"])
            tiles = f"{result['tile']} / {result['overlap']}"
            print(f"| {precision} | {tiles} | {runs} | {cpu} | {result['peak_rss_mib']:.0f} |", flush=True)
    print(f"\nload average after: {load()} (target: under 10 s and 1536 MiB at 1024 -> 4096)")


if __name__ == "__main__":
    main()
