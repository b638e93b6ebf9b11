"""Seamless tiled translation: overlapping tiles, raised-cosine blending, rows streamed in and out.

Peak memory is bounded by the tile size and the image width (a band of tile rows), not by the image area,
when the source can be read by rows (uncompressed TIFF/BigTIFF, .npy) and the output is a TIFF.
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch

from .atomic import atomic_path
from .data.io import TIFF_EXTENSIONS, from_tensor, read_image
from .errors import ConfigError, DataError

TIFF_TILE = 256  # tile edge of streamed TIFF output (a multiple of 16, as TIFF requires)


def tile_starts(size: int, tile: int, overlap: int, quantum: int = 1) -> list[int]:
    """Start offsets of the fewest tiles of length `tile` that cover [0, size), neighbours sharing >= `overlap`,
    spread evenly (so every overlap is about the same).

    With `quantum` > 1 every start is a multiple of it, and the last tile runs to the image edge (up to
    quantum - 1 pixels longer than `tile`; see `tile_end`): with quantum = the network's stride, each tile's
    downsampling grid and end padding line up with the whole image's, so a generator whose receptive field
    fits in the overlap gives the whole-image output exactly."""
    if size <= tile:
        return [0]
    step = max(1, tile - overlap - (quantum - 1))  # snapping down by < quantum must keep the overlap
    n = math.ceil((size - tile) / step) + 1
    starts = [round(i * (size - tile) / (n - 1)) for i in range(n)]
    return [x - x % quantum for x in starts]


def tile_end(starts: list[int], index: int, tile: int, size: int) -> int:
    """Where tile `index` ends: `tile` pixels on, or the image edge (the last tile always reaches it)."""
    return size if index == len(starts) - 1 else min(starts[index] + tile, size)


def alignment(stride: int, overlap: int) -> int:
    """The grid tiles start on: the network's stride when it is no larger than the overlap (then the receptive
    field can fit in the overlap and alignment makes tiling exact); otherwise 1, since a deep network's
    bottleneck sees the whole tile anyway and aligning it would cost many more tiles."""
    return stride if 1 < stride <= overlap else 1


def plan_axis(size: int, tile_max: int, overlap: int, stride: int) -> int:
    """The tile length (a multiple of `stride`, at most `tile_max`) that needs the least padded work along an axis.

    The network pads every tile to a multiple of its stride, so the work is tiles x length; a smaller tile
    can cover an awkward size with less waste. Small tiles cost more per pixel (per-tile overhead, a 1x1
    bottleneck), modelled as a factor 1 + stride / length, so a smaller tile is chosen only when it saves
    clearly (on 2 Zen 4 cores a unet_256 runs 256-pixel tiles at 1.2 s/MP and 512-pixel tiles at 0.7)."""
    if size <= tile_max:
        return size  # one tile: no overlap needed at all
    best, best_cost = tile_max, math.inf
    for tile in range(tile_max, stride - 1, -stride):
        if tile <= overlap:
            break
        cost = len(tile_starts(size, tile, overlap, alignment(stride, overlap))) * tile * (1 + stride / tile)
        if cost < best_cost:
            best, best_cost = tile, cost
    return best


def blend_weights(starts: list[int], index: int, tile: int, size: int) -> np.ndarray:
    """1-D weights of one tile: raised-cosine ramps over its overlaps with the previous and next tile."""
    s = starts[index]
    e = tile_end(starts, index, tile, size)
    w = np.ones(e - s, dtype=np.float32)
    if index > 0:
        ov = tile_end(starts, index - 1, tile, size) - s
        if ov > 0:
            r = (np.arange(ov, dtype=np.float32) + 0.5) / ov
            w[:ov] *= 0.5 - 0.5 * np.cos(np.pi * r)
    if index + 1 < len(starts):
        ov = e - starts[index + 1]
        if ov > 0:
            r = (np.arange(ov, dtype=np.float32) + 0.5) / ov
            w[e - s - ov :] *= 0.5 + 0.5 * np.cos(np.pi * r)
    return w


class RowSource:
    """An image readable by row ranges; memory-mapped where the format allows, else decoded once."""

    def __init__(self, path: Path, palette_indices: bool = False) -> None:
        self.path = Path(path)
        self.streamed = False
        arr: np.ndarray | None = None
        suffix = self.path.suffix.lower()
        try:
            if suffix in TIFF_EXTENSIONS:
                try:
                    arr = tifffile.memmap(self.path, mode="r")
                    with tifffile.TiffFile(self.path) as tif:
                        axes = tif.series[0].axes
                    if arr.ndim == 3 and axes.endswith("YX"):
                        arr = np.moveaxis(arr, 0, -1)  # planar or page stack (CYX): a strided view, still lazy
                    self.streamed = True
                except (ValueError, tifffile.TiffFileError):
                    arr = None  # compressed, tiled or non-contiguous: decode below
            elif suffix == ".npy":
                arr = np.load(self.path, mmap_mode="r")
                self.streamed = True
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read ({exc})") from None
        if arr is None:
            arr = read_image(self.path, palette_indices)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3:
            raise DataError(f"{self.path}: expected an HxW or HxWxC image, got shape {arr.shape}")
        self.array = arr
        self.height, self.width, self.channels = arr.shape

    def release(self, y: int) -> None:
        """Let the OS drop memory-mapped pages of rows above `y` (they count as resident memory otherwise)."""
        mm = getattr(self.array, "_mmap", None)
        if mm is None or y <= 0:
            return
        row_bytes = self.width * self.channels * self.array.dtype.itemsize
        start = int(getattr(self.array, "offset", 0)) % mmap.ALLOCATIONGRANULARITY  # where numpy maps the data
        end = start + y * row_bytes
        page = mmap.PAGESIZE
        begin = start // page * page
        length = (end - begin) // page * page
        if length > 0 and hasattr(mm, "madvise"):
            mm.madvise(mmap.MADV_DONTNEED, begin, length)

    def rows(self, y0: int, y1: int) -> np.ndarray:
        """Rows [y0, y1) as an in-memory HxWxC array of the file's sample type."""
        block = np.array(self.array[y0:y1])
        return block.astype(np.uint8) * 255 if block.dtype == bool else block


