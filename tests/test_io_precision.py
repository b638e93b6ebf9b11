"""Image I/O that keeps precision: sample types, .npy, DICOM, NIfTI slices, and per-dataset value ranges."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless, generate_uid

from diptych.cli import main
from diptych.config import ConfigError, DataConfig, RunConfig, load_config
from diptych.data import open_paired_dataset
from diptych.data.io import from_tensor, output_suffix, read_image, to_tensor, write_image
from diptych.data.normalize import ValueStats, resolve_range, value_stats
from diptych.errors import DataError
from diptych.train import Trainer, train
from diptych.translate import Translator

from .conftest import tiny_config


def noise(shape: tuple[int, ...], dtype: type, seed: int = 0) -> np.ndarray:
    """Random samples over the whole range of an integer type, or normal floats (HU-like, outside [0, 1])."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)
    return rng.normal(40.0, 400.0, shape).astype(dtype)


def data_config(root: Path, **overrides: object) -> DataConfig:
    cfg = DataConfig(root=str(root), preprocess="none", flip=False, workers=0)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


# ---------------------------------------------------------------------------------------------------------------
# Round trips: file -> array -> tensor -> array -> file


@pytest.mark.parametrize("channels", [1, 3, 4, 6])
@pytest.mark.parametrize(
    ("dtype", "suffix"),
    [(np.uint8, ".tif"), (np.uint16, ".tif"), (np.int16, ".tif"), (np.uint16, ".npy"), (np.int16, ".npy")],
)
def test_integer_round_trip_is_exact(tmp_path: Path, dtype: type, suffix: str, channels: int) -> None:
    arr = noise((13, 17, channels), dtype, seed=channels)
    src = write_image(tmp_path / f"in{suffix}", arr)
    got = read_image(src)
    assert got.dtype == np.dtype(dtype) and np.array_equal(got, arr)
    # The sample type's full range, and a data range (as --normalize minmax computes it): both exact.
    for value_range in (None, (float(arr.min()), float(arr.max()))):
        t = to_tensor(got, value_range)
        assert t.shape == (channels, 13, 17) and t.dtype == torch.float32
        assert float(t.min()) >= -1.0 and float(t.max()) <= 1.0
        back = from_tensor(t, dtype, value_range)
        assert back.dtype == np.dtype(dtype) and np.array_equal(back, arr)
    out = write_image(tmp_path / f"out{suffix}", back)
    assert np.array_equal(read_image(out), arr)


@pytest.mark.parametrize("channels", [1, 3, 6])
@pytest.mark.parametrize(("dtype", "suffix"), [(np.float32, ".tif"), (np.float32, ".npy"), (np.float64, ".npy")])
def test_float_round_trip_within_float32_precision(tmp_path: Path, dtype: type, suffix: str, channels: int) -> None:
    arr = noise((11, 9, channels), dtype, seed=channels)  # HU-like values around [-1200, 1300]
    got = read_image(write_image(tmp_path / f"in{suffix}", arr))
    assert got.dtype == np.dtype(dtype) and np.array_equal(got, arr)
    low, high = float(arr.min()), float(arr.max())
    back = from_tensor(to_tensor(got, (low, high)), dtype, (low, high))
    assert back.dtype == np.dtype(dtype)
    # float32 carries ~7 digits of the [-1, 1] value: the error is a few 1e-7 of the range.
    assert np.abs(back.astype(np.float64) - arr).max() <= (high - low) * 2e-7
    out = read_image(write_image(tmp_path / f"out{suffix}", back))
    assert out.dtype == np.dtype(dtype) and np.array_equal(out, back)


