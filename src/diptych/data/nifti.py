"""NIfTI volumes via nibabel (the optional `nifti` extra): read one 2-D slice at a time, write a volume like another.

A 3-D volume (X, Y, Z) is cut along one axis into 2-D slices; a 4-D volume (X, Y, Z, C) has channels in its last
axis. Slices are taken as stored (no reorientation), so writing them back in the same places restores the volume.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import DataError

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def is_nifti(path: Path) -> bool:
    """Whether a file name is a NIfTI image (.nii or .nii.gz)."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def _nibabel(path: Path) -> ModuleType:
    try:
        import nibabel
    except ImportError:
        raise DataError(f"{path}: reading NIfTI needs nibabel; install it with pip install 'diptych[nifti]'") from None
    return nibabel


def _load(path: Path) -> Any:
    nib = _nibabel(path)
    try:
        return nib.load(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (nib.filebasedimages.ImageFileError, OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable NIfTI file ({exc}); remove it or pass --skip-bad") from None


def nifti_shape(path: Path) -> tuple[tuple[int, ...], int]:
    """(spatial shape, channels) from the header alone: (X, Y) or (X, Y, Z), and C for 4-D files (else 1)."""
    shape = tuple(int(s) for s in _load(path).shape)
    if len(shape) == 2:
        return shape, 1
    if len(shape) == 3:
        return shape, 1
    if len(shape) == 4:
        return shape[:3], shape[3]
    raise DataError(
        f"{path}: NIfTI image of shape {shape}; diptych reads 2-D images and 3-D (or 3-D + channel) volumes"
    )


def slice_count(path: Path, axis: int) -> int | None:
    """How many 2-D slices a volume has along `axis`, or None for a 2-D image."""
    spatial, _ = nifti_shape(path)
    return None if len(spatial) == 2 else spatial[axis]


def slice_index(ndim: int, axis: int, index: int) -> tuple[int | slice, ...]:
    """The index that selects slice `index` along `axis` of an array with `ndim` dimensions."""
    key: list[int | slice] = [slice(None)] * ndim
    key[axis] = index
    return tuple(key)


def read_nifti(path: Path, volume_slice: tuple[int, int] | None = None) -> np.ndarray:
    """A 2-D NIfTI image, or slice (axis, index) of a volume, as HxW(xC); scaled data (scl_slope) comes as float32."""
    img = _load(path)
    spatial, _ = nifti_shape(path)
    if len(spatial) == 2:
        key: tuple[int | slice, ...] = ()
    elif volume_slice is None:
        raise DataError(f"{path}: is a 3-D volume; volumes are read slice by slice (data.nifti_axis)")
    else:
        axis, index = volume_slice
        if not 0 <= index < spatial[axis]:
            raise DataError(f"{path}: has {spatial[axis]} slices along axis {axis}, no slice {index}")
        key = slice_index(len(img.shape), axis, index)
    try:
        arr = np.asarray(img.dataobj[key] if key else img.dataobj)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: corrupt or truncated NIfTI data ({exc}); remove it or pass --skip-bad") from None
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
