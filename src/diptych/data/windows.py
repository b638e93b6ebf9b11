"""Windowed reads of images larger than memory: only the pixels a window needs are read or decoded.

- Uncompressed strip TIFF/BigTIFF (interleaved, planar or page stacks) and `.npy`: memory-mapped.
- Tiled or compressed TIFF (deflate, LZW, JPEG, zstd, ... through imagecodecs): opened as a zarr array over
  tifffile's store, so a window decodes only the tiles or strips it touches, and a band of rows is decoded
  once for all the windows along it (widened to whole chunk rows: a single strip of up to 256 MiB is decoded
  once for the whole image; a larger one is decoded whole up front).
- Everything else (PNG, JPEG, ...): decoded whole, once.
Damaged compressed data surfaces as a DataError naming the file when the window that holds it is read.
"""

from __future__ import annotations

import logging
import mmap
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image

from ..errors import DataError
from .checks import check_regular_file
from .io import (
    DECODER_ERRORS,
    TIFF_EXTENSIONS,
    bomb_error,
    check_tiff_chunks,
    check_tiff_pixels,
    corrupt_error,
    image_array,
    load_npy,
    read_image,
    tiff_orientation,
)

BAND_CACHE_BYTES = 256 << 20  # a chunked source keeps a decoded band of rows up to this size (wider: per window)