def test_png_round_trip_for_8_and_16_bit(tmp_path: Path) -> None:
    for arr in (noise((10, 12, 3), np.uint8), noise((10, 12, 4), np.uint8), noise((10, 12, 1), np.uint16)):
        src = write_image(tmp_path / f"x{arr.dtype}{arr.shape[2]}.png", arr)
        assert src.suffix == ".png"
        back = from_tensor(to_tensor(read_image(src)), arr.dtype)
        assert np.array_equal(back, arr)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_png_writes_any_layout(tmp_path: Path, channels: int) -> None:
    wide = noise((9, 11, channels + 1), np.uint16)
    layouts = {
        "contiguous": np.ascontiguousarray(wide[:, :, :channels]),
        "channel-slice": wide[:, :, :channels],  # a view with strides, as a model's CHW output transposed gives
        "fortran": np.asfortranarray(wide[:, :, :channels]),
    }
    for name, arr in layouts.items():
        path = write_image(tmp_path / f"{name}.png", arr)
        assert path.suffix == ".png"
        back = read_image(path)
        assert back.dtype == np.uint16 and np.array_equal(back, wide[:, :, :channels]), name


def test_values_outside_the_range_are_clipped_and_the_default_is_unchanged() -> None:
    arr = np.array([[[-2000.0], [0.0], [500.0], [3000.0]]], dtype=np.float32)
    t = to_tensor(arr, (-1000.0, 1000.0))
    assert t[0, 0].tolist() == [-1.0, 0.0, 0.5, 1.0]
    # No range: 8-bit maps by 255 exactly as before (0 -> -1, 255 -> 1).
    assert to_tensor(np.array([[[0], [255]]], dtype=np.uint8))[0, 0].tolist() == [-1.0, 1.0]


def test_npy_keeps_dtype_and_shape(tmp_path: Path) -> None:
    grey = noise((7, 5), np.int32)
    path = write_image(tmp_path / "g.npy", grey)
    assert np.load(path).shape == (7, 5) and np.load(path).dtype == np.int32  # one channel saved as HxW
    assert np.array_equal(read_image(path)[:, :, 0], grey)
    with pytest.raises(DataError, match=r"bad\.npy: expected a 2-D image"):
        np.save(tmp_path / "bad.npy", np.zeros((2, 3, 4, 5)))
        read_image(tmp_path / "bad.npy")


def test_output_suffix_moves_what_png_cannot_hold_to_tiff() -> None:
    assert output_suffix(".png", np.uint8, 3) == ".png"
    assert output_suffix(".png", np.uint16, 1) == ".png"
    assert output_suffix(".png", np.int16, 1) == ".tif"
    assert output_suffix(".png", np.float64, 1) == ".tif"
    assert output_suffix(".png", np.uint8, 6) == ".tif"
    assert output_suffix(".npy", np.float64, 6) == ".npy"


# ---------------------------------------------------------------------------------------------------------------
# Value ranges


def stats(*values: float) -> list[ValueStats]:
    return [value_stats(np.array(values, dtype=np.float64).reshape(1, -1, 1), 0, 0)]


def test_resolve_range_kinds() -> None:
    assert resolve_range("auto", "uint8", stats(3, 200)) is None  # today's behaviour: the dtype range
    assert resolve_range("auto", "uint16", stats(3, 200)) is None
    assert resolve_range("auto", "float32", stats(0.1, 0.9)) is None
    assert resolve_range("auto", "float32", stats(-1024, 3071)) == (-1024.0, 3071.0)
    assert resolve_range("auto", "int16", stats(-5, 9)) == (-5.0, 9.0)
    assert resolve_range("minmax", "uint16", stats(100, 5000)) == (100.0, 5000.0)
    with pytest.raises(DataError, match=r"outside the \[0, 1\].*--normalize minmax or percentile"):
        resolve_range("dtype", "float32", stats(-1024, 3071), where="ct/")
    with pytest.raises(DataError, match="single value"):
        resolve_range("minmax", "float32", stats(7, 7))
    assert resolve_range("minmax", "float32", stats(-1024, 3071), window=(-160.0, 240.0)) == (-160.0, 240.0)


