"""Reading and writing images with their channel count and sample type kept; tensors live in [-1, 1].

Formats: Pillow's (PNG, JPEG, ...), TIFF (tifffile), NumPy .npy, DICOM (pydicom) and NIfTI slices (nibabel).
A value range (low, high) maps samples linearly to [-1, 1]; without one, the sample type's range is used.
Every decoded image passes check_samples (finite, not empty); check_encodable says what a model can take.
"""

from __future__ import annotations

import logging
import struct
import sys
import tokenize
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile
import torch
from PIL import ExifTags, Image, UnidentifiedImageError

from ..atomic import atomic_path
from ..errors import ConfigError, DataError, exception_summary
from .checks import check_regular_file
from .dicom import DICOM_EXTENSIONS, read_dicom
from .nifti import NIFTI_SUFFIXES, is_nifti, read_nifti

TIFF_EXTENSIONS = (".tif", ".tiff")
NPY_EXTENSION = ".npy"
IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    *TIFF_EXTENSIONS,
    ".webp",
    ".ppm",
    ".pgm",
    ".gif",
    NPY_EXTENSION,
    *DICOM_EXTENSIONS,
    *NIFTI_SUFFIXES,
)
ValueRange = tuple[float, float]
# What decoders raise on damaged files (found by fuzzing: files cut at every offset, random bytes after a valid
# magic number, one format under another's extension); each becomes one DataError line naming the file.
# (imagecodecs' errors derive from RuntimeError; tifffile's own deflate decoder raises zlib.error; numpy's .npy
# header parser raises tokenize.TokenError on an unclosed bracket.)
DECODER_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    RuntimeError,
    EOFError,
    LookupError,
    TypeError,
    ArithmeticError,
    MemoryError,
    struct.error,
    zlib.error,
    tokenize.TokenError,
    tifffile.TiffFileError,
)
# tifffile logs every damaged tag it meets before raising; the DataError already names the file in one line.
logging.getLogger("tifffile").setLevel(logging.CRITICAL)
# Values an input may lie beyond the model's input range, as a fraction of its span, and still be clipped into it
# (rounding, resampling overshoot); anything further out would be squashed flat, so it is refused.
RANGE_TOLERANCE = 0.01


def image_suffix(path: Path) -> str:
    """The lower-case extension of an image file, counting .nii.gz as one."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def strip_image_suffix(path: Path) -> Path:
    """The path without its image extension (x.nii.gz -> x, sub/y.png -> sub/y)."""
    path = Path(path)
    return path.with_name(path.name[: len(path.name) - len(image_suffix(path))])


def is_image_file(path: Path) -> bool:
    """Whether the file name has an image extension diptych reads."""
    return image_suffix(path) in IMAGE_EXTENSIONS


def list_images(folder: Path, recursive: bool = True) -> list[Path]:
    """Entries named like images under a folder, sorted by relative path (hidden files and folders ignored). Every
    one but a folder is listed, dangling links, FIFOs and devices too: reading them is refused with an error
    naming them (see check_regular_file), where leaving them out would drop them unsaid."""
    pattern = "**/*" if recursive else "*"
    return sorted(
        p
        for p in folder.glob(pattern)
        if is_image_file(p) and not p.is_dir() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


@dataclass(frozen=True)
class Decoded:
    """A decoded image and the EXIF orientation (1-8) that was applied to it (1: none)."""

    array: np.ndarray
    orientation: int = 1


def read_image(path: Path, palette_indices: bool = False, volume_slice: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image to an HxWxC array of its own sample type (uint8, uint16, int16, float32, ...), EXIF
    orientation applied and samples checked (see decode_image).

    palette_indices=True keeps a palette PNG's indices (label maps, VOC-style) instead of its colours;
    volume_slice=(axis, index) selects one 2-D slice of a NIfTI volume.
    """
    return decode_image(path, palette_indices, volume_slice).array