def _quiet_abandoned_zarr_tasks() -> None:
    """zarr decodes chunks as asyncio tasks; after one fails, the others are left unfinished, and at exit asyncio
    and Python would print a screenful about them ("Task was destroyed but it is pending!", "Event loop is
    closed"). The DataError already says what went wrong, so those reports are dropped: only zarr's own."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        code = getattr(unraisable.object, "cr_code", None)
        if code is None or "zarr" not in code.co_filename:
            previous(unraisable)

    if getattr(previous, "__name__", "") != "hook":  # installed once
        sys.unraisablehook = hook


class ChunkedTiff:
    """A tiled or compressed TIFF's first series as a lazy H x W x C array (zarr over tifffile's store)."""

    def __init__(self, tif: tifffile.TiffFile, array: Any, axes: str) -> None:
        self._tif, self._z = tif, array
        self._planar = len(axes) == 3 and axes.endswith("YX")  # CYX / SYX: channels first
        shape = tuple(array.shape)
        self.shape = (*shape, 1) if len(shape) == 2 else (shape[1], shape[2], shape[0]) if self._planar else shape
        self.dtype = np.dtype(array.dtype)
        self.ndim = 3
        self.chunk_rows = int(array.chunks[1] if self._planar else array.chunks[0])

    @classmethod
    def open(cls, path: Path) -> ChunkedTiff | None:
        """None where the image is better decoded whole: zarr is not installed (Python 3.10), the file is no
        readable TIFF (read_image then names the problem), or one row of its chunks is larger than a band may be
        (a huge single strip: decoding it once beats once per tile). Smaller tall chunks are decoded once and
        kept for every band they cover (see `RowSource.rows`)."""
        try:
            import zarr
        except ImportError:
            return None
        try:
            tif = tifffile.TiffFile(path)
        except (OSError, tifffile.TiffFileError):
            return None
        try:
            series = tif.series[0]
            if len(series.shape) not in (2, 3):
                tif.close()
                return None
            check_tiff_pixels(path, series)
            check_tiff_chunks(path, tif, series)
            chunked = cls(tif, zarr.open(series.aszarr(level=0), mode="r"), series.axes)
        except Image.DecompressionBombError:
            tif.close()
            raise bomb_error(path) from None
        except DataError:
            tif.close()
            raise
        except Exception as exc:  # a layout (or tifffile/zarr pairing) that cannot be windowed: decode it whole
            tif.close()
            print(
                f"diptych: warning: {path}: cannot be read window by window ({exc}); decoding it whole", file=sys.stderr
            )
            return None
        _, width, channels = chunked.shape
        if chunked.chunk_rows * width * channels * chunked.dtype.itemsize > BAND_CACHE_BYTES:
            chunked.close()
            return None
        return chunked

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        ys, xs = key
        try:
            block = np.moveaxis(self._z[:, ys, xs], 0, -1) if self._planar else self._z[ys, xs]
        except DECODER_ERRORS as exc:
            _quiet_abandoned_zarr_tasks()
            raise corrupt_error(Path(self._tif.filehandle.path), exc) from None
        return block[:, :, None] if block.ndim == 2 else block

    def close(self) -> None:
        self._tif.close()


class RowSource:
    """An image readable by windows of rows and columns; see the module docstring for what is read lazily."""

    _chunked: ChunkedTiff | None = None
    _band: np.ndarray | None = None  # full-width rows of a chunked source, decoded once per band
    _band_y0 = 0

    def __init__(self, path: Path, palette_indices: bool = False) -> None:
        self.path = Path(path)
        check_regular_file(self.path)
        self.streamed = False
        arr: Any = None
        suffix = self.path.suffix.lower()
        try:
            if suffix in TIFF_EXTENSIONS:
                with tifffile.TiffFile(self.path) as tif:
                    axes, upright = tif.series[0].axes, tiff_orientation(tif) == 1
                if upright:  # (a turned or mirrored TIFF is decoded whole below, and turned as read_image turns it)
                    try:
                        arr = tifffile.memmap(self.path, mode="r")
                        if arr.ndim == 3 and axes.endswith("YX"):
                            arr = np.moveaxis(arr, 0, -1)  # planar or page stack (CYX): a strided view, still lazy
                        self.streamed = True
                    except (ValueError, tifffile.TiffFileError):
                        arr = self._chunked = ChunkedTiff.open(self.path)  # compressed or tiled
                        self.streamed = arr is not None
            elif suffix == ".npy":
                arr = load_npy(self.path, mmap=True)  # (its header checked against the file first)
                self.streamed = True
        except FileNotFoundError:
            raise DataError(f"{self.path}: file not found") from None
        except DECODER_ERRORS as exc:
            raise corrupt_error(self.path, exc) from None
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

    def rows(self, y0: int, y1: int, x0: int = 0, x1: int | None = None) -> np.ndarray:
        """Rows [y0, y1) (columns [x0, x1), all by default) as an in-memory HxWxC array of the file's sample type."""
        chunked = self._chunked
        row_bytes = self.width * self.channels * np.dtype(self.array.dtype).itemsize
        if chunked is not None:
            # Decode the band's rows, widened to whole chunk rows, once for all the tiles along it (adjacent
            # tiles share TIFF tiles and strips span the width, and zarr decodes whole chunks anyway). A band of
            # input samples is often smaller than the blended band buffer, never more than BAND_CACHE_BYTES.
            a0 = y0 // chunked.chunk_rows * chunked.chunk_rows
            a1 = min(self.height, -(-y1 // chunked.chunk_rows) * chunked.chunk_rows)
            band = self._band
            if band is not None and self._band_y0 <= y0 and y1 <= self._band_y0 + band.shape[0]:
                block = band[y0 - self._band_y0 : y1 - self._band_y0, x0:x1]
            elif (a1 - a0) * row_bytes <= BAND_CACHE_BYTES:
                self._band, self._band_y0 = None, a0  # (the old band is released before the new one is decoded)
                band = self._band = np.asarray(self.array[a0:a1, 0 : self.width])
                block = band[y0 - a0 : y1 - a0, x0:x1]
            else:
                block = self.array[y0:y1, x0:x1]
        else:
            block = self.array[y0:y1, x0:x1]
        return image_array(np.array(block), self.path)

    def close(self) -> None:
        """Close the file behind a chunked source (memory maps and decoded arrays need nothing)."""
        self._band = None
        if self._chunked is not None:
            self._chunked.close()

    def __del__(self) -> None:
        self.close()