def test_percentile_range_ignores_outliers() -> None:
    values = np.concatenate([np.linspace(0, 1000, 10_000), [1e6]])
    arr = values.reshape(1, -1, 1)
    low, high = resolve_range("percentile", "float32", [value_stats(arr, 100_000, 0)], (1.0, 99.0))
    assert low == pytest.approx(10.0, abs=1.0) and high == pytest.approx(990.0, abs=1.0)


def test_non_finite_values_are_an_error(tmp_path: Path) -> None:
    arr = np.zeros((8, 8, 1), np.float32)
    arr[3, 3] = np.nan
    for side in ("A", "B"):
        write_image(tmp_path / side / "x.tif", arr if side == "A" else np.zeros_like(arr))
    with pytest.raises(DataError, match=r"x\.tif.*NaN"):
        open_paired_dataset(data_config(tmp_path))


def test_ranges_are_computed_per_side_and_follow_the_direction(tmp_path: Path) -> None:
    for i in range(3):
        write_image(tmp_path / "A" / f"p{i}.tif", (noise((16, 16, 1), np.float32, i)))
        write_image(tmp_path / "B" / f"p{i}.png", np.full((16, 16, 1), 1000 + i * 100, np.uint16))
    a_all = np.concatenate([read_image(tmp_path / "A" / f"p{i}.tif").ravel() for i in range(3)])
    ds = open_paired_dataset(data_config(tmp_path, normalize="minmax"))
    assert ds.summary.in_range == (float(a_all.min()), float(a_all.max()))
    assert ds.summary.out_range == (1000.0, 1200.0)
    item = ds[2]
    assert torch.allclose(item["B"], torch.ones_like(item["B"]))  # 1200 is the top of B's range
    flipped = open_paired_dataset(data_config(tmp_path, normalize="minmax", direction="BtoA"))
    assert flipped.summary.in_range == (1000.0, 1200.0) and flipped.summary.out_range == ds.summary.in_range
    # Auto: B (uint16) keeps its dtype range, A (floats beyond [0, 1]) gets its min and max.
    auto = open_paired_dataset(data_config(tmp_path))
    assert auto.summary.out_range is None and auto.summary.in_range == ds.summary.in_range
    with pytest.raises(DataError, match=r"side A.*--normalize minmax or percentile"):
        open_paired_dataset(data_config(tmp_path, normalize="dtype"))
    # A stored range (a resumed run's) wins over the data.
    stored = open_paired_dataset(data_config(tmp_path, input_range=[-5.0, 5.0], output_range=[0.0, 4000.0]))
    assert (stored.summary.in_range, stored.summary.out_range) == ((-5.0, 5.0), (0.0, 4000.0))


def test_data_options_are_validated() -> None:
    for field, value, match in [
        ("dicom_window", "40", "CENTER,WIDTH"),
        ("dicom_window", "40,-3", "width must be positive"),
        ("dicom_window", "C:40,400", "CENTER,WIDTH"),
        ("nifti_axis", 3, "0, 1 or 2"),
        ("percentile_low", 99.9, "low < high"),
        ("output_range", [5.0, 1.0], "low < high"),
    ]:
        config = RunConfig()
        setattr(config.data, field, value)
        with pytest.raises(ConfigError, match=match):
            config.validate()


# ---------------------------------------------------------------------------------------------------------------
# DICOM