def decode_image(path: Path, palette_indices: bool = False, volume_slice: tuple[int, int] | None = None) -> Decoded:
    """read_image, also telling which EXIF orientation was applied; any damage is a DataError naming the file."""
    path = Path(path)
    check_regular_file(path)
    suffix = image_suffix(path)
    orientation = 1
    try:
        if suffix in TIFF_EXTENSIONS:
            arr, orientation = _read_tiff(path)
        elif suffix == NPY_EXTENSION:
            arr = load_npy(path)
        elif suffix in DICOM_EXTENSIONS:
            arr = read_dicom(path)
        elif is_nifti(path):
            arr = read_nifti(path, volume_slice)
        else:
            arr, orientation = _read_pil(path, palette_indices)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image file Pillow can read; remove it or pass --skip-bad") from None
    except Image.DecompressionBombError:
        raise bomb_error(path) from None
    except MemoryError:
        raise DataError(f"{path}: too large to decode in this memory; translate it with --tile N") from None
    except DECODER_ERRORS as exc:
        raise corrupt_error(path, exc) from None
    return Decoded(image_array(arr, path), orientation)


def corrupt_error(path: Path, exc: BaseException) -> DataError:
    """The one-line error for a file its decoder could not read."""
    return DataError(f"{path}: corrupt or truncated image ({exception_summary(exc)}); remove it or pass --skip-bad")


def _read_pil(path: Path, palette_indices: bool) -> tuple[np.ndarray, int]:
    """Decode with Pillow (16-bit colour PNGs with imagecodecs) and apply the EXIF orientation; returns the array
    and that orientation. Pillow's decompression-bomb warning (between its limit and twice it) becomes one line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            arr = _read_png16(path, img) if img.format == "PNG" else None
            if arr is None:
                arr = pil_to_array(img, palette_indices)
            orientation = exif_orientation(img)
    for w in caught:
        if issubclass(w.category, Image.DecompressionBombWarning):
            print(
                f"diptych: warning: {path}: more pixels than Pillow's decompression-bomb limit "
                f"({Image.MAX_IMAGE_PIXELS}); decoding it since it is under twice that",
                file=sys.stderr,
            )
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return orient(arr, orientation), orientation


def _read_png16(path: Path, img: Image.Image) -> np.ndarray | None:
    """A PNG of 16-bit colour or grey+alpha samples, which Pillow would cut to 8 bits, decoded at 16 bits
    (None for other PNGs: Pillow keeps their precision)."""
    with open(path, "rb") as f:
        header = f.read(26)
    if len(header) < 26 or header[24] != 16 or header[25] not in (2, 4, 6):  # IHDR bit depth and colour type
        return None
    arr = imagecodecs.png_decode(path.read_bytes())  # (Image.open has applied the decompression-bomb limit)
    return arr.astype(np.uint16, copy=False)


EXIF_ORIENTATION = ExifTags.Base.Orientation
# EXIF orientation -> the array operation that shows the image upright (as PIL.ImageOps.exif_transpose does).
_ORIENTATIONS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, *range(2, a.ndim)),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, *range(2, a.ndim)),
    8: lambda a: np.rot90(a, 1),
}


def exif_orientation(img: Image.Image) -> int:
    """An open image's EXIF orientation (1-8; 1, upright, when absent or invalid)."""
    try:
        value = img.getexif().get(EXIF_ORIENTATION, 1)
    except DECODER_ERRORS:  # a damaged EXIF block: the pixels are still readable, shown as stored
        return 1
    return value if isinstance(value, int) and value in _ORIENTATIONS else 1


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """An array as image viewers show it under an EXIF orientation (1-8), contiguous."""
    turn = _ORIENTATIONS.get(orientation)
    return arr if turn is None else np.ascontiguousarray(turn(arr))


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """A .npy file's shape and sample type, checked against the file before any data is read or mapped: an image
    (HxW or HxWxC, not empty) of numbers (no Python objects), with exactly the bytes its header describes."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise DataError(f"{path}: .npy format version {version[0]}.{version[1]} is not supported; save it again")
        start = f.tell()
        data_bytes = f.seek(0, 2) - start  # (2: from the end)
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
        raise DataError(f"{path}: .npy of {dtype} samples; save integer or floating-point data (no objects)")
    if len(shape) not in (2, 3):
        raise DataError(f"{path}: expected a 2-D image (HxW or HxWxC), got an array of shape {shape}")
    if 0 in shape:
        raise DataError(f"{path}: image has no pixels (shape {shape})")
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if data_bytes != expected:
        raise DataError(
            f"{path}: .npy header describes {'x'.join(map(str, shape))} {dtype} ({expected} bytes) but the file "
            f"holds {data_bytes} bytes of data; it is truncated or damaged"
        )
    return shape, dtype


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """A checked .npy image (see npy_header), read whole or memory-mapped."""
    npy_header(path)
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def set_max_image_pixels(limit: int) -> None:
    """Pillow's decompression-bomb limit: refuse images with more than `limit` pixels (0 = no limit).

    Pillow warns above the limit and refuses above twice it; the default guards against a small file that
    decodes into an image too large for memory."""
    if limit < 0:
        raise DataError(f"--max-image-pixels {limit} must be >= 0 (0 = no limit)")
    Image.MAX_IMAGE_PIXELS = limit or None


def bomb_error(path: Path) -> DataError:
    """The one-line error for an image over the decompression-bomb limit."""
    return DataError(
        f"{path}: has more than twice Pillow's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} pixels; if "
        "you trust the file, raise the limit with `diptych --max-image-pixels N ...` (0 = no limit)"
    )


def check_pixel_limit(path: Path, pixels: int) -> None:
    """Pillow's decompression-bomb rule for compressed TIFF and DICOM (tifffile and pydicom lack it), checked before
    decoding: refuse more than twice Image.MAX_IMAGE_PIXELS, warn above it. A small compressed file can decode to
    gigabytes; uncompressed ones cannot, and large uncompressed satellite TIFFs stay readable without the flag."""
    limit = Image.MAX_IMAGE_PIXELS
    if not limit or pixels <= limit:
        return
    if pixels > 2 * limit:
        raise Image.DecompressionBombError(f"{pixels} pixels")
    print(
        f"diptych: warning: {path}: more pixels than Pillow's decompression-bomb limit ({limit}); decoding it "
        "since it is under twice that",
        file=sys.stderr,
    )


def check_tiff_pixels(path: Path, series: tifffile.TiffPageSeries) -> None:
    """The decompression-bomb rule for a compressed TIFF series (an uncompressed one is as large as its file)."""
    if series.keyframe.compression != 1:  # 1: uncompressed
        # Pixels as Pillow counts them: samples (S) and the channel axis of a CYX stack are not extra pixels.
        planes = series.shape[1:] if len(series.shape) == 3 and series.axes.endswith("YX") else series.shape
        samples = dict(zip(series.axes, series.shape, strict=True)).get("S", 1)
        check_pixel_limit(path, int(np.prod(planes)) // samples)


def check_tiff_chunks(path: Path, tif: tifffile.TiffFile, series: tifffile.TiffPageSeries) -> None:
    """Refuse a TIFF series whose strips or tiles are not all in the file: tifffile's chunk reader (the windowed
    one) would fill them with zeros, translating a damaged file as a blank image. Sparse chunks (offset and byte
    count both 0, as GDAL writes) are valid."""
    size = tif.filehandle.size
    for page in series.pages:
        offsets, counts = page.dataoffsets, page.databytecounts
        missing = not offsets or len(offsets) != len(counts)
        if missing or any(count and offset + count > size for offset, count in zip(offsets, counts, strict=True)):
            what = "has no strip or tile offsets" if missing else "has strips or tiles beyond its end"
            raise DataError(f"{path}: corrupt or truncated TIFF ({what}); remove it or pass --skip-bad")


def _read_tiff(path: Path) -> tuple[np.ndarray, int]:
    """A TIFF's first series as HxWxC, moving a leading channel/sample axis (CYX, planar stacks) to the end and
    applying its orientation tag; returns the array and that orientation."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        check_tiff_pixels(path, series)
        arr = series.asarray()
        axes = series.axes
        orientation = tiff_orientation(tif)
    if arr.ndim == 3 and axes.endswith("YX"):
        arr = np.moveaxis(arr, 0, -1)
    return orient(arr, orientation), orientation


