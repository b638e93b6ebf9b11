"""What a generator does to image sizes: the one object translate, tiling and export read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Geometry:
    """A generator's size contract: its total downsampling, the multiple it pads input sides to, the smallest side
    it pads up to, the output/input size ratio (1 for image-to-image translation at the same size), and `context`:
    the input pixels on each side of an output pixel that change it noticeably (0: none beyond what the default
    tile overlap covers). Tiled translation overlaps tiles by twice the context by default (up to a quarter tile)."""

    stride: int
    multiple: int
    min_side: int
    scale: int = 1
    context: int = 0