def write_ct(
    path: Path,
    stored: np.ndarray,
    slope: float | None = 1.0,
    intercept: float = -1024.0,
    photometric: str = "MONOCHROME2",
) -> Path:
    """A minimal single-frame CT slice with 16-bit unsigned stored values and a rescale to HU."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = stored.astype("<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_rescale_gives_hounsfield_units(tmp_path: Path) -> None:
    stored = np.arange(24 * 20, dtype=np.uint16).reshape(24, 20) * 7
    hu = read_image(write_ct(tmp_path / "ct.dcm", stored, slope=0.5, intercept=-1024.0))
    assert hu.dtype == np.float32 and hu.shape == (24, 20, 1)
    assert np.array_equal(hu[:, :, 0], stored * 0.5 - 1024.0)


def test_dicom_monochrome1_is_inverted_to_monochrome2(tmp_path: Path) -> None:
    stored = (np.arange(24 * 20, dtype=np.uint16).reshape(24, 20) * 7) % 4096  # 12 bits stored
    mono2 = read_image(write_ct(tmp_path / "m2.dcm", stored, slope=None))
    mono1 = read_image(write_ct(tmp_path / "m1.dcm", stored, slope=None, photometric="MONOCHROME1"))
    assert mono2.dtype == mono1.dtype == np.uint16
    assert np.array_equal(mono2[:, :, 0], stored)
    assert np.array_equal(mono1[:, :, 0], 4095 - stored)


def test_dicom_errors_name_the_file_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "notes.dcm"
    bad.write_text("not a dicom file")
    with pytest.raises(DataError, match=r"notes\.dcm: not a DICOM file"):
        read_image(bad)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # as if the extra were not installed
    with pytest.raises(DataError, match=r"notes\.dcm: reading DICOM needs pydicom.*diptych\[dicom\]"):
        read_image(bad)


def test_tiff_and_dicom_decompression_bombs_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tifffile and pydicom have no pixel limit of their own: Pillow's is checked before decoding compressed data."""
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((100, 100), np.uint16), compression="zlib")
    tifffile.imwrite(tmp_path / "bands.tif", np.zeros((6, 40, 40), np.float32), compression="zlib")
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((100, 100), np.uint16))  # uncompressed: cannot be a bomb
    ct = pydicom.dcmread(write_ct(tmp_path / "big.dcm", np.zeros((100, 100), np.uint16)))
    ct.compress(RLELossless)
    ct.save_as(tmp_path / "big.dcm")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 10000 pixels is more than twice the limit
    for name in ("big.tif", "big.dcm"):
        with pytest.raises(DataError, match=rf"{name}: .*decompression-bomb limit .*--max-image-pixels"):
            read_image(tmp_path / name)
    assert read_image(tmp_path / "bands.tif").shape == (40, 40, 6)  # 1600 pixels of 6 bands: under the limit
    assert read_image(tmp_path / "plain.tif").shape == (100, 100, 1)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert read_image(tmp_path / "big.tif").shape == (100, 100, 1)
    assert read_image(tmp_path / "big.dcm").shape == (100, 100, 1)


def test_dicom_window_fixes_the_range_and_clips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(2):
        stored = rng.integers(0, 3000, (32, 32)).astype(np.uint16)
        write_ct(tmp_path / "A" / f"s{i}.dcm", stored)
        write_ct(tmp_path / "B" / f"s{i}.dcm", 3000 - stored)
    ds = open_paired_dataset(data_config(tmp_path, dicom_window="40,400"))
    assert ds.summary.in_range == ds.summary.out_range == (-160.0, 240.0)
    a = ds[0]["A"]
    hu = read_image(tmp_path / "A" / "s0.dcm")
    assert torch.equal(a[0] == -1.0, torch.from_numpy(hu[:, :, 0] <= -160.0))
    # Without a window, auto takes the HU data's own min and max.
    assert open_paired_dataset(data_config(tmp_path)).summary.in_range[0] < -1000  # type: ignore[index]
    # A window for one side only (e.g. the CT side of CT -> MR): the other side keeps its own range.
    one = open_paired_dataset(data_config(tmp_path, dicom_window="A:40,400")).summary
    assert one.in_range == (-160.0, 240.0) and one.out_range is not None and one.out_range[0] < -1000
    assert open_paired_dataset(data_config(tmp_path, dicom_window="b:40,400")).summary.out_range == (-160.0, 240.0)


