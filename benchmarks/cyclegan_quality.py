"""Benchmark: CycleGAN image quality, diptych against the reference at the same number of steps, on real unpaired
tasks whose test split has ground truth (so the translations can be scored with paired metrics).

The reference checkout is the one vs_reference.py uses (upstream commit 2a7afba, in the git-ignored .reference/
folder; see that script's docstring). Its own train.py needs `dominate` for its HTML pages, so the reference is
trained by this script's child process with train.py's loop over the reference's own options, dataset, model,
schedulers and image pools (benchmarks/standins/ stands in for torchvision.transforms, as for vs_reference_cli.py).

    python benchmarks/cyclegan_quality.py --work cq_work --seeds 0 1     # hours on 2 shared cores; a re-run skips
                                                                         # the trainings and translations it finished

Tasks (built under WORK/data with diptych's own data tools, as a user would):
- glyphs: domain A = characters rendered in DejaVu Sans, domain B = OTHER characters in DejaVu Serif
  (`diptych data glyphs`, Latin, Greek and Cyrillic); the test split is held-out characters in both fonts.
- photo2edges: domain A = crops of scikit-image's photos, domain B = Canny edge maps (`diptych data make-pairs
  --task edges`, as RGB) of OTHER crops; the test split is crops of two held-out photos with their edges.
Both frameworks train the reference's cycle_gan defaults (LSGAN, pools of 50, lambda_A = lambda_B = 10, identity
0.5, Adam 2e-4/0.5, linear schedule, batch 1, resize + random crop + flip) with --netG resnet_6blocks at a small
size, for the same epochs (the same steps), one thread each, diptych at its default precision. Both translate the
test inputs in both directions, and the round trip for the cycle error; the same code scores the 8-bit outputs:
L1, PSNR, SSIM (torchmetrics, diptych.metrics) against the ground truth, with bootstrap 95% intervals over the
test images (scipy.stats.bootstrap), and the difference diptych - reference per image.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
FONTS = Path("/usr/share/fonts/truetype/dejavu")
GLYPH_RANGES = ("0021-007E", "00C0-024F", "0391-03C9", "0410-044F")
DIRECTIONS = ("AtoB", "BtoA")
METRICS = ("l1", "psnr", "ssim")
TASKS = ("glyphs", "photo2edges")


def diptych_cmd(*args: str) -> list[str]:
    """The diptych CLI in this interpreter."""
    return [sys.executable, "-m", "diptych", *args]


def run_quiet(cmd: list[str], env: dict[str, str] | None = None) -> None:
    """Run a command; on failure exit with its output."""
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode:
        sys.exit(f"failed ({out.returncode}): {' '.join(cmd)}\n{out.stdout[-2000:]}{out.stderr[-3000:]}")


def place(files: list[Path], folder: Path, rgb: bool = False) -> None:
    """Copy files into a fresh folder (converted to RGB PNG when asked)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        if rgb:
            Image.open(f).convert("RGB").save(folder / f.name)
        else:
            shutil.copy2(f, folder / f.name)


def build_glyphs(root: Path, size: int, n_train: int, n_test: int, seed: int) -> None:
    """trainA = n_train characters in DejaVu Sans, trainB = n_train OTHER characters in DejaVu Serif, test = n_test
    held-out characters in both (named alike, so paired)."""
    rendered = root.parent / "glyphs_all"
    if not rendered.is_dir():
        chars = "".join(
            chr(c) for r in GLYPH_RANGES for c in range(int(r[:4], 16), int(r[5:], 16) + 1) if chr(c).isprintable()
        )
        cmd = diptych_cmd("data", "glyphs", str(FONTS / "DejaVuSans.ttf"), str(FONTS / "DejaVuSerif.ttf"))
        run_quiet([*cmd, str(rendered), "--chars", chars, "--size", str(size)])
    names = sorted(p.name for p in (rendered / "A").glob("*.png"))
    random.Random(seed).shuffle(names)
    if len(names) < 2 * n_train + n_test:
        sys.exit(f"only {len(names)} glyphs rendered; lower --train-images/--test-images")
    test, a, b = names[:n_test], names[n_test : n_test + n_train], names[n_test + n_train : n_test + 2 * n_train]
    place([rendered / "A" / n for n in a], root / "trainA")
    place([rendered / "B" / n for n in b], root / "trainB")
    place([rendered / "A" / n for n in test], root / "testA")
    place([rendered / "B" / n for n in test], root / "testB")


