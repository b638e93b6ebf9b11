"""Fuzz every `diptych` command with bad and odd inputs, datasets, checkpoints and options; table the outcomes.

    .venv/bin/python benchmarks/fuzz.py --out fuzz_out [--quick] [--jobs 2] [--sample N] [--seed 0]

Generation is seeded: the same --seed gives the same cases, files and order. A parent process imports diptych and
torch once and forks one child per case (`diptych.cli.main(argv)` with stdout/stderr in files, its own process
group, an address-space limit and a timeout); the few cases that need a real process (signals at start-up, SIGTERM
during training or translation) run `python -m diptych` in a subprocess.

Each run is classified (see `classify`): one-line error, skipped, ok, documented conversion, refused valid input,
and the failures: traceback, hang, silently wrong, half-written, lost work, messy error. The table (family x
outcome), the failing cases and everything else go to stdout, OUT/results.json and OUT/results.md; the exit status
is 1 when any failure was found. Oracles for "silently wrong": equivalent encodings of the same pixels must give the
same output (EXIF-rotated vs physically rotated JPEG, 16-bit PNG vs TIFF), an output must depend on its input (a
case and its mirror image must not give the same output) and must not be constant when the input is not, a bad file
must not give exit 0 without being named, trained weights must be finite, an evaluation must score every pair, and
`data check` must not pass a dataset that `train` rejects.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import pickle
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

SIZE = (40, 48)  # height, width of the standard fuzz image: not a multiple of the U-Net's stride
TINY_NET = ["--depth", "4", "--ngf", "8", "--ndf", "8", "--n-layers", "2"]
TINY_TRAIN = [*TINY_NET, "--crop-size", "32", "--load-size", "32", "--preprocess", "crop", "--max-steps", "2"]
TINY_TRAIN += ["--no-progress", "--workers", "0", "--log-every", "1"]
MODELS = ("rgb8", "grey16", "rgb16", "float")
FAILURES = ("traceback", "hang", "silently wrong", "half-written", "lost work", "messy error")
OUTCOMES = ("one-line error", "skipped", "ok", "documented conversion", "refused valid", *FAILURES)
ADDRESS_SPACE_LIMIT = 8 * 2**30  # a child that tries to allocate more gets MemoryError instead of taking the machine
PAYLOAD_MARKER = "PAYLOAD_EXECUTED"
TOLERANCE = 2.5 / 255  # outputs of equivalent inputs may differ by bf16/batching noise, not more


# ----------------------------------------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One run of one command on one generated input, with what a correct diptych must do."""

    family: str
    name: str
    command: str  # the command label shown in the table, e.g. "translate --skip-bad"
    argv: list[str]  # relative to the case folder; "{rgb8}" etc. are replaced by the base fixtures' paths
    build: Callable[[Path], None] | None = None  # writes the case's files into its folder (parent process)
    expect: str = "either"  # "error": must be refused; "ok": must work; "either": refused or right
    checks: tuple[str, ...] = ()  # oracle names applied on exit 0 (see ORACLES)
    timeout: float = 60.0
    driver: str = ""  # "" = forked; else the name of a subprocess driver in DRIVERS
    group: str = ""  # cases sharing a dataset, for the data check vs train cross-check

    @property
    def id(self) -> str:
        """Stable unique id: family/name/command."""
        return f"{self.family}/{self.name}/{self.command.replace(' ', '_')}"


@dataclass
class RunResult:
    """What one run did."""

    rc: int | None
    signal: int | None
    seconds: float
    timed_out: bool
    stdout: str = ""
    stderr: str = ""


@dataclass
class Verdict:
    """A classified run."""

    case: str
    family: str
    command: str
    outcome: str
    detail: str
    rc: int | None
    seconds: float
    argv: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------- file writers