# ---------------------------------------------------------------------------------------------------------------
# NIfTI


AFFINE = np.array([[0.5, 0, 0, 10.0], [0, 0.7, 0, -20.0], [0, 0, 2.0, 30.0], [0, 0, 0, 1]])


def write_volume(path: Path, volume: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(volume, affine), str(path))
    return path


@pytest.mark.parametrize("axis", [0, 2])
def test_volume_pairs_become_slice_pairs_along_the_axis(tmp_path: Path, axis: int) -> None:
    a = noise((16, 20, 5), np.int16)
    b = noise((16, 20, 5), np.int16, seed=1)
    write_volume(tmp_path / "A" / "vol.nii.gz", a)
    write_volume(tmp_path / "B" / "vol.nii.gz", b)
    ds = open_paired_dataset(data_config(tmp_path, nifti_axis=axis))
    assert len(ds) == a.shape[axis]
    assert ds.pairs[3].name == "vol/slice_0003"
    item = ds[3]
    in_range, out_range = ds.summary.in_range, ds.summary.out_range
    assert in_range == (float(a.min()), float(a.max()))  # int16: auto takes the data's own range
    expected_a, expected_b = np.take(a, 3, axis=axis), np.take(b, 3, axis=axis)
    assert np.array_equal(from_tensor(item["A"], np.int16, in_range)[:, :, 0], expected_a)
    assert np.array_equal(from_tensor(item["B"], np.int16, out_range)[:, :, 0], expected_b)


def test_volume_shape_mismatch_is_an_error(tmp_path: Path) -> None:
    write_volume(tmp_path / "A" / "vol.nii", np.zeros((8, 8, 4), np.float32))
    write_volume(tmp_path / "B" / "vol.nii", np.zeros((8, 8, 5), np.float32))
    with pytest.raises(DataError, match=r"A/vol\.nii \(8x8x4\) and .*B/vol\.nii \(8x8x5\).*same shape"):
        open_paired_dataset(data_config(tmp_path))


def test_volume_slices_too_small_for_the_discriminator_name_the_volume(tmp_path: Path) -> None:
    """'image side 10 is too small for the PatchGAN' must say which file holds the small slices."""
    write_volume(tmp_path / "big" / "A" / "big.nii", noise((40, 40, 2), np.int16))
    write_volume(tmp_path / "big" / "B" / "big.nii", noise((40, 40, 2), np.int16, seed=1))
    for side in ("A", "B"):
        write_volume(tmp_path / "big" / side / "small.nii.gz", noise((10, 12, 3), np.int16))
    cfg = tiny_config(tmp_path / "big", max_steps=1)
    cfg.data.preprocess, cfg.discriminator.n_layers = "none", 2
    message = r"A/small\.nii\.gz \(small/slice_000\d\): image side 10 is too small for the 34x34 PatchGAN"
    with pytest.raises(ConfigError, match=message):
        Trainer(cfg, tmp_path / "run", progress=False)


def test_missing_nibabel_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_volume(tmp_path / "v.nii.gz", np.zeros((4, 4, 2), np.float32))
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(DataError, match=r"v\.nii\.gz: reading NIfTI needs nibabel.*diptych\[nifti\]"):
        read_image(path, volume_slice=(2, 0))