def build_photo_edges(root: Path, size: int, n_train: int, n_test: int, seed: int) -> None:
    """trainA = n_train photo crops, trainB = the edge maps of n_train OTHER crops, test = n_test crops of held-out
    photos with their edges (named alike)."""
    from diptych.data.samples import SAMPLE_PHOTOS, sample_photo
    from diptych.demo import resize_short_side

    photos, pairs = root.parent / "photos", root.parent / "photo_pairs"
    if not pairs.is_dir():
        photos.mkdir(parents=True, exist_ok=True)
        for name in SAMPLE_PHOTOS:  # downscaled so a small crop holds a scene's structure, not a patch of texture
            Image.fromarray(resize_short_side(sample_photo(name), 4 * size)).save(photos / f"{name}.png")
        per_photo = str(max(2 * n_train // 6, n_test // 2) + 1)
        cmd = diptych_cmd("data", "make-pairs", str(photos), str(pairs), "--task", "edges", "--crop", str(size))
        run_quiet([*cmd, "--crops-per-image", per_photo, "--split", "0.75,0,0.25", "--seed", str(seed)])
    train = sorted((pairs / "train" / "B").glob("*.png"))
    random.Random(seed).shuffle(train)
    if len(train) < 2 * n_train:
        sys.exit(f"only {len(train)} training crops made; lower --train-images")
    a, b = train[:n_train], train[n_train : 2 * n_train]
    test = sorted((pairs / "test" / "B").glob("*.png"))
    test = random.Random(seed).sample(test, min(n_test, len(test)))
    place(a, root / "trainA")
    place([pairs / "train" / "A" / f.name for f in b], root / "trainB", rgb=True)
    place(test, root / "testA")
    place([pairs / "test" / "A" / f.name for f in test], root / "testB", rgb=True)


def one_thread_env(extra_path: list[str] | None = None) -> dict[str, str]:
    """The environment of a training child: one thread (the machine is shared), optional PYTHONPATH first."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([*extra_path, env.get("PYTHONPATH", "")])
    return env


def reference_argv(data: Path, run: Path, args: argparse.Namespace, channels: int) -> list[str]:
    """The reference's train.py options: cycle_gan defaults with the benchmark's size, generator and length."""
    return [
        "--dataroot", str(data), "--name", "q", "--checkpoints_dir", str(run), "--model", "cycle_gan",
        "--netG", args.netG, "--load_size", str(args.load_size), "--crop_size", str(args.size),
        "--n_epochs", str(args.epochs), "--n_epochs_decay", str(args.epochs), "--num_threads", "0",
        "--input_nc", str(channels), "--output_nc", str(channels), "--save_epoch_freq", "1000000",
        "--ngf", str(args.ngf), "--ndf", str(args.ngf),
    ]  # fmt: skip


def reference_train_child(argv: list[str], seed: int) -> None:
    """train.py's loop (without its visualizer, which needs dominate) over the reference's own parts; saves latest."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    sys.argv = ["train.py", *argv]
    from data import create_dataset  # the reference's code, from its checkout
    from models import create_model
    from options.train_options import TrainOptions

    opt = TrainOptions().parse()
    opt.device = torch.device("cpu")
    dataset = create_dataset(opt)
    model = create_model(opt)
    model.setup(opt)
    for _epoch in range(opt.epoch_count, opt.n_epochs + opt.n_epochs_decay + 1):
        for data in dataset:
            model.set_input(data)
            model.optimize_parameters()
        model.update_learning_rate()
    model.save_networks("latest")


def train_reference(data: Path, run: Path, args: argparse.Namespace, channels: int, seed: int) -> float:
    """Train the reference's cycle_gan in a child process at nice 10; wall seconds."""
    start = time.perf_counter()
    env = one_thread_env([str(HERE / "standins"), str(args.reference)])
    argv = reference_argv(data, run, args, channels)
    cmd = ["nice", "-n", "10", sys.executable, str(Path(__file__).resolve()), "--child-reference", json.dumps(argv)]
    run_quiet([*cmd, "--seed", str(seed)], env)
    return time.perf_counter() - start


def train_diptych(data: Path, run: Path, args: argparse.Namespace, seed: int) -> float:
    """`diptych train --recipe cyclegan` with the same settings, one thread, nice 10; wall seconds."""
    start = time.perf_counter()
    cmd = diptych_cmd("train", "--recipe", "cyclegan", "--data", str(data), "--run-dir", str(run))
    cmd += ["--netG", args.netG, "--load-size", str(args.load_size), "--crop-size", str(args.size)]
    cmd += ["--ngf", str(args.ngf), "--ndf", str(args.ngf)]
    cmd += ["--epochs", str(args.epochs), "--epochs-decay", str(args.epochs), "--workers", "0", "--no-progress"]
    run_quiet(["nice", "-n", "10", *cmd, "--seed", str(seed)], one_thread_env())
    return time.perf_counter() - start


def to_tensor01(path: Path) -> torch.Tensor:
    """An 8-bit PNG as CxHxW in [-1, 1]."""
    arr = np.asarray(Image.open(path), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr[:, :, None] if arr.ndim == 2 else arr).permute(2, 0, 1)


def save_png(x: torch.Tensor, path: Path) -> None:
    """CxHxW in [-1, 1] to an 8-bit PNG, rounded (as diptych writes; the reference's tensor2im truncates)."""
    arr = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(path)


def reference_translate_child(run: Path, data: Path, out: Path, netG: str, channels: int, ngf: int = 64) -> None:
    """The reference's G_A and G_B (its networks.define_G, its saved weights) on the test images, and back."""
    torch.set_num_threads(1)
    from models import networks  # the reference's code, from its checkout

    nets = {}
    for name in ("G_A", "G_B"):
        net = networks.define_G(channels, channels, ngf, netG, "instance", False, "normal", 0.02)
        net.load_state_dict(torch.load(run / "q" / f"latest_net_{name}.pth", map_location="cpu", weights_only=True))
        nets[name] = net.eval()
    for direction, (there, back), folder in (("AtoB", ("G_A", "G_B"), "testA"), ("BtoA", ("G_B", "G_A"), "testB")):
        (out / direction).mkdir(parents=True, exist_ok=True)
        (out / f"{direction}_cycle").mkdir(parents=True, exist_ok=True)
        for f in sorted((data / folder).glob("*.png")):
            x = to_tensor01(f)[None]
            with torch.no_grad():
                fake = nets[there](x)
                save_png(fake[0], out / direction / f.name)
                # The round trip starts from the saved 8-bit image, as diptych's does (both pay one quantisation).
                rec = nets[back](to_tensor01(out / direction / f.name)[None])
            save_png(rec[0], out / f"{direction}_cycle" / f.name)


def translate_reference(run: Path, data: Path, out: Path, args: argparse.Namespace, channels: int) -> None:
    """Translate the test split both ways (and back) with the reference's networks, in a child process."""
    env = one_thread_env([str(HERE / "standins"), str(args.reference)])
    spec = json.dumps([str(run), str(data), str(out), args.netG, channels, args.ngf])
    run_quiet([sys.executable, str(Path(__file__).resolve()), "--child-translate", spec], env)


def translate_diptych(run: Path, data: Path, out: Path) -> None:
    """`diptych translate --direction` both ways on the test split, then the outputs back for the cycle error."""
    for direction, back, folder in (("AtoB", "BtoA", "testA"), ("BtoA", "AtoB", "testB")):
        common = ["--no-progress", "--overwrite", "--precision", "auto"]
        run_quiet(diptych_cmd("translate", str(run), str(data / folder), "--out", str(out / direction), "--direction", direction, *common))  # fmt: skip
        run_quiet(diptych_cmd("translate", str(run), str(out / direction), "--out", str(out / f"{direction}_cycle"), "--direction", back, *common))  # fmt: skip


def score(data: Path, out: Path) -> dict[str, dict[str, list[float]]]:
    """Per-image metrics by direction: L1/PSNR/SSIM against the ground truth, cycle L1/PSNR against the input."""
    from diptych.metrics.pixel import MetricProtocol, compute_pixel_metrics

    protocol = MetricProtocol()
    result: dict[str, dict[str, list[float]]] = {}
    for direction, source, target in (("AtoB", "testA", "testB"), ("BtoA", "testB", "testA")):
        values: dict[str, list[float]] = {m: [] for m in (*METRICS, "cycle_l1", "cycle_psnr")}
        for f in sorted((data / source).glob("*.png")):
            fake, truth = to_tensor01(out / direction / f.name), to_tensor01(data / target / f.name)
            for name, v in compute_pixel_metrics(fake, truth, list(METRICS), protocol).items():
                values[name].append(v)
            rec = to_tensor01(out / f"{direction}_cycle" / f.name)
            cyc = compute_pixel_metrics(rec, to_tensor01(f), ["l1", "psnr"], protocol)
            values["cycle_l1"].append(cyc["l1"])
            values["cycle_psnr"].append(min(cyc["psnr"], 100.0))  # an exact round trip has infinite PSNR
        result[direction] = values
    return result


def bootstrap_ci(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95% interval (BCa, 10000 resamples) of the mean of per-image values."""
    from scipy.stats import bootstrap

    res = bootstrap((values,), np.mean, n_resamples=10000, confidence_level=0.95, random_state=seed)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def side_by_side_strip(data: Path, outs: dict[str, Path], direction: str, path: Path, count: int) -> None:
    """A PNG of `count` rows: input | reference | diptych | target, 2x enlarged (nearest)."""
    source, target = ("testA", "testB") if direction == "AtoB" else ("testB", "testA")
    names = sorted(f.name for f in (data / source).glob("*.png"))[:count]
    rows = []
    for n in names:
        tiles = [data / source / n, outs["reference"] / direction / n, outs["diptych"] / direction / n]
        tiles.append(data / target / n)
        imgs = [np.asarray(Image.open(t).convert("RGB")) for t in tiles]
        rows.append(np.concatenate([np.pad(i, ((1, 1), (1, 1), (0, 0)), constant_values=255) for i in imgs], axis=1))
    strip = np.concatenate(rows, axis=0)
    Image.fromarray(strip).resize((strip.shape[1] * 2, strip.shape[0] * 2), Image.NEAREST).save(path, optimize=True)


def summarise(per_seed: dict[str, dict[int, dict]], task: str) -> list[str]:
    """Markdown rows: per framework and direction, each metric's mean over seeds with a bootstrap 95% interval over
    test images (per-image values averaged over seeds), then the difference diptych - reference."""
    rows = []
    for direction in DIRECTIONS:
        means: dict[str, dict[str, np.ndarray]] = {}
        for framework in ("reference", "diptych"):
            seeds = per_seed[framework]
            cells, means[framework] = [], {}
            for m in (*METRICS, "cycle_l1", "cycle_psnr"):
                per_image = np.mean([np.asarray(seeds[s][direction][m]) for s in sorted(seeds)], axis=0)
                means[framework][m] = per_image
                low, high = bootstrap_ci(per_image)
                by_seed = ", ".join(f"{np.mean(seeds[s][direction][m]):.4g}" for s in sorted(seeds))
                cells.append(f"{per_image.mean():.4g} [{low:.4g}, {high:.4g}] ({by_seed})")
            rows.append(f"| {task} | {direction} | {framework} | " + " | ".join(cells) + " |")
        diff = []
        for m in (*METRICS, "cycle_l1", "cycle_psnr"):
            d = means["diptych"][m] - means["reference"][m]
            low, high = bootstrap_ci(d)
            diff.append(f"{d.mean():+.4g} [{low:+.4g}, {high:+.4g}]")
        rows.append(f"| {task} | {direction} | diptych - reference | " + " | ".join(diff) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, default=Path(".reference/pytorch-CycleGAN-and-pix2pix"))
    parser.add_argument("--work", type=Path, default=Path("cyclegan_quality_work"), help="data, runs and outputs")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--size", type=int, default=64, help="image and crop side (default: 64)")
    parser.add_argument("--load-size", type=int, default=72, help="resize before the random crop (default: 72)")
    parser.add_argument("--netG", default="resnet_6blocks", choices=("resnet_6blocks", "resnet_9blocks"))
    parser.add_argument("--ngf", type=int, default=64, help="generator and discriminator width (default: 64)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs at full rate, and again decaying (default: 2)")
    parser.add_argument("--train-images", type=int, default=150, help="images per training domain (default: 150)")
    parser.add_argument("--test-images", type=int, default=48, help="held-out test images (default: 48)")
    parser.add_argument("--parallel", type=int, default=2, help="trainings at once, one thread each (default: 2)")
    parser.add_argument("--strip-rows", type=int, default=4)
    parser.add_argument("--strips", type=Path, default=None, help="folder for the side-by-side PNGs")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child-reference", help=argparse.SUPPRESS)
    parser.add_argument("--child-translate", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_reference:
        reference_train_child(json.loads(args.child_reference), args.seed)
        return
    if args.child_translate:
        run, data, out, netG, channels, *ngf = json.loads(args.child_translate)
        reference_translate_child(Path(run), Path(data), Path(out), netG, channels, *ngf)
        return
    args.reference = args.reference.resolve()
    if not (args.reference / "models" / "cycle_gan_model.py").is_file():
        sys.exit(f"{args.reference}: no reference checkout there; see vs_reference.py's docstring")
    work = args.work.resolve()
    builders = {"glyphs": build_glyphs, "photo2edges": build_photo_edges}
    channels = {"glyphs": 1, "photo2edges": 3}
    jobs = []
    for task in args.tasks:
        data = work / "data" / task
        if not (data / "testB").is_dir():
            builders[task](data, args.size, args.train_images, args.test_images, seed=0)
        for seed in args.seeds:
            for framework in ("reference", "diptych"):
                jobs.append((task, seed, framework))
    timings_file = work / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}

    def train(job: tuple[str, int, str]) -> None:
        task, seed, framework = job
        key = f"{task}/{framework}/seed{seed}"
        run, data = work / "runs" / key, work / "data" / task
        if key in timings:
            return
        shutil.rmtree(run, ignore_errors=True)
        if framework == "reference":
            seconds = train_reference(data, run, args, channels[task], seed)
        else:
            seconds = train_diptych(data, run, args, seed)
        timings[key] = seconds
        timings_file.write_text(json.dumps(timings, indent=1))
        print(f"trained {key} in {seconds:.0f} s", flush=True)

    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(train, jobs))
    lines = [
        "| task | direction | model | L1 | PSNR (dB) | SSIM | cycle L1 | cycle PSNR (dB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    results: dict[str, dict] = {}
    for task in args.tasks:
        data = work / "data" / task
        per_seed: dict[str, dict[int, dict]] = {"reference": {}, "diptych": {}}
        for seed in args.seeds:
            outs = {}
            for framework in ("reference", "diptych"):
                run, out = (
                    work / "runs" / task / framework / f"seed{seed}",
                    work / "out" / task / framework / f"seed{seed}",
                )
                if not (out / "BtoA_cycle").is_dir():
                    if framework == "reference":
                        translate_reference(run, data, out, args, channels[task])
                    else:
                        translate_diptych(run, data, out)
                per_seed[framework][seed] = score(data, out)
                outs[framework] = out
            if args.strips and seed == args.seeds[0]:
                args.strips.mkdir(parents=True, exist_ok=True)
                for direction in DIRECTIONS:
                    path = args.strips / f"cyclegan_quality_{task}_{direction}.png"
                    side_by_side_strip(data, outs, direction, path, args.strip_rows)
        lines += summarise(per_seed, task)
        results[task] = per_seed
    (work / "scores.json").write_text(json.dumps({"timings_s": timings, "scores": results}))
    print("\n".join(lines))
    print(f"training wall seconds: {json.dumps(timings)}")


if __name__ == "__main__":
    main()
