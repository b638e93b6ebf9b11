"""What a generator does to image sizes: the one object translate, tiling and export read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Geometry:
    """A generator's size contract: its total downsampling, the multiple it pads input sides to, the smallest side
    it pads up to, and the output/input size ratio (1 for image-to-image translation at the same size)."""

    stride: int
    multiple: int
    min_side: int
    scale: int = 1