def test_translating_a_volume_writes_nifti_with_its_affine(tmp_path: Path) -> None:
    """Train on slice pairs of CT-like volumes (int16 -> float32), translate a volume, get a NIfTI volume back."""
    rng = np.random.default_rng(0)
    for i in range(2):
        a = rng.integers(-1000, 2000, (32, 32, 3)).astype(np.int16)
        write_volume(tmp_path / "data" / "A" / f"v{i}.nii.gz", a)
        write_volume(tmp_path / "data" / "B" / f"v{i}.nii.gz", (a.astype(np.float32) * 0.25 + 7.0))
    config = tiny_config(tmp_path / "data", max_steps=2, epochs=1, epochs_decay=0)
    train(config, tmp_path / "run", progress=False)
    stored = load_config(tmp_path / "run" / "config.json").data
    assert stored.sample_type == "float32" and stored.nifti_axis == 2
    assert len(stored.input_range) == 2 and len(stored.output_range) == 2
    src = write_volume(tmp_path / "in" / "scan.nii.gz", rng.integers(-1000, 2000, (40, 36, 4)).astype(np.int16))
    translator = Translator.load(tmp_path / "run", device="cpu")
    written = translator.translate_files([tmp_path / "in"], tmp_path / "out", progress=False)
    assert written == [tmp_path / "out" / "scan.nii.gz"]
    out = nib.load(str(written[0]))
    assert out.shape == (40, 36, 4) and out.get_data_dtype() == np.float32
    assert np.allclose(out.affine, AFFINE) and np.allclose(out.header.get_zooms(), (0.5, 0.7, 2.0))
    data = np.asarray(out.dataobj)
    low, high = stored.output_range
    assert data.min() >= low - 1e-3 and data.max() <= high + 1e-3
    # Each output slice is the translation of the same input slice.
    first = translator(read_image(src, volume_slice=(2, 1)))
    assert np.allclose(data[:, :, 1], first[:, :, 0], atol=1e-4 * (high - low))


# ---------------------------------------------------------------------------------------------------------------
# End to end: 16-bit, float and N-channel data train and translate in their own sample type and range


