"""Real CC0/public-domain photographs shipped inside the scikit-image wheel (no download)."""

from __future__ import annotations

import numpy as np

from ..errors import DiptychError

# Colour photographs (skimage.data loader names); all ship in the wheel itself.
SAMPLE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle",
    "retina",
    "rocket",
)


def sample_photo(name: str) -> np.ndarray:
    """One bundled colour photo as an HxWx3 uint8 array."""
    try:
        import skimage.data as skdata
    except ImportError:  # pragma: no cover - scikit-image is a dependency
        raise DiptychError(
            "scikit-image is not installed; `pip install scikit-image` provides the sample photos"
        ) from None
    if name not in SAMPLE_PHOTOS:
        raise DiptychError(f"unknown sample photo {name!r}; choose from {', '.join(SAMPLE_PHOTOS)}")
    arr = skdata.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skdata, name)()
    return np.ascontiguousarray(arr[:, :, :3])
