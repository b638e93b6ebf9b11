"""Benchmark: the reference's own train.py and test.py against `diptych train` and `diptych translate`,
end to end (processes, data loading, decoding, encoding), side by side on this machine.

The reference is junyanz/pytorch-CycleGAN-and-pix2pix at upstream commit 2a7afba (the fork
premsuggu/pytorch-CycleGAN-and-pix2pix holds it unchanged), checked out into a git-ignored folder and never
committed. It imports torchvision.transforms and wandb unconditionally; benchmarks/standins/ provides both
for its processes only. Its HTML writer needs `pip install dominate`.

    python benchmarks/vs_reference_cli.py --reference .reference/pytorch-CycleGAN-and-pix2pix   # ~10 min

What runs (the reference's default pix2pix: unet_256, 70x70 PatchGAN, batch norm, vanilla GAN, lambda 100,
batch 1, resize 286 + random crop 256 + flip; both load JPEG A|B pairs built from scikit-image's photos):
- training: each framework trains for S1 and for S2 steps in fresh processes; the time per step is
  (t(S2) - t(S1)) / (S2 - S1), so start-up (imports, network set-up, the dataset scan, the final save) cancels;
  diptych runs with its defaults (precision auto) and with --precision fp32;
- folder translation: 256 JPEG photos of 256x256 through the same unet_256 weights (the reference's
  latest_net_G.pth, converted with `diptych convert-reference`): the reference's
  `test.py --model test --dataset_mode single` against `diptych translate`, whole commands timed (start-up
  included) as a user sees them, in both test-time modes: the reference's default (training-mode batch norm
  and dropout; diptych's `--test-mode paper`, the default for converted reference models) and `--eval`
  (diptych's `--test-mode eval`, the default for models trained with diptych). The reference also writes
  the input image and an HTML page; diptych writes only the outputs;
- peak RSS of each command's largest process (ru_maxrss of the children).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from machine import cpu_model
from photo_pairs import TRAIN_SOURCES, crops, write_aligned

HERE = Path(__file__).resolve().parent
RSS_WRAPPER = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True); "
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); "
    "sys.stderr.write(r.stderr[-2000:] if r.returncode else ''); sys.exit(r.returncode)"
)


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a command, measured by a wrapper process of its own."""
    out = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, *cmd], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if out.returncode:
        sys.exit(f"failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr}")
    seconds, rss = out.stdout.split()
    return float(seconds), float(rss)