@dataclass(frozen=True)
class TileSettings:
    """Tile edge and overlap in pixels, and how many tiles go through the network at once."""

    tile: int
    overlap: int
    batch_size: int = 1
    stride: int = 1  # the network's: tiles are multiples of it


def check_tiles(settings: TileSettings, stride: int) -> None:
    """Reject tiles the network cannot use and overlaps that leave no progress."""
    if settings.tile < stride or settings.tile % stride:
        nearest = max(stride, round(settings.tile / stride) * stride)
        raise ConfigError(
            f"--tile {settings.tile} must be a multiple of the network stride {stride} (2**depth); try --tile {nearest}"
        )
    if not 0 <= settings.overlap < settings.tile:
        raise ConfigError(f"--overlap {settings.overlap} must be >= 0 and smaller than --tile {settings.tile}")


def tiled_rows(
    source: RowSource,
    translate: Callable[[torch.Tensor], torch.Tensor],
    band_input: Callable[[int, int], torch.Tensor],
    out_channels: int,
    settings: TileSettings,
) -> Iterator[np.ndarray]:
    """Yield finished output rows (float32, [-1, 1], HxWxC bands, top to bottom) of a tiled translation.

    `band_input(y0, y1)` gives the network input for image rows [y0, y1) (full width); it may read a row
    above and below (rows from y0 - 1 on stay readable until the band is done)."""
    h, w = source.height, source.width
    th, tw = (plan_axis(n, settings.tile, settings.overlap, settings.stride) for n in (h, w))
    q = alignment(settings.stride, settings.overlap)
    ys, xs = tile_starts(h, th, settings.overlap, q), tile_starts(w, tw, settings.overlap, q)
    wx = [blend_weights(xs, j, tw, w) for j in range(len(xs))]
    acc = np.zeros((0, w, out_channels), dtype=np.float32)
    wsum = np.zeros((0, w, 1), dtype=np.float32)
    top = 0  # image row of acc[0]
    for i, y0 in enumerate(ys):
        y1 = tile_end(ys, i, th, h)
        grow = y1 - (top + acc.shape[0])
        if grow > 0:
            acc = np.concatenate([acc, np.zeros((grow, w, out_channels), np.float32)])
            wsum = np.concatenate([wsum, np.zeros((grow, w, 1), np.float32)])
        band = band_input(y0, y1)
        source.release(y0 - 1)  # rows above this band (and its one-row margin) are no longer needed
        wy = blend_weights(ys, i, th, h)
        for first in range(0, len(xs), settings.batch_size):
            cols = list(range(first, min(first + settings.batch_size, len(xs))))
            widths = {tile_end(xs, j, tw, w) - xs[j] for j in cols}
            groups = [cols] if len(widths) == 1 else [[j] for j in cols]
            for group in groups:
                crops = torch.stack([band[:, :, xs[j] : tile_end(xs, j, tw, w)] for j in group])
                outs = translate(crops).numpy()
                for j, out in zip(group, outs, strict=True):
                    weight = wy[:, None, None] * wx[j][None, :, None]
                    x0, x1 = xs[j], tile_end(xs, j, tw, w)
                    acc[y0 - top : y1 - top, x0:x1] += out.transpose(1, 2, 0) * weight
                    wsum[y0 - top : y1 - top, x0:x1] += weight
        done = ys[i + 1] if i + 1 < len(ys) else h
        if done > top:
            yield acc[: done - top] / np.maximum(wsum[: done - top], 1e-8)
            acc, wsum, top = acc[done - top :], wsum[done - top :], done