def test_sixteen_bit_training_and_translation_keep_the_range(tmp_path: Path) -> None:
    """Narrow-range 16-bit data (1000..5000) with --normalize minmax: outputs are 16-bit in that range."""
    rng = np.random.default_rng(0)
    for i in range(3):
        a = rng.integers(1000, 5001, (40, 40, 1)).astype(np.uint16)
        write_image(tmp_path / "data" / "A" / f"p{i}.png", a)
        write_image(tmp_path / "data" / "B" / f"p{i}.png", (6000 - a).astype(np.uint16))
    tiny = "--depth 4 --ngf 8 --ndf 8 --n-layers 2 --preprocess crop --crop-size 32 --workers 0 --max-steps 3"
    tiny += " --epochs 1 --epochs-decay 0 --no-progress --normalize minmax"
    code = main(["train", "--data", str(tmp_path / "data"), "--run-dir", str(tmp_path / "run"), *tiny.split()])
    assert code == 0
    data = load_config(tmp_path / "run" / "config.json").data
    a_all = [read_image(tmp_path / "data" / "A" / f"p{i}.png") for i in range(3)]
    assert data.normalize == "minmax" and data.sample_type == "uint16"
    assert data.input_range == [float(min(a.min() for a in a_all)), float(max(a.max() for a in a_all))]
    assert data.output_range == [6000.0 - data.input_range[1], 6000.0 - data.input_range[0]]
    src = write_image(tmp_path / "scan.png", rng.integers(1000, 5001, (37, 45, 1)).astype(np.uint16))
    assert main(["translate", str(tmp_path / "run"), str(src), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    out = read_image(tmp_path / "out" / "scan.png")
    assert out.dtype == np.uint16 and out.shape == (37, 45, 1)
    low, high = data.output_range
    assert out.min() >= low and out.max() <= high
    # The stored mapping is inverted exactly: a target encoded with it decodes to itself.
    translator = Translator.load(tmp_path / "run", device="cpu")
    target = read_image(tmp_path / "data" / "B" / "p0.png")
    assert np.array_equal(translator.decode(to_tensor(target, translator.out_range)), target)
    # Resuming keeps the stored mapping even when the data has changed since.
    write_image(tmp_path / "data" / "A" / "p9.png", np.full((40, 40, 1), 60000, np.uint16))
    write_image(tmp_path / "data" / "B" / "p9.png", np.full((40, 40, 1), 9, np.uint16))
    assert main(["train", "--resume", str(tmp_path / "run"), "--max-steps", "4", "--no-progress"]) == 0
    resumed = load_config(tmp_path / "run" / "config.json").data
    assert (resumed.input_range, resumed.output_range) == (data.input_range, data.output_range)


@pytest.mark.parametrize(("a_name", "b_name"), [("x.tif", "x.npy"), ("x.npy", "x.tif")])
def test_six_band_data_trains_and_translates(tmp_path: Path, a_name: str, b_name: str) -> None:
    """6-band uint16 inputs -> 6-band float targets outside [0, 1] (auto: minmax), TIFF and .npy either way."""
    rng = np.random.default_rng(1)
    for i in range(2):
        a = rng.integers(0, 65536, (36, 36, 6)).astype(np.uint16)
        write_image(tmp_path / "data" / "A" / f"{i}{a_name}", a)
        write_image(tmp_path / "data" / "B" / f"{i}{b_name}", a.astype(np.float32) / 100.0 - 50.0)
    config = tiny_config(tmp_path / "data", max_steps=2, epochs=1, epochs_decay=0)
    train(config, tmp_path / "run", progress=False)
    stored = load_config(tmp_path / "run" / "config.json")
    assert (stored.generator.in_channels, stored.generator.out_channels) == (6, 6)
    assert stored.data.sample_type == "float32" and stored.data.input_range == []
    low, high = stored.data.output_range
    assert low < -40 and high > 600
    translator = Translator.load(tmp_path / "run", device="cpu")
    src = write_image(tmp_path / "in" / "scene.tif", rng.integers(0, 65536, (30, 44, 6)).astype(np.uint16))
    for fmt in (".png", ".npy"):
        written = translator.translate_files([src], tmp_path / f"out{fmt}", suffix=fmt, progress=False)
        out = read_image(written[0])
        assert written[0].suffix == (".tif" if fmt == ".png" else ".npy")  # float 6-band cannot be a PNG
        assert out.dtype == np.float32 and out.shape == (30, 44, 6)
        assert out.min() >= low - 1e-3 and out.max() <= high + 1e-3
    # Tiled translation streams the same mapping.
    tiled = translator.translate_files([src], tmp_path / "tiled", suffix=".tif", tile=32, overlap=16, progress=False)
    out = read_image(tiled[0])
    assert out.dtype == np.float32 and out.shape == (30, 44, 6)
    assert out.min() >= low - 1e-3 and out.max() <= high + 1e-3


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.uint16])
def test_to_tensor_leaves_its_input_unchanged(dtype: type) -> None:
    """A 1-channel float32 array's planar view is the array itself; the [-1, 1] mapping must not write into it
    (translate keeps the check pass's decoded arrays and encodes them again)."""
    rng = np.random.default_rng(0)
    arr = (rng.random((5, 7, 1)) * (1 if dtype is np.float32 else 200)).astype(dtype)
    before = arr.copy()
    first = to_tensor(arr)
    assert np.array_equal(arr, before)
    assert torch.equal(first, to_tensor(arr))


@pytest.mark.parametrize("compression", ["tiff_lzw", "tiff_adobe_deflate", "jpeg", "packbits"])
def test_compressed_tiffs_from_other_tools_are_read(tmp_path: Path, compression: str) -> None:
    """LZW is Pillow's (and most tools') TIFF compression; it needs imagecodecs, which diptych depends on."""
    img = (np.indices((40, 60)).sum(0) % 256).astype(np.uint8)
    rgb = np.stack([img, 255 - img, img // 2], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "a.tif", compression=compression)
    got = read_image(tmp_path / "a.tif")
    assert got.shape == (40, 60, 3) and got.dtype == np.uint8
    tolerance = 40 if compression == "jpeg" else 0  # lossy
    assert np.abs(got.astype(int) - rgb).max() <= tolerance