def tiff_orientation(tif: tifffile.TiffFile) -> int:
    """A TIFF's Orientation tag (274; 1-8 as in EXIF), 1 when absent or invalid."""
    value = tif.pages.first.tags.valueof(274, 1)
    return int(value) if isinstance(value, int) and int(value) in _ORIENTATIONS else 1


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
        # Pillow decodes 16-bit PGM/PNG as 32-bit "I": values that fit are 16-bit samples; any others stay int32
        # (see check_encodable), never clipped.
        arr = np.asarray(img)
        return arr.astype(np.uint16) if arr.size and arr.min() >= 0 and arr.max() <= 65535 else arr
    return np.array(img)


def image_array(arr: np.ndarray, path: Path) -> np.ndarray:
    """HxW(xC) of any real sample type -> contiguous native-endian HxWxC (bool -> uint8 0/255, float16 -> float32),
    checked by check_samples."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise DataError(f"{path}: expected a 2-D image (HxW or HxWxC), got an array of shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    if arr.dtype.kind not in "uif":
        raise DataError(f"{path}: unsupported sample type {arr.dtype}; use integer or floating-point data")
    check_samples(arr, str(path))
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))


def check_samples(arr: np.ndarray, name: str) -> None:
    """The rule every decoded image meets, whatever reads it: it has pixels, and floats are finite (one NaN or
    infinity would make the whole translation NaN, written out as a black image)."""
    if arr.size == 0:
        raise DataError(f"{name}: image has no pixels (shape {arr.shape})")
    if arr.dtype.kind == "f":
        bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise DataError(
                f"{name}: {bad} of {arr.size} samples are NaN or infinite; replace them (e.g. numpy.nan_to_num), "
                "or remove the file or pass --skip-bad"
            )


def check_encodable(arr: np.ndarray, value_range: ValueRange | None, name: str, clipped: bool = False) -> None:
    """Refuse samples that to_tensor would map to nonsense: integers wider than 16 bits without a value range (the
    type's full range would make the image blank), and values beyond `value_range` (default: the sample type's,
    [0, 1] for floats) by more than RANGE_TOLERANCE of its span. clipped: the range is a percentile or a window,
    beyond which values are clipped by design."""
    wide = arr.dtype.kind in "ui" and arr.dtype.itemsize > 2
    if wide and value_range is None:
        raise DataError(
            f"{name}: {arr.dtype} samples have no default value range (its full range would make the image blank); "
            "convert it to uint16 or float32, or use a model trained on such data (--normalize minmax stores a range)"
        )
    check_samples(arr, name)  # (decoded files have passed it; arrays given to the Python API may not have)
    if clipped or (arr.dtype.kind in "ui" and value_range is None):
        return  # (integers of up to 16 bits always lie in their own type's range)
    low, high = value_range or dtype_range(arr.dtype)
    lo, hi = float(arr.min()), float(arr.max())
    slack = RANGE_TOLERANCE * (high - low)
    if lo < low - slack or hi > high + slack:
        raise DataError(
            f"{name}: values span [{lo:.6g}, {hi:.6g}], beyond the model's input range [{low:.6g}, {high:.6g}] "
            f"(by more than {RANGE_TOLERANCE:.0%} of it); scale the image to that range, or pass --skip-bad"
        )


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


def dtype_range(dtype: np.dtype | str) -> ValueRange:
    """The values that map to -1 and 1 by default: the full range of an integer type, [0, 1] for floats (integers
    wider than 16 bits have no usable default; see check_encodable)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return 0.0, 1.0