def reference_env(reference: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE / "standins"), str(reference)])
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, default=Path(".reference/pytorch-CycleGAN-and-pix2pix"))
    parser.add_argument("--steps", type=int, nargs=2, default=(20, 120), metavar=("S1", "S2"))
    parser.add_argument("--images", type=int, default=256, help="photos in the translated folder")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the benchmark runs")
    parser.add_argument("--translate-only", action="store_true", help="skip the training comparison")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of folder translations (best of each)")
    args = parser.parse_args()
    reference = args.reference.resolve()
    if not (reference / "train.py").is_file():
        sys.exit(f"{reference}: no reference checkout there; see this script's docstring")
    try:
        import dominate  # noqa: F401  (the reference's HTML writer)
    except ImportError:
        sys.exit("the reference needs dominate: pip install dominate")
    s1, s2 = (2, 6) if args.quick else args.steps
    images = 8 if args.quick else args.images
    repeats = 1 if args.quick else args.repeats
    diptych = [sys.executable, "-m", "diptych"]
    env = reference_env(reference)
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}", flush=True)
    rows: list[tuple[str, str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "pairs"
        write_aligned(data / "train", crops(TRAIN_SOURCES, s2, 256, seed=0))
        photos = work / "photos"
        photos.mkdir()
        from PIL import Image

        for i, photo in enumerate(crops(TRAIN_SOURCES, images, 256, seed=1)):
            Image.fromarray(photo).save(photos / f"{i:05d}.jpg", quality=95)

        def ref_train(steps: int, save: bool = False) -> tuple[float, float]:
            cmd = [sys.executable, "train.py", "--dataroot", str(data), "--name", "bench", "--model", "pix2pix"]
            cmd += ["--direction", "AtoB", "--n_epochs", "1", "--n_epochs_decay", "0"]
            cmd += ["--max_dataset_size", str(steps), "--checkpoints_dir", str(work / "ref_ckpt")]
            cmd += ["--save_epoch_freq", "1"] if save else []
            return timed(cmd, reference, env)

        def our_train(steps: int, precision: str) -> tuple[float, float]:
            run = work / f"run_{precision}_{steps}"
            cmd = [*diptych, "train", "--data", str(data), "--run-dir", str(run), "--max-steps", str(steps)]
            cmd += ["--precision", precision, "--no-progress"]
            return timed(cmd, work)

        measured: dict[str, dict[int, tuple[float, float]]] = {}
        if args.translate_only:
            ref_train(s1, save=True)
        for name, fn in (
            ()
            if args.translate_only
            else (
                ("reference train.py", lambda s: ref_train(s, save=s == s1)),
                ("diptych train (default: auto)", lambda s: our_train(s, "auto")),
                ("diptych train --precision fp32", lambda s: our_train(s, "fp32")),
            )
        ):
            measured[name] = {s: fn(s) for s in (s1, s2)}
            (t1, _), (t2, rss) = measured[name][s1], measured[name][s2]
            per_step = (t2 - t1) / (s2 - s1)
            rows.append(("training step (s)", name, per_step, rss))
            print(f"  {name}: {per_step:.3f} s/step, peak RSS {rss:.0f} MiB (S1 {t1:.1f} s, S2 {t2:.1f} s)", flush=True)

        # Folder translation with the reference's weights (saved by its S1 run).
        weights = work / "ref_ckpt" / "bench" / "latest_net_G.pth"
        ckpt = work / "converted"
        subprocess.run([*diptych, "convert-reference", str(weights), str(ckpt)], check=True, capture_output=True)
        cmd = [sys.executable, "test.py", "--dataroot", str(photos), "--name", "bench", "--model", "test"]
        cmd += ["--netG", "unet_256", "--norm", "batch", "--dataset_mode", "single", "--direction", "AtoB"]
        cmd += ["--num_test", str(images), "--results_dir", str(work / "ref_results")]
        cmd += ["--checkpoints_dir", str(work / "ref_ckpt")]
        ours = [*diptych, "translate", str(ckpt), str(photos), "--no-progress", "--overwrite"]
        commands = (
            ("reference test.py (train-mode BN + dropout)", cmd, reference, env),
            ("diptych translate --test-mode paper (default)", [*ours, "--out", str(work / "o1"), "--test-mode", "paper"], work, None),
            ("reference test.py --eval", [*cmd, "--eval"], reference, env),
            ("diptych translate --test-mode eval", [*ours, "--out", str(work / "o2"), "--test-mode", "eval"], work, None),
            ("diptych translate --test-mode eval --precision fp32", [*ours, "--out", str(work / "o3"), "--test-mode", "eval", "--precision", "fp32"], work, None),
        )  # fmt: skip
        # Round-robin repeats, best of each: this machine's speed drifts by up to 30% over minutes, and taking
        # every command's best run of interleaved rounds keeps the drift from favouring either side.
        best: dict[str, tuple[float, float]] = {}
        for round_ in range(repeats):
            for name, command, cwd, e in commands:
                seconds, rss = timed(command, cwd, e)
                print(
                    f"  [{round_ + 1}/{repeats}] {name}: {seconds:.1f} s for {images} images, peak RSS {rss:.0f} MiB",
                    flush=True,
                )
                previous = best.get(name, (float("inf"), 0.0))
                best[name] = (min(seconds, previous[0]), max(rss, previous[1]))  # best time, peak RSS of all rounds
                shutil.rmtree(work / "ref_results", ignore_errors=True)
        for name, _, _, _ in commands:
            measure = f"folder translation, {'eval' if 'eval' in name else 'paper'} mode (ms/image)"
            rows.append((measure, name, best[name][0] / images * 1000, best[name][1]))

    print("\n| measure | run | value | vs reference | peak RSS (MiB) |\n|---|---|---|---|---|")
    base: dict[str, float] = {}
    for measure, name, value, rss in rows:
        base.setdefault(measure, value)
        print(f"| {measure} | {name} | {value:.3f} | {base[measure] / value:.2f}x | {rss:.0f} |")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
