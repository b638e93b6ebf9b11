"""Joint random transforms: the same resize, crop and flip applied to A and B."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError


@dataclass(frozen=True)
class JointTransform:
    """pix2pix preprocessing (resize_and_crop, crop, scale_width, scale_width_and_crop, none) plus flip."""

    preprocess: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) this transform produces for an input of the given size."""
        h, w = self.resized_size(height, width)
        if self.preprocess in ("resize_and_crop", "crop", "scale_width_and_crop"):
            return self.crop_size, self.crop_size
        return h, w

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """Size after the resize stage (before cropping)."""
        if self.preprocess == "resize_and_crop":
            return self.load_size, self.load_size
        if self.preprocess in ("scale_width", "scale_width_and_crop"):
            # Keep the aspect ratio; never go below the crop size in height (as pix2pix).
            return max(self.crop_size, round(self.load_size * height / width)), self.load_size
        return height, width

    def check(self, height: int, width: int, name: str) -> None:
        """Raise DataError if an image of this size cannot be transformed (crop larger than the image)."""
        h, w = self.resized_size(height, width)
        if self.preprocess in ("crop", "scale_width_and_crop", "resize_and_crop") and (
            h < self.crop_size or w < self.crop_size
        ):
            raise DataError(
                f"{name}: crop {self.crop_size}x{self.crop_size} is larger than the image "
                f"({w}x{h} after --preprocess {self.preprocess}); use a smaller --crop-size or --preprocess resize_and_crop"
            )

    def __call__(
        self, images: list[torch.Tensor], rng: np.random.Generator, nearest: tuple[bool, ...] = ()
    ) -> list[torch.Tensor]:
        """Apply one random draw of the transform to every CxHxW tensor in `images`.

        Images flagged in `nearest` (label and instance maps) are resized by nearest neighbour, never blended.
        """
        height, width = images[0].shape[-2:]
        h, w = self.resized_size(height, width)
        flags = (tuple(nearest) + (False,) * len(images))[: len(images)]
        out = [
            resize_nearest(img, h, w) if flag else resize(img, h, w) for img, flag in zip(images, flags, strict=True)
        ]
        if self.preprocess in ("resize_and_crop", "crop", "scale_width_and_crop"):
            top = int(rng.integers(0, h - self.crop_size + 1))
            left = int(rng.integers(0, w - self.crop_size + 1))
            out = [img[:, top : top + self.crop_size, left : left + self.crop_size] for img in out]
        if self.flip and rng.random() < 0.5:
            out = [img.flip(-1) for img in out]
        return [img.contiguous() for img in out]


def resize_nearest(img: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Nearest-neighbour resize (for maps of integer ids, whose values must not be blended)."""
    if img.shape[-2:] == (height, width):
        return img
    return F.interpolate(img[None], size=(height, width), mode="nearest-exact")[0]


def resize(img: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Antialiased bicubic resize of a CxHxW tensor in [-1, 1] (a no-op at the same size)."""
    if img.shape[-2:] == (height, width):
        return img
    out = F.interpolate(img[None], size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return out[0].clamp_(-1.0, 1.0)
