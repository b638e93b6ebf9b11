"""DICOM images via pydicom (the optional `dicom` extra): pixel data in physical units (e.g. Hounsfield units)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from ..errors import DataError, exception_summary

DICOM_EXTENSIONS = (".dcm", ".dicom")


def _pydicom(path: Path) -> ModuleType:
    try:
        import pydicom
    except ImportError:
        raise DataError(f"{path}: reading DICOM needs pydicom; install it with pip install 'diptych[dicom]'") from None
    return pydicom


def read_dicom(path: Path) -> np.ndarray:
    """One DICOM image as HxW(xC); with RescaleSlope/RescaleIntercept it is float32 in physical units (HU for CT).

    Without a rescale, an unsigned MONOCHROME1 image (low values shown bright) is inverted to MONOCHROME2's
    convention, so a dataset that mixes the two is consistent."""
    pydicom = _pydicom(path)
    try:
        return _read_dataset(pydicom, path)
    except pydicom.errors.InvalidDicomError:
        raise DataError(f"{path}: not a DICOM file; remove it or pass --skip-bad") from None
    except pydicom.errors.BytesLengthException as exc:  # an element cut short (read when first used)
        raise DataError(
            f"{path}: corrupt DICOM file ({exception_summary(exc)}); remove it or pass --skip-bad"
        ) from None


def _read_dataset(pydicom: ModuleType, path: Path) -> np.ndarray:
    """read_dicom's work, whose damaged-file errors it maps to DataError."""
    from pydicom.pixels import apply_rescale

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise DataError(f"{path}: DICOM file holds no pixel data (a report or structure set?); remove it")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DataError(f"{path}: multi-frame DICOM ({frames} frames); export the frames as single images or NIfTI")
    from .io import check_pixel_limit  # here: io imports this module

    if ds.file_meta.get("TransferSyntaxUID") is not None and ds.file_meta.TransferSyntaxUID.is_compressed:
        check_pixel_limit(path, int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0))
    try:
        arr = ds.pixel_array
    except (RuntimeError, NotImplementedError, ValueError, AttributeError) as exc:
        raise DataError(
            f"{path}: cannot decode the DICOM pixel data ({exception_summary(exc)}); compressed transfer syntaxes need "
            "pip install pylibjpeg pylibjpeg-libjpeg, or decompress the file first"
        ) from None
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        arr = apply_rescale(arr, ds).astype(np.float32)
    elif ds.get("PhotometricInterpretation") == "MONOCHROME1" and int(ds.get("PixelRepresentation", 0)) == 0:
        # MONOCHROME1 shows low values bright (many radiographs): flip it so every image reads as MONOCHROME2.
        top = (1 << int(ds.get("BitsStored", arr.dtype.itemsize * 8))) - 1
        arr = (top - arr.astype(np.int64)).astype(arr.dtype)
    return np.asarray(arr)
