"""NIfTI volumes via nibabel (the optional `nifti` extra): read one 2-D slice at a time, write a volume like another.

A 3-D volume (X, Y, Z) is cut along one axis into 2-D slices; a 4-D volume (X, Y, Z, C) has channels in its last
axis. Slices are taken as stored (no reorientation), so writing them back in the same places restores the volume.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import DataError, exception_summary
from .checks import check_regular_file

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def is_nifti(path: Path) -> bool:
    """Whether a file name is a NIfTI image (.nii or .nii.gz)."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def _nibabel(path: Path) -> ModuleType:
    try:
        import nibabel
    except ImportError:
        raise DataError(f"{path}: reading NIfTI needs nibabel; install it with pip install 'diptych[nifti]'") from None
    # nibabel prints each header field it repairs on a damaged file; what cannot be read is our one-line error.
    logging.getLogger("nibabel.global").setLevel(logging.CRITICAL)
    return nibabel


def _load(path: Path) -> Any:
    nib = _nibabel(path)
    check_regular_file(path)
    try:
        return nib.load(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (
        nib.filebasedimages.ImageFileError,
        nib.spatialimages.HeaderDataError,
        OSError,
        ValueError,
        EOFError,
    ) as exc:
        raise DataError(
            f"{path}: not a readable NIfTI file ({exception_summary(exc)}); remove it or pass --skip-bad"
        ) from None


def nifti_shape(path: Path) -> tuple[tuple[int, ...], int]:
    """(spatial shape, channels) from the header alone: (X, Y) or (X, Y, Z), and C for 4-D files (else 1)."""
    return _spatial(_load(path), path)


def _spatial(img: Any, path: Path) -> tuple[tuple[int, ...], int]:
    shape = tuple(int(s) for s in img.shape)
    if len(shape) in (2, 3):
        return shape, 1
    if len(shape) == 4:
        return shape[:3], shape[3]
    raise DataError(
        f"{path}: NIfTI image of shape {shape}; diptych reads 2-D images and 3-D (or 3-D + channel) volumes"
    )


def slice_index(ndim: int, axis: int, index: int | slice) -> tuple[int | slice, ...]:
    """The index that selects slice(s) `index` along `axis` of an array with `ndim` dimensions."""
    key: list[int | slice] = [slice(None)] * ndim
    key[axis] = index
    return tuple(key)


def read_nifti(path: Path, volume_slice: tuple[int, int] | None = None) -> np.ndarray:
    """A 2-D NIfTI image, or slice (axis, index) of a volume, as HxW(xC); scaled data (scl_slope) comes as float32."""
    if volume_slice is None:
        img = _load(path)
        if len(_spatial(img, path)[0]) != 2:
            raise DataError(f"{path}: is a 3-D volume; volumes are read slice by slice (data.nifti_axis)")
        return _as_array(img.dataobj, path)
    axis, index = volume_slice
    return read_nifti_slices(path, axis, index, index + 1)[0]


def read_nifti_slices(path: Path, axis: int, start: int, stop: int) -> np.ndarray:
    """Slices [start, stop) of a volume along `axis` as an (N, H, W[, C]) array, read through nibabel's proxy
    (only these slices are loaded; a .nii.gz is decompressed up to them)."""
    img = _load(path)
    spatial, _ = _spatial(img, path)
    if len(spatial) == 2:
        if (start, stop) != (0, 1):
            raise DataError(f"{path}: is a 2-D image, it has no slice {start}")
        return _as_array(img.dataobj, path)[None]
    if not 0 <= start < stop <= spatial[axis]:
        raise DataError(f"{path}: has {spatial[axis]} slices along axis {axis}, not {start}..{stop - 1}")
    block = _as_array(img.dataobj, path, slice_index(len(img.shape), axis, slice(start, stop)))
    return np.moveaxis(block, axis, 0)


def _as_array(data: Any, path: Path, key: tuple[int | slice, ...] | None = None) -> np.ndarray:
    """The samples of a nibabel proxy (or part `key` of it), read here so that a file cut short is a DataError."""
    try:
        arr = np.asarray(data if key is None else data[key])
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(
            f"{path}: corrupt or truncated NIfTI data ({exception_summary(exc)}); remove it or pass --skip-bad"
        ) from None
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)  # nibabel applies scl_slope/scl_inter in float64
    return arr


def write_nifti_like(path: Path, volume: np.ndarray, reference: Path) -> Path:
    """Write `volume` atomically as NIfTI with the reference file's affine and header (data type and shape updated)."""
    ref = _load(reference)
    header = ref.header.copy()
    header.set_data_dtype(volume.dtype)
    img = type(ref)(volume, ref.affine, header)
    img.header.set_slope_inter(1.0, 0.0)  # the values are written as they are, not rescaled
    data = img.to_bytes()
    if path.name.lower().endswith(".gz"):
        data = gzip.compress(data, compresslevel=6)
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path