def to_tensor(arr: np.ndarray, value_range: ValueRange | None = None) -> torch.Tensor:
    """HxWxC array to a float32 CxHxW tensor: `value_range` (low, high) maps to [-1, 1] and is clipped to it;
    without one, the sample type's range maps to [-1, 1] (floats are taken to lie in [0, 1])."""
    low, high = value_range or dtype_range(arr.dtype)
    planar = np.ascontiguousarray(arr.transpose(2, 0, 1))
    if value_range is None and planar.dtype in (np.uint8, np.uint16, np.float32):
        # A copy even for float32 input (whose transposed view may share the caller's memory: HxWx1 arrays),
        # so the in-place arithmetic below never changes the array we were given.
        source = torch.from_numpy(planar) if planar.flags.writeable else torch.tensor(planar)
        t = source.to(torch.float32, copy=True).mul_(2.0 / high).sub_(1.0)
    else:
        # In float64, so offsets and 32-bit integers lose nothing before the result is rounded to float32.
        t = torch.from_numpy((planar.astype(np.float64) - low) * (2.0 / (high - low)) - 1.0).float()
    return t.clamp_(-1.0, 1.0) if value_range is not None else t


def from_tensor(t: torch.Tensor, dtype: np.dtype | str = np.uint8, value_range: ValueRange | None = None) -> np.ndarray:
    """CxHxW tensor in [-1, 1] to an HxWxC array of the given sample type (integers rounded and clipped),
    inverting to_tensor's mapping for the same `value_range`."""
    dtype = np.dtype(dtype)
    low, high = value_range or dtype_range(dtype)
    x = t.detach().float().cpu().clamp(-1.0, 1.0).permute(1, 2, 0).numpy()
    if dtype.kind in "ui":
        if low == 0.0 and high <= 65535:
            y = (torch.from_numpy(x) + 1.0) * (high / 2.0)  # float32 is exact enough for 8 and 16 bits
            y = y.round_().numpy()
        else:
            y = np.round((x.astype(np.float64) + 1.0) * ((high - low) / 2.0) + low)
        info = np.iinfo(dtype)
        return np.clip(y, info.min, info.max).astype(dtype)
    y = (x.astype(np.float64) + 1.0) * ((high - low) / 2.0) + low if (low, high) != (0.0, 1.0) else (x + 1.0) / 2.0
    return y.astype(dtype)


