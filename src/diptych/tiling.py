"""Seamless tiled translation: overlapping tiles, raised-cosine blending, rows streamed in and out.

Peak memory is bounded by the tile size and the image width (a band of tile rows), not by the image area,
when the source can be read by rows (uncompressed TIFF/BigTIFF, .npy) and the output is a TIFF.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch

from .atomic import atomic_path
from .data.io import from_tensor, tiff_codec
from .data.windows import RowSource
from .errors import ConfigError

TIFF_TILE = 256  # tile edge of streamed TIFF output (a multiple of 16, as TIFF requires)
OUTPUT_CHUNK_ROWS = TIFF_TILE  # finished output rows are handed on this many at a time


Span = tuple[int, int]  # [start, end) of a tile along one axis


def padded(length: int, multiple: int, minimum: int = 0) -> int:
    """`length` rounded up to a multiple of `multiple`, and at least `minimum` (what the network processes)."""
    return max(-(-length // multiple) * multiple, minimum)


def tile_spans(size: int, tile: int, overlap: int, quantum: int = 1, multiple: int = 1, minimum: int = 0) -> list[Span]:
    """Tiles of length `tile` covering [0, size) from the left, neighbours sharing >= `overlap` pixels.

    Each tile starts as late as the overlap allows, on a multiple of `quantum`; the last one ends at the image
    edge and is shorter, so an awkward size costs a small last tile, not a whole one. With `quantum` = the
    network's stride, each tile's downsampling grid and end padding line up with the whole image's, so a
    generator whose receptive field fits in the overlap gives the whole-image output exactly. With quantum 1
    the last tile is extended back to what the network would pad it to (`padded(length, multiple, minimum)`:
    real pixels instead of padding), unless that would reach into the tile before its neighbour."""
    if size <= tile:
        return [(0, size)]
    step = tile - overlap
    if step < quantum:
        raise ValueError(f"tile {tile} leaves no step after overlap {overlap} on a grid of {quantum}")
    starts = [0]
    while starts[-1] + tile < size:
        starts.append((starts[-1] + step) // quantum * quantum)
    spans = [(s, s + tile) for s in starts[:-1]]
    last = starts[-1]
    if quantum == 1:
        # Moved back only (never forward: that would cut its overlap), and not into the tile before its
        # neighbour, so no more tiles share a pixel than the overlap already makes share it.
        earliest = spans[-2][1] if len(spans) > 1 else 0
        last = min(last, max(size - min(padded(size - last, multiple, minimum), tile), earliest))
    spans.append((last, size))
    return spans


def alignment(stride: int, overlap: int) -> int:
    """The grid tiles start on: the network's stride when it is no larger than the overlap (then the receptive
    field can fit in the overlap and alignment makes tiling exact); otherwise 1, since a deep network's
    bottleneck sees the whole tile anyway and aligning it would cost many more tiles."""
    return stride if 1 < stride <= overlap else 1


def padded_work(spans: list[Span], multiple: int, minimum: int = 0) -> int:
    """Pixels the network processes along an axis: every tile padded as the network pads it."""
    return sum(padded(e - s, multiple, minimum) for s, e in spans)


def plan_axis(
    size: int, tile_max: int, overlap: int, stride: int, multiple: int | None = None, minimum: int = 0
) -> list[Span]:
    """The tiles along an axis (see `tile_spans`) of the length up to `tile_max` that needs the least work.

    Tile lengths are multiples of `multiple` (default: `stride`; 32 for a U-Net, whose deeper levels pad themselves),
    and the network pads a tile to at least `minimum`. Small tiles cost more per pixel (per-tile overhead, a
    1x1 bottleneck), modelled as `stride` extra pixels per tile, so a smaller tile is chosen only when it saves
    clearly (on 2 Zen 4 cores a unet_256 runs 256-pixel tiles at 0.56 s/MP and 512-pixel or larger ones at
    0.31-0.33). Between plans of equal cost the one whose shortest tile is longest wins: 736 + 736 + 704
    pixels on a 2048 pixel side (unet_256, tiles of up to 1024) rather than two of 1024 and a thin one, as much work on paper but the thin
    strip runs at the small-tile rate."""
    multiple = stride if multiple is None else multiple
    if size <= tile_max:
        return [(0, size)]  # one tile: no overlap needed at all
    quantum = alignment(stride, overlap)
    if tile_max - overlap < quantum:
        quantum = 1  # an overlap this close to the tile leaves no room to align the starts
    # Aligned starts (quantum > 1) need aligned lengths too, or a tile's end would cut a deep level's grid cell
    # and pad it where the whole image has real pixels.
    step = multiple if quantum == 1 else math.lcm(multiple, quantum)
    best: list[Span] = []
    best_cost = (math.inf, 0)
    for tile in range(tile_max - tile_max % step, 0, -step):
        if tile - overlap < quantum or (best and tile < minimum):
            break  # (tiles shorter than the minimum are padded up to it: as much work for less image)
        spans = tile_spans(size, tile, overlap, quantum, step, minimum)
        cost = (padded_work(spans, multiple, minimum) + stride * len(spans), -min(e - s for s, e in spans))
        if cost < best_cost:
            best, best_cost = spans, cost
    return best


def blend_weights(spans: list[Span], index: int, margin: int = 0) -> np.ndarray:
    """1-D weights of one tile: raised-cosine ramps over its overlaps with the previous and next tile, leaving out
    `margin` pixels at each end of an overlap (zero weight next to the tile's cut edge, full weight at the other
    end), so the pixels a cut deprives of context never reach the output. They sum to one at every pixel when no
    more than two tiles share one (overlaps up to half a tile); `tiled_rows` divides by the weight sum, so larger
    overlaps blend correctly too."""
    s, e = spans[index]
    w = np.ones(e - s, dtype=np.float32)
    if index > 0:
        ov = spans[index - 1][1] - s
        if ov > 0:
            w[:ov] *= 0.5 - 0.5 * np.cos(np.pi * _ramp(ov, margin))
    if index + 1 < len(spans):
        ov = e - spans[index + 1][0]
        if ov > 0:
            w[e - s - ov :] *= 0.5 + 0.5 * np.cos(np.pi * _ramp(ov, margin))
    return w


def _ramp(overlap: int, margin: int) -> np.ndarray:
    """Positions 0..1 across an overlap: 0 over its first `margin` pixels, 1 over its last, rising linearly between
    (an overlap too short for both margins keeps what is left of it)."""
    margin = min(margin, (overlap - 1) // 2)
    r = (np.arange(overlap, dtype=np.float32) + 0.5 - margin) / (overlap - 2 * margin)
    return np.clip(r, 0.0, 1.0)


@dataclass(frozen=True)
class TileSettings:
    """Tile edge and overlap in (input) pixels, how many tiles go through the network at once, and the network's
    geometry: its total downsampling, how it pads inputs (to a multiple of `multiple`, at least `minimum`), and its
    output scale (tiles are cut in input pixels and blended in output pixels, `scale` x larger)."""

    tile: int
    overlap: int
    batch_size: int = 1
    stride: int = 1
    multiple: int = 1
    minimum: int = 0
    scale: int = 1

    @property
    def margin(self) -> int:
        """Input pixels at each end of an overlap left out of the blend (a quarter of it): a tile's outputs next to
        its cut edges lack the context the whole image gives them."""
        return self.overlap // 4

    def plan(self, size: int) -> list[Span]:
        """The tiles along an axis of `size` pixels."""
        return plan_axis(size, self.tile, self.overlap, self.stride, self.multiple, self.minimum)

    def work(self, spans: list[Span]) -> int:
        """Pixels the network processes along an axis."""
        return padded_work(spans, self.multiple, self.minimum)


def default_overlap(tile: int, context: int = 0) -> int:
    """The overlap of tiles when none is given: an eighth of the tile, at least 16 px (small tiles of a shallow
    network), and twice the network's context (so the blend's middle is `context` pixels from both tiles' cuts)
    where a quarter of the tile allows it (the network then works on at most 1.8x the image's pixels); at most
    half the tile."""
    return min(max(16, tile // 8, min(2 * context, tile // 4)), tile // 2)


def check_tiles(settings: TileSettings) -> None:
    """Reject tiles the network cannot use (or would pad up to a larger size) and overlaps that leave no progress."""
    multiple, minimum = settings.multiple, max(settings.multiple, settings.minimum)
    if settings.tile % multiple:
        nearest = max(minimum, round(settings.tile / multiple) * multiple)
        what = "stride" if multiple == settings.stride else "padding multiple (what it pads inputs to)"
        raise ConfigError(
            f"--tile {settings.tile} must be a multiple of the network's {what} {multiple}; try --tile {nearest}"
        )
    if settings.tile < minimum:
        raise ConfigError(
            f"--tile {settings.tile} is smaller than the network's smallest input ({minimum} px), to which every "
            f"tile would be padded; use --tile {minimum} or more"
        )
    if not 0 <= settings.overlap < settings.tile:
        raise ConfigError(f"--overlap {settings.overlap} must be >= 0 and smaller than --tile {settings.tile}")


def axis_totals(spans: list[Span], size: int, margin: int = 0) -> np.ndarray:
    """Sum of the tiles' 1-D blend weights at every pixel of an axis. A tile's 2-D weight is the outer product
    of its row and column weights, so the 2-D sum at (y, x) is totals_y[y] * totals_x[x]: no image-sized sum."""
    total = np.zeros(size, dtype=np.float32)
    for i, (s, e) in enumerate(spans):
        total[s:e] += blend_weights(spans, i, margin)
    return total


def tiled_rows(
    source: RowSource,
    translate: Callable[[torch.Tensor], torch.Tensor],
    tile_input: Callable[[int, int, int, int], torch.Tensor],
    out_channels: int,
    settings: TileSettings,
) -> Iterator[np.ndarray]:
    """Yield finished output rows (float32, [-1, 1], HxWxC bands, top to bottom) of a tiled translation; the
    output is `settings.scale` x the source's size.

    `tile_input(y0, y1, x0, x1)` gives the network input (CxHxW) for that window of the source; it may read a pixel
    beyond it on every side (rows from y0 - 1 on stay readable until the band is done). Inputs are encoded tile by
    tile, so a one-hot label map of many classes never exists at band size."""
    k = settings.scale
    ys, xs = settings.plan(source.height), settings.plan(source.width)
    oys, oxs = _scaled(ys, k), _scaled(xs, k)  # the same tiles in output pixels
    h, w, margin = source.height * k, source.width * k, settings.margin * k
    wx = [torch.from_numpy(blend_weights(oxs, j, margin)) for j in range(len(oxs))]
    total_y = torch.from_numpy(axis_totals(oys, h, margin)).clamp_min_(1e-8)[:, None, None]
    total_x = torch.from_numpy(axis_totals(oxs, w, margin)).clamp_min_(1e-8)[None, :, None]
    # One band's weighted sums, reused: output rows [top, top + band height); a band starts where the last yielded
    # rows end, and the rows it shares with the next band are moved to the top of the buffer. In-place torch ops: no
    # tile-sized temporaries of the output channels (only the H x W x 1 weight), both cores busy.
    rows = max(e - s for s, e in oys)
    acc = torch.zeros((rows, w, out_channels), dtype=torch.float32)
    top = 0  # output row of acc[0]; equals the current band's first row
    for i, (y0, y1) in enumerate(oys):
        source.release(ys[i][0] - 1)  # source rows above this band (and its one-row margin) are no longer needed
        wy = torch.from_numpy(blend_weights(oys, i, margin))[:, None, None]
        for first in range(0, len(xs), settings.batch_size):
            cols = list(range(first, min(first + settings.batch_size, len(xs))))
            widths = {xs[j][1] - xs[j][0] for j in cols}
            for group in [cols] if len(widths) == 1 else [[j] for j in cols]:
                outs = translate(torch.stack([tile_input(*ys[i], *xs[j]) for j in group]))
                for j, out in zip(group, outs, strict=True):
                    x0, x1 = oxs[j]
                    acc[y0 - top : y1 - top, x0:x1].addcmul_(out.permute(1, 2, 0), wy * wx[j][None, :, None])
                del outs, out  # not held while the consumer converts and writes the finished rows
        done = oys[i + 1][0] if i + 1 < len(oys) else h
        # Finished rows go out in small chunks, so their conversion and encoding stay small too.
        for r in range(0, done - top, OUTPUT_CHUNK_ROWS):
            r1 = min(r + OUTPUT_CHUNK_ROWS, done - top)
            yield (acc[r:r1] / (total_y[top + r : top + r1] * total_x)).numpy()
        keep = y1 - done  # rows shared with the next band
        if keep > 0:
            acc[:keep] = acc[done - top : y1 - top].clone()
        acc[max(keep, 0) :] = 0.0
        top = done


def _scaled(spans: list[Span], scale: int) -> list[Span]:
    """Spans of input pixels as the spans of output pixels they become."""
    return [(s * scale, e * scale) for s, e in spans]


def write_tiff_streamed(
    path: Path,
    height: int,
    width: int,
    channels: int,
    dtype: np.dtype,
    bands: Iterator[np.ndarray],
    compression: str = "none",
) -> Path:
    """Write HxWxC bands (top to bottom, any heights) as a tiled TIFF without holding the image in memory,
    compressed tile by tile with `compression` (see data.io.TIFF_COMPRESSIONS)."""

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
            **tiff_codec(compression, dtype),
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


def auto_tile(bytes_per_pixel: float, budget: int, stride: int, cap: int = 4096, minimum: int = 0) -> int:
    """The largest tile (a multiple of the stride, at least one stride and `minimum`) whose activations fit in
    `budget` bytes."""
    side = int(math.sqrt(max(budget, 1) / max(bytes_per_pixel, 1e-9)))
    return int(min(cap, max(stride, minimum, side // stride * stride)))


def available_memory() -> int:
    """Bytes of memory available now (Linux MemAvailable; 4 GiB where it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30