def smooth(rng: np.random.Generator, h: int, w: int, c: int) -> np.ndarray:
    """A float image in [0, 1] with structure at several scales and no symmetry (HxWxC)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((h, w, c))
    for k in range(c):
        phase = rng.uniform(0, 6.3, 3)
        out[..., k] = (
            np.sin(xx / 4.0 + phase[0]) + np.cos(yy / 6.0 + phase[1]) + 0.6 * np.sin((xx + 2 * yy) / 9 + phase[2])
        )
    out += rng.normal(0, 0.25, out.shape) + xx[..., None] / max(w, 1)
    out -= out.min()
    return out / max(out.max(), 1e-9)


def as_dtype(x: np.ndarray, dtype: str, low: float = 0.0, high: float | None = None) -> np.ndarray:
    """Scale [0, 1] values to [low, high] (default: the dtype's full range for integers, [0, 1] for floats)."""
    dt = np.dtype(dtype)
    if high is None:
        high = float(min(np.iinfo(dt).max, 2**53)) if dt.kind in "iu" else 1.0
        low = 0.0 if dt.kind in "uf" else low
    return (low + x * (high - low)).astype(dt) if dt.kind == "f" else np.round(low + x * (high - low)).astype(dt)


def squeeze1(arr: np.ndarray) -> np.ndarray:
    """HxWx1 -> HxW, for writers that want 2-D grey images."""
    return arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr


def write_pil(path: Path, arr: np.ndarray, mode: str | None = None, **save: Any) -> None:
    """Write an array with Pillow (mode I;16 for 16-bit grey)."""
    from PIL import Image

    arr = squeeze1(arr)
    img = Image.fromarray(arr)  # uint16 HxW -> I;16, HxWx2 -> LA
    if mode and img.mode != mode:
        img = img.convert(mode)
    img.save(path, **save)


def write_png16(path: Path, arr: np.ndarray) -> None:
    """A 16-bit-per-sample PNG of any channel count (Pillow cannot write 16-bit RGB)."""
    import imagecodecs

    path.write_bytes(imagecodecs.png_encode(np.ascontiguousarray(squeeze1(arr))))


def png_chunks(
    color_type: int, bit_depth: int, h: int, w: int, rows: bytes, extra: bytes = b"", interlace: int = 0
) -> bytes:
    """A PNG built from raw filtered rows (for bit depths and chunks Pillow does not write)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, interlace)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


def write_tiff(path: Path, arr: np.ndarray, **kwargs: Any) -> None:
    """Write a TIFF with tifffile."""
    import tifffile

    tifffile.imwrite(path, squeeze1(arr), **kwargs)


def write_npy(path: Path, arr: np.ndarray) -> None:
    """Write a .npy."""
    np.save(path, arr, allow_pickle=True)


def npy_with_header(path: Path, header: str, payload: bytes, version: bytes = b"\x01\x00") -> None:
    """A .npy whose header text is given verbatim (to lie about shape, dtype or order)."""
    text = header.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    path.write_bytes(b"\x93NUMPY" + version + struct.pack("<H", len(text)) + text + payload)


def write_jpeg_exif(path: Path, arr: np.ndarray, orientation: int) -> None:
    """A JPEG whose EXIF says how viewers must rotate it."""
    from PIL import Image

    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, quality=95, exif=exif.tobytes())


def upright_from_jpeg(src: Path, dst: Path) -> None:
    """Decode a JPEG, apply its EXIF orientation as viewers do, write the pixels as PNG."""
    from PIL import Image, ImageOps

    with Image.open(src) as img:
        ImageOps.exif_transpose(img).save(dst)


def write_dicom(path: Path, arr: np.ndarray, signed: bool = False, bits: int = 16, **tags: Any) -> None:
    """A minimal single-frame DICOM (Secondary Capture, explicit VR little endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    uid = generate_uid(entropy_srcs=[path.name])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SecondaryCaptureImageStorage, uid, "OT"
    ds.Rows, ds.Columns = arr.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, int(signed)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(squeeze1(arr)).tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_nifti(path: Path, arr: np.ndarray) -> None:
    """A NIfTI-1 volume (identity affine)."""
    import nibabel as nib

    nib.Nifti1Image(arr, np.eye(4)).to_filename(str(path))


# ----------------------------------------------------------------------------------------------- input-file specs


@dataclass
class InputSpec:
    """A generated input (one file, or a file and its reference twin) and what diptych must do with it."""

    family: str
    name: str
    model: str  # which base model translates it (rgb8, grey16, float)
    write: Callable[[Path], list[str]]  # writes into a folder; returns the file names it wrote
    expect: str = "either"
    oracle: str = ""  # "mirror": out(c) must differ from out(mirror c); "same": out(c) == out(twin); "": generic
    datasets: bool = True  # also build a dataset from it (data check, train, data combine)


def single(name: str, writer: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    """A write function for one file."""

    def write(folder: Path) -> list[str]:
        writer(folder / name)
        return [name]

    return write


def mirrored(ext: str, writer: Callable[[Path, np.ndarray], None], arr: np.ndarray) -> Callable[[Path], list[str]]:
    """Write the case and its left-right mirror image, for the "output depends on the input" oracle."""

    def write(folder: Path) -> list[str]:
        writer(folder / f"c{ext}", arr)
        writer(folder / f"c_mirror{ext}", np.ascontiguousarray(arr[:, ::-1]))
        return [f"c{ext}", f"c_mirror{ext}"]

    return write


def twins(
    first: tuple[str, Callable[[Path], None]], second: tuple[str, Callable[[Path], None]]
) -> Callable[[Path], list[str]]:
    """Write two encodings of the same pixels, for the "same output" oracle."""

    def write(folder: Path) -> list[str]:
        first[1](folder / first[0])
        second[1](folder / second[0])
        return [first[0], second[0]]

    return write


def pixel_specs(rng: np.random.Generator) -> Iterator[InputSpec]:
    """Odd pixel content in every format and sample type diptych reads."""
    h, w = SIZE
    rgb = as_dtype(smooth(rng, h, w, 3), "uint8")
    grey = smooth(rng, h, w, 1)
    grey16 = as_dtype(grey, "uint16")
    png = lambda p, a: write_pil(p, a)  # noqa: E731
    yield InputSpec("png", "rgb8-valid", "rgb8", mirrored(".png", png, rgb), "ok", "mirror")
    yield InputSpec("png", "grey8", "rgb8", mirrored(".png", png, rgb[..., 0]), "either", "mirror")
    rgba = np.dstack([rgb, as_dtype(smooth(rng, h, w, 1), "uint8")])
    yield InputSpec("png", "rgba8", "rgb8", mirrored(".png", png, rgba), "either", "mirror")
    yield InputSpec(
        "png", "grey16-valid", "grey16", mirrored(".png", lambda p, a: write_pil(p, a, "I;16"), grey16), "ok", "mirror"
    )
    yield InputSpec("png", "grey16-to-rgb8", "rgb8", mirrored(".png", lambda p, a: write_pil(p, a, "I;16"), grey16))
    rgb16 = as_dtype(smooth(rng, h, w, 3), "uint16")
    yield InputSpec(
        "png",
        "rgb16-png-vs-tiff",
        "rgb16",
        twins(
            ("c.png", lambda p: write_png16(p, rgb16)),
            ("c_twin.tif", lambda p: write_tiff(p, rgb16, photometric="rgb")),
        ),
        "either",
        "same",
    )
    low_byte = 0x1200 + as_dtype(smooth(rng, h, w, 3), "uint8").astype(np.uint16)  # only the low byte varies
    yield InputSpec("png", "rgb16-low-byte", "rgb16", mirrored(".png", write_png16, low_byte), "either", "mirror")
    rgba16 = as_dtype(smooth(rng, h, w, 4), "uint16")
    yield InputSpec(
        "png",
        "rgba16-png-vs-tiff",
        "rgb8",
        twins(
            ("c.png", lambda p: write_png16(p, rgba16)),
            ("c_twin.tif", lambda p: write_tiff(p, rgba16, photometric="rgb", extrasamples=[2])),
        ),
        "either",
        "same",
    )
    yield InputSpec(
        "png",
        "grey16-png-vs-tiff",
        "grey16",
        twins(("c.png", lambda p: write_pil(p, grey16, "I;16")), ("c_twin.tif", lambda p: write_tiff(p, grey16))),
        "ok",
        "same",
    )
    bits1 = (grey[..., 0] > 0.5).astype(np.uint8) * 255
    yield InputSpec("png", "1-bit", "rgb8", mirrored(".png", lambda p, a: write_pil(p, (a > 0)), bits1))
    palette_img = rgb // 64 * 64
    from PIL import Image

    def write_palette(p: Path, a: np.ndarray) -> None:
        Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(p)

    yield InputSpec("png", "palette", "rgb8", mirrored(".png", write_palette, palette_img))

    def write_palette_trns(p: Path, a: np.ndarray) -> None:
        img = Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
        img.save(p, transparency=0)

    yield InputSpec("png", "palette-transparency", "rgb8", mirrored(".png", write_palette_trns, palette_img))
    la = np.dstack([rgb[..., 0], rgb[..., 1]])
    yield InputSpec("png", "grey-alpha", "rgb8", mirrored(".png", lambda p, a: write_pil(p, a, "LA"), la))
    rows = b"".join(b"\x00" + bytes(np.packbits(bits1[y] > 0)) for y in range(h))
    yield InputSpec(
        "png", "2-bit-grey-raw", "rgb8", single("c.png", lambda p: p.write_bytes(png_chunks(0, 1, h, w, rows)))
    )
    gamma = struct.pack(">I", 4) + b"gAMA" + struct.pack(">I", 1) + b"\0\0\0\0"
    yield InputSpec(
        "png", "bad-chunk-crc", "rgb8", single("c.png", lambda p: p.write_bytes(png_chunks(0, 1, h, w, rows, gamma)))
    )
    yield InputSpec("png", "interlaced", "rgb8", mirrored(".png", write_png_interlaced, rgb), "ok", "mirror")
    # JPEG: every EXIF orientation against the upright pixels as a viewer shows them
    for orientation in range(1, 9):
        src = as_dtype(smooth(rng, 40, 56, 3), "uint8")

        def write_pair(folder: Path, src: np.ndarray = src, o: int = orientation) -> list[str]:
            write_jpeg_exif(folder / "c.jpg", src, o)
            upright_from_jpeg(folder / "c.jpg", folder / "c_twin.png")
            return ["c.jpg", "c_twin.png"]

        yield InputSpec("jpeg", f"exif-orientation-{orientation}", "rgb8", write_pair, "either", "same")
    yield InputSpec("jpeg", "grey", "rgb8", mirrored(".jpg", lambda p, a: write_pil(p, a, quality=90), rgb[..., 0]))
    yield InputSpec(
        "jpeg", "cmyk", "rgb8", mirrored(".jpg", lambda p, a: Image.fromarray(a).convert("CMYK").save(p), rgb)
    )
    yield InputSpec(
        "jpeg",
        "progressive",
        "rgb8",
        mirrored(".jpg", lambda p, a: write_pil(p, a, progressive=True), rgb),
        "ok",
        "mirror",
    )
    yield InputSpec("jpeg", "exif-orientation-99", "rgb8", single("c.jpg", lambda p: write_jpeg_exif(p, rgb, 99)))
    # TIFF of every sample type, scaled to its full range and to a narrow one
    for dtype in (
        "uint8",
        "uint16",
        "uint32",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint64",
        "float16",
        "float32",
        "float64",
    ):
        model = "float" if dtype.startswith("float") else "grey16"
        yield InputSpec(
            "tiff",
            f"{dtype}-full-range",
            model,
            mirrored(".tif", write_tiff, as_dtype(grey, dtype)),
            "either",
            "mirror",
        )
        if np.dtype(dtype).kind in "iu":
            narrow = as_dtype(grey, dtype, 0, 1000)
            yield InputSpec("tiff", f"{dtype}-0-1000", model, mirrored(".tif", write_tiff, narrow), "either", "mirror")
            yield InputSpec("npy", f"{dtype}-0-1000", model, mirrored(".npy", write_npy, narrow), "either", "mirror")
    yield InputSpec(
        "tiff", "float32-valid", "float", mirrored(".tif", write_tiff, grey.astype(np.float32)), "ok", "mirror"
    )
    yield InputSpec(
        "tiff",
        "float32-rgb-planar",
        "float",
        mirrored(
            ".tif",
            lambda p, a: write_tiff(p, np.moveaxis(a, 2, 0), planarconfig="separate", photometric="rgb"),
            smooth(rng, h, w, 3).astype(np.float32),
        ),
    )
    yield InputSpec(
        "tiff",
        "uint16-rgb-tiled-zlib",
        "rgb8",
        mirrored(".tif", lambda p, a: write_tiff(p, a, tile=(16, 16), compression="zlib", photometric="rgb"), rgb16),
        "either",
        "mirror",
    )
    yield InputSpec(
        "tiff",
        "5-channel",
        "rgb8",
        mirrored(
            ".tif",
            lambda p, a: write_tiff(p, a, photometric="minisblack", planarconfig="contig"),
            as_dtype(smooth(rng, h, w, 5), "uint8"),
        ),
    )
    yield InputSpec("tiff", "multipage-3", "grey16", mirrored(".tif", write_tiff, np.stack([grey16[..., 0]] * 3)))
    yield InputSpec(
        "tiff", "complex64", "float", single("c.tif", lambda p: write_tiff(p, grey[..., 0].astype(np.complex64)))
    )
    yield InputSpec("tiff", "bool", "grey16", mirrored(".tif", write_tiff, grey[..., 0] > 0.5))
    # non-finite and out-of-range values: refused, or clamped as documented
    for model, dtype in (("float", "float32"), ("float", "float64"), ("float", "float16"), ("rgb8", "float32")):
        for label, value in (("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
            for where in ("one-pixel", "all"):
                arr = grey.astype(dtype).copy()
                if where == "all":
                    arr[:] = value
                else:
                    arr[h // 2, w // 3] = value
                for ext, writer in ((".tif", write_tiff), (".npy", write_npy)):
                    yield InputSpec(
                        "nonfinite",
                        f"{model}-{dtype}-{label}-{where}{ext}",
                        model,
                        single(f"c{ext}", lambda p, a=arr, wr=writer: wr(p, a)),
                        "error",
                    )
    for low, high in ((0, 1000), (-5, 5), (1e30, 3e30), (-1e6, 0), (0, 1.0001), (0, 3.4e38)):
        over = grey.astype(np.float32) * np.float32(high - low) + np.float32(low)

        def write_clip(folder: Path, over: np.ndarray = over) -> list[str]:
            write_tiff(folder / "c.tif", over)
            write_tiff(folder / "c_twin.tif", np.clip(over, 0, 1))
            return ["c.tif", "c_twin.tif"]

        yield InputSpec("range", f"float-{low:g}-{high:g}-vs-clipped", "float", write_clip, "either", "same")
    yield InputSpec(
        "range",
        "constant-float-0.5",
        "float",
        single("c.tif", lambda p: write_tiff(p, np.full((h, w), 0.5, np.float32))),
        "ok",
    )
    yield InputSpec(
        "range", "subnormal-floats", "float", mirrored(".tif", write_tiff, (grey * 1e-40).astype(np.float32))
    )
    # .npy layouts
    arr3 = grey.astype(np.float32)
    yield InputSpec("npy", "float32-hw", "float", mirrored(".npy", write_npy, arr3[..., 0]), "ok", "mirror")
    yield InputSpec("npy", "float32-hwc1", "float", mirrored(".npy", write_npy, arr3), "either", "mirror")
    yield InputSpec("npy", "float32-chw", "float", mirrored(".npy", write_npy, np.moveaxis(arr3, 2, 0)))
    yield InputSpec(
        "npy",
        "fortran-order",
        "float",
        mirrored(".npy", lambda p, a: write_npy(p, np.asfortranarray(a)), arr3[..., 0]),
        "either",
        "mirror",
    )
    yield InputSpec(
        "npy",
        "big-endian",
        "float",
        mirrored(".npy", lambda p, a: write_npy(p, a.astype(">f4")), arr3[..., 0]),
        "either",
        "mirror",
    )
    yield InputSpec(
        "npy",
        "big-endian-uint16",
        "grey16",
        mirrored(".npy", lambda p, a: write_npy(p, a.astype(">u2")), grey16[..., 0]),
        "either",
        "mirror",
    )
    yield InputSpec("npy", "0-d", "float", single("c.npy", lambda p: write_npy(p, np.float32(0.5))), "error")
    yield InputSpec("npy", "1-d", "float", single("c.npy", lambda p: write_npy(p, arr3.ravel())), "error")
    yield InputSpec("npy", "4-d", "float", single("c.npy", lambda p: write_npy(p, arr3[None])))
    yield InputSpec("npy", "5-d", "float", single("c.npy", lambda p: write_npy(p, arr3[None, None])), "error")
    yield InputSpec(
        "npy",
        "object-dtype",
        "float",
        single("c.npy", lambda p: write_npy(p, np.array([[object()]], dtype=object))),
        "error",
    )
    yield InputSpec(
        "npy", "structured-dtype", "float", single("c.npy", lambda p: write_npy(p, np.zeros((h, w), "f4,i4"))), "error"
    )
    yield InputSpec(
        "npy", "string-dtype", "float", single("c.npy", lambda p: write_npy(p, np.full((h, w), "x"))), "error"
    )
    yield InputSpec(
        "npy", "complex", "float", single("c.npy", lambda p: write_npy(p, arr3[..., 0].astype(np.complex64))), "error"
    )
    yield InputSpec("npy", "bool", "grey16", mirrored(".npy", write_npy, grey[..., 0] > 0.5))
    yield InputSpec(
        "npy", "zero-size", "float", single("c.npy", lambda p: write_npy(p, np.zeros((0, w), np.float32))), "error"
    )
    payload = arr3[..., 0].tobytes()
    lies = {
        "shape-too-big": ("{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 3), }", payload, "error"),
        "shape-too-small": ("{'descr': '<f4', 'fortran_order': False, 'shape': (10, 10), }", payload, "either"),
        "shape-negative": ("{'descr': '<f4', 'fortran_order': False, 'shape': (-40, 48), }", payload, "error"),
        "shape-huge-int": (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1180591620717411303424, 1), }",
            payload,
            "error",
        ),
        "shape-overflow-product": (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2**40, 2**40), }",
            payload,
            "error",
        ),
        "descr-bogus": ("{'descr': '<z9', 'fortran_order': False, 'shape': (40, 48), }", payload, "error"),
        "descr-object": ("{'descr': '|O', 'fortran_order': False, 'shape': (40, 48), }", payload, "error"),
        "header-not-dict": ("[1, 2, 3]", payload, "error"),
        "header-syntax-error": ("{'descr': '<f4', 'shape': (40, 48", payload, "error"),
        "header-missing-key": ("{'descr': '<f4', 'shape': (40, 48), }", payload, "error"),
        "header-code": ("__import__('os').system('touch " + PAYLOAD_MARKER + "')", payload, "error"),
        "fortran-flag-lie": ("{'descr': '<f4', 'fortran_order': True, 'shape': (40, 48), }", payload, "either"),
        "dtype-lie-f8": ("{'descr': '<f8', 'fortran_order': False, 'shape': (40, 48), }", payload, "error"),
        "dtype-lie-u1": ("{'descr': '|u1', 'fortran_order': False, 'shape': (40, 48), }", payload, "either"),
    }
    for label, (header, data, expect) in lies.items():
        yield InputSpec(
            "npy",
            f"header-{label}",
            "float",
            single("c.npy", lambda p, hd=header, d=data: npy_with_header(p, hd, d)),
            expect,
        )
    yield InputSpec(
        "npy",
        "version-9",
        "float",
        single(
            "c.npy",
            lambda p: npy_with_header(
                p, "{'descr': '<f4', 'fortran_order': False, 'shape': (40, 48), }", payload, b"\x09\x00"
            ),
        ),
        "error",
    )
    yield InputSpec(
        "npy", "pickled-object", "float", single("c.npy", lambda p: p.write_bytes(pickle.dumps({"a": 1}))), "error"
    )
    # DICOM and NIfTI
    dicom16 = grey16[..., 0]
    yield InputSpec("dicom", "uint16-valid", "grey16", mirrored(".dcm", write_dicom, dicom16), "either", "mirror")
    yield InputSpec(
        "dicom",
        "int16-hu",
        "grey16",
        mirrored(
            ".dcm",
            lambda p, a: write_dicom(p, a, signed=True, RescaleSlope=1, RescaleIntercept=-1024),
            as_dtype(grey, "int16", -1024, 3000)[..., 0],
        ),
    )
    yield InputSpec(
        "dicom",
        "slope-zero",
        "grey16",
        mirrored(".dcm", lambda p, a: write_dicom(p, a, RescaleSlope=0, RescaleIntercept=0), dicom16),
    )
    yield InputSpec(
        "dicom",
        "slope-nan",
        "grey16",
        single("c.dcm", lambda p: write_dicom(p, dicom16, RescaleSlope="NaN", RescaleIntercept=0)),
    )
    yield InputSpec(
        "dicom", "rows-lie", "grey16", single("c.dcm", lambda p: write_dicom(p, dicom16, Rows=4000)), "error"
    )
    yield InputSpec(
        "dicom",
        "bits-12-in-16",
        "grey16",
        mirrored(".dcm", lambda p, a: write_dicom(p, a, BitsStored=12, HighBit=11), (dicom16 >> 4).astype(np.uint16)),
    )
    yield InputSpec(
        "dicom", "no-pixel-data", "grey16", single("c.dcm", lambda p: write_dicom_without_pixels(p)), "error"
    )
    yield InputSpec(
        "dicom",
        "window-nan",
        "grey16",
        mirrored(".dcm", lambda p, a: write_dicom(p, a, WindowCenter="NaN", WindowWidth="0"), dicom16),
    )
    vol = np.stack([grey16[..., 0]] * 3, axis=2).astype(np.int16)
    yield InputSpec("nifti", "int16-volume", "grey16", mirrored(".nii", write_nifti, vol))
    yield InputSpec(
        "nifti", "float32-volume-gz", "float", mirrored(".nii.gz", write_nifti, np.stack([arr3[..., 0]] * 3, axis=2))
    )
    yield InputSpec(
        "nifti",
        "float32-nan",
        "float",
        single("c.nii", lambda p: write_nifti(p, np.full((h, w, 2), np.nan, np.float32))),
        "error",
    )
    yield InputSpec(
        "nifti", "4-d", "float", single("c.nii", lambda p: write_nifti(p, np.zeros((h, w, 2, 2), np.float32)))
    )
    yield InputSpec("nifti", "2-d", "float", single("c.nii", lambda p: write_nifti(p, arr3[..., 0])))
    yield InputSpec("nifti", "rgb-dtype", "rgb8", single("c.nii", lambda p: write_nifti_rgb(p, rgb)))
    # geometry: tiny, thin, odd
    for shape in ((1, 1), (1, 48), (40, 1), (2, 2), (3, 200), (200, 3), (15, 15), (16, 16), (17, 17), (31, 33)):
        img = as_dtype(smooth(rng, *shape, 3), "uint8")
        yield InputSpec("geometry", f"{shape[0]}x{shape[1]}", "rgb8", single("c.png", lambda p, a=img: write_pil(p, a)))
    yield InputSpec(
        "geometry",
        "constant-rgb",
        "rgb8",
        single("c.png", lambda p: write_pil(p, np.full((h, w, 3), 7, np.uint8))),
        "ok",
    )
    big = np.zeros((3000, 3000), np.uint8)
    yield InputSpec(
        "geometry", "3000x3000-png", "rgb8", single("c.png", lambda p: write_pil(p, big)), "either", "", False
    )


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def write_png_interlaced(path: Path, arr: np.ndarray) -> None:
    """An Adam7-interlaced 8-bit RGB PNG (Pillow cannot write one): the seven passes' rows, filter type 0."""
    rows = b""
    for x0, y0, dx, dy in ADAM7:
        sub = np.ascontiguousarray(arr[y0::dy, x0::dx])
        if sub.size:
            rows += b"".join(b"\0" + row.tobytes() for row in sub)
    path.write_bytes(png_chunks(2, 8, arr.shape[0], arr.shape[1], rows, interlace=1))


def write_dicom_without_pixels(path: Path) -> None:
    """A DICOM with every image tag but no PixelData."""
    write_dicom(path, np.zeros((4, 4), np.uint16))
    import pydicom

    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)


def write_nifti_rgb(path: Path, rgb: np.ndarray) -> None:
    """A NIfTI with the RGB24 structured dtype."""
    import nibabel as nib

    dt = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
    vol = np.zeros((*rgb.shape[:2], 1), dt)
    for i, k in enumerate("RGB"):
        vol[k][..., 0] = rgb[..., i]
    nib.Nifti1Image(vol, np.eye(4)).to_filename(str(path))


def byte_specs(rng: np.random.Generator, quick: bool) -> Iterator[InputSpec]:
    """Damaged bytes: zero-byte, truncated at many offsets, flipped bytes, random bytes behind the right magic."""
    h, w = SIZE
    grey = smooth(rng, h, w, 1)
    sources: dict[str, Callable[[Path], None]] = {
        ".png": lambda p: write_pil(p, as_dtype(smooth(rng, h, w, 3), "uint8")),
        ".jpg": lambda p: write_pil(p, as_dtype(smooth(rng, h, w, 3), "uint8"), quality=90),
        ".tif": lambda p: write_tiff(p, grey.astype(np.float32)),
        ".npy": lambda p: write_npy(p, grey.astype(np.float32)),
        ".dcm": lambda p: write_dicom(p, as_dtype(grey, "uint16")[..., 0]),
        ".nii": lambda p: write_nifti(p, np.stack([grey[..., 0]] * 2, axis=2).astype(np.float32)),
        ".bmp": lambda p: write_pil(p, as_dtype(smooth(rng, h, w, 3), "uint8")),
        ".webp": lambda p: write_pil(p, as_dtype(smooth(rng, h, w, 3), "uint8"), lossless=True),
        ".gif": lambda p: write_pil(p, as_dtype(smooth(rng, h, w, 3), "uint8")),
        ".tif-zlib": lambda p: write_tiff(p, as_dtype(grey, "uint16"), compression="zlib", tile=(16, 16)),
    }
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-bytes-"))
    try:
        for key, make in sources.items():
            ext = key.split("-")[0]
            model = (
                "float" if ext in (".tif", ".npy", ".nii") else ("grey16" if key in (".dcm", ".tif-zlib") else "rgb8")
            )
            ref = scratch / f"ref{ext}"
            make(ref)
            data = ref.read_bytes()
            tag = key.lstrip(".")
            yield InputSpec(
                "bytes", f"{tag}-zero-byte", model, single(f"c{ext}", lambda p: p.write_bytes(b"")), "error"
            )
            half = len(data) // 2
            yield InputSpec(
                "bytes",
                f"{tag}-truncated-half",
                model,
                single(f"c{ext}", lambda p, d=data[:half]: p.write_bytes(d)),
                "error",
            )
            cuts = sorted(
                {
                    1,
                    4,
                    8,
                    9,
                    16,
                    64,
                    len(data) - 16,
                    len(data) - 1,
                    *rng.integers(1, len(data), 1 if quick else 3).tolist(),
                }
                - {half}
            )
            for cut in cuts:  # translate only: the dataset commands get the zero-byte, half and random-bytes variants
                yield InputSpec(
                    "bytes",
                    f"{tag}-truncated-{cut}-of-{len(data)}",
                    model,
                    single(f"c{ext}", lambda p, d=data[:cut]: p.write_bytes(d)),
                    # a PNG/JPEG/GIF cut in its trailer (IEND, EOI) may still hold every pixel
                    "either" if ext in (".png", ".jpg", ".gif") and cut >= len(data) - 16 else "error",
                    "",
                    False,
                )
            for i in range(1 if quick else 3):
                flipped = bytearray(data)
                for pos in rng.integers(0, min(len(data), 512), 4):
                    flipped[pos] ^= 0xFF
                yield InputSpec(
                    "bytes",
                    f"{tag}-flipped-header-{i}",
                    model,
                    single(f"c{ext}", lambda p, d=bytes(flipped): p.write_bytes(d)),
                    "either",
                    "",
                    i == 0,
                )
            noise = data[:16] + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
            yield InputSpec(
                "bytes",
                f"{tag}-random-after-magic",
                model,
                single(f"c{ext}", lambda p, d=noise: p.write_bytes(d)),
                "error",
            )
            yield InputSpec(
                "bytes",
                f"{tag}-appended-garbage",
                model,
                single(f"c{ext}", lambda p, d=data + b"\0garbage" * 100: p.write_bytes(d)),
                "either",
                "",
                False,
            )
            other = ".png" if ext != ".png" else ".jpg"
            yield InputSpec(
                "bytes",
                f"{tag}-wrong-extension",
                model,
                single(f"c{other}", lambda p, d=data: p.write_bytes(d)),
                "either",
                "",
                False,
            )
        yield InputSpec("bytes", "text-as-png", "rgb8", single("c.png", lambda p: p.write_text("hello\n")), "error")
        yield InputSpec(
            "bytes", "html-as-jpg", "rgb8", single("c.jpg", lambda p: p.write_text("<html>404</html>")), "error"
        )
        bomb = png_chunks(0, 8, 200_000, 200_000, b"")
        yield InputSpec("bytes", "png-bomb-header", "rgb8", single("c.png", lambda p: p.write_bytes(bomb)), "error")
        import tifffile

        def tiff_bomb(p: Path) -> None:
            with tifffile.TiffWriter(p, bigtiff=True) as tw:  # a sparse 10 GB file: 8 KiB on disk
                tw.write(shape=(100_000, 100_000), dtype=np.uint8)

        yield InputSpec("bytes", "tiff-bomb-sparse", "grey16", single("c.tif", tiff_bomb), "error", "", False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def name_specs(rng: np.random.Generator) -> Iterator[InputSpec]:
    """Odd file names and file kinds: long, unicode, spaces, dashes, symlinks, folders and pipes named like images."""
    h, w = SIZE
    rgb = as_dtype(smooth(rng, h, w, 3), "uint8")
    names = {
        "long-245": "a" * 245 + ".png",
        "long-250": "b" * 250 + ".png",
        "unicode": "façade_日本語_😀.png",
        "spaces": "my photo (1).png",
        "leading-dash": "-x.png",
        "uppercase-ext": "C.PNG",
        "double-ext": "c.png.png",
        "newline": "new\nline.png",
        "backslash": "back\\slash.png",
        "percent": "100%_%s.png",
        "latin1-bytes": "caf\udce9.png",
        "only-ext": ".png",
    }
    for label, name in names.items():
        expect = "ok" if label not in ("newline", "latin1-bytes", "only-ext", "long-250") else "either"
        yield InputSpec("names", label, "rgb8", single(name, lambda p: write_pil(p, rgb, format="PNG")), expect)

    def symlink(folder: Path) -> list[str]:
        # The target in a hidden folder, which every command ignores: beside `folder` it would lie inside the
        # dataset's A/ (folder is ds/A/train there), an extra image without a partner that combine rightly refuses.
        (folder / ".targets").mkdir()
        write_pil(folder / ".targets" / "target.png", rgb)
        (folder / "c.png").symlink_to(folder / ".targets" / "target.png")
        return ["c.png"]

    def dangling(folder: Path) -> list[str]:
        (folder / "c.png").symlink_to(folder / "missing.png")
        return ["c.png"]

    def loop(folder: Path) -> list[str]:
        (folder / "c.png").symlink_to(folder / "c.png")
        return ["c.png"]

    def dev_null(folder: Path) -> list[str]:
        (folder / "c.png").symlink_to("/dev/null")
        return ["c.png"]

    def dir_like_image(folder: Path) -> list[str]:
        (folder / "c.png").mkdir()
        return ["c.png"]

    def fifo(folder: Path) -> list[str]:
        os.mkfifo(folder / "c.png")
        return ["c.png"]

    def dir_symlink_loop(folder: Path) -> list[str]:
        (folder / "sub").symlink_to(folder)
        write_pil(folder / "c.png", rgb)
        return ["c.png"]

    yield InputSpec("names", "symlink", "rgb8", symlink, "ok")
    yield InputSpec("names", "dangling-symlink", "rgb8", dangling, "error")
    yield InputSpec("names", "symlink-loop", "rgb8", loop, "error")
    yield InputSpec("names", "symlink-dev-null", "rgb8", dev_null, "error")
    yield InputSpec("names", "directory-named-png", "rgb8", dir_like_image, "either", "", False)
    yield InputSpec("names", "fifo-named-png", "rgb8", fifo, "either", "", False)
    yield InputSpec("names", "folder-symlink-loop", "rgb8", dir_symlink_loop, "either", "", False)


def input_cases(specs: list[InputSpec]) -> Iterator[Case]:
    """Every input spec through translate (plain, --skip-bad, --tile), data check, train and data combine."""
    for spec in specs:
        base = f"{spec.family}/{spec.name}"
        checks = ("outputs",) + ((spec.oracle,) if spec.oracle else ())

        def build_in(case_dir: Path, spec: InputSpec = spec) -> None:
            folder = case_dir / "in"
            folder.mkdir()
            written = spec.write(folder)
            (case_dir / "written.json").write_text(json.dumps(written))

        def build_skip(case_dir: Path, spec: InputSpec = spec) -> None:
            build_in(case_dir, spec)
            write_good(case_dir / "in", spec.model, "zz_good")

        common = ["translate", "{" + spec.model + "}", "in", "--out", "out", "--no-progress"]
        yield Case(spec.family, spec.name, "translate", common, build_in, spec.expect, checks=checks)
        yield Case(
            spec.family,
            spec.name,
            "translate --skip-bad",
            [*common, "--skip-bad"],
            build_skip,
            spec.expect,
            checks=(*checks, "skip"),
        )
        yield Case(
            spec.family,
            spec.name,
            "translate --tile",
            [*common, "--tile", "32", "--overlap", "8"],
            build_in,
            spec.expect,
            checks=checks,
        )
        if not spec.datasets:
            continue

        def build_ds(case_dir: Path, spec: InputSpec = spec) -> None:
            folder = case_dir / "ds" / "A" / "train"
            folder.mkdir(parents=True)
            written = spec.write(folder)
            partners = case_dir / "ds" / "B" / "train"
            partners.mkdir(parents=True)
            for name in written:
                src = folder / name
                if src.is_symlink():  # the partner is the same odd link
                    (partners / name).symlink_to(os.path.relpath(src, partners))
                elif src.is_file():
                    shutil.copyfile(src, partners / name)
            for i in range(2):
                for side in (folder, partners):
                    write_good(side, spec.model, f"zz_good{i}", seed=i)
            (case_dir / "written.json").write_text(json.dumps(written))

        group = f"input:{base}"
        yield Case(
            spec.family,
            spec.name,
            "data check",
            ["data", "check", "ds"],
            build_ds,
            spec.expect,
            checks=(),
            group=group,
        )
        yield Case(
            spec.family,
            spec.name,
            "train",
            ["train", "--data", "ds", "--layout", "folders", *TINY_TRAIN, "--run-dir", "run"],
            build_ds,
            spec.expect,
            checks=("trained",),
            group=group,
        )
        # combine copies samples as they are (a NaN stays a NaN); only unreadable files must stop it
        combine_expect = spec.expect if spec.family in ("bytes", "names") else "either"
        yield Case(
            spec.family,
            spec.name,
            "data combine",
            ["data", "combine", "ds/A", "ds/B", "out", "--workers", "1"],
            build_ds,
            combine_expect,
            checks=("combined",),
        )


GOOD_CACHE: dict[tuple[str, str], bytes] = {}


def good_array(model: str, seed: int) -> np.ndarray:
    """A valid image in a model's format."""
    rng = np.random.default_rng(1000 + seed)
    h, w = SIZE
    if model == "rgb8":
        return as_dtype(smooth(rng, h, w, 3), "uint8")
    if model == "grey16":
        return as_dtype(smooth(rng, h, w, 1), "uint16")[..., 0]
    if model == "rgb16":
        return as_dtype(smooth(rng, h, w, 3), "uint16")
    return smooth(rng, h, w, 1).astype(np.float32)[..., 0]


def write_good(folder: Path, model: str, stem: str, seed: int = 0) -> Path:
    """Write a valid image for a model named stem (see write_array for the format)."""
    return write_array(folder / stem, model, good_array(model, seed))


# ----------------------------------------------------------------------------------------------- dataset layouts


def constant_pairs(root: Path, names: list[str], size: tuple[int, int]) -> None:
    """A folders dataset whose every image is black."""
    for side in "AB":
        (root / side / "train").mkdir(parents=True)
        for name in names:
            write_pil(root / side / "train" / name, np.zeros((*size, 3), np.uint8))


CROP_DEPENDENT = {"smaller-than-crop"}  # refused by train for its --crop-size; other commands take any size
# A|B images 2 pixels wide (1-pixel halves): train refuses them (its discriminator needs more), but the translator
# takes any size, so evaluate may score them: exit 0 is right when every pair is scored with finite values (see
# check_pairs; SSIM's 11x11 window does not fit such images, so it reports n=0, shown as nan), as is a refusal.
EVALUATE_ANY_SIZE = {"aligned-width-2"}


def layout_cases(rng: np.random.Generator) -> Iterator[Case]:
    """Bad and odd dataset layouts through data check, train, evaluate and data split."""
    h, w = SIZE
    img = lambda k: as_dtype(smooth(np.random.default_rng(k), h, w, 3), "uint8")  # noqa: E731

    def folders(
        root: Path, names_a: list[str], names_b: list[str], split: str = "train", size_b: tuple[int, int] | None = None
    ) -> None:
        for side, names in (("A", names_a), ("B", names_b)):
            folder = root / side / split if split else root / side
            folder.mkdir(parents=True, exist_ok=True)
            for k, name in enumerate(names):
                arr = img(k)
                if side == "B" and size_b:
                    arr = as_dtype(smooth(np.random.default_rng(k), *size_b, 3), "uint8")
                write_pil(folder / name, arr)

    def aligned(root: Path, width: int, count: int, split: str = "train") -> None:
        (root / split).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            write_pil(root / split / f"{k}.png", as_dtype(smooth(np.random.default_rng(k), h, width, 3), "uint8"))

    three = ["0.png", "1.png", "2.png"]
    layouts: dict[str, tuple[Callable[[Path], None], str, int | None]] = {
        "valid-folders": (lambda r: folders(r, three, three), "ok", 3),
        "valid-aligned": (lambda r: aligned(r, 2 * w, 3), "ok", 3),
        "valid-folders-no-split": (lambda r: folders(r, three, three, ""), "ok", 3),
        "empty": (lambda r: r.mkdir(), "error", None),
        "missing": (lambda r: None, "error", None),
        "file-not-folder": (lambda r: r.write_text("x"), "error", None),
        "A-only": (lambda r: folders(r, three, []) or shutil.rmtree(r / "B"), "error", None),
        "B-only": (lambda r: folders(r, [], three) or shutil.rmtree(r / "A"), "error", None),
        "A-empty": (lambda r: folders(r, [], three), "error", None),
        "mismatched-names": (lambda r: folders(r, three, ["0.png", "1.png", "9.png"]), "error", None),
        "no-common-names": (lambda r: folders(r, three, ["7.png", "8.png", "9.png"]), "error", None),
        "mismatched-sizes": (lambda r: folders(r, three, three, size_b=(h, w + 2)), "error", None),
        "mixed-channels": (
            lambda r: (folders(r, three, three), write_pil(r / "A/train/1.png", img(1)[..., 0])),
            "error",
            None,
        ),
        "mixed-bit-depth": (
            lambda r: (
                folders(r, three, three),
                write_pil(r / "B/train/2.png", as_dtype(smooth(rng, h, w, 1), "uint16")[..., 0], "I;16"),
            ),
            "error",
            None,
        ),
        "nested-subfolders": (
            lambda r: (folders(r, three, three), folders(r, ["x.png"], ["x.png"], "train/deep/er")),
            "either",
            None,
        ),
        "hidden-files": (
            lambda r: (
                folders(r, three, three),
                (r / "A/train/.DS_Store").write_bytes(b"\0\1"),
                write_pil(r / "A/train/._0.png", img(5)),
            ),
            "either",
            3,
        ),
        "non-image-files": (
            lambda r: (
                folders(r, three, three),
                (r / "A/train/README.txt").write_text("x"),
                (r / "B/train/Thumbs.db").write_bytes(b"\0"),
            ),
            "ok",
            3,
        ),
        "duplicate-stems": (
            lambda r: (folders(r, three, three), write_tiff(r / "A/train/0.tif", img(0))),
            "error",
            None,
        ),
        "case-different-names": (lambda r: folders(r, ["A.png", "b.png"], ["a.png", "B.png"]), "error", None),
        "aligned-odd-width": (lambda r: aligned(r, 2 * w + 1, 3), "error", None),
        "aligned-width-2": (lambda r: aligned(r, 2, 3), "error", 3),
        "aligned-one-image": (lambda r: aligned(r, 2 * w, 1), "either", 1),
        "aligned-mixed-widths": (
            lambda r: (aligned(r, 2 * w, 2), write_pil(r / "train/9.png", img(9))),
            "either",
            None,
        ),
        "train-empty-test-full": (lambda r: (aligned(r, 2 * w, 3, "test"), (r / "train").mkdir()), "either", None),
        "aligned-and-folders": (lambda r: (aligned(r, 2 * w, 3), folders(r, three, three)), "either", None),
        "A-B-same-folder": (
            lambda r: (folders(r, three, []), shutil.rmtree(r / "B"), (r / "B").symlink_to("A")),
            "either",
            3,
        ),
        "symlinked-A": (
            lambda r: (
                folders(r / "real", three, three),
                r.mkdir(exist_ok=True),
                (r / "A").symlink_to(r / "real/A"),
                (r / "B").symlink_to(r / "real/B"),
            ),
            "either",
            3,
        ),
        "unicode-folders": (lambda r: folders(r, ["é 1.png", "日本.png"], ["é 1.png", "日本.png"]), "ok", 2),
        "many-pairs-200": (
            lambda r: folders(r, [f"{k}.png" for k in range(200)], [f"{k}.png" for k in range(200)]),
            "ok",
            200,
        ),
        "smaller-than-crop": (
            lambda r: (
                folders(r, three, three),
                write_pil(r / "A/train/0.png", img(0)[:20, :20]),
                write_pil(r / "B/train/0.png", img(0)[:20, :20]),
            ),
            "error",
            None,
        ),
        "all-constant": (lambda r: constant_pairs(r, three, (h, w)), "either", 3),
        "A-is-a-file": (
            lambda r: (folders(r, [], three), shutil.rmtree(r / "A"), (r / "A").write_text("x")),
            "error",
            None,
        ),
    }
    for label, (make, expect, count) in layouts.items():

        def build(case_dir: Path, make: Callable[[Path], None] = make) -> None:
            make(case_dir / "ds")

        group = f"layout:{label}"
        checks = ("evaluated",)
        train_expect, expect = expect, "either" if label in CROP_DEPENDENT else expect
        yield Case("layout", label, "data check", ["data", "check", "ds"], build, expect, checks=(), group=group)
        yield Case(
            "layout",
            label,
            "train",
            ["train", "--data", "ds", *TINY_TRAIN, "--run-dir", "run"],
            build,
            train_expect,
            checks=("trained",),
            group=group,
        )
        argv = ["evaluate", "{rgb8}", "ds", "--phase", "train", "--out", "ev", "--no-progress"]
        eval_expect = "either" if label in EVALUATE_ANY_SIZE else expect
        yield Case(
            "layout",
            label,
            "evaluate",
            argv,
            build,
            eval_expect,
            checks=checks + ((f"pairs={count}",) if count else ()),
        )
        yield Case(
            "layout",
            label,
            "data split",
            ["data", "split", "ds/train", "out", "--workers", "1"],
            build,
            "either",
            checks=("combined",),
        )


# ------------------------------------------------------------------------------------------- tampered checkpoints


def tamper_config(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    """Apply an edit to every config.json of the copied run (run folder and checkpoint folder)."""

    def apply(run: Path) -> None:
        for path in [run / "config.json", *run.glob("checkpoints/step_*/config.json")]:
            cfg = json.loads(path.read_text())
            result = edit(cfg)
            path.write_text(result if isinstance(result, str) else json.dumps(result))

    return apply


def set_field(section: str, key: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """An edit that sets config[section][key] (or config[key] for section "")."""

    def edit(cfg: dict[str, Any]) -> dict[str, Any]:
        (cfg.setdefault(section, {}) if section else cfg)[key] = value
        return cfg

    return edit


def delete_field(section: str, key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """An edit that removes a key."""

    def edit(cfg: dict[str, Any]) -> dict[str, Any]:
        (cfg.get(section, {}) if section else cfg).pop(key, None)
        return cfg

    return edit


def step_folder(run: Path) -> Path:
    """The copied run's only checkpoint folder."""
    return sorted(run.glob("checkpoints/step_*"))[-1]


def edit_weights(run: Path, edit: Callable[[bytes], bytes], name: str = "generator.safetensors") -> None:
    """Rewrite a weight file's bytes."""
    path = step_folder(run) / name
    path.write_bytes(edit(path.read_bytes()))


def safetensors_parts(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Split a safetensors file into its JSON header and its data."""
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def safetensors_join(header: dict[str, Any], body: bytes) -> bytes:
    """Assemble a safetensors file."""
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def edit_header(edit: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    """A weight-file edit that changes the safetensors header."""

    def apply(data: bytes) -> bytes:
        header, body = safetensors_parts(data)
        edit(header)
        return safetensors_join(header, body)

    return apply


def retouch_metadata(header: dict[str, Any], edit: Callable[[dict[str, Any]], Any]) -> None:
    """Apply a config edit to the config embedded in a safetensors header."""
    meta = header.setdefault("__metadata__", {})
    result = edit(json.loads(meta.get("config", "{}")))
    meta["config"] = result if isinstance(result, str) else json.dumps(result)


def first_tensor(header: dict[str, Any]) -> str:
    """The name of the first tensor in a header."""
    return sorted(k for k in header if k != "__metadata__")[0]


def nan_weights(data: bytes) -> bytes:
    """Set every float of the generator's last tensor to NaN (a damaged but well-formed file)."""
    header, body = safetensors_parts(data)
    name = sorted(k for k in header if k != "__metadata__" and header[k]["dtype"] == "F32")[-1]
    start, end = header[name]["data_offsets"]
    body = body[:start] + np.full((end - start) // 4, np.nan, np.float32).tobytes() + body[end:]
    return safetensors_join(header, body)


class Payload:
    """A pickle that creates a marker file when unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {PAYLOAD_MARKER}",))


def payload_bytes() -> bytes:
    """The pickle payload, as a raw pickle."""
    return pickle.dumps(Payload())


def payload_zip() -> bytes:
    """The pickle payload in torch's zip container layout (what torch.load opens)."""
    buffer = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("archive/data.pkl", payload_bytes())
        zf.writestr("archive/version", "3\n")
    return buffer.getvalue()


def checkpoint_tampers(rng: np.random.Generator) -> dict[str, tuple[Callable[[Path], None], str]]:
    """Named edits of a copied run folder and whether a correct diptych must refuse it."""
    deep = "[" * 100_000 + "]" * 100_000
    t: dict[str, tuple[Callable[[Path], None], str]] = {
        "valid": (lambda r: None, "ok"),
        "config-not-json": (tamper_config(lambda c: "{not json"), "error"),
        "config-empty": (tamper_config(lambda c: ""), "error"),
        "config-list": (tamper_config(lambda c: "[]"), "error"),
        "config-null": (tamper_config(lambda c: "null"), "error"),
        "config-deep-nesting": (tamper_config(lambda c: json.dumps(c)[:-1] + ', "deep": ' + deep + "}"), "either"),
        "config-deep-in-field": (
            tamper_config(lambda c: json.dumps(c).replace('"ngf": 8', '"ngf": ' + deep, 1)),
            "error",
        ),
        "config-NaN-literal": (
            tamper_config(lambda c: json.dumps(c).replace('"dropout": 0.5', '"dropout": NaN', 1)),
            "error",
        ),
        "config-bom": (tamper_config(lambda c: "\ufeff" + json.dumps(c)), "either"),
        "config-utf16": (
            lambda r: [
                p.write_bytes(p.read_text().encode("utf-16"))
                for p in [r / "config.json", step_folder(r) / "config.json"]
            ],
            "either",
        ),
        "format-version-99": (tamper_config(set_field("", "format_version", 99)), "error"),
        "format-version-string": (tamper_config(set_field("", "format_version", "1")), "either"),
        "format-version-negative": (tamper_config(set_field("", "format_version", -1)), "error"),
        "format-version-missing": (tamper_config(delete_field("", "format_version")), "either"),
        "generator-missing": (tamper_config(delete_field("", "generator")), "either"),
        "generator-list": (tamper_config(set_field("", "generator", [1, 2])), "error"),
        "unknown-top-key": (tamper_config(set_field("", "surprise", {"x": 1})), "either"),
        "unknown-field": (tamper_config(set_field("generator", "surprise", 1)), "either"),
        "recipe-bogus": (tamper_config(set_field("", "recipe", "cyclegan9")), "error"),
        "direction-bogus": (tamper_config(set_field("data", "direction", "sideways")), "error"),
        "sample-type-bogus": (tamper_config(set_field("data", "sample_type", "complex128")), "error"),
        "input-range-reversed": (tamper_config(set_field("data", "input_range", [1.0, 0.0])), "error"),
        "input-range-equal": (tamper_config(set_field("data", "input_range", [0.5, 0.5])), "error"),
        "input-range-strings": (tamper_config(set_field("data", "input_range", ["a", "b"])), "error"),
        "input-range-three": (tamper_config(set_field("data", "input_range", [0, 1, 2])), "error"),
        "output-range-huge": (tamper_config(set_field("data", "output_range", [0, 1e308])), "either"),
        "norm-bogus": (tamper_config(set_field("generator", "norm", "nope")), "error"),
        "test-mode-bogus": (tamper_config(set_field("", "test_mode", "nope")), "either"),
        "extra-data-nesting": (tamper_config(set_field("data", "root", {"a": [1, {"b": None}]})), "either"),
    }
    for key, values in {
        "ngf": (0, -1, 1_000_000, 8.5, "8", True, None, [8], 10**400),
        "depth": (0, -3, 100, 4.0, "4"),
        "in_channels": (0, -1, 100_000, 2),
        "out_channels": (0, -1, 100_000, 2),
        "dropout": (-0.5, 2.0, "x"),
    }.items():
        for value in values:
            label = f"generator.{key}={json.dumps(value)[:24] if not isinstance(value, int) or abs(value) < 10**20 else '10**400'}"
            edit = tamper_config(
                lambda c, k=key, v=value: json.dumps(set_field("generator", k, 0)(c)).replace(
                    f'"{k}": 0', f'"{k}": {"1" + "0" * 400 if v == 10**400 else json.dumps(v)}', 1
                )
            )
            yield_expect = (
                "either" if (key, value) in (("ngf", 8.5), ("ngf", "8"), ("depth", 4.0), ("depth", "4")) else "error"
            )
            t[label] = (edit, yield_expect)
    for name in ("config.json", "generator.safetensors", "discriminator.safetensors", "training_state.pt"):
        t[f"missing-{name}"] = (
            lambda r, n=name: (step_folder(r) / n).unlink(),
            "either" if name != "generator.safetensors" else "error",
        )
    for cut in (0, 4, 8, 9, 100, -100, -1):
        t[f"weights-truncated-{cut}"] = (lambda r, c=cut: edit_weights(r, lambda d: d[:c] if c else b""), "error")
    t["weights-header-length-huge"] = (lambda r: edit_weights(r, lambda d: struct.pack("<Q", 2**62) + d[8:]), "error")
    t["weights-header-length-zero"] = (lambda r: edit_weights(r, lambda d: struct.pack("<Q", 0) + d[8:]), "error")
    t["weights-header-flipped-byte"] = (
        lambda r: edit_weights(r, lambda d: d[:20] + bytes([d[20] ^ 0x55]) + d[21:]),
        "error",
    )
    t["weights-dtype-lie"] = (
        lambda r: edit_weights(r, edit_header(lambda h: h[first_tensor(h)].update(dtype="F16"))),
        "error",
    )
    t["weights-shape-lie"] = (
        lambda r: edit_weights(r, edit_header(lambda h: h[first_tensor(h)].update(shape=[1]))),
        "error",
    )
    t["weights-offsets-outside"] = (
        lambda r: edit_weights(r, edit_header(lambda h: h[first_tensor(h)].update(data_offsets=[0, 10**12]))),
        "error",
    )
    t["weights-tensor-missing"] = (lambda r: edit_weights(r, edit_header(lambda h: h.pop(first_tensor(h)))), "error")
    t["weights-tensor-renamed"] = (
        lambda r: edit_weights(r, edit_header(lambda h: h.__setitem__("zz.extra", h.pop(first_tensor(h))))),
        "error",
    )
    t["weights-metadata-config-bogus"] = (
        lambda r: edit_weights(
            r,
            edit_header(
                lambda h: h.setdefault("__metadata__", {}).update({k: "{bogus" for k in h.get("__metadata__", {})})
            ),
        ),
        "either",
    )
    for label, edit in {
        "format-version-99": set_field("", "format_version", 99),
        "ngf-1000000": set_field("generator", "ngf", 1_000_000),
        "out-channels-0": set_field("generator", "out_channels", 0),
        "depth-100": set_field("generator", "depth", 100),
        "not-json": lambda c: "{",
    }.items():
        t[f"metadata-{label}"] = (
            lambda r, e=edit: edit_weights(r, edit_header(lambda h, e=e: retouch_metadata(h, e))),
            "error",
        )
    t["weights-nan"] = (lambda r: edit_weights(r, nan_weights), "either")
    t["weights-pickle-payload"] = (lambda r: edit_weights(r, lambda d: payload_bytes()), "error")
    t["weights-torch-zip-payload"] = (lambda r: edit_weights(r, lambda d: payload_zip()), "error")
    t["weights-random-bytes"] = (
        lambda r: edit_weights(r, lambda d: rng.integers(0, 256, len(d), dtype=np.uint8).tobytes()),
        "error",
    )
    t["weights-are-a-folder"] = (
        lambda r: (
            (step_folder(r) / "generator.safetensors").unlink(),
            (step_folder(r) / "generator.safetensors").mkdir(),
        ),
        "error",
    )
    t["training-state-payload"] = (
        lambda r: (step_folder(r) / "training_state.pt").write_bytes(payload_zip()),
        "either",
    )
    t["training-state-truncated"] = (
        lambda r: (step_folder(r) / "training_state.pt").write_bytes(
            (step_folder(r) / "training_state.pt").read_bytes()[:50]
        ),
        "either",
    )
    latest = lambda r, text: (r / "checkpoints" / "LATEST").write_text(text)  # noqa: E731
    t["latest-missing"] = (lambda r: (r / "checkpoints" / "LATEST").unlink(), "either")
    t["latest-empty"] = (lambda r: latest(r, ""), "error")
    t["latest-nowhere"] = (lambda r: latest(r, "step_99999999"), "error")
    t["latest-parent"] = (lambda r: latest(r, "../.."), "error")
    t["latest-absolute"] = (lambda r: latest(r, "/etc"), "error")
    t["latest-outside-run"] = (
        lambda r: (shutil.copytree(step_folder(r), r.parent / "elsewhere"), latest(r, "../../elsewhere")),
        "either",
    )
    t["latest-to-file"] = (lambda r: latest(r, "step_00000002/config.json"), "error")
    t["latest-nul"] = (lambda r: latest(r, "step_00000002\0"), "error")
    t["latest-long"] = (lambda r: latest(r, "s" * 5000), "error")
    t["latest-trailing-newlines"] = (lambda r: latest(r, step_folder(r).name + "\n\n"), "either")
    t["checkpoints-empty"] = (
        lambda r: [shutil.rmtree(p) if p.is_dir() else p.unlink() for p in (r / "checkpoints").iterdir()],
        "error",
    )
    t["run-config-only"] = (lambda r: shutil.rmtree(r / "checkpoints"), "error")
    t["stale-tmp-files"] = (
        lambda r: (
            (r / "checkpoints" / ".LATEST.12345.tmp").write_text("step_1"),
            (r / "checkpoints" / ".step_00000009.12345.tmp").mkdir(),
            (r / "checkpoints" / ".step_00000009.12345.tmp" / "generator.safetensors").write_bytes(b"half"),
        ),
        "ok",
    )
    return t


def checkpoint_expect(label: str, command: str, expect: str) -> str:
    """What a command must do with a tampered run: only the files it reads concern it."""
    lone = command == "translate lone weights"
    if label.startswith("metadata-") and not lone:  # folders are read through config.json, not weight metadata
        return "either"
    if lone and not label.startswith(("weights-", "missing-generator", "metadata-")):  # it carries its own config
        return "either"
    if command == "info" and (
        label.startswith(("weights-", "missing-", "checkpoints-empty", "run-config-only")) or label.endswith("=2")
    ):
        return "either"  # info shows the stored configuration; it does not load weights, so cannot see a mismatch
    if command == "train --resume" and label.endswith("_channels=0"):
        return "either"  # 0 channels means "from the data", which a resumed run reads again
    return expect


def checkpoint_cases(rng: np.random.Generator, quick: bool) -> Iterator[Case]:
    """Every tampered checkpoint through info, translate, evaluate, export and train --resume."""
    for label, (tamper, expect) in checkpoint_tampers(rng).items():

        def build(case_dir: Path, tamper: Callable[[Path], None] = tamper) -> None:
            run = case_dir / "run"
            shutil.copytree(BASE_PATHS["rgb8"], run, symlinks=True)
            write_good(case_dir, "rgb8", "img")
            tamper(run)

        commands = {
            "info": ["info", "run"],
            "translate": ["translate", "run", "img.png", "--out", "out", "--no-progress"],
            "translate lone weights": [
                "translate",
                "run/checkpoints/step_00000002/generator.safetensors",
                "img.png",
                "--out",
                "out",
                "--no-progress",
            ],
            "evaluate": ["evaluate", "run", "{ds}", "--out", "ev", "--no-progress", "--layout", "folders"],
            "export": ["export", "run", "--format", "torchscript", "--out", "m.pt"],
            "train --resume": ["train", "--resume", "run", "--max-steps", "3", "--no-progress"],
        }
        for command, argv in commands.items():
            if quick and command in ("export", "translate lone weights") and label != "valid":
                continue
            checks = {
                "translate": ("outputs", "payload"),
                "translate lone weights": ("outputs", "payload"),
                "evaluate": ("evaluated", "payload"),
                "train --resume": ("trained", "resumed", "payload"),
            }.get(command, ("payload",))
            # a lone weight file carries its own config: edits of config.json, LATEST or other files do not concern it
            yield Case(
                "checkpoint", label, command, argv, build, checkpoint_expect(label, command, expect), checks=checks
            )


# ------------------------------------------------------------------------------------------------------ options


def numeric_values(kind: type, flag: str) -> list[str]:
    """Hostile values for a numeric option."""
    ints = ["-1", "0", "1000000000000", "nan", ""]
    floats = ["nan", "inf", "-1", "0", "1e30", "abc"]
    values = ints if kind is int else floats
    if flag in LONG_RUNNING:  # a huge value there is legitimately long work, not a hang
        values = [v for v in values if v not in ("1000000000000", "2147483648", "1e30", "inf", "1e400")]
    if flag in WORKER_FLAGS:  # a huge worker count would be a fork bomb on a shared machine; 33 shows the check
        values = [v if v not in ("1000000000000", "2147483648") else "33" for v in values]
    return values


LONG_RUNNING = {
    "train --max-steps",
    "demo --steps",
    "data make-pairs --crops-per-image",
    "train --epochs",
    "train --epochs-decay",
}
WORKER_FLAGS = {"train --workers"}


def option_bases() -> dict[str, tuple[list[str], tuple[str, ...]]]:
    """A working argv per command (relative to a case folder holding the base fixtures' links), with its checks."""
    return {
        "train": (["train", "--data", "{ds}", "--layout", "folders", *TINY_TRAIN, "--run-dir", "run"], ("trained",)),
        "translate": (["translate", "{rgb8}", "in", "--out", "out", "--no-progress"], ("outputs",)),
        "evaluate": (
            ["evaluate", "{rgb8}", "{ds}", "--out", "ev", "--layout", "folders", "--no-progress"],
            ("evaluated", "pairs=3"),
        ),
        "export": (["export", "{rgb8}", "--format", "torchscript", "--out", "m.pt"], ()),
        "data combine": (["data", "combine", "{ds}/A", "{ds}/B", "out"], ("combined",)),
        "data split": (["data", "split", "{aligned}", "out"], ("combined",)),
        "data make-pairs": (
            ["data", "make-pairs", "{photos}", "out", "--task", "downscale", "--crop", "32"],
            ("combined",),
        ),
        "data check": (["data", "check", "{ds}"], ()),
        "data glyphs": (["data", "glyphs", "{font}", "{font}", "out", "--chars", "AB", "--size", "32"], ()),
        "demo": (["demo", "--out", "demo", "--steps", "2", "--crop-size", "32", "--device", "cpu"], ()),
        "compare": (["compare", "{eval}", "{eval}", "--out", "cmp"], ()),
        "info": (["info", "{rgb8}"], ()),
    }


def build_option_case(case_dir: Path) -> None:
    """A private copy of the 8-bit dataset (options may write into it), an input folder and an empty folder."""
    shutil.copytree(BASE_PATHS["ds"], case_dir / "ds")
    (case_dir / "emptydir").mkdir()
    (case_dir / "in").mkdir()
    write_good(case_dir / "in", "rgb8", "x")
    shutil.copyfile(case_dir / "in" / "x.png", case_dir / "x_original.png")
    (case_dir / "written.json").write_text(json.dumps(["x.png"]))


def option_case(label: str, argv: list[str], expect: str, checks: tuple[str, ...], command: str = "") -> Case:
    """An options case run on private copies of the inputs (see build_option_case)."""
    argv = [arg.replace("{ds}", "ds") for arg in argv]
    if "in" not in argv:  # the per-input output checks know the inputs of in/ only
        checks = tuple(c for c in checks if c != "outputs")
    if not command:
        command = (" ".join(argv[:2]) if argv[0] == "data" else argv[0]) if argv else "(none)"
    return Case("options", label, command, argv, build_option_case, expect, checks=(*checks, "inputs"), timeout=90.0)


def option_cases(quick: bool) -> Iterator[Case]:
    """Every numeric option of every command with hostile values, bad choices and conflicting combinations."""
    from diptych.cli import build_parser

    parser = build_parser()
    subparsers = _subparsers(parser)
    bases = option_bases()
    for command, (base, checks) in bases.items():
        sub = subparsers[command]
        for action in sub._actions:
            if not action.option_strings or action.type not in (int, float):
                continue
            flag = action.option_strings[-1]
            if command == "demo" and quick:
                continue
            for value in numeric_values(action.type, f"{command} {flag}"):
                argv = [*base, f"{flag}={value}"]
                yield option_case(f"{flag}={value}", argv, "either", checks, command)
        for action in sub._actions:
            if action.option_strings and action.choices and not isinstance(action.choices, dict):
                yield option_case(
                    f"{action.option_strings[-1]}=bogus",
                    [*base, action.option_strings[-1], "bogus"],
                    "error",
                    checks,
                    command,
                )
    top = bases["translate"][0]
    for value in ("-1", "0", "1", "100", "nan"):
        yield option_case(
            f"--max-image-pixels={value}", ["--max-image-pixels", value, *top], "either", ("outputs",), "translate"
        )
    conflicts: dict[str, tuple[list[str], str, tuple[str, ...]]] = {
        "resume+config": (["train", "--resume", "run", "--config", "{rgb8}/config.json"], "error", ()),
        "resume+recipe": (["train", "--resume", "run", "--recipe", "pix2pixhd"], "error", ()),
        "resume-missing": (["train", "--resume", "nowhere"], "error", ()),
        "config-missing": (["train", "--data", "{ds}", "--config", "nope.json", *TINY_TRAIN], "error", ()),
        "config-is-folder": (["train", "--data", "{ds}", "--config", "{ds}", *TINY_TRAIN], "error", ()),
        "crop-gt-load": (
            ["train", "--data", "{ds}", "--layout", "folders", *TINY_TRAIN, "--crop-size", "64", "--run-dir", "run"],
            "error",
            (),
        ),
        "depth-100": (
            ["train", "--data", "{ds}", "--layout", "folders", *TINY_TRAIN, "--depth", "100", "--run-dir", "run"],
            "error",
            (),
        ),
        "depth-30-ngf-1": (
            [
                "train",
                "--data",
                "{ds}",
                "--layout",
                "folders",
                *TINY_TRAIN,
                "--depth",
                "30",
                "--ngf",
                "1",
                "--run-dir",
                "run",
            ],
            "error",
            (),
        ),
        "beta1-2": (
            ["train", "--data", "{ds}", "--layout", "folders", *TINY_TRAIN, "--beta1", "2", "--run-dir", "run"],
            "error",
            (),
        ),
        "run-dir-is-file": (
            ["train", "--data", "{ds}", "--layout", "folders", *TINY_TRAIN, "--run-dir", "{ds}/A/test/0.png"],
            "error",
            (),
        ),
        "run-dir-is-dataset": (
            ["train", "--data", "{ds}", "--layout", "folders", *TINY_TRAIN, "--run-dir", "{ds}"],
            "either",
            (),
        ),
        "evaluate-max-items--1": (
            ["evaluate", "{rgb8}", "{ds}", "--out", "ev", "--layout", "folders", "--max-items", "-1", "--no-progress"],
            "either",
            ("evaluated", "pairs=3"),
        ),
        "evaluate-metrics-empty": (
            ["evaluate", "{rgb8}", "{ds}", "--out", "ev", "--metrics", ",", "--no-progress"],
            "either",
            (),
        ),
        "evaluate-metrics-bogus": (
            ["evaluate", "{rgb8}", "{ds}", "--out", "ev", "--metrics", "psnr,bogus"],
            "error",
            (),
        ),
        "evaluate-metrics-dup": (
            [
                "evaluate",
                "{rgb8}",
                "{ds}",
                "--out",
                "ev",
                "--metrics",
                "psnr,psnr",
                "--layout",
                "folders",
                "--no-progress",
            ],
            "either",
            ("evaluated",),
        ),
        "evaluate-fid-no-weights": (
            ["evaluate", "{rgb8}", "{ds}", "--out", "ev", "--metrics", "fid", "--layout", "folders"],
            "error",
            (),
        ),
        "evaluate-phase-traversal": (["evaluate", "{rgb8}", "{ds}", "--phase", "../../..", "--out", "ev"], "error", ()),
        "translate-out-is-file": (["translate", "{rgb8}", "{ds}/A/test", "--out", "{ds}/A/test/0.png"], "error", ()),
        "translate-out-is-input": (
            ["translate", "{rgb8}", "in", "--out", "in", "--overwrite", "--no-progress"],
            "either",
            (),
        ),
        "translate-tile-bogus": (["translate", "{rgb8}", "{ds}/A/test", "--out", "out", "--tile", "big"], "error", ()),
        "translate-tile-7": (["translate", "{rgb8}", "{ds}/A/test", "--out", "out", "--tile", "7"], "error", ()),
        "translate-tile-0": (["translate", "{rgb8}", "{ds}/A/test", "--out", "out", "--tile", "0"], "error", ()),
        "translate-tile--32": (["translate", "{rgb8}", "{ds}/A/test", "--out", "out", "--tile", "-32"], "error", ()),
        "translate-tile-nan": (["translate", "{rgb8}", "{ds}/A/test", "--out", "out", "--tile", "nan"], "error", ()),
        "translate-tile-overlap-gt-tile": (
            ["translate", "{rgb8}", "{ds}/A/test", "--out", "out", "--tile", "32", "--overlap", "64"],
            "error",
            (),
        ),
        "translate-tile-paper-mode": (
            ["translate", "{rgb8}", "{ds}/A/test", "--out", "out", "--tile", "32", "--test-mode", "paper"],
            "error",
            (),
        ),
        "translate-tile-auto-tiny-budget": (
            ["translate", "{rgb8}", "{ds}/A/test", "--out", "out", "--tile", "auto", "--memory-budget", "1e-9"],
            "either",
            (),
        ),
        "translate-onnx-backend-on-checkpoint": (
            ["translate", "{rgb8}", "{ds}/A/test", "--out", "out", "--backend", "onnxruntime"],
            "error",
            (),
        ),
        "translate-jpg-16bit": (
            ["translate", "{grey16}", "{ds16}/A/test", "--out", "out", "--format", "jpg", "--no-progress"],
            "either",
            ("outputs",),
        ),
        "translate-device-bogus": (
            ["translate", "{rgb8}", "{ds}/A/test", "--out", "out", "--device", "tpu:9"],
            "error",
            (),
        ),
        "translate-device-cuda": (
            ["translate", "{rgb8}", "{ds}/A/test", "--out", "out", "--device", "cuda:7"],
            "either",
            ("outputs",),
        ),
        "translate-instance-dir-missing": (
            ["translate", "{rgb8}", "{ds}/A/test", "--out", "out", "--instance-dir", "nowhere"],
            "error",
            (),
        ),
        "translate-aligned-on-folder-images": (
            ["translate", "{rgb8}", "{ds}/A/test", "--out", "out", "--aligned", "--no-progress"],
            "either",
            ("outputs",),
        ),
        "translate-input-missing": (["translate", "{rgb8}", "nowhere.png", "--out", "out"], "error", ()),
        "translate-input-empty-folder": (["translate", "{rgb8}", "emptydir", "--out", "out"], "error", ()),
        "translate-same-input-twice": (
            ["translate", "{rgb8}", "{ds}/A/test/0.png", "{ds}/A/test/0.png", "--out", "out", "--no-progress"],
            "either",
            ("outputs",),
        ),
        "translate-existing-output": (["translate", "{rgb8}", "{ds}/A/test", "--out", "{ds}/A/test"], "error", ()),
        "export-onnx-opset-1": (["export", "{rgb8}", "--out", "m.onnx", "--opset", "1"], "error", ()),
        "export-check-size-bogus": (
            ["export", "{rgb8}", "--format", "torchscript", "--out", "m.pt", "--check-size", "axb"],
            "error",
            (),
        ),
        "export-check-size-zero": (
            ["export", "{rgb8}", "--format", "torchscript", "--out", "m.pt", "--check-size", "0x0"],
            "error",
            (),
        ),
        "export-check-size-huge": (
            ["export", "{rgb8}", "--format", "torchscript", "--out", "m.pt", "--check-size", "100000x100000"],
            "error",
            (),
        ),
        "export-check-images-missing": (
            ["export", "{rgb8}", "--format", "torchscript", "--out", "m.pt", "--check-images", "nope.png"],
            "error",
            (),
        ),
        "export-out-is-folder": (["export", "{rgb8}", "--format", "torchscript", "--out", "{ds}"], "error", ()),
        "export-out-no-suffix": (["export", "{rgb8}", "--format", "torchscript", "--out", "model"], "either", ()),
        "convert-reference-out-exists": (["convert-reference", "{ds}/A/test/0.png", "{ds}"], "error", ()),
        "compare-one-run": (["compare", "{eval}", "--out", "cmp"], "either", ()),
        "compare-no-eval": (["compare", "{rgb8}", "{ds}", "--out", "cmp"], "error", ()),
        "compare-out-is-file": (["compare", "{eval}", "{eval}", "--out", "{ds}/A/test/0.png"], "error", ()),
        "data-combine-same-folder": (["data", "combine", "{ds}/A", "{ds}/A", "out"], "either", ("combined",)),
        "data-combine-out-inside-input": (["data", "combine", "{ds}/A", "{ds}/B", "{ds}/A/test/out"], "either", ()),
        "data-make-pairs-scale-gt-crop": (
            ["data", "make-pairs", "{photos}", "out", "--task", "downscale", "--scale", "64", "--crop", "32"],
            "either",
            (),
        ),
        "data-make-pairs-quality-0": (
            ["data", "make-pairs", "{photos}", "out", "--task", "jpeg", "--quality", "0"],
            "error",
            (),
        ),
        "data-make-pairs-quality-101": (
            ["data", "make-pairs", "{photos}", "out", "--task", "jpeg", "--quality", "101"],
            "error",
            (),
        ),
        "data-glyphs-range-reversed": (
            ["data", "glyphs", "{font}", "{font}", "out", "--range", "FFFF-0000"],
            "error",
            (),
        ),
        "data-glyphs-range-bogus": (["data", "glyphs", "{font}", "{font}", "out", "--range", "zz"], "error", ()),
        "data-glyphs-font-garbage": (
            ["data", "glyphs", "{ds}/A/test/0.png", "{font}", "out", "--chars", "A"],
            "error",
            (),
        ),
        "data-download-bogus": (["data", "download", "bogus"], "error", ()),
        "no-command": ([], "error", ()),
        "unknown-command": (["frobnicate"], "error", ()),
    }
    for label, (argv, expect, checks) in conflicts.items():
        yield option_case(label, argv, expect, checks)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every (sub-)command's parser by its label, e.g. "train", "data check"."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(p: argparse.ArgumentParser, prefix: str) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    label = f"{prefix} {name}".strip()
                    found[label] = sub
                    walk(sub, label)

    walk(parser, "")
    return found


# ----------------------------------------------------------------------------------------- other command inputs


def reference_cases(rng: np.random.Generator) -> Iterator[Case]:
    """Bad reference .pth files through convert-reference."""
    variants: dict[str, Callable[[Path], None]] = {
        "zero-byte": lambda p: p.write_bytes(b""),
        "random-bytes": lambda p: p.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        "pickle-payload": lambda p: p.write_bytes(payload_bytes()),
        "zip-pickle-payload": lambda p: p.write_bytes(payload_zip()),
        "text": lambda p: p.write_text("not a checkpoint"),
        "png-renamed": lambda p: (
            write_pil(p.with_suffix(".png"), np.zeros((4, 4), np.uint8)) or p.with_suffix(".png").rename(p)
        ),
        "folder": lambda p: p.mkdir(),
        "missing": lambda p: None,
    }
    for label, make in variants.items():

        def build(case_dir: Path, make: Callable[[Path], None] = make) -> None:
            make(case_dir / "latest_net_G.pth")

        yield Case(
            "reference",
            label,
            "convert-reference",
            ["convert-reference", "latest_net_G.pth", "conv"],
            build,
            "error",
            checks=("payload",),
        )
    for label, maker in {
        "state-dict-wrong-keys": "wrong_keys",
        "state-dict-list": "a_list",
        "state-dict-truncated": "truncated",
        "state-dict-nan": "nan_unet",
        "state-dict-shapes": "bad_shapes",
    }.items():
        yield Case(
            "reference",
            label,
            "convert-reference",
            ["convert-reference", "{ref_" + maker + "}", "conv"],
            None,
            "either" if maker == "nan_unet" else "error",
            checks=("payload",),
        )


def compare_cases() -> Iterator[Case]:
    """Tampered evaluation folders through compare."""
    edits: dict[str, Callable[[Path], None]] = {
        "metrics-missing": lambda e: (e / "metrics.json").unlink(),
        "metrics-not-json": lambda e: (e / "metrics.json").write_text("{"),
        "metrics-list": lambda e: (e / "metrics.json").write_text("[]"),
        "metrics-empty-object": lambda e: (e / "metrics.json").write_text("{}"),
        "metrics-nan": lambda e: (e / "metrics.json").write_text(
            (e / "metrics.json").read_text().replace('"mean": ', '"mean": NaN, "x": ', 1)
        ),
        "metrics-mean-string": lambda e: (e / "metrics.json").write_text(re_sub_mean((e / "metrics.json").read_text())),
        "per-image-missing": lambda e: (e / "per_image.csv").unlink(),
        "per-image-garbage": lambda e: (e / "per_image.csv").write_bytes(b"\0\1\2,\n,,,\n"),
        "per-image-empty": lambda e: (e / "per_image.csv").write_text(""),
        "images-missing": lambda e: [shutil.rmtree(p) for p in e.iterdir() if p.is_dir()],
    }
    for label, edit in edits.items():

        def build(case_dir: Path, edit: Callable[[Path], None] = edit) -> None:
            shutil.copytree(BASE_PATHS["eval"], case_dir / "ev")
            edit(case_dir / "ev")

        yield Case("compare", label, "compare", ["compare", "ev", "{eval}", "--out", "cmp"], build, "either")


def re_sub_mean(text: str) -> str:
    """Replace the first metric mean with a string."""
    import re

    return re.sub(r'"mean": [^,}]+', '"mean": "high"', text, count=1)


# ------------------------------------------------------------------------------------------------ CycleGAN (unpaired)


TINY_CG = ["--recipe", "cyclegan", "--n-blocks", "1", "--ngf", "8", "--ndf", "8", "--n-layers", "2"]
TINY_CG += ["--crop-size", "32", "--load-size", "32", "--preprocess", "crop", "--max-steps", "2"]
TINY_CG += ["--no-progress", "--workers", "0", "--log-every", "1"]
# The kill/resume runs: long enough that random kills land mid-training, a pool small enough to be full and swapping.
KILL_STEPS = 24
KILL_CG = [
    *TINY_CG[: TINY_CG.index("--max-steps")],
    "--max-steps",
    str(KILL_STEPS),
    *TINY_CG[TINY_CG.index("--max-steps") + 2 :],
]
KILL_CG += ["--save-every", "1", "--pool-size", "3"]


def unpaired_array(model: str, seed: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A valid image of a model's format and a given size (seeded apart from good_array's)."""
    rng = np.random.default_rng(2000 + seed)
    h, w = size
    channels = 3 if model in ("rgb8", "rgb16") else 1
    arr = smooth(rng, h, w, channels)
    if model == "float":
        return arr.astype(np.float32)[..., 0]
    out = as_dtype(arr, "uint8" if model == "rgb8" else "uint16")
    return out if channels == 3 else out[..., 0]


def domain(folder: Path, model: str, names: list[str], size: tuple[int, int] = SIZE, seed: int = 0) -> None:
    """Write one domain's images named by stems (the format follows the model, see write_array)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, stem in enumerate(names):
        write_array(folder / stem, model, unpaired_array(model, seed + k, size))


def reference_layout(root: Path, a: str = "rgb8", b: str = "rgb8", counts: tuple[int, int] = (3, 5)) -> None:
    """The reference's trainA/ trainB/ testA/ testB/ with unrelated names and counts per domain."""
    domain(root / "trainA", a, [f"a{k}" for k in range(counts[0])])
    domain(root / "trainB", b, [f"photo_{k:03d}" for k in range(counts[1])], seed=50)
    domain(root / "testA", a, ["t0", "t1"], seed=80)
    domain(root / "testB", b, ["u0", "u1", "u2"], seed=90)


def broken_png(path: Path) -> None:
    """A PNG cut in the middle of its image data."""
    write_pil(path, unpaired_array("rgb8", 7))
    path.write_bytes(path.read_bytes()[:120])


def nan_tiff(path: Path) -> None:
    """A float TIFF with one NaN sample."""
    arr = unpaired_array("float", 8)
    arr[3, 4] = np.nan
    write_tiff(path, arr)


def unpaired_layouts() -> dict[str, tuple[Callable[[Path], None], str]]:
    """Named unpaired datasets and whether `train --recipe cyclegan` (3-channel identity default) must refuse them."""
    ref = reference_layout
    big = (SIZE[0] + 16, SIZE[1] + 8)
    return {
        "valid-trainA-trainB": (lambda r: ref(r), "ok"),
        "valid-A-B-unrelated-names": (
            lambda r: (domain(r / "A", "rgb8", ["x1", "x2"]), domain(r / "B", "rgb8", list("pqrst"), seed=9)),
            "ok",
        ),
        "valid-A-B-phase-subfolders": (
            lambda r: (domain(r / "A" / "train", "rgb8", ["x1"]), domain(r / "B" / "train", "rgb8", list("pq"))),
            "ok",
        ),
        "paired-names-read-unpaired": (
            lambda r: (domain(r / "A", "rgb8", list("abc")), domain(r / "B", "rgb8", list("abc"), seed=3)),
            "ok",
        ),
        "sizes-differ-per-domain": (
            lambda r: (domain(r / "trainA", "rgb8", ["a"]), domain(r / "trainB", "rgb8", ["b", "c"], size=big)),
            "ok",
        ),
        "one-image-each": (lambda r: ref(r, counts=(1, 1)), "ok"),
        "counts-40-vs-1": (lambda r: ref(r, counts=(40, 1)), "ok"),
        "rgb8-vs-rgb16": (lambda r: ref(r, "rgb8", "rgb16"), "ok"),
        "grey16-vs-float": (lambda r: ref(r, "grey16", "float"), "ok"),
        "rgb8-vs-grey16": (lambda r: ref(r, "rgb8", "grey16"), "error"),  # identity loss across channel counts
        "float-vs-rgb8": (lambda r: ref(r, "float", "rgb8"), "error"),
        "formats-mixed-in-B": (
            lambda r: (
                ref(r),
                write_jpeg(r / "trainB" / "extra.jpg", unpaired_array("rgb8", 21)),
                write_tiff(r / "trainB" / "extra2.tif", unpaired_array("rgb8", 22)),
            ),
            "ok",
        ),
        "npy-domain": (
            lambda r: (
                domain(r / "trainA", "rgb8", ["a"]),
                (r / "trainB").mkdir(),
                write_npy(r / "trainB" / "b.npy", unpaired_array("rgb8", 3)),
            ),
            "ok",
        ),
        "rgba-in-B": (
            lambda r: (
                domain(r / "trainA", "rgb8", ["a"]),
                (r / "trainB").mkdir(),
                write_pil(r / "trainB" / "b.png", np.dstack([unpaired_array("rgb8", 4), np.full(SIZE, 200, np.uint8)])),
            ),
            "either",
        ),
        "exif-rotated-jpeg-in-A": (
            lambda r: (
                (r / "trainA").mkdir(parents=True),
                write_jpeg_exif(r / "trainA" / "a.jpg", unpaired_array("rgb8", 5), 6),
                domain(r / "trainB", "rgb8", ["b"]),
            ),
            "ok",
        ),
        "empty-trainB": (lambda r: (domain(r / "trainA", "rgb8", ["a"]), (r / "trainB").mkdir()), "error"),
        "empty-A": (lambda r: ((r / "A").mkdir(parents=True), domain(r / "B", "rgb8", ["b"])), "error"),
        "trainA-only": (lambda r: domain(r / "trainA", "rgb8", ["a", "b"]), "error"),
        "testA-testB-only": (
            lambda r: (domain(r / "testA", "rgb8", ["a"]), domain(r / "testB", "rgb8", ["b"])),
            "error",
        ),
        "B-holds-no-images": (
            lambda r: (
                domain(r / "trainA", "rgb8", ["a"]),
                (r / "trainB").mkdir(),
                (r / "trainB" / "README.txt").write_text("x"),
            ),
            "error",
        ),
        "B-is-a-file": (lambda r: (domain(r / "trainA", "rgb8", ["a"]), (r / "trainB").write_text("x")), "error"),
        "truncated-png-in-B": (lambda r: (ref(r), broken_png(r / "trainB" / "bad.png")), "error"),
        "zero-byte-in-A": (lambda r: (ref(r), (r / "trainA" / "zero.png").write_bytes(b"")), "error"),
        "nan-in-float-B": (lambda r: (ref(r, "grey16", "float"), nan_tiff(r / "trainB" / "nan.tif")), "error"),
        "mixed-channels-in-A": (
            lambda r: (ref(r), write_pil(r / "trainA" / "grey.png", unpaired_array("rgb8", 6)[..., 0])),
            "error",
        ),
        "mixed-bit-depth-in-B": (
            lambda r: (
                ref(r, "grey16", "grey16"),
                write_pil(r / "trainB" / "g8.png", unpaired_array("rgb8", 6)[..., 0]),
            ),
            "error",
        ),
        "B-smaller-than-crop": (
            lambda r: (domain(r / "trainA", "rgb8", ["a"]), domain(r / "trainB", "rgb8", ["b"], size=(20, 20))),
            "error",
        ),
        "hidden-and-non-image-files": (
            lambda r: (
                ref(r),
                (r / "trainA" / ".DS_Store").write_bytes(b"\0\1"),
                (r / "trainB" / "notes.txt").write_text("x"),
                write_pil(r / "trainB" / "._b.png", unpaired_array("rgb8", 2)),
            ),
            "ok",
        ),
        "unicode-names": (
            lambda r: (domain(r / "trainA", "rgb8", ["é 1", "日本"]), domain(r / "trainB", "rgb8", ["ß"])),
            "ok",
        ),
        "both-trainAB-and-AB": (
            lambda r: (ref(r), domain(r / "A", "rgb8", ["x"]), domain(r / "B", "rgb8", ["y"])),
            "either",
        ),
        "B-symlink-to-A": (
            lambda r: (domain(r / "trainA", "rgb8", ["a", "b"]), (r / "trainB").symlink_to("trainA")),
            "either",
        ),
        "aligned-pairs-only": (
            lambda r: (
                (r / "train").mkdir(parents=True),
                write_pil(r / "train" / "0.png", np.concatenate([unpaired_array("rgb8", 1)] * 2, axis=1)),
            ),
            "error",
        ),
        "uint32-npy-in-B": (
            lambda r: (
                domain(r / "trainA", "grey16", ["a"]),
                (r / "trainB").mkdir(),
                write_npy(r / "trainB" / "b.npy", (unpaired_array("grey16", 3).astype(np.uint32) * 7)),
            ),
            "either",
        ),
    }


def write_jpeg(path: Path, arr: np.ndarray) -> None:
    """An 8-bit JPEG (quality 95)."""
    write_pil(path, arr, quality=95)


# Layouts where pairing and identity matter: --serial-batches and --lambda-identity 0 run on these only.
PAIRING_LAYOUTS = {
    "valid-trainA-trainB", "counts-40-vs-1", "one-image-each", "rgb8-vs-grey16", "float-vs-rgb8", "rgb8-vs-rgb16",
    "grey16-vs-float", "sizes-differ-per-domain", "empty-trainB", "truncated-png-in-B",
}  # fmt: skip


def unpaired_cases() -> Iterator[Case]:
    """Unpaired datasets through data check --unpaired, train --recipe cyclegan (plain, --skip-bad,
    --serial-batches, --lambda-identity 0) and evaluate with a CycleGAN checkpoint."""
    for label, (make, expect) in unpaired_layouts().items():

        def build(case_dir: Path, make: Callable[[Path], None] = make) -> None:
            make(case_dir / "ds")

        group = f"unpaired:{label}"
        run = [*TINY_CG, "--run-dir", "run"]
        identity_only = label in ("rgb8-vs-grey16", "float-vs-rgb8", "rgba-in-B")
        bad_file = label in ("truncated-png-in-B", "zero-byte-in-A", "nan-in-float-B")
        yield Case(
            "unpaired", label, "data check", ["data", "check", "ds", "--unpaired", "--crop-size", "32"], build,
            "either" if identity_only or label == "testA-testB-only" else expect, group=group,
        )  # fmt: skip
        yield Case(
            "unpaired", label, "train", ["train", "--data", "ds", *run], build, expect, ("trained",), group=group
        )
        if bad_file:
            yield Case(
                "unpaired", label, "train --skip-bad", ["train", "--data", "ds", *run, "--skip-bad"], build, "either",
                ("trained",),
            )  # fmt: skip
        for direction in DIRECTIONS:
            argv = [
                "evaluate",
                "{cg}",
                "ds",
                "--direction",
                direction,
                "--out",
                "ev",
                "--no-progress",
                "--phase",
                "train",
            ]
            yield Case("unpaired", label, f"evaluate --direction {direction}", argv, build, "either", ("evaluated",))
        if label not in PAIRING_LAYOUTS:
            continue
        yield Case(
            "unpaired", label, "train --serial-batches", ["train", "--data", "ds", *run, "--serial-batches"], build,
            expect, ("trained",),
        )  # fmt: skip
        yield Case(
            "unpaired", label, "train --lambda-identity 0", ["train", "--data", "ds", *run, "--lambda-identity", "0"],
            build, "ok" if identity_only else expect, ("trained",),
        )  # fmt: skip


DIRECTIONS = ("AtoB", "BtoA")


def cyclegan_option_cases(quick: bool) -> Iterator[Case]:
    """`train --recipe cyclegan` with every numeric option's hostile values, bad choices, the other recipes' options,
    identity across channel counts, --serial-batches, and CycleGAN's options given to the paired recipes."""
    from diptych.cli import build_parser

    # two short epochs: --max-steps 0 (= all epochs) is then short work, not the default 200 epochs
    base = ["train", "--data", "{dsu}", *TINY_CG, "--epochs", "1", "--epochs-decay", "1", "--run-dir", "run"]
    sub = _subparsers(build_parser())["train"]
    for action in sub._actions:
        if action.option_strings and action.type in (int, float):
            flag = action.option_strings[-1]
            for value in numeric_values(action.type, f"train {flag}"):
                yield cyclegan_option_case(f"{flag}={value}", [*base, f"{flag}={value}"], "either")
        elif action.option_strings and action.choices and not isinstance(action.choices, dict):
            yield cyclegan_option_case(
                f"{action.option_strings[-1]}=bogus", [*base, action.option_strings[-1], "bogus"], "error"
            )
    paired_only = {
        "--label-nc 3": "error",
        "--instance-dir inst": "error",
        "--num-d 2": "error",
        "--layout aligned": "error",
        "--layout folders": "either",
        "--lambda-l1 50": "error",
        "--lambda-gp 5": "error",
        "--lambda-feat 10": "error",
        "--lambda-vgg 1": "error",
        "--vgg-weights vgg.pth": "error",
        "--init-global {rgb8}": "error",
        "--fix-global-steps 5": "error",
        "--direction BtoA": "error",
        "--netG unet_256": "either",
        "--arch hd": "either",
        "--arch unet --depth 4": "either",
        "--val-fraction 0.5": "either",
        "--val-data {dsu}": "either",
        "--val-data {ds}": "either",
        "--gan-loss wgangp": "either",
        "--gan-loss vanilla": "ok",
        "--accum-steps 2 --batch-size 2": "ok",
        "--batch-size 3": "ok",
        "--serial-batches": "ok",
        "--no-serial-batches": "ok",
        "--pool-size 0": "ok",
        "--pool-size 1": "ok",
        "--lambda-identity 0": "ok",
        "--lambda-a 0 --lambda-b 0": "either",
        "--in-channels 3 --out-channels 1": "error",
        "--in-channels 1": "error",
        "--g-norm batch": "either",
        "--dropout 0.5": "ok",
        "--precision bf16": "either",
        "--grad-checkpoint": "ok",
        "--netG resnet_6blocks": "ok",
        "--tensorboard": "either",
    }
    for flags, expect in paired_only.items():
        yield cyclegan_option_case(flags, [*base, *flags.split()], expect)
    for label, flags, expect in (
        ("identity-rgb8-to-grey16", ["--lambda-identity", "0.5"], "error"),
        ("identity-default-rgb8-to-grey16", [], "error"),
        ("identity-0-rgb8-to-grey16", ["--lambda-identity", "0"], "ok"),
        ("identity-0-serial-rgb8-to-grey16", ["--lambda-identity", "0", "--serial-batches"], "ok"),
    ):
        argv = ["train", "--data", "{dsu_mixed}", *TINY_CG, "--run-dir", "run", *flags]
        yield cyclegan_option_case(label, argv, expect)
    for recipe in ("pix2pix", "pix2pixhd"):
        paired = ["train", "--recipe", recipe, "--data", "{ds}", "--layout", "folders", "--run-dir", "run"]
        paired += [a for a in TINY_TRAIN if a not in ("--depth", "4")] if recipe == "pix2pixhd" else TINY_TRAIN
        for flags in ("--lambda-a 5", "--lambda-b 5", "--lambda-identity 0.5", "--pool-size 10", "--serial-batches"):
            yield cyclegan_option_case(f"{recipe}:{flags}", [*paired, *flags.split()], "error")
        yield cyclegan_option_case(f"{recipe}:unpaired-data", [*paired[:4], "{dsu}", *paired[5:]], "error")
    conflicts = {
        "resume-cyclegan-as-pix2pix": (["train", "--resume", "cgrun", "--recipe", "pix2pix"], "error"),
        "resume-cyclegan-lambda-identity": (["train", "--resume", "cgrun", "--lambda-identity", "0"], "either"),
        "config-of-cyclegan-for-pix2pix": (
            [
                "train",
                "--config",
                "{cg}/config.json",
                "--recipe",
                "pix2pix",
                "--data",
                "{ds}",
                *TINY_TRAIN,
                "--run-dir",
                "run2",
            ],
            "either",
        ),
        "config-of-cyclegan": (
            [
                "train",
                "--config",
                "{cg}/config.json",
                "--data",
                "{dsu}",
                "--run-dir",
                "run2",
                "--max-steps",
                "2",
                "--no-progress",
                "--workers",
                "0",
            ],
            "ok",
        ),
    }
    for label, (argv, expect) in conflicts.items():
        yield cyclegan_option_case(label, argv, expect)


def cyclegan_option_case(label: str, argv: list[str], expect: str) -> Case:
    """A CycleGAN options case on a private copy of the unpaired dataset and of the base CycleGAN run."""
    argv = [a.replace("{dsu}", "dsu") for a in argv]
    checks = ("trained",) if "run" in argv and argv[:1] == ["train"] else ()  # (resumes: cgrun, not checked)
    label = label.replace(" ", "_")  # ids hold no spaces (--list prints the id, then the argv)
    return Case("cyclegan-options", label, "train", argv, build_cyclegan_option_case, expect, checks, timeout=120.0)


def build_cyclegan_option_case(case_dir: Path) -> None:
    """Private copies (options may write into them)."""
    shutil.copytree(BASE_PATHS["dsu"], case_dir / "dsu")
    shutil.copytree(BASE_PATHS["cg"], case_dir / "cgrun", symlinks=True)
    (case_dir / "inst").mkdir()


def manifest_edit(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    """Apply an edit to the copied run's manifest.json (a str result is written as it is)."""

    def apply(run: Path) -> None:
        path = step_folder(run) / "manifest.json"
        manifest = json.loads(path.read_text())
        result = edit(manifest)
        path.write_text(result if isinstance(result, str) else json.dumps(result))

    return apply


def in_manifest(*keys: str, value: Any = None, delete: bool = False) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Set (or delete) manifest[keys[0]][keys[1]]..."""

    def edit(m: dict[str, Any]) -> dict[str, Any]:
        node = m
        for key in keys[:-1]:
            node = node[key]
        if delete:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
        return m

    return edit


def swap_files(run: Path, a: str, b: str) -> None:
    """Exchange two weight files of the checkpoint."""
    folder = step_folder(run)
    (folder / a).rename(folder / "swap.tmp-x")
    (folder / b).rename(folder / a)
    (folder / "swap.tmp-x").rename(folder / b)


def cyclegan_tampers() -> dict[str, tuple[Callable[[Path], None], dict[str, str]]]:
    """Edits of a copied CycleGAN run and what each command must do (missing: "error")."""
    ok = {c: "ok" for c in CG_COMMANDS}
    err = {c: "error" for c in CG_COMMANDS}
    info_either = {**err, "info": "either"}

    def without(direction: str) -> dict[str, str]:
        """A generator is gone: its direction (AtoB is translate's default) and resuming must refuse; the rest may
        work."""
        refused = lambda c: direction in c or c == "train --resume" or (c == "translate" and direction == "AtoB")  # noqa: E731
        return {c: "error" if refused(c) else "either" for c in CG_COMMANDS}

    valid = {**ok, "translate --direction AtoB lone G_B": "error"}
    t: dict[str, tuple[Callable[[Path], None], dict[str, str]]] = {"valid": (lambda r: None, valid)}
    for net, direction in (("G_A", "AtoB"), ("G_B", "BtoA")):
        t[f"missing-{net}.safetensors"] = (
            lambda r, n=net: (step_folder(r) / f"{n}.safetensors").unlink(),
            without(direction),
        )
    for net in ("D_A", "D_B"):
        t[f"missing-{net}.safetensors"] = (
            lambda r, n=net: (step_folder(r) / f"{n}.safetensors").unlink(),
            {**{c: "either" for c in CG_COMMANDS}, "train --resume": "error"},
        )
    t["missing-manifest"] = (lambda r: (step_folder(r) / "manifest.json").unlink(), {c: "either" for c in CG_COMMANDS})
    for label, text in (("not-json", "{"), ("empty", ""), ("list", "[]"), ("null", "null"), ("deep", "[" * 100000)):
        t[f"manifest-{label}"] = (manifest_edit(lambda m, s=text: s), info_either)
    for value in (99, 0, -1, "2", None, 1.5, True, 10**30):
        t[f"manifest-format-version={json.dumps(value)}"] = (
            manifest_edit(in_manifest("format_version", value=value)),
            {**info_either, **({c: "either" for c in CG_COMMANDS} if value in (0, True) else {})},
        )
    t["manifest-format-version-missing"] = (manifest_edit(in_manifest("format_version", delete=True)), info_either)
    generators = {
        "AtoB-to-unknown": {"AtoB": "G_Z", "BtoA": "G_B"},
        "AtoB-to-discriminator": {"AtoB": "D_A", "BtoA": "G_B"},
        "swapped": {"AtoB": "G_B", "BtoA": "G_A"},
        "empty": {},
        "extra-direction": {"AtoB": "G_A", "BtoA": "G_B", "CtoD": "G_A"},
        "AtoB-only": {"AtoB": "G_A"},
        "list": ["G_A", "G_B"],
        "number": {"AtoB": 1, "BtoA": "G_B"},
    }
    for label, value in generators.items():
        t[f"generators-{label}"] = (manifest_edit(in_manifest("generators", value=value)), info_either)
    for label, edit in {
        "file-traversal": in_manifest("networks", "G_A", "file", value="../../../etc/passwd"),
        "file-of-other-net": in_manifest("networks", "G_A", "file", value="G_B.safetensors"),
        "file-null": in_manifest("networks", "G_B", "file", value=None),
        "spec-n-blocks-1000": in_manifest("networks", "G_A", "spec", "n_blocks", value=1000),
        "spec-ngf-1e6": in_manifest("networks", "G_B", "spec", "ngf", value=1_000_000),
        "spec-kind-bogus": in_manifest("networks", "G_A", "spec", "arch", value="bogus"),
        "spec-in-channels-0": in_manifest("networks", "G_A", "spec", "in_channels", value=0),
        "spec-missing": in_manifest("networks", "G_B", "spec", delete=True),
        "spec-list": in_manifest("networks", "G_A", "spec", value=[1]),
        "networks-empty": in_manifest("networks", value={}),
        "network-G_B-missing": in_manifest("networks", "G_B", delete=True),
        "extra-network": in_manifest("networks", "G_C", value={"file": "G_C.safetensors", "spec": {}}),
        "domain-A-channels-1": in_manifest("domains", "A", "channels", value=1),
        "domain-B-sample-type-bogus": in_manifest("domains", "B", "sample_type", value="complex128"),
        "domain-A-range-reversed": in_manifest("domains", "A", "value_range", value=[1.0, 0.0]),
        "domain-B-range-nan": in_manifest("domains", "B", "value_range", value=[0, float("nan")]),
        "domains-missing": in_manifest("domains", delete=True),
        "domain-C": in_manifest("domains", "C", value={"channels": 3}),
        "recipe-pix2pix": in_manifest("recipe", value="pix2pix"),
        "recipe-missing": in_manifest("recipe", delete=True),
    }.items():
        t[f"manifest-{label}"] = (manifest_edit(edit), info_either)
    for label, edit in {
        "recipe-pix2pix": set_field("", "recipe", "pix2pix"),
        "method-missing": delete_field("", "method"),
        "method-list": set_field("", "method", [1]),
        "lambda-a-negative": set_field("method", "lambda_a", -1),
        "pool-size-negative": set_field("method", "pool_size", -1),
        "pool-size-huge": set_field("method", "pool_size", 10**9),
        "n-blocks-0": set_field("generator", "n_blocks", 0),
        "n-blocks-1000": set_field("generator", "n_blocks", 1000),
        "arch-unet": set_field("generator", "arch", "unet"),
        "out-channels-2": set_field("generator", "out_channels", 2),  # neither base run's (3 and 1)
    }.items():
        # a lone weights file carries its own configuration: config.json does not concern it
        t[f"config-{label}"] = (
            tamper_config(edit),
            {**info_either, **{c: "either" for c in CG_COMMANDS if "lone" in c}},
        )
    # a pool size within its bounds (no upper one) concerns training only; the resume refuses the stored pool's size
    t["config-pool-size-huge"] = (t["config-pool-size-huge"][0], {**valid, "train --resume": "error", "info": "either"})
    # a lone file is read as the network it records, whatever its name: the swapped G_B.safetensors serves AtoB
    lone = {c: "either" for c in CG_COMMANDS if "lone" in c}
    t["swapped-weight-files-G"] = (
        lambda r: swap_files(r, "G_A.safetensors", "G_B.safetensors"),
        {**info_either, **lone},
    )
    t["swapped-weight-files-G-D"] = (lambda r: swap_files(r, "G_A.safetensors", "D_A.safetensors"), without("AtoB"))
    t["training-state-truncated"] = (
        lambda r: (step_folder(r) / "training_state.pt").write_bytes(
            (step_folder(r) / "training_state.pt").read_bytes()[:64]
        ),
        {**valid, "train --resume": "error"},
    )
    t["training-state-payload"] = (
        lambda r: (step_folder(r) / "training_state.pt").write_bytes(payload_zip()),
        {**valid, "train --resume": "error"},
    )
    return t


CG_COMMANDS = (
    "info",
    "translate",
    "translate --direction AtoB",
    "translate --direction BtoA",
    "translate --direction BtoA lone G_B",
    "translate --direction AtoB lone G_B",
    "translate --direction BtoA --tile",
    "export --direction BtoA",
    "evaluate --direction AtoB",
    "evaluate --direction BtoA",
    "train --resume",
)


def cyclegan_checkpoint_cases(quick: bool) -> Iterator[Case]:
    """Every tampered CycleGAN checkpoint (manifest v2, weights, config) through every command that reads one, with
    and without --direction, on the 3 -> 3 and the 3 -> 1 (8-bit RGB <-> 16-bit grey) runs."""
    step = "run/checkpoints/step_00000002"
    for base in ("cg", "cg_mixed"):
        commands = {
            "info": ["info", "run"],
            "translate": ["translate", "run", "in", "--out", "out", "--no-progress"],
            "translate --direction AtoB": ["translate", "run", "in", "--out", "out", "--direction", "AtoB", "--no-progress"],
            "translate --direction BtoA": ["translate", "run", "inB", "--out", "out", "--direction", "BtoA", "--no-progress"],
            "translate --direction BtoA lone G_B": ["translate", f"{step}/G_B.safetensors", "inB", "--out", "out", "--direction", "BtoA", "--no-progress"],
            "translate --direction AtoB lone G_B": ["translate", f"{step}/G_B.safetensors", "in", "--out", "out", "--direction", "AtoB", "--no-progress"],
            "translate --direction BtoA --tile": ["translate", "run", "inB", "--out", "out", "--direction", "BtoA", "--tile", "32", "--overlap", "8", "--no-progress"],
            "export --direction BtoA": ["export", "run", "--direction", "BtoA", "--format", "torchscript", "--out", "m.pt"],
            "evaluate --direction AtoB": ["evaluate", "run", "ds", "--direction", "AtoB", "--out", "ev", "--no-progress"],
            "evaluate --direction BtoA": ["evaluate", "run", "ds", "--direction", "BtoA", "--out", "ev", "--no-progress"],
            "train --resume": ["train", "--resume", "run", "--max-steps", "3", "--no-progress"],
        }  # fmt: skip
        for label, (tamper, expects) in cyclegan_tampers().items():
            if (base == "cg_mixed" and not label.startswith(MIXED_TAMPERS)) or (quick and label != "valid"):
                continue

            def build(case_dir: Path, tamper: Callable[[Path], None] = tamper, base: str = base) -> None:
                build_cyclegan_checkpoint(case_dir, base, tamper)

            for command, argv in commands.items():
                if command == "train --resume" and not label.startswith(RESUMED_TAMPERS):
                    continue
                checks = {"train --resume": ("trained", "resumed", "payload")}.get(command, ("payload",))
                if command.startswith("translate") and "inB" not in argv:
                    checks = ("outputs", "payload")
                elif command.startswith("evaluate"):
                    checks = ("evaluated", "payload")
                yield Case(
                    "cyclegan-checkpoint",
                    f"{base}:{label}",
                    command,
                    argv,
                    build,
                    expects.get(command, "either"),
                    checks,
                )
        valid = cyclegan_tampers()["valid"][0]
        for direction in ("atob", "", "BOTH"):
            argv = ["translate", "run", "in", "--out", "out", "--direction", direction]
            yield Case(
                "cyclegan-checkpoint", f"{base}:direction-{direction or 'empty'}", "translate", argv,
                lambda d, b=base, v=valid: build_cyclegan_checkpoint(d, b, v), "error",
            )  # fmt: skip


# Resuming (slow: it trains) is tried on the edits of files a resume reads: weights, training state, config.
RESUMED_TAMPERS = ("valid", "missing-", "training-state", "config-", "swapped")
# On the 8-bit RGB -> 16-bit grey run, the edits where its domains differ: its directions, domains and channels.
MIXED_TAMPERS = (
    "valid",
    "missing-G",
    "manifest-domain",
    "generators-swapped",
    "swapped",
    "config-out-channels",
)


def build_cyclegan_checkpoint(case_dir: Path, base: str, tamper: Callable[[Path], None]) -> None:
    """A copy of a base CycleGAN run (then tampered), its unpaired dataset, and one input per domain (in/, inB/)."""
    run = case_dir / "run"
    shutil.copytree(BASE_PATHS[base], run, symlinks=True)
    shutil.copytree(BASE_PATHS["dsu" if base == "cg" else "dsu_mixed"], case_dir / "ds")
    for folder, model in (("in", "rgb8"), ("inB", "rgb8" if base == "cg" else "grey16")):
        (case_dir / folder).mkdir()
        write_array(case_dir / folder / "x", model, unpaired_array(model, 33))
    (case_dir / "written.json").write_text(json.dumps(["x.png"]))
    tamper(run)


def cyclegan_kill_cases(quick: bool) -> Iterator[Case]:
    """CycleGAN training SIGKILLed (and SIGTERMed) at seeded random moments, resumed until done, then compared with an
    uninterrupted run: every network's weights and both image pools must be identical."""
    argv = ["train", "--data", "{dsu}", *KILL_CG, "--run-dir", "run"]
    for seed in range(4 if quick else 12):
        yield Case(
            "cyclegan-resume", f"sigkill-{seed}", "train", argv, None, "ok", timeout=240, driver=f"kill_resume:{seed}"
        )
    for seed in range(2):
        yield Case(
            "cyclegan-resume", f"sigterm-{seed}", "train", argv, None, "ok", timeout=240, driver=f"term_resume:{seed}"
        )


def cyclegan_cases(quick: bool) -> Iterator[Case]:
    """Every CycleGAN family."""
    yield from unpaired_cases()
    yield from cyclegan_option_cases(quick)
    yield from cyclegan_checkpoint_cases(quick)
    yield from cyclegan_kill_cases(quick)


def latest_step(run: Path) -> int:
    """The step of a run's LATEST checkpoint (-1 when there is none)."""
    latest = run / "checkpoints" / "LATEST"
    try:
        return int(latest.read_text().strip().split("_")[-1])
    except (OSError, ValueError):
        return -1


def logged_step(run: Path) -> int:
    """The last step log.jsonl records (-1 when none)."""
    try:
        lines = (run / "log.jsonl").read_text().splitlines()
    except OSError:
        return -1
    steps = [json.loads(line).get("step", -1) for line in lines if line.strip().startswith("{")]
    return max(steps, default=-1)


def drive_resume(case: Case, argv: list[str], case_dir: Path) -> RunResult:
    """Start a CycleGAN run, kill it at seeded random moments (SIGKILL, or SIGTERM), resume until it finishes.

    A run stopped before its first checkpoint is started again with the same command, as a user would. The verdict
    goes to kill_report.json for classify_resume: what each kill lost, failed restarts or resumes, and whether the
    final checkpoint equals the uninterrupted base run's (every network's weights, both image pools)."""
    kind, _, arg = case.driver.partition(":")
    rng = random.Random(int(arg))
    kills = 1 if kind == "term_resume" else 1 + int(arg) % 3
    run = case_dir / "run"
    report: dict[str, Any] = {"kills": [], "failures": [], "rcs": []}
    start = time.monotonic()
    rc, timed_out = None, False
    with open(case_dir / "stdout.txt", "ab") as out, open(case_dir / "stderr.txt", "ab") as err:
        for attempt in range(kills + 3):
            fresh = latest_step(run) < 0
            cmd = argv if fresh else ["train", "--resume", "run", "--no-progress"]
            # where to stop it: during start-up (before any step) or once a seeded step is logged, plus a seeded
            # fraction of a step (so some land inside a save); the machine's load does not move these moments
            moment = None
            if attempt < kills:
                done = max(logged_step(run), latest_step(run), 0)  # a resumed run's log already holds these steps
                startup = rng.random() < 0.2 or done >= KILL_STEPS - 2
                moment = (
                    (0, rng.uniform(0.5, 3.0))
                    if startup
                    else (rng.randint(done + 1, KILL_STEPS - 1), rng.uniform(0, 0.3))
                )
            rc, timed_out = run_and_stop(cmd, case_dir, out, err, moment, kind, case.timeout)
            report["rcs"].append(rc)
            if moment is not None:
                report["kills"].append({"logged": logged_step(run), "saved": latest_step(run), "rc": rc})
            if timed_out or rc not in (0, -signal.SIGKILL, 128 + signal.SIGTERM):
                report["failures"].append(
                    f"{'start' if fresh else 'resume'}: exit {rc}{' (hang)' if timed_out else ''}"
                )
                break
            if rc == 0 and latest_step(run) == KILL_STEPS:
                break
    report["final_step"] = latest_step(run)
    report["differs"] = same_final_state(run, BASE_PATHS["cg_full"]) if report["final_step"] == KILL_STEPS else None
    (case_dir / "kill_report.json").write_text(json.dumps(report))
    read = lambda n: (case_dir / n).read_text(errors="replace")  # noqa: E731
    code = rc if rc is not None and rc >= 0 else None
    killed = -rc if rc is not None and rc < 0 else None
    return RunResult(code, killed, time.monotonic() - start, timed_out, read("stdout.txt"), read("stderr.txt"))


def run_and_stop(
    cmd: list[str], case_dir: Path, out: Any, err: Any, moment: tuple[int, float] | None, kind: str, timeout: float
) -> tuple[int | None, bool]:
    """Run `python -m diptych cmd`; at `moment` = (step, seconds) (None: never), that is `seconds` after the run's
    log records `step` (0: after its start), send SIGKILL (kill_resume) or SIGTERM; return its exit status (negative:
    the signal that ended it) and whether it had to be killed for a timeout."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "diptych", *cmd], cwd=case_dir, stdout=out, stderr=err, env=env, start_new_session=True
    )
    try:
        if moment is not None:
            step, seconds = moment
            while step and proc.poll() is None and logged_step(case_dir / "run") < step:
                time.sleep(0.02)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=seconds)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL if kind == "kill_resume" else signal.SIGTERM)
        proc.wait(timeout=timeout)
        return proc.returncode, False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return proc.returncode, True


def same_final_state(run: Path, reference: Path) -> str:
    """ "" when the two runs' latest checkpoints hold identical weights and image pools, else what differs."""
    import torch
    from safetensors.torch import load_file

    from diptych.checkpoint import load_training_state

    mine = run / "checkpoints" / (run / "checkpoints" / "LATEST").read_text().strip()
    theirs = reference / "checkpoints" / (reference / "checkpoints" / "LATEST").read_text().strip()
    for net in ("G_A", "G_B", "D_A", "D_B"):
        a, b = load_file(str(mine / f"{net}.safetensors")), load_file(str(theirs / f"{net}.safetensors"))
        if a.keys() != b.keys() or any(not torch.equal(a[k], b[k]) for k in a):
            return f"{net} weights differ from the uninterrupted run's"
    pools_a, pools_b = load_training_state(mine)["recipe"], load_training_state(theirs)["recipe"]
    for name in pools_b:
        a, b = pools_a[name], pools_b[name]
        if len(a["images"]) != len(b["images"]) or any(
            not torch.equal(x, y) for x, y in zip(a["images"], b["images"], strict=True)
        ):
            return f"image pool {name} differs from the uninterrupted run's"
        if not torch.equal(a["generator"], b["generator"]):
            return f"image pool {name}'s random stream differs from the uninterrupted run's"
    return ""


def classify_resume(case_dir: Path) -> tuple[str, str]:
    """Outcome of a kill/resume driver from its report."""
    report = json.loads((case_dir / "kill_report.json").read_text())
    # SIGKILL may lose the step being saved (one save interval); SIGTERM finishes the step, saves it and exits 143
    lost = [k for k in report["kills"] if k["saved"] < k["logged"] - (0 if k["rc"] == 128 + signal.SIGTERM else 1)]
    if report["failures"]:
        return "lost work", f"a restart after the kill failed ({report['failures'][0]})"
    if lost:
        return "lost work", f"a kill lost more than one save interval: {lost[0]}"
    if report["final_step"] != KILL_STEPS:
        return "lost work", f"the run never finished (LATEST step {report['final_step']}, exits {report['rcs']})"
    if report["differs"]:
        return "silently wrong", report["differs"]
    return "ok", f"{len(report['kills'])} interruption(s) at steps {[k['logged'] for k in report['kills']]}; identical"


# ------------------------------------------------------------------------------------------------ signal drivers


def signal_cases() -> Iterator[Case]:
    """Cases that need a real process: Ctrl-C during start-up, SIGTERM during training and translation."""
    for delay in (0.3, 0.8, 1.5):
        yield Case(
            "signals",
            f"sigint-startup-{delay}s",
            "info",
            ["info", "{rgb8}"],
            None,
            "either",
            timeout=60,
            driver=f"sigint_startup:{delay}",
        )
    yield Case(
        "signals",
        "sigterm-train",
        "train",
        [
            "train",
            "--data",
            "{ds}",
            "--layout",
            "folders",
            *TINY_NET,
            "--crop-size",
            "32",
            "--load-size",
            "32",
            "--preprocess",
            "crop",
            "--max-steps",
            "100000",
            "--save-every",
            "100000",
            "--no-progress",
            "--workers",
            "0",
            "--log-every",
            "1",
            "--run-dir",
            "run",
        ],
        None,
        "either",
        timeout=120,
        driver="sigterm_train",
    )
    yield Case(
        "signals",
        "sigterm-translate",
        "translate",
        ["translate", "{rgb8}", "big", "--out", "out", "--no-progress"],
        build_big_folder,
        "either",
        timeout=120,
        driver="sigterm_translate",
    )


def build_big_folder(case_dir: Path) -> None:
    """Forty 512x512 inputs, so SIGTERM lands while outputs are being written."""
    (case_dir / "big").mkdir()
    rng = np.random.default_rng(5)
    for k in range(40):
        write_pil(case_dir / "big" / f"{k:02d}.png", as_dtype(smooth(rng, 512, 512, 3), "uint8"))


def default_sigint() -> None:
    """In the driven process: SIGINT as a terminal delivers it, even when the harness was started with it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def drive_subprocess(case: Case, argv: list[str], case_dir: Path) -> RunResult:
    """Run `python -m diptych` in a real process and deliver the case's signal."""
    kind, _, arg = case.driver.partition(":")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    out, err = case_dir / "stdout.txt", case_dir / "stderr.txt"
    start = time.monotonic()
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(
            [sys.executable, "-m", "diptych", *argv],
            cwd=case_dir,
            stdout=fo,
            stderr=fe,
            env=env,
            start_new_session=True,
            preexec_fn=default_sigint,
        )
        try:
            if kind == "sigint_startup":
                time.sleep(float(arg))
                proc.send_signal(signal.SIGINT)
            elif kind == "sigterm_train":
                log = case_dir / "run" / "log.jsonl"
                while proc.poll() is None and (not log.exists() or len(log.read_text().splitlines()) < 3):
                    time.sleep(0.05)
                proc.send_signal(signal.SIGTERM)
            elif kind == "sigterm_translate":
                while proc.poll() is None and not any((case_dir / "out").glob("*.png")):  # the first output
                    time.sleep(0.01)
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=case.timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            timed_out = True
    rc = proc.returncode
    return RunResult(
        rc if rc is not None and rc >= 0 else None,
        -rc if rc is not None and rc < 0 else None,
        time.monotonic() - start,
        timed_out,
        out.read_text(errors="replace"),
        err.read_text(errors="replace"),
    )


# --------------------------------------------------------------------------------------------------- fork server


def run_forked_child(argv: list[str], case_dir: Path) -> None:
    """In the forked child: run the CLI in the case folder with stdout/stderr in files; never returns."""
    os.setpgid(0, 0)
    os.chdir(case_dir)
    for fd, name in ((1, "stdout.txt"), (2, "stderr.txt")):
        handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), line_buffering=True)
    code = 1
    try:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
        import torch

        torch.set_num_threads(1)
        if argv[:1] == ["__refs__"]:
            write_reference_pths(Path(argv[1]))
            code = 0
        else:
            from diptych.cli import main

            code = main(argv)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            code = 1
        else:
            code = exc.code or 0
    except BaseException:  # what the interpreter would print for an uncaught exception
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)


def collect(case_dir: Path, rc: int | None, sig: int | None, seconds: float, timed_out: bool) -> RunResult:
    """Read a finished child's output files."""
    read = lambda name: (case_dir / name).read_text(errors="replace") if (case_dir / name).exists() else ""  # noqa: E731
    return RunResult(rc, sig, seconds, timed_out, read("stdout.txt"), read("stderr.txt"))


def substitute(argv: list[str]) -> list[str]:
    """Replace {rgb8}, {ds}, ... by the base fixtures' absolute paths."""
    out = []
    for arg in argv:
        for key, path in BASE_PATHS.items():
            arg = arg.replace("{" + key + "}", str(path))
        out.append(arg)
    return out


def run_all(cases: list[Case], root: Path, jobs: int, on_done: Callable[[Case, Path, RunResult], None]) -> None:
    """Run forked cases `jobs` at a time (timeouts kill the child's process group), then subprocess cases in order."""
    pending = [c for c in cases if not c.driver]
    running: dict[int, tuple[Case, Path, float]] = {}
    while pending or running:
        while pending and len(running) < jobs:
            case = pending.pop(0)
            case_dir = prepare(case, root)
            if case_dir is None:
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                run_forked_child(substitute(case.argv), case_dir)
            running[pid] = (case, case_dir, time.monotonic())
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for child, (case, case_dir, start) in list(running.items()):
                if now - start > case.timeout:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child, signal.SIGKILL)
                    os.waitpid(child, 0)
                    del running[child]
                    on_done(case, case_dir, collect(case_dir, None, signal.SIGKILL, now - start, True))
            time.sleep(0.01)
            continue
        case, case_dir, start = running.pop(pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # threads or helpers it left behind
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        rc = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        on_done(case, case_dir, collect(case_dir, rc, sig, time.monotonic() - start, False))
    for case in (c for c in cases if c.driver):
        case_dir = prepare(case, root)
        if case_dir is not None:
            driver = drive_resume if case.driver.startswith(("kill_resume", "term_resume")) else drive_subprocess
            on_done(case, case_dir, driver(case, substitute(case.argv), case_dir))


BUILD_ERRORS: dict[str, str] = {}


def prepare(case: Case, root: Path) -> Path | None:
    """Make the case folder and its files; a generator failure is recorded against the harness, not diptych."""
    case_dir = root / "cases" / case.id.replace("/", "__")[:200]
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    try:
        if case.build:
            case.build(case_dir)
    except Exception as exc:  # a case this machine cannot make (e.g. a codec missing) is reported, not run
        BUILD_ERRORS[case.id] = f"{type(exc).__name__}: {exc}"
        return None
    (case_dir / "before.json").write_text(
        json.dumps(sorted(str(p.relative_to(case_dir)) for p in walk_files(case_dir)))
    )
    return case_dir


def walk_files(folder: Path) -> Iterator[Path]:
    """Every path under a folder (not following symlinks)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            yield Path(dirpath) / name


# --------------------------------------------------------------------------------------------------- base fixtures


BASE_PATHS: dict[str, Path] = {}


def build_base(root: Path, quick: bool) -> None:
    """Datasets and tiny trained models every case starts from (trained in forked children)."""
    base = root / "base"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    for model in MODELS:
        ds = base / f"ds_{model}"
        for split, count in (("train", 3), ("test", 3)):
            for side in "AB":
                folder = ds / side / split
                folder.mkdir(parents=True)
                for k in range(count):
                    arr = good_array(model, k + (10 if split == "test" else 0))
                    if side == "B":
                        arr = arr[:, ::-1].copy()
                    write_array(folder / f"{k}", model, arr)
    BASE_PATHS.update(ds=base / "ds_rgb8", ds16=base / "ds_grey16", dsfloat=base / "ds_float")
    aligned = base / "aligned"
    aligned.mkdir()
    photos = base / "photos"
    photos.mkdir()
    for k in range(3):
        a, b = good_array("rgb8", k), good_array("rgb8", k + 20)
        write_pil(aligned / f"{k}.png", np.concatenate([a, b], axis=1))
        write_pil(photos / f"{k}.png", np.kron(a, np.ones((2, 2, 1), np.uint8)))
    BASE_PATHS.update(aligned=aligned, photos=photos, font=find_font())
    reference_layout(base / "dsu")
    reference_layout(base / "dsu_mixed", "rgb8", "grey16")
    BASE_PATHS.update(dsu=base / "dsu", dsu_mixed=base / "dsu_mixed")
    cyclegan_runs = {
        "cg": ["--data", str(base / "dsu"), *TINY_CG],
        "cg_mixed": ["--data", str(base / "dsu_mixed"), *TINY_CG, "--lambda-identity", "0"],
        "cg_full": ["--data", str(base / "dsu"), *KILL_CG],
    }
    jobs = [
        Case(
            "base",
            m,
            "train",
            ["train", "--data", str(base / f"ds_{m}"), "--layout", "folders", *TINY_TRAIN, "--run-dir", str(base / m)],
            timeout=300,
        )
        for m in MODELS
    ]
    jobs += [
        Case("base", name, "train", ["train", *args, "--run-dir", str(base / name)], timeout=300)
        for name, args in cyclegan_runs.items()
    ]
    jobs.append(Case("base", "refs", "pth", ["__refs__", str(base)], timeout=120))
    fails: list[str] = []

    def done(case: Case, case_dir: Path, result: RunResult) -> None:
        if result.rc != 0:
            fails.append(f"{case.name}: rc={result.rc} {result.stderr[-2000:]}")

    run_all(jobs, base, 2, done)
    if fails:
        raise SystemExit("fuzz: could not build the base fixtures:\n" + "\n".join(fails))
    for m in (*MODELS, *cyclegan_runs):
        BASE_PATHS[m] = base / m
    for name in ("wrong_keys", "a_list", "truncated", "nan_unet", "bad_shapes"):
        BASE_PATHS[f"ref_{name}"] = base / f"ref_{name}.pth"
    evaluate = Case(
        "base",
        "eval",
        "evaluate",
        [
            "evaluate",
            str(base / "rgb8"),
            str(base / "ds_rgb8"),
            "--out",
            str(base / "eval"),
            "--layout",
            "folders",
            "--no-progress",
        ],
        timeout=120,
    )
    run_all([evaluate], base, 1, done)
    if fails:
        raise SystemExit("fuzz: could not build the base evaluation:\n" + "\n".join(fails))
    BASE_PATHS["eval"] = base / "eval"


def write_array(stem: Path, model: str, arr: np.ndarray) -> Path:
    """Write a model-format array: float and 16-bit RGB as TIFF, 8-bit RGB and 16-bit grey as PNG."""
    path = stem.with_name(stem.name + (".tif" if model in ("float", "rgb16") else ".png"))
    if path.suffix == ".tif":
        write_tiff(path, arr, photometric="rgb" if model == "rgb16" else None)
    else:
        write_pil(path, arr)
    return path


def find_font() -> Path:
    """A TrueType font on this machine (for data glyphs), or Pillow's bundled one."""
    for folder in ("/usr/share/fonts", "/usr/local/share/fonts"):
        for path in sorted(Path(folder).rglob("*.ttf")) if Path(folder).exists() else []:
            return path
    import PIL

    candidates = sorted(Path(PIL.__file__).parent.rglob("*.ttf"))
    return candidates[0] if candidates else Path("/nonexistent.ttf")


def write_reference_pths(base: Path) -> None:
    """Reference-style .pth files with wrong content (run in a forked child: uses torch)."""
    import torch

    torch.save({"net.weight": torch.zeros(2)}, base / "ref_wrong_keys.pth")
    torch.save([torch.zeros(2)], base / "ref_a_list.pth")
    state = {"model.model.0.weight": torch.zeros(8, 3, 4, 4), "model.model.0.bias": torch.zeros(8)}
    torch.save(state, base / "ref_bad_shapes.pth")
    data = (base / "ref_bad_shapes.pth").read_bytes()
    (base / "ref_truncated.pth").write_bytes(data[: len(data) // 2])
    torch.save({k: torch.full_like(v, float("nan")) for k, v in state.items()}, base / "ref_nan_unet.pth")


# --------------------------------------------------------------------------------------------------------- oracles


def read_output(path: Path) -> np.ndarray | None:
    """An output image as float in [0, 1] (integers by their type's range), HxWxC; None if unreadable."""
    try:
        suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
        if suffix == ".npy":
            arr = np.load(path)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        elif suffix in (".nii", ".nii.gz"):
            import nibabel as nib

            arr = np.asarray(nib.load(str(path)).dataobj)
        else:
            from PIL import Image

            with Image.open(path) as img:
                arr = np.asarray(img)
    except Exception:
        return None
    arr = np.asarray(arr)
    if arr.dtype.kind in "ui":
        arr = arr.astype(np.float64) / float(np.iinfo(arr.dtype).max)
    arr = arr.astype(np.float64)
    return arr[..., None] if arr.ndim == 2 else arr


def outputs_for(out_dir: Path, stem: str) -> list[Path]:
    """Output files written for an input stem (any extension), not temporaries."""
    if not out_dir.is_dir():
        return []
    return [
        p for p in out_dir.rglob("*") if p.is_file() and strip_suffixes(p.name) == stem and not p.name.startswith(".")
    ]


def strip_suffixes(name: str) -> str:
    """A file name without its image extension (x.nii.gz -> x)."""
    for suffix in (".nii.gz",):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name.rsplit(".", 1)[0] if "." in name[1:] else name


def written_inputs(case_dir: Path) -> list[str]:
    """The input names the case generated (from written.json)."""
    path = case_dir / "written.json"
    return json.loads(path.read_text()) if path.exists() else []


def input_array(path: Path) -> np.ndarray | None:
    """An input read independently of diptych, turned as viewers show it (outputs are upright: an EXIF orientation of
    5-8 swaps height and width), or None."""
    arr = read_output(path) if path.is_file() and path.stat().st_size < 2**26 else None
    return arr.swapaxes(0, 1) if arr is not None and exif_quarter_turn(path) else arr


def exif_quarter_turn(path: Path) -> bool:
    """Whether a file's EXIF orientation (5-8) turns it by a quarter for display."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.getexif().get(0x0112) in (5, 6, 7, 8)
    except Exception:  # not an image Pillow reads, or damaged EXIF: shown as stored
        return False


def check_outputs(case: Case, case_dir: Path, result: RunResult) -> str | None:
    """Every translated input has an output of its size, not constant unless the input was."""
    out = case_dir / "out"
    skipped = result.stderr if "--skip-bad" in case.argv else ""
    for name in written_inputs(case_dir):
        if name.startswith("."):  # hidden files are not inputs when a folder is given (as `ls` shows it)
            continue
        path = case_dir / "in" / name
        if path.exists() and not path.is_symlink() and not path.is_file():  # a folder or pipe named like an image
            continue
        stem = strip_suffixes(name)
        files = outputs_for(out, stem)
        if not files:
            if stem in skipped:
                continue
            return f"exit 0 but no output for {name} and it is not listed as skipped"
        produced = read_output(files[0])
        if produced is None:
            return f"output {files[0].name} is unreadable"
        source = input_array(case_dir / "in" / name)
        if produced.size == 0:
            return f"output {files[0].name} is empty"
        if not np.isfinite(produced).all():
            return f"output {files[0].name} holds NaN/inf"
        if (
            source is not None
            and source.ndim == 3
            and produced.shape[:2] != source.shape[:2]
            and not name.endswith((".nii", ".nii.gz", ".tif", ".npy", ".dcm"))
        ):
            return f"output {files[0].name} is {produced.shape[1]}x{produced.shape[0]}, input {source.shape[1]}x{source.shape[0]}"
        if source is not None and np.ptp(np.nan_to_num(source)) > 0 and np.ptp(produced) == 0:
            return f"output {files[0].name} is constant ({produced.flat[0]:.3g}) for a varied input {name}"
    return None


def output_pair(case_dir: Path) -> tuple[np.ndarray, np.ndarray] | str:
    """The outputs of the case file and its twin/mirror."""
    names = written_inputs(case_dir)
    arrays = []
    for name in names[:2]:
        files = outputs_for(case_dir / "out", strip_suffixes(name))
        if not files:
            return "skipped"
        arr = read_output(files[0])
        if arr is None:
            return "unreadable"
        arrays.append(arr)
    return (arrays[0], arrays[1]) if len(arrays) == 2 else "missing"


def check_mirror(case: Case, case_dir: Path, result: RunResult) -> str | None:
    """A case and its mirror image must not give the same output (else the content was ignored)."""
    pair = output_pair(case_dir)
    if isinstance(pair, str):
        return None
    a, b = pair
    # Exactly equal: a narrow but real range (0..1000 in 16 bits) still moves the output a little; a lost one does not.
    if a.shape == b.shape and np.array_equal(a, b):
        return "the output does not depend on the input: the image and its mirror give identical outputs (content lost in encoding)"
    return None


def check_same(case: Case, case_dir: Path, result: RunResult) -> str | None:
    """Two encodings of the same pixels must give the same output."""
    pair = output_pair(case_dir)
    if isinstance(pair, str):
        return None
    a, b = pair
    names = written_inputs(case_dir)
    if a.shape != b.shape:
        return f"{names[0]} and {names[1]} hold the same pixels but give outputs of shapes {a.shape} and {b.shape}"
    diff = float(np.abs(a - b).max())
    if diff > TOLERANCE:
        return (
            f"{names[0]} and {names[1]} hold the same pixels but their outputs differ by up to {diff:.3f} of full range"
        )
    return None


def check_skip(case: Case, case_dir: Path, result: RunResult) -> str | None:
    """With --skip-bad, a good file next to the bad ones is still translated."""
    if not outputs_for(case_dir / "out", "zz_good"):
        return "the good input next to the bad one was not translated"
    return None


def check_trained(case: Case, case_dir: Path, result: RunResult) -> str | None:
    """A finished training run has a consistent LATEST and finite generator weights."""
    run = case_dir / "run"
    latest = run / "checkpoints" / "LATEST"
    if not latest.exists():
        return "train exited 0 without checkpoints/LATEST"
    folder = run / "checkpoints" / latest.read_text().strip()
    missing = missing_networks(folder)
    if missing:
        return f"LATEST names {folder.name}, which lacks {', '.join(missing)}"
    from safetensors.numpy import load_file

    for weights in sorted(folder.glob("*.safetensors")):
        for name, tensor in load_file(str(weights)).items():
            if tensor.dtype.kind == "f" and not np.isfinite(tensor).all():
                return f"train exited 0 but the saved {weights.stem} holds NaN/inf ({name})"
    return None


def missing_networks(folder: Path) -> list[str]:
    """The files a checkpoint folder lacks: config.json and every weights file its manifest names (without a
    manifest, generator.safetensors)."""
    try:
        files = [n["file"] for n in json.loads((folder / "manifest.json").read_text())["networks"].values()]
    except (OSError, ValueError, KeyError, TypeError):
        files = ["generator.safetensors"]
    return [n for n in ("config.json", *files) if not (folder / n).exists()]


def check_resumed(case: Case, case_dir: Path, result: RunResult) -> str | None:
    """A resumed run reached step 3 and the stale temporaries of the tampered run were cleaned."""
    latest = case_dir / "run" / "checkpoints" / "LATEST"
    if latest.exists() and latest.read_text().strip() != "step_00000003":
        return f"train --resume --max-steps 3 exited 0 but LATEST is {latest.read_text().strip()!r}"
    stale = (
        [p.name for p in (case_dir / "run" / "checkpoints").glob(".*tmp*")]
        if (case_dir / "run" / "checkpoints").exists()
        else []
    )
    if stale:
        return f"stale temporaries of an interrupted save survive a successful resume: {', '.join(stale)}"
    return None


def check_evaluated(case: Case, case_dir: Path, result: RunResult) -> str | None:
    """An evaluation wrote metrics.json with finite means (pair counts: see check_pairs)."""
    metrics = case_dir / "ev" / "metrics.json"
    if not metrics.exists():
        return "evaluate exited 0 without metrics.json"
    return None


def check_pairs(expected: int) -> Callable[[Case, Path, RunResult], str | None]:
    """An evaluation must score every pair of the dataset, with finite values (a metric that does not apply at
    all, n=0, is allowed)."""

    def check(case: Case, case_dir: Path, result: RunResult) -> str | None:
        metrics = case_dir / "ev" / "metrics.json"
        if not metrics.exists():
            return None
        summary = json.loads(metrics.read_text())
        scored = {
            name: m
            for name, m in summary.get("metrics", {}).items()
            if isinstance(m, dict) and m.get("mean") is not None
        }
        counts = {m.get("n") for m in scored.values()}
        if counts and counts != {expected}:
            return f"evaluate scored n={sorted(c for c in counts if c is not None)} of {expected} pairs"
        infinite = [name for name, m in scored.items() if not math.isfinite(m["mean"])]
        if infinite:
            return f"evaluate reported non-finite {', '.join(infinite)} over the {expected} pairs"
        return None

    return check


def check_combined(case: Case, case_dir: Path, result: RunResult) -> str | None:
    """data combine/split/make-pairs wrote something readable and not constant."""
    files = (
        [p for p in (case_dir / "out").rglob("*") if p.is_file() and not p.name.endswith(".json")]
        if (case_dir / "out").exists()
        else []
    )
    for path in files:
        arr = read_output(path)
        if arr is None:
            return f"{path.name}: written but unreadable"
    return None


def check_payload(case: Case, case_dir: Path, result: RunResult) -> str | None:
    """A pickle payload under a weight or state file name must never run."""
    if any(p.name == PAYLOAD_MARKER for p in walk_files(case_dir)):
        return "a pickle payload EXECUTED"
    return None


def check_inputs_intact(case: Case, case_dir: Path, result: RunResult) -> str | None:
    """A run must never change its input files."""
    original = case_dir / "x_original.png"
    current = case_dir / "in" / "x.png"
    if original.exists() and (not current.exists() or current.read_bytes() != original.read_bytes()):
        return "the input in/x.png was replaced by the run (its output overwrote its own input)"
    return None


ORACLES: dict[str, Callable[[Case, Path, RunResult], str | None]] = {
    "inputs": check_inputs_intact,
    "outputs": check_outputs,
    "mirror": check_mirror,
    "same": check_same,
    "skip": check_skip,
    "trained": check_trained,
    "resumed": check_resumed,
    "evaluated": check_evaluated,
    "combined": check_combined,
    "payload": check_payload,
}


def oracle(name: str) -> Callable[[Case, Path, RunResult], str | None]:
    """The oracle for a check name ("pairs=N" is parametrised)."""
    if name.startswith("pairs="):
        return check_pairs(int(name.split("=", 1)[1]))
    return ORACLES[name]


# ------------------------------------------------------------------------------------------------ classification


def last_line(text: str) -> str:
    """The last non-empty line (progress bars end lines with carriage returns)."""
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def is_one_line_error(stderr: str) -> bool:
    """stderr ends in one `diptych: error: ...` line or an argparse usage error."""
    line = last_line(stderr)
    return line.startswith("diptych: error:") or (
        line.startswith("diptych") and ": error:" in line and "usage:" in stderr
    )


def half_written(case: Case, case_dir: Path, result: RunResult) -> str | None:
    """Temporaries left, empty files, outputs of a failed run, incomplete checkpoint folders."""
    before = set(json.loads((case_dir / "before.json").read_text()))
    ignore = {"stdout.txt", "stderr.txt", "before.json", "written.json"}
    new = [p for p in walk_files(case_dir) if str(p.relative_to(case_dir)) not in before and p.name not in ignore]
    temps = [p for p in new if p.name.endswith(".tmp") or ".tmp" in p.name]
    if temps:
        return f"temporary file(s) left: {', '.join(str(p.relative_to(case_dir)) for p in temps[:3])}"
    empty = [
        p
        for p in new
        if p.is_file() and not p.is_symlink() and p.stat().st_size == 0 and p.suffix not in (".jsonl", ".csv", ".txt")
    ]
    if empty:
        return f"zero-byte file(s) written: {', '.join(str(p.relative_to(case_dir)) for p in empty[:3])}"
    checkpoints = case_dir / "run" / "checkpoints"
    if checkpoints.is_dir() and "checkpoint" not in case.family:
        for folder in checkpoints.glob("step_*"):
            missing = missing_networks(folder)
            if missing:
                return f"checkpoint {folder.name} lacks {', '.join(missing)}"
        latest = checkpoints / "LATEST"
        if latest.exists() and not (checkpoints / latest.read_text().strip()).is_dir():
            return f"LATEST names {latest.read_text().strip()!r}, which does not exist"
    failed = result.rc not in (0, None) or result.timed_out or result.signal is not None
    if failed and case.command.startswith("translate") and "--tile" not in case.argv and case.driver == "":
        outs = [p for p in new if p.is_file() and p.relative_to(case_dir).parts[0] == "out"]
        if outs:
            return f"the run failed but wrote {len(outs)} output(s), e.g. {outs[0].relative_to(case_dir)}"
    if (failed and case.command.startswith("data combine")) or (failed and case.command.startswith("data split")):
        outs = [p for p in new if p.is_file() and p.relative_to(case_dir).parts[0] == "out"]
        if outs:
            return f"the run failed but left {len(outs)} file(s) in out/, e.g. {outs[0].relative_to(case_dir)}"
    return None


def classify(case: Case, case_dir: Path, result: RunResult) -> tuple[str, str]:
    """The outcome of one run and its one-line detail."""
    if result.timed_out:
        return "hang", f"no exit after {case.timeout:.0f} s"
    if "Traceback (most recent call last)" in result.stderr:
        return "traceback", last_line(result.stderr)[:300]
    if result.signal is not None and not case.driver:
        return "traceback", f"killed by signal {result.signal}"
    payload = check_payload(case, case_dir, result)
    if payload:
        return "silently wrong", payload
    if case.driver:
        return classify_signal(case, case_dir, result)
    half = half_written(case, case_dir, result)
    if half:
        return "half-written", half
    if result.rc != 0:
        if case.command == "data check" and result.rc == 1 and "problem(s)" in result.stdout:
            return "one-line error", last_line(result.stdout)[:300]
        if is_one_line_error(result.stderr):
            return ("refused valid" if case.expect == "ok" else "one-line error"), last_line(result.stderr)[:300]
        return "messy error", (
            last_line(result.stderr) or last_line(result.stdout) or f"exit {result.rc} with no message"
        )[:300]
    for name in case.checks:
        problem = oracle(name)(case, case_dir, result)
        if problem:
            return "silently wrong", problem
    skipped = "--skip-bad" in case.argv and "skipped" in result.stderr
    if skipped:
        return "skipped", last_line(result.stderr)[:300]
    if case.expect == "error":
        if case.command == "data check":
            return "silently wrong", "data check passed a dataset holding a bad file: " + last_line(result.stdout)[:200]
        return "silently wrong", "exit 0 on an input that must be refused (nothing said): " + (
            last_line(result.stdout) or last_line(result.stderr)
        )[:200]
    return ("ok" if case.expect == "ok" else "documented conversion" if case.checks else "ok"), last_line(
        result.stdout
    )[:200]


def classify_signal(case: Case, case_dir: Path, result: RunResult) -> tuple[str, str]:
    """Outcomes of the signal drivers."""
    kind = case.driver.split(":")[0]
    temps = [p for p in walk_files(case_dir) if ".tmp" in p.name]
    if kind in ("kill_resume", "term_resume"):
        return (
            ("half-written", f"temporary file(s) left after the last resume: {temps[0].name}")
            if temps
            else (classify_resume(case_dir))
        )
    if temps:
        return "half-written", f"temporary file(s) left after the signal: {', '.join(p.name for p in temps[:3])}"
    if kind == "sigint_startup":
        if result.rc in (0, 130):
            return "ok", f"exit {result.rc}"
        return "messy error", f"exit {result.rc} / signal {result.signal}: {last_line(result.stderr)[:200]}"
    if kind == "sigterm_train":
        latest = case_dir / "run" / "checkpoints" / "LATEST"
        if not latest.exists():
            return (
                "lost work",
                f"SIGTERM after some steps: exit {result.rc} / signal {result.signal}, no checkpoint saved, {last_line(result.stderr)[:120]!r}",
            )
        return "ok", f"saved {latest.read_text().strip()}"
    if kind == "sigterm_translate":
        outs = [p for p in (case_dir / "out").glob("*") if p.is_file()] if (case_dir / "out").exists() else []
        broken = [p.name for p in outs if read_output(p) is None]
        if broken:
            return "half-written", f"unreadable output(s) after SIGTERM: {', '.join(broken[:3])}"
        return "ok", f"exit {result.rc} / signal {result.signal}; {len(outs)} complete output(s)"
    return "ok", ""


def cross_check(verdicts: list[Verdict], cases: dict[str, Case]) -> None:
    """data check must not pass a dataset that train then rejects (same generated dataset)."""
    by_group: dict[str, dict[str, Verdict]] = defaultdict(dict)
    for v in verdicts:
        group = cases[v.case].group
        if group:
            by_group[group][v.command] = v
    for runs in by_group.values():
        check, train = runs.get("data check"), runs.get("train")
        # data check has no crop size, does not train (so no identity loss) and checks every split it finds
        option_dependent = train is not None and any(
            flag in train.detail for flag in ("--crop-size", "--lambda-identity", "pass --phase")
        )
        if (
            check
            and train
            and not option_dependent
            and check.outcome in ("ok", "documented conversion")
            and train.outcome in ("one-line error", "refused valid")
        ):
            check.outcome = "silently wrong"
            check.detail = f"data check passed a dataset that train rejects: {train.detail[:200]}"


# --------------------------------------------------------------------------------------------------------- report


def table(verdicts: list[Verdict]) -> str:
    """Family x outcome counts as a Markdown table."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for v in verdicts:
        counts[v.family][v.outcome] += 1
    used = [o for o in OUTCOMES if any(c[o] for c in counts.values())]
    lines = ["| family | runs | " + " | ".join(used) + " |", "|---|---|" + "---|" * len(used)]
    total: Counter[str] = Counter()
    for family in sorted(counts):
        total.update(counts[family])
        lines.append(
            f"| {family} | {sum(counts[family].values())} | "
            + " | ".join(str(counts[family][o] or "") for o in used)
            + " |"
        )
    lines.append(f"| **all** | **{sum(total.values())}** | " + " | ".join(f"**{total[o]}**" for o in used) + " |")
    return "\n".join(lines)


def failure_list(verdicts: list[Verdict]) -> str:
    """One line per failing run."""
    rows = [v for v in verdicts if v.outcome in FAILURES or v.outcome == "refused valid"]
    return "\n".join(f"- [{v.outcome}] {v.family} `{v.case}` ({v.command}): {v.detail}" for v in rows)


def sample(cases: list[Case], n: int, seed: int) -> list[Case]:
    """A deterministic sample spread over families first, then over each family's commands (seeded within those)."""
    rng = random.Random(seed)
    by_family: dict[str, dict[str, list[Case]]] = defaultdict(lambda: defaultdict(list))
    for case in cases:
        by_family[case.family][case.command].append(case)
    queues: dict[str, list[Case]] = {}
    for family, commands in sorted(by_family.items()):
        for members in commands.values():
            rng.shuffle(members)
        rotation = [commands[c] for c in sorted(commands)]
        rng.shuffle(rotation)  # each family leads with different commands, so a small sample still covers them all
        queues[family] = [group[k] for k in range(max(map(len, rotation))) for group in rotation if k < len(group)]
    picked: list[Case] = []
    while len(picked) < n and any(queues.values()):
        for queue in queues.values():
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
    return picked


def generate(seed: int, quick: bool) -> list[Case]:
    """Every case, in a reproducible order."""
    rng = np.random.default_rng(seed)
    specs = [*pixel_specs(rng), *byte_specs(rng, quick), *name_specs(rng)]
    cases = [
        *input_cases(specs),
        *layout_cases(rng),
        *checkpoint_cases(rng, quick),
        *option_cases(quick),
        *reference_cases(rng),
        *compare_cases(),
        *signal_cases(),
        *cyclegan_cases(quick),
    ]
    seen: set[str] = set()
    unique = []
    for case in cases:
        if case.id not in seen:
            seen.add(case.id)
            unique.append(case)
    return unique


def main(argv: list[str] | None = None) -> int:
    """Generate, run, classify and report; exit 1 when any failure was found."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("fuzz_out"), help="working and report folder (replaced)")
    parser.add_argument("--seed", type=int, default=0, help="generation seed (default: 0)")
    parser.add_argument("--jobs", type=int, default=2, help="cases run in parallel (default: 2)")
    parser.add_argument("--quick", action="store_true", help="fewer byte-level variants and exports (about half)")
    parser.add_argument("--sample", type=int, default=0, help="run only a deterministic sample of this many cases")
    parser.add_argument("--family", action="append", default=[], help="run only these families (repeatable)")
    parser.add_argument(
        "--match", action="append", default=[], help="run only the cases whose id contains this text (repeatable)"
    )
    parser.add_argument("--no-signals", action="store_true", help="skip the subprocess signal cases")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--reclassify",
        action="store_true",
        help="classify again, with the current expectations and oracles, the cases an earlier (or interrupted) run "
        "finished in OUT (listed in OUT/progress.jsonl), without running anything; then report",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ["OMP_NUM_THREADS"] = "1"
    cases = generate(args.seed, args.quick)
    if args.family:
        cases = [c for c in cases if c.family in args.family]
    if args.no_signals:
        cases = [c for c in cases if not c.driver]
    if args.match:
        cases = [c for c in cases if any(text in c.id for text in args.match)]
    if args.sample:
        cases = sample(cases, args.sample, args.seed)
    if args.list:
        for case in cases:
            print(case.id, " ".join(case.argv))
        print(f"{len(cases)} cases")
        return 0
    import diptych.cli
    import diptych.evaluate
    import diptych.export
    import diptych.train
    import diptych.translate  # noqa: F401

    if args.reclassify:
        return report(reclassify(args.out, cases), cases, args, elapsed=None)
    start = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in (args.out / "cases", args.out / "progress.jsonl"):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    build_base(args.out, args.quick)
    verdicts: list[Verdict] = []

    def done(case: Case, case_dir: Path, result: RunResult) -> None:
        outcome, detail = classify(case, case_dir, result)
        verdict = Verdict(
            case.id, case.family, case.command, outcome, detail, result.rc, round(result.seconds, 2), case.argv
        )
        verdicts.append(verdict)
        with open(args.out / "progress.jsonl", "a") as log:
            log.write(json.dumps(asdict(verdict)) + "\n")
        if len(verdicts) % 100 == 0:
            print(
                f"fuzz: {len(verdicts)}/{len(cases)} runs, {time.monotonic() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    run_all(cases, args.out, max(1, args.jobs), done)
    return report(verdicts, cases, args, time.monotonic() - start)


def reclassify(out: Path, cases: list[Case]) -> list[Verdict]:
    """The verdicts of the cases an earlier run finished in `out`, classified again from their folders (a run that
    ended by a signal keeps its verdict: the signal is not recorded)."""
    import diptych.checkpoint  # noqa: F401  (used by the resume oracle)

    by_id = {c.id: c for c in cases}
    BASE_PATHS.update(stored_base_paths(out / "base"))
    verdicts = []
    for line in (out / "progress.jsonl").read_text().splitlines():
        verdict = Verdict(**json.loads(line))
        case = by_id.get(verdict.case)
        if case is None:
            continue
        case_dir = out / "cases" / case.id.replace("/", "__")[:200]
        if verdict.rc is not None and case_dir.is_dir():
            result = collect(case_dir, verdict.rc, None, verdict.seconds, verdict.outcome == "hang")
            verdict.outcome, verdict.detail = classify(case, case_dir, result)
        verdicts.append(verdict)
    return verdicts


def stored_base_paths(base: Path) -> dict[str, Path]:
    """The base fixtures an earlier run built under `base`, by the names build_base gives them."""
    names = {"ds": "ds_rgb8", "ds16": "ds_grey16", "dsfloat": "ds_float", "eval": "eval"}
    names.update({n: n for n in ("aligned", "photos", "dsu", "dsu_mixed", "cg", "cg_mixed", "cg_full", *MODELS)})
    return {key: base / name for key, name in names.items()}


def report(verdicts: list[Verdict], cases: list[Case], args: argparse.Namespace, elapsed: float | None) -> int:
    """Cross-check, print and write the table and the failing runs; 1 when any failure was found."""
    cross_check(verdicts, {c.id: c for c in cases})
    order = {c.id: i for i, c in enumerate(cases)}
    verdicts.sort(key=lambda v: order[v.case])
    failures = [v for v in verdicts if v.outcome in FAILURES]
    took = "reclassified" if elapsed is None else f"in {elapsed:.0f} s"
    text = f"{len(verdicts)} runs {took} (seed {args.seed}, jobs {args.jobs}{', quick' if args.quick else ''})\n\n{table(verdicts)}\n"
    if BUILD_ERRORS:
        text += (
            "\ncases the harness could not build:\n" + "\n".join(f"- {k}: {v}" for k, v in BUILD_ERRORS.items()) + "\n"
        )
    text += "\nfailing runs:\n" + (failure_list(verdicts) or "(none)") + "\n"
    print(text)
    (args.out / "results.md").write_text(text)
    counts = Counter(v.outcome for v in verdicts)
    report = {
        "seed": args.seed,
        "quick": args.quick,
        "seconds": None if elapsed is None else round(elapsed, 1),
        "counts": {o: counts[o] for o in OUTCOMES},
        "build_errors": BUILD_ERRORS,
        "runs": [asdict(v) for v in verdicts],
    }
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
