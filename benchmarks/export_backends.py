"""Benchmark: `translate` of a folder of real photos with the torch backend (fp32) vs onnxruntime.

The generator (pix2pix's unet_256 by default, or the default pix2pixHD generator) is initialised as in training and
exported with `diptych export` (parity-checked); both backends then translate the same folder through
Translator.translate_files (decoding, batching, padding, writing: the whole file path), with the same thread count.

    python benchmarks/export_backends.py                       # 32 crops of 256x256, unet_256
    python benchmarks/export_backends.py --arch hd --count 16
    python benchmarks/export_backends.py --count 2 --size 64 --ngf 4 --depth 4   # quick smoke run
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_model
from untrained import save_untrained


def make_checkpoint(folder: Path, arch: str, ngf: int, depth: int) -> Path:
    """A generator with the training initialisation, saved as a diptych checkpoint (timing needs no training)."""
    from diptych.config import RunConfig

    config = RunConfig()
    if arch == "hd":
        config.use_recipe("pix2pixhd")
    else:
        config.generator.depth = depth  # (an hd generator has no --depth)
    config.generator.in_channels = config.generator.out_channels = 3
    config.generator.ngf = ngf
    config.data.sample_type = "uint8"
    return save_untrained(folder, config)


def make_photos(folder: Path, count: int, size: int) -> Path:
    """`count` size x size crops taken in turn from scikit-image's bundled photos, as PNGs."""
    from diptych.data.io import write_image
    from diptych.data.samples import SAMPLE_PHOTOS, sample_photo

    photos = [sample_photo(name) for name in SAMPLE_PHOTOS]
    photos = [p for p in photos if min(p.shape[:2]) >= size]
    for i in range(count):
        photo = photos[i % len(photos)]
        step = i // len(photos)
        y = (step * 37) % (photo.shape[0] - size + 1)
        x = (step * 53) % (photo.shape[1] - size + 1)
        write_image(folder / f"photo_{i:03d}.png", photo[y : y + size, x : x + size])
    return folder


def time_backend(model: Path, photos: Path, out: Path, batch_size: int, repeats: int, precision: str) -> float:
    """Best seconds over `repeats` for translating the folder, after one warm-up image."""
    from diptych import Translator

    translator = Translator.load(model, device="cpu", precision=precision)
    first = sorted(photos.iterdir())[0]
    translator.translate_files([first], out / "warmup", progress=False, overwrite=True)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        translator.translate_files([photos], out / "folder", batch_size=batch_size, progress=False, overwrite=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=("unet", "hd"), default="unet")
    parser.add_argument("--count", type=int, default=32, help="photos in the folder")
    parser.add_argument("--size", type=int, default=256, help="side of each square crop")
    parser.add_argument("--ngf", type=int, default=0, help="generator width (default: 64 for unet, 32 for hd)")
    parser.add_argument("--depth", type=int, default=8, help="unet depth (default: 8 = unet_256)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # onnxruntime sessions take the same thread count (see exported.py)
    import onnxruntime

    from diptych.export import export_generator

    ngf = args.ngf or (64 if args.arch == "unet" else 32)
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, {args.threads} threads"
    )
    name = f"unet (depth {args.depth})" if args.arch == "unet" else "pix2pixHD (n_local 1)"
    print(f"generator: {name}, ngf {ngf}; {args.count} photos of {args.size}x{args.size}, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = make_checkpoint(root / "ckpt", args.arch, ngf, args.depth)
        photos = make_photos(root / "photos", args.count, args.size)
        result = export_generator(checkpoint, root / "model.onnx", "onnx")
        print(f"export parity: max |onnx - pytorch| = {result.max_abs_diff:.3g} (opset {result.opset})")
        rows = []
        runs = (("torch fp32", checkpoint, "fp32"), ("torch auto (default)", checkpoint, "auto"))
        for backend, model, precision in (*runs, ("onnxruntime (fp32)", result.path, "fp32")):
            out = root / backend.replace(" ", "_")
            seconds = time_backend(model, photos, out, args.batch_size, args.repeats, precision)
            rows.append((backend, seconds * 1000 / args.count))
            print(f"  {backend}: {seconds:.2f} s, {rows[-1][1]:.1f} ms/image", flush=True)
    base = rows[0][1]
    print("\n| backend | ms/image | speed-up vs torch fp32 |")
    print("|---|---|---|")
    for backend, ms in rows:
        print(f"| {backend} | {ms:.1f} | {base / ms:.2f}x |")


if __name__ == "__main__":
    main()
