"""`diptych demo`: real photos -> paired dataset -> short training -> translations -> HTML page."""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from .config import RunConfig
from .data.io import write_image
from .data.samples import sample_photo
from .data.tools.degrade import add_noise, blur, canny_edges, luminance
from .errors import DiptychError
from .report import GalleryRow, write_gallery
from .train import train
from .translate import Translator

TRAIN_PHOTOS = ("astronaut", "rocket", "immunohistochemistry", "retina", "hubble_deep_field", "motorcycle")
TEST_PHOTOS = ("chelsea", "coffee")
DEMO_ENTRIES = {"data", "run", "translated", "index.html"}
DEMO_TASKS = ("denoise", "deblur", "colorize", "edges")
# 800 pix2pix-plus steps: 2 min 0 s for the whole demo on 2 idle cores of an Intel Xeon, the held-out photos
# denoised from 20 dB to 25.7 and 29.5 dB PSNR.
DEMO_STEPS = 800
NOISE_SIGMA, BLUR_SIGMA = 0.1, 2.0  # degradations of the restoration tasks (fractions of the range; pixels)
TASK_NAMES = {
    "denoise": f"noisy -> clean (Gaussian noise, sigma {NOISE_SIGMA})",
    "deblur": f"blurred -> sharp (Gaussian blur, sigma {BLUR_SIGMA} px)",
    "colorize": "grayscale -> colour",
    "edges": "edges -> photo",
}


def resize_short_side(photo: np.ndarray, short: int) -> np.ndarray:
    """Resize an HxWx3 uint8 photo so its shorter side is `short` pixels (Lanczos)."""
    h, w = photo.shape[:2]
    scale = short / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.LANCZOS))


def input_maker(task: str) -> Callable[[np.ndarray, str], np.ndarray]:
    """The demo task's input from a photo (and its name, which seeds the noise so the pairs are reproducible)."""
    if task == "denoise":
        return lambda photo, stem: add_noise(photo, NOISE_SIGMA, np.random.default_rng(zlib.crc32(stem.encode())))
    if task == "deblur":
        return lambda photo, stem: blur(photo, BLUR_SIGMA)
    make = {"colorize": luminance, "edges": canny_edges}[task]
    return lambda photo, stem: make(photo)


def build_demo_pairs(root: Path, task: str = "denoise", sizes: tuple[int, ...] = (256, 320)) -> Path:
    """Write train/ and test/ folders of A (input) and B (photo) pairs; test photos never appear in train."""
    make_input = input_maker(task)
    for split, names, split_sizes in (("train", TRAIN_PHOTOS, sizes), ("test", TEST_PHOTOS, sizes[:1])):
        for name in names:
            photo = sample_photo(name)
            for short in split_sizes:
                b = resize_short_side(photo, short)
                stem = f"{name}_{short}"
                write_image(root / split / "A" / f"{stem}.png", make_input(b, stem))
                write_image(root / split / "B" / f"{stem}.png", b)
    return root


def demo_config(data_root: Path, steps: int, crop_size: int, device: str, recipe: str = "pix2pix-plus") -> RunConfig:
    """A small model of the recipe (its defaults) that learns visibly within a few CPU minutes."""
    config = RunConfig().use_recipe(recipe)
    g, d, data, t = config.generator, config.discriminator, config.data, config.train
    g.depth, g.ngf = 7, 32
    d.ndf = 32
    data.root, data.phase, data.layout = str(data_root), "train", "folders"
    data.preprocess, data.crop_size, data.batch_size, data.workers = "crop", crop_size, 4, 1
    t.max_steps, t.save_every, t.log_every, t.device = steps, steps, 20, device
    t.epochs, t.epochs_decay = 10_000, 0
    return config


def run_demo(
    out: Path,
    steps: int = DEMO_STEPS,
    crop_size: int = 128,
    device: str = "auto",
    overwrite: bool = False,
    task: str = "denoise",
    recipe: str = "pix2pix-plus",
) -> Path:
    """Build the demo dataset, train, translate the held-out photos and return the HTML page's path."""
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise DiptychError(f"{out}: already exists; pass --overwrite to replace it or choose another --out")
        # Only ever delete what a previous demo wrote.
        if not out.is_dir() or not {p.name for p in out.iterdir()} <= DEMO_ENTRIES:
            raise DiptychError(f"{out}: is not a diptych demo folder; refusing to delete it, choose another --out")
        shutil.rmtree(out)
    data_root = build_demo_pairs(out / "data", task)
    print(f"dataset: {data_root} ({len(TRAIN_PHOTOS) * 2} training pairs, held-out photos: {', '.join(TEST_PHOTOS)})")
    result = train(demo_config(data_root, steps, crop_size, device, recipe), out / "run")
    translator = Translator.load(result.run_dir)
    test_a = sorted((data_root / "test" / "A").glob("*.png"))
    outputs = translator.translate_files(test_a, out / "translated", progress=False)
    rows = [
        GalleryRow(src.stem, src, dst, data_root / "test" / "B" / src.name)
        for src, dst in zip(test_a, outputs, strict=True)
    ]
    notes = (
        f"{recipe} ({TASK_NAMES[task]}) trained for {result.steps} steps on {len(TRAIN_PHOTOS)} photos; "
        f"the photos below were never seen in training and are translated at full size."
    )
    return write_gallery(rows, out / "index.html", "diptych demo: held-out photos", notes)
