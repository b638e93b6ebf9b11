"""Reading and writing images with their channel count and bit depth kept; tensors live in [-1, 1]."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
TIFF_EXTENSIONS = (".tif", ".tiff")


def is_image_file(path: Path) -> bool:
    """Whether the file name has an image extension diptych reads."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path, recursive: bool = True) -> list[Path]:
    """Image files under a folder, sorted by relative path (hidden files and folders ignored)."""
    pattern = "**/*" if recursive else "*"
    return sorted(
        p
        for p in folder.glob(pattern)
        if p.is_file() and is_image_file(p) and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def read_image(path: Path, palette_indices: bool = False) -> np.ndarray:
    """Decode an image to an HxWxC array (uint8, uint16 or float32) without losing precision.

    palette_indices=True keeps a palette PNG's indices (label maps, VOC-style) instead of its colours.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_EXTENSIONS:
            arr = _read_tiff(path)
        else:
            with Image.open(path) as img:
                arr = pil_to_array(img, palette_indices)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image file Pillow can read; remove it or pass --skip-bad") from None
    except (OSError, ValueError, SyntaxError, tifffile.TiffFileError) as exc:
        raise DataError(f"{path}: corrupt or truncated image ({exc}); remove it or pass --skip-bad") from None
    return _normalise_array(arr, path)


def _read_tiff(path: Path) -> np.ndarray:
    """A TIFF's first series as HxWxC, moving a leading channel/sample axis (CYX, planar stacks) to the end."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        arr = series.asarray()
        axes = series.axes
    if arr.ndim == 3 and axes.endswith("YX"):
        arr = np.moveaxis(arr, 0, -1)
    return arr


def pil_to_array(img: Image.Image, palette_indices: bool = False) -> np.ndarray:
    """A PIL image as an array with its precision kept (16-bit modes stay uint16, palettes become RGB/RGBA)."""
    mode = img.mode
    if mode == "1":
        img = img.convert("L")
    elif mode == "P" and palette_indices:
        return np.array(img)
    elif mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    elif mode.startswith("I;16"):
        return np.array(img).astype(np.uint16)
    elif mode == "I":
        arr = np.asarray(img)
        return np.clip(arr, 0, 65535).astype(np.uint16)
    return np.array(img)


def _normalise_array(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise DataError(f"{path}: expected a 2-D image with channels, got an array of shape {arr.shape}")
    if arr.dtype == np.uint8 or arr.dtype == np.uint16:
        return np.ascontiguousarray(arr)
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        return np.ascontiguousarray(arr, dtype=np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        return np.clip(arr, 0, 65535).astype(np.uint16)
    raise DataError(f"{path}: unsupported sample type {arr.dtype}")


LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as Pillow's "L" conversion


def convert_channels(arr: np.ndarray, channels: int, name: str) -> np.ndarray:
    """Adapt an HxWxC image to `channels`: grey <-> RGB (BT.601 luma), add or drop alpha; anything else is an error."""
    c = arr.shape[2]
    if c == channels:
        return arr
    full = np.iinfo(arr.dtype).max if arr.dtype.kind == "u" else 1.0
    if c in (1, 2) and channels in (3, 4):
        rgb = np.repeat(arr[:, :, :1], 3, axis=2)
        return rgb if channels == 3 else np.concatenate([rgb, np.full_like(arr[:, :, :1], full)], axis=2)
    if c in (3, 4) and channels == 1:
        y = arr[:, :, :3].astype(np.float64) @ LUMA
        y = np.clip(np.round(y), 0, full) if arr.dtype.kind == "u" else y
        return y.astype(arr.dtype)[:, :, None]
    if c == 2 and channels == 1:
        return arr[:, :, :1]
    if c == 4 and channels == 3:
        return arr[:, :, :3]
    if c == 3 and channels == 4:
        return np.concatenate([arr, np.full_like(arr[:, :, :1], full)], axis=2)
    raise DataError(f"{name}: has {c} channel(s) but the model expects {channels}")


def dtype_scale(dtype: np.dtype | str) -> float:
    """The value that maps to 1.0: 255 for uint8, 65535 for uint16, 1 for floats (assumed in [0, 1])."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    return 1.0


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """HxWxC array to a float32 CxHxW tensor in [-1, 1]."""
    scale = dtype_scale(arr.dtype)
    planar = np.ascontiguousarray(arr.transpose(2, 0, 1))
    t = (torch.from_numpy(planar) if planar.flags.writeable else torch.tensor(planar)).float()
    return t.mul_(2.0 / scale).sub_(1.0)


def from_tensor(t: torch.Tensor, dtype: np.dtype | str = np.uint8) -> np.ndarray:
    """CxHxW tensor in [-1, 1] to an HxWxC array of the given sample type (rounded, clipped)."""
    dtype = np.dtype(dtype)
    scale = dtype_scale(dtype)
    x = (t.detach().float().cpu().clamp(-1.0, 1.0) + 1.0) * (scale / 2.0)
    if dtype.kind in "ui":
        x = x.round_()
    return x.permute(1, 2, 0).numpy().astype(dtype)


def write_image(path: Path, arr: np.ndarray) -> Path:
    """Write an HxWxC array atomically; 16-bit or float data with several channels goes to TIFF."""
    path = Path(path)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    channels = arr.shape[2]
    suffix = output_suffix(path.suffix.lower(), arr.dtype, channels)
    path = path.with_suffix(suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if suffix in TIFF_EXTENSIONS:
            if channels == 1:
                tifffile.imwrite(tmp, arr[:, :, 0], photometric="minisblack")
            else:
                # Interleaved samples (YXS): other tools read it as one multi-channel image, not a stack of pages.
                tifffile.imwrite(tmp, arr, photometric=_photometric(channels), planarconfig="contig")
        else:
            img = _array_to_pil(arr)
            fmt = Image.registered_extensions().get(suffix)
            if fmt is None:
                raise DataError(f"{path}: unknown image extension {suffix!r}; use .png, .jpg or .tif")
            img.save(tmp, format=fmt)
        os.replace(tmp, path)
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def output_suffix(suffix: str, dtype: np.dtype | str, channels: int) -> str:
    """The file suffix that can hold this data: the requested one, or .tif for float, multi-channel 16-bit or >4 channels."""
    dtype = np.dtype(dtype)
    needs_tiff = dtype == np.float32 or (dtype == np.uint16 and channels > 1) or channels not in (1, 2, 3, 4)
    return ".tif" if needs_tiff and suffix.lower() not in TIFF_EXTENSIONS else suffix


def _photometric(channels: int) -> str:
    return "rgb" if channels in (3, 4) else "minisblack"


def _array_to_pil(arr: np.ndarray) -> Image.Image:
    channels = arr.shape[2]
    if arr.dtype == np.uint16:
        # frombytes, not fromarray(mode="I;16"), which Pillow >= 12 rejects ("Invalid mode for data type").
        plane = np.ascontiguousarray(arr[:, :, 0], dtype="<u2")
        return Image.frombytes("I;16", (plane.shape[1], plane.shape[0]), plane.tobytes())
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    return Image.fromarray(arr[:, :, 0] if channels == 1 else arr, mode=mode)
