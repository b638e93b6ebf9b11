"""MATLAB-compatible bicubic resizing (`imresize`), the convention super-resolution papers score with.

MATLAB's `imresize(A, scale)` with its default bicubic kernel differs from Pillow's and torch's bicubic: the cubic
has a = -0.5 (torch: -0.75), the kernel is widened by 1/scale when shrinking (antialiasing; torch has none), output
pixel x (1-based) samples the input at u = x/scale + 0.5*(1 - 1/scale), and samples beyond the border are mirrored
(symmetric: ... 2 1 | 1 2 ... n | n n-1 ...). Each axis is one linear map (a few taps per output pixel), the axis
with the smaller scale first (as MATLAB). Values are never rounded or clipped: integer images come back as float64
in their own scale, so overshoot at edges is kept (callers clip where their range demands it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import ConfigError

CUBIC_A = -0.5  # MATLAB's (Keys') cubic; torch's bicubic uses -0.75
CUBIC_SUPPORT = 4.0  # the cubic is non-zero on (-2, 2)
SIZE_TOLERANCE = 1e-9  # 300 * (1/3) may come out as 100.00000000000001: not a reason for a 101st pixel


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's bicubic), evaluated at x."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (CUBIC_A + 2) * ax3 - (CUBIC_A + 3) * ax2 + 1
    far = CUBIC_A * ax3 - 5 * CUBIC_A * ax2 + 8 * CUBIC_A * ax - 4 * CUBIC_A
    return torch.where(ax <= 1, near, torch.where(ax < 2, far, torch.zeros_like(ax)))


def resize_taps(in_len: int, out_len: int, scale: float, antialias: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """MATLAB's bicubic resize along one axis at `scale`: for each output pixel, the input pixels it reads (0-based,
    mirrored at the borders) and their float64 weights, both (out_len, taps)."""
    shrink = antialias and scale < 1
    width = CUBIC_SUPPORT / scale if shrink else CUBIC_SUPPORT
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # input coordinate (1-based) that output pixel x samples
    left = torch.floor(u - width / 2)
    indices = left[:, None] + torch.arange(math.ceil(width) + 2, dtype=torch.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * cubic(scale * distance) if shrink else cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Mirror beyond the border (MATLAB's symmetric padding: the edge sample repeats), 1-based -> 0-based.
    period = torch.remainder(indices.long() - 1, 2 * in_len)
    columns = torch.where(period < in_len, period, 2 * in_len - 1 - period)
    used = (weights != 0).any(dim=0)  # (MATLAB drops the taps no output pixel weighs)
    return columns[:, used], weights[:, used]


def resize_rows(image: torch.Tensor, out_len: int, scale: float, antialias: bool) -> torch.Tensor:
    """`image` (..., H, W) resized along H: a weighted sum of gathered rows, one pass per tap (memory stays at twice
    the output whatever the scale; whole rows are copied, which a CPU does fast)."""
    rows, weights = resize_taps(image.shape[-2], out_len, scale, antialias)
    rows, weights = rows.to(image.device), weights.to(image.device, image.dtype)
    out = image.index_select(-2, rows[:, 0]) * weights[:, :1]
    for tap in range(1, rows.shape[1]):
        out.addcmul_(image.index_select(-2, rows[:, tap]), weights[:, tap : tap + 1])
    return out


def output_size(
    in_size: tuple[int, int], scale: float | Sequence[float] | None, size: Sequence[int] | None
) -> tuple[tuple[int, int], tuple[float, float]]:
    """The output (H, W) and per-axis scales of a resize given by `scale` or by `size` (exactly one of them)."""
    if (scale is None) == (size is None):
        raise ConfigError("imresize: give exactly one of scale (a factor) and size (height, width)")
    if size is not None:
        out = tuple(int(s) for s in size)
        if len(out) != 2 or min(out) < 1:
            raise ConfigError(f"imresize: size {tuple(size)} must be two positive integers (height, width)")
        return (out[0], out[1]), (out[0] / in_size[0], out[1] / in_size[1])
    pair = (scale, scale) if isinstance(scale, int | float) else tuple(scale)
    if len(pair) != 2 or not all(math.isfinite(s) and s > 0 for s in pair):
        raise ConfigError(f"imresize: scale {scale} must be a positive finite number (or one per axis)")
    out = tuple(max(1, math.ceil(n * s - SIZE_TOLERANCE)) for n, s in zip(in_size, pair, strict=True))
    return (out[0], out[1]), (float(pair[0]), float(pair[1]))


def imresize_tensor(
    image: torch.Tensor,
    scale: float | Sequence[float] | None = None,
    size: Sequence[int] | None = None,
    antialias: bool = True,
) -> torch.Tensor:
    """MATLAB bicubic resize of the last two axes of a float tensor (..., H, W), e.g. a batch N x C x H x W."""
    if not image.is_floating_point() or image.ndim < 2:
        raise TypeError(f"imresize_tensor needs a floating-point tensor of at least 2 axes, got {image.dtype}")
    (out_h, out_w), (scale_h, scale_w) = output_size((image.shape[-2], image.shape[-1]), scale, size)
    # Half precisions would lose the weights' precision in the products; float32 and float64 compute as they are.
    work = image if image.dtype in (torch.float32, torch.float64) else image.float()
    axes = [(-2, out_h, scale_h), (-1, out_w, scale_w)]
    for axis, out_len, s in sorted(axes, key=lambda a: a[2]):  # (stable: height first on a tie, as MATLAB)
        if axis == -2:
            work = resize_rows(work, out_len, s, antialias)
        else:  # columns as rows of the transposed image: gathering strided columns is several times slower
            work = resize_rows(work.transpose(-1, -2).contiguous(), out_len, s, antialias).transpose(-1, -2)
    return work.contiguous().to(image.dtype)


def imresize(
    image: np.ndarray | torch.Tensor,
    scale: float | Sequence[float] | None = None,
    size: Sequence[int] | None = None,
    antialias: bool = True,
) -> np.ndarray | torch.Tensor:
    """MATLAB `imresize(image, scale)` / `imresize(image, [h w])`, bicubic: a float tensor (..., H, W) stays a
    tensor of its dtype; a NumPy HxW or HxWxC array of any sample type comes back as HxW(xC) floats in the same
    scale (float64 for integers, unrounded and unclipped)."""
    if isinstance(image, torch.Tensor):
        return imresize_tensor(image, scale, size, antialias)
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise TypeError(f"imresize needs an HxW or HxWxC array, got shape {arr.shape}")
    dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64
    planar = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arr, -1, 0) if arr.ndim == 3 else arr, dtype=dtype))
    out = imresize_tensor(planar, scale, size, antialias).numpy()
    return np.ascontiguousarray(np.moveaxis(out, 0, -1)) if arr.ndim == 3 else out


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """An HxW(xC) array cropped at the bottom and right to sides divisible by `scale` (the SR papers' HR crop)."""
    h, w = image.shape[0], image.shape[1]
    return image[: h - h % scale, : w - w % scale]


def bicubic_downscale(image: np.ndarray | torch.Tensor, scale: int) -> np.ndarray | torch.Tensor:
    """The classical SR input: MATLAB bicubic (antialiased) down by an integer `scale` whose multiple the sides are."""
    h, w = (image.shape[-2], image.shape[-1]) if isinstance(image, torch.Tensor) else image.shape[:2]
    if h % scale or w % scale:
        raise ConfigError(
            f"bicubic_downscale: a {w}x{h} image does not divide by scale {scale}; crop it first (modcrop)"
        )
    return imresize(image, size=(h // scale, w // scale))


def bicubic_upscale(image: np.ndarray | torch.Tensor, scale: int) -> np.ndarray | torch.Tensor:
    """The bicubic baseline SR is scored against: MATLAB bicubic up by an integer `scale` (exactly scale x the size)."""
    h, w = (image.shape[-2], image.shape[-1]) if isinstance(image, torch.Tensor) else image.shape[:2]
    return imresize(image, size=(h * scale, w * scale))
