"""torchvision.transforms' semantics for the names the reference uses, on PIL images (see ../README.md)."""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    LANCZOS = "lanczos"


_PIL = {
    InterpolationMode.NEAREST: Image.NEAREST,
    InterpolationMode.BILINEAR: Image.BILINEAR,
    InterpolationMode.BICUBIC: Image.BICUBIC,
    InterpolationMode.LANCZOS: Image.LANCZOS,
}


class Compose:
    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: Any) -> Any:
        for t in self.transforms:
            x = t(x)
        return x


class Lambda:
    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def __call__(self, x: Any) -> Any:
        return self.fn(x)


class Resize:
    """`size` is [h, w], as the reference passes it."""

    def __init__(self, size: Sequence[int], interpolation: InterpolationMode = InterpolationMode.BILINEAR) -> None:
        self.size = (int(size[1]), int(size[0]))
        self.resample = _PIL[interpolation]

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.resize(self.size, self.resample)


class RandomCrop:
    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        x = random.randint(0, w - self.size)
        y = random.randint(0, h - self.size)
        return img.crop((x, y, x + self.size, y + self.size))


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.transpose(Image.FLIP_LEFT_RIGHT) if random.random() < self.p else img


class Grayscale:
    def __init__(self, num_output_channels: int = 1) -> None:
        self.channels = num_output_channels

    def __call__(self, img: Image.Image) -> Image.Image:
        grey = img.convert("L")
        return grey if self.channels == 1 else Image.merge("RGB", (grey, grey, grey))


class ToTensor:
    """PIL image (uint8) to a float CxHxW tensor in [0, 1]."""

    def __call__(self, img: Image.Image) -> torch.Tensor:
        arr = np.asarray(img, dtype=np.uint8)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255.0)


class Normalize:
    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return (t - self.mean) / self.std
