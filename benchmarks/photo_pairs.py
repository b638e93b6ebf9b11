"""Paired benchmark data from the real photos bundled with scikit-image (no download).

Colourisation pairs: A is the photo's luminance as RGB (3 channels, so the networks match the reference's
3->3 defaults), B the colour photo. Training crops come from six photos, held-out crops from two others,
so no held-out crop shares a photo with training.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

TRAIN_SOURCES = ("astronaut", "chelsea", "coffee", "motorcycle", "rocket", "immunohistochemistry")
HELD_OUT_SOURCES = ("retina", "hubble_deep_field")


def crops(
    sources: tuple[str, ...],
    count: int,
    size: int,
    seed: int,
    short: int = 400,
    rows: tuple[float, float] = (0, 1),
    prepare: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[np.ndarray]:
    """`count` random size x size crops, spread evenly over the source photos (resized to a short side, then passed
    through `prepare` if given, e.g. to stack an edge map computed on the whole photo), from the band of rows between
    the two fractions of each photo's height (so two bands never share a pixel)."""
    from diptych.data.samples import sample_photo
    from diptych.demo import resize_short_side

    rng = np.random.default_rng(seed)
    photos = [resize_short_side(sample_photo(name), max(short, size)) for name in sources]
    photos = [prepare(p) for p in photos] if prepare else photos
    photos = [p[int(p.shape[0] * rows[0]) : int(p.shape[0] * rows[1])] for p in photos]
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        y = int(rng.integers(0, photo.shape[0] - size + 1))
        x = int(rng.integers(0, photo.shape[1] - size + 1))
        out.append(np.ascontiguousarray(photo[y : y + size, x : x + size]))
    return out


def grey_rgb(photo: np.ndarray) -> np.ndarray:
    """The photo's luminance (Pillow's L) repeated into three channels."""
    grey = np.asarray(Image.fromarray(photo).convert("L"))
    return np.repeat(grey[:, :, None], 3, axis=2)


def write_aligned(folder: Path, photos: list[np.ndarray], suffix: str = ".jpg") -> Path:
    """An A|B aligned folder (the reference's layout): grey input on the left, colour photo on the right."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, photo in enumerate(photos):
        pair = np.concatenate([grey_rgb(photo), photo], axis=1)
        Image.fromarray(pair).save(folder / f"{i:05d}{suffix}", quality=95)
    return folder


def write_folders(root: Path, photos: list[np.ndarray]) -> Path:
    """diptych's A/ + B/ layout of the same pairs (PNG, lossless)."""
    for i, photo in enumerate(photos):
        for side, arr in (("A", grey_rgb(photo)), ("B", photo)):
            (root / side).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / side / f"{i:05d}.png")
    return root