def write_image(path: Path, arr: np.ndarray, tiff_compression: str = "none") -> Path:
    """Write an HxWxC array atomically; data a format cannot hold goes to TIFF instead (see output_suffix).
    TIFFs are compressed with `tiff_compression` (see TIFF_COMPRESSIONS).

    .npy keeps any sample type and shape (one channel is saved as HxW); the written path is returned.
    """
    path = Path(path)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    channels = arr.shape[2]
    suffix = output_suffix(path.suffix.lower(), arr.dtype, channels)
    path = path.with_suffix(suffix)
    try:
        with atomic_path(path) as tmp:
            if suffix == NPY_EXTENSION:
                with open(tmp, "wb") as f:
                    np.save(f, arr[:, :, 0] if channels == 1 else arr, allow_pickle=False)
            elif suffix in TIFF_EXTENSIONS:
                options = tiff_codec(tiff_compression, arr.dtype)
                if channels == 1:
                    tifffile.imwrite(tmp, arr[:, :, 0], photometric="minisblack", **options)
                else:
                    # Interleaved samples (YXS): other tools read it as one multi-channel image, not a stack of pages.
                    tifffile.imwrite(tmp, arr, photometric=_photometric(channels), planarconfig="contig", **options)
            else:
                fmt = Image.registered_extensions().get(suffix)
                if fmt is None:
                    raise DataError(f"{path}: unknown image extension {suffix!r}; use .png, .jpg, .tif or .npy")
                # PNG at zlib level 1: lossless like any level, 3x faster to write than Pillow's default 6
                # (3.4 vs 9.8 ms for a 256x256 RGB output here), files about 15% larger.
                if fmt == "PNG" and arr.dtype == np.uint16 and channels > 1:
                    # Pillow writes no 16-bit colour PNG; imagecodecs takes only C-contiguous samples (a model's
                    # output transposed from CHW, or a channel slice, is a strided view).
                    tmp.write_bytes(imagecodecs.png_encode(np.ascontiguousarray(arr), level=1))
                else:
                    options = {"compress_level": 1} if fmt == "PNG" else {}
                    _array_to_pil(arr).save(tmp, format=fmt, **options)
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


TIFF_COMPRESSIONS = {"none": None, "deflate": "zlib", "lzw": "lzw", "zstd": "zstd"}  # lossless, widely read


def tiff_codec(name: str, dtype: np.dtype | str | None = None) -> dict[str, object]:
    """tifffile options for a lossless TIFF compression, with the predictor that helps it where TIFF has one
    (horizontal differencing for integers of up to 32 bits, the floating-point predictor for floats)."""
    if name not in TIFF_COMPRESSIONS:
        raise ConfigError(f"--tiff-compression {name!r} is not one of: {', '.join(TIFF_COMPRESSIONS)}")
    codec = TIFF_COMPRESSIONS[name]
    if codec is None:
        return {}
    kind = np.dtype(dtype or np.uint8)
    predictor = kind.kind == "f" or (kind.kind in "iu" and kind.itemsize <= 4)
    return {"compression": codec, "predictor": predictor}


def output_suffix(suffix: str, dtype: np.dtype | str, channels: int) -> str:
    """The file suffix that can hold this data: the requested one, or .tif where an 8/16-bit format cannot
    (floats, signed or 32-bit integers, multi-channel 16-bit except in PNG, more than 4 channels); .tif and .npy
    hold anything."""
    dtype = np.dtype(dtype)
    if suffix.lower() in (*TIFF_EXTENSIONS, NPY_EXTENSION):
        return suffix
    needs_tiff = (
        dtype not in (np.uint8, np.uint16)
        or (dtype == np.uint16 and channels > 1 and suffix.lower() != ".png")
        or channels not in (1, 2, 3, 4)
    )
    return ".tif" if needs_tiff else suffix


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