def write_tiff_streamed(
    path: Path, height: int, width: int, channels: int, dtype: np.dtype, bands: Iterator[np.ndarray]
) -> Path:
    """Write HxWxC bands (top to bottom, any heights) as a tiled TIFF without holding the image in memory."""

    def tiles() -> Iterator[np.ndarray]:
        pending = np.zeros((0, width, channels), dtype=dtype)
        for band in bands:
            pending = np.concatenate([pending, band])
            while pending.shape[0] >= TIFF_TILE:
                yield from _row_of_tiles(pending[:TIFF_TILE], width)
                pending = pending[TIFF_TILE:]
        if pending.shape[0]:
            yield from _row_of_tiles(pending, width)

    shape = (height, width) if channels == 1 else (height, width, channels)
    photometric = "rgb" if channels in (3, 4) else "minisblack"
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            data=(t if channels > 1 else t[:, :, 0] for t in tiles()),
            shape=shape,
            dtype=dtype,
            tile=(TIFF_TILE, TIFF_TILE),
            photometric=photometric,
            planarconfig="contig" if channels > 1 else None,
            bigtiff=height * width * channels * np.dtype(dtype).itemsize > 2**31,
        )
    return path


def _row_of_tiles(rows: np.ndarray, width: int) -> Iterator[np.ndarray]:
    for x in range(0, width, TIFF_TILE):
        tile = rows[:, x : x + TIFF_TILE]
        if tile.shape[:2] != (TIFF_TILE, TIFF_TILE):
            padded = np.zeros((TIFF_TILE, TIFF_TILE, rows.shape[2]), dtype=rows.dtype)
            padded[: tile.shape[0], : tile.shape[1]] = tile
            tile = padded
        yield np.ascontiguousarray(tile)


def to_samples(band: np.ndarray, dtype: np.dtype, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """A float [-1, 1] HxWxC band in the output sample type (and value range, see data/io.from_tensor)."""
    return from_tensor(torch.from_numpy(np.ascontiguousarray(band.transpose(2, 0, 1))), dtype, value_range)


def auto_tile(bytes_per_pixel: float, budget: int, stride: int, cap: int = 4096) -> int:
    """The largest tile (a multiple of the stride, at least one stride) whose activations fit in `budget` bytes."""
    side = int(math.sqrt(max(budget, 1) / max(bytes_per_pixel, 1e-9)))
    return int(min(cap, max(stride, side // stride * stride)))


def available_memory() -> int:
    """Bytes of memory available now (Linux MemAvailable; 4 GiB where it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30
