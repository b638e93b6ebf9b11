"""Every input is validated before use: non-finite samples, wide integers, values beyond the model's range, EXIF
orientation, 16-bit colour PNGs, damaged .npy and TIFF files, one-sided dataset layouts."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageOps

from diptych import Translator
from diptych.config import RunConfig
from diptych.data.io import pil_to_array, read_image, write_image
from diptych.data.normalize import resolve_range, value_stats
from diptych.data.paired import find_pairs
from diptych.data.tools.check import check_dataset
from diptych.data.windows import RowSource
from diptych.errors import DataError
from diptych.nets import create_generator

from .conftest import photo_crops, write_folders
from .test_io_precision import write_ct


def tiny_translator(
    sample_type: str = "float32", input_range: list[float] | None = None, normalize: str = "auto"
) -> Translator:
    """An untrained 3 -> 3 channel U-Net (stride 16): enough to see what reaches the network."""
    cfg = RunConfig()
    cfg.generator.depth, cfg.generator.ngf = 4, 8
    cfg.generator.in_channels = cfg.generator.out_channels = 3
    cfg.data.sample_type = sample_type
    cfg.data.input_range = input_range or []
    cfg.data.normalize = normalize
    torch.manual_seed(0)
    return Translator(create_generator(cfg.generator), cfg, torch.device("cpu"))


def write_tif(path: Path, arr: np.ndarray) -> None:
    tifffile.imwrite(path, arr, photometric="rgb" if arr.ndim == 3 else "minisblack")


def float_image(seed: int = 0, size: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size, 3), dtype=np.float32)


MODES = [{"batch_size": 1}, {"batch_size": 4}, {"tile": 32, "overlap": 8}]


@pytest.mark.parametrize("mode", MODES, ids=["whole", "batched", "tiled"])
@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_samples_are_refused_and_skipped(tmp_path: Path, mode: dict, bad_value: float) -> None:
    bad = float_image(1)
    bad[40, 7, 1] = bad_value  # deep in the image: below the rows a tiled check reads first
    (tmp_path / "in").mkdir()
    write_tif(tmp_path / "in" / "bad.tif", bad)
    np.save(tmp_path / "in" / "bad2.npy", bad)
    write_tif(tmp_path / "in" / "good.tif", float_image(2))
    t = tiny_translator()
    with pytest.raises(DataError, match=r"bad2?\.(tif|npy): 1 of 6912 samples are NaN or infinite.*nan_to_num"):
        t.translate_files([tmp_path / "in"], tmp_path / "out", suffix=".tif", progress=False, **mode)
    assert not list(tmp_path.glob("out/*"))  # nothing written before the bad file was found
    written = t.translate_files(
        [tmp_path / "in"], tmp_path / "out", suffix=".tif", progress=False, skip_bad=True, **mode
    )
    assert [p.name for p in written] == ["good.tif"]
    assert np.isfinite(read_image(written[0])).all()


def test_data_check_finds_the_non_finite_samples_training_rejects(tmp_path: Path) -> None:
    pairs = [(a, 1.0 - a) for a in (float_image(i, 32) for i in range(3))]
    pairs[1][1][5, 5, 0] = np.nan
    data = tmp_path / "data"
    for i, (a, b) in enumerate(pairs):
        for side, arr in (("A", a), ("B", b)):
            (data / side).mkdir(parents=True, exist_ok=True)
            write_tif(data / side / f"p{i}.tif", arr)
    report = check_dataset(data)
    assert not report.ok
    assert [p.kind for p in report.problems] == ["unreadable"]
    assert "B/p1.tif: 1 of 3072 samples are NaN or infinite" in report.problems[0].message


@pytest.mark.parametrize("dtype", [np.uint32, np.int32, np.int64])
def test_wide_integers_need_a_stored_range(tmp_path: Path, dtype: type) -> None:
    arr = (np.random.default_rng(0).random((32, 32, 3)) * 60000).astype(dtype)
    np.save(tmp_path / "wide.npy", arr)
    with pytest.raises(DataError, match=rf"wide\.npy: {np.dtype(dtype)} samples have no default value range"):
        tiny_translator("uint8").translate_files([tmp_path / "wide.npy"], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    # With the range training stored (--normalize minmax), the image reaches the network with its full spread.
    ranged = tiny_translator("uint8", [0.0, 60000.0], "minmax")
    x = ranged.encode(read_image(tmp_path / "wide.npy"), "wide.npy")
    assert float(x.min()) < -0.9 and float(x.max()) > 0.9


def test_int32_tiff_is_refused_by_a_model_without_a_range(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "i.tif", np.full((32, 32), 70000, dtype=np.int32))
    with pytest.raises(DataError, match=r"i\.tif: int32 samples have no default value range"):
        tiny_translator("uint8").translate_files([tmp_path / "i.tif"], tmp_path / "out", tile=32, progress=False)


def test_normalize_dtype_refuses_wide_integers() -> None:
    stats = [value_stats(np.array([[[0], [5]]], dtype=np.uint32), 0, 0)]
    with pytest.raises(DataError, match=r"uint32 samples have no usable full range.*--normalize minmax"):
        resolve_range("dtype", "uint32", stats, where="data (side A)")
    assert resolve_range("auto", "uint32", stats) == (0.0, 5.0)


@pytest.mark.parametrize("mode", MODES, ids=["whole", "batched", "tiled"])
def test_floats_far_beyond_the_models_range_are_refused(tmp_path: Path, mode: dict) -> None:
    (tmp_path / "in").mkdir()
    far = float_image(3)
    far[44, 44] = 1000.0
    write_tif(tmp_path / "in" / "far.tif", far)
    near = float_image(4)
    near[0, 0] = 1.005  # rounding-sized excess: within the 1% tolerance, clipped
    write_tif(tmp_path / "in" / "near.tif", near)
    t = tiny_translator()
    with pytest.raises(DataError, match=r"far\.tif: values span \[.*, 1000\], beyond the model's input range \[0, 1\]"):
        t.translate_files([tmp_path / "in"], tmp_path / "out", suffix=".tif", progress=False, **mode)
    assert not list(tmp_path.glob("out/*"))
    written = t.translate_files(
        [tmp_path / "in"], tmp_path / "out", suffix=".tif", progress=False, skip_bad=True, **mode
    )
    assert [p.name for p in written] == ["near.tif"]
    with pytest.raises(DataError, match="beyond the model's input range"):
        t(far)  # the Python API applies the same rule
    assert float(t.encode(near, "near").max()) == 1.0


def test_percentile_models_clip_by_design() -> None:
    t = tiny_translator("float32", [0.0, 1.0], "percentile")
    far = float_image(3)
    far[0, 0] = 1000.0
    assert float(t.encode(far, "far").max()) == 1.0
    far[1, 1] = np.nan
    with pytest.raises(DataError, match="input: 3 of 6912 samples are NaN"):
        t(far)  # clipping is no licence for NaN


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied_as_viewers_do(tmp_path: Path, orientation: int, fmt: str) -> None:
    arr = np.zeros((20, 30, 3), dtype=np.uint8)
    arr[:5, :10] = 255  # a bright corner shows where the top-left went
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"photo.{fmt.lower()}"
    Image.fromarray(arr).save(path, format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    with Image.open(path) as img:
        expected = np.asarray(ImageOps.exif_transpose(img))
    got = read_image(path)
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)
    assert got.shape[:2] == ((30, 20) if orientation >= 5 else (20, 30))


def test_data_check_lists_files_read_with_an_exif_orientation(tmp_path: Path) -> None:
    crops = photo_crops("astronaut", 32, 2)
    data = write_folders(tmp_path / "data", [(c, 255 - c) for c in crops])
    exif = Image.Exif()
    exif[0x0112] = 3  # upside down: same size, so only the orientation tells
    Image.fromarray(crops[0][::-1, ::-1]).save(data / "A" / "img_000.png", exif=exif)
    report = check_dataset(data)
    assert report.exif_oriented == [str(data / "A" / "img_000.png")]
    assert any("EXIF orientation applied" in line and "img_000.png" in line for line in report.lines())
    assert report.ok  # read upright, the pair is consistent


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_sixteen_bit_colour_png_keeps_sixteen_bits(tmp_path: Path, channels: int) -> None:
    arr = np.random.default_rng(0).integers(0, 65536, (9, 11, channels), dtype=np.uint16)
    (tmp_path / "in.png").write_bytes(imagecodecs.png_encode(arr))
    got = read_image(tmp_path / "in.png")
    assert got.dtype == np.uint16 and np.array_equal(got, arr)
    out = write_image(tmp_path / "out.png", arr)  # 16-bit in, 16-bit PNG out (no longer redirected to .tif)
    assert out.suffix == ".png" and np.array_equal(read_image(out), arr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out.png"]  # no temporary file left


def npy_bytes(arr: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, arr)
    return buffer.getvalue()


def huge_header() -> bytes:
    """A .npy whose header claims 100000 x 100000 x 3 bytes (28 GiB) over a few bytes of data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (100000, 100000, 3)})
    return header.getvalue() + b"\0" * 64


def npy_with_header(header: bytes) -> bytes:
    """A version 1.0 .npy whose header text is given verbatim, over 16 bytes of data."""
    text = header + b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + b"\0" * 16


BAD_NPY = {
    "empty": b"",
    "magic_only": b"\x93NUMPY",
    "garbage": b"not a numpy file at all",
    "truncated": npy_bytes(np.zeros((16, 16, 3), np.uint8))[:-100],
    "too_long": npy_bytes(np.zeros((16, 16, 3), np.uint8)) + b"\0" * 10,
    "header_cut": npy_bytes(np.zeros((16, 16), np.uint8))[:40],
    "huge_header": huge_header(),
    "complex": npy_bytes(np.zeros((4, 4), np.complex64)),
    "four_d": npy_bytes(np.zeros((2, 3, 4, 5), np.uint8)),
    "zero_size": npy_bytes(np.zeros((0, 5), np.uint8)),
    "structured": npy_bytes(np.zeros((4, 4), dtype=[("a", "u1"), ("b", "f4")])),
    "header_unclosed": npy_with_header(b"{'descr': '<f4', 'shape': (2, 2"),  # numpy: tokenize.TokenError
}


@pytest.mark.parametrize("name", list(BAD_NPY))
def test_bad_npy_files_are_one_line_errors_before_reading(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.npy"
    path.write_bytes(BAD_NPY[name])
    for read in (read_image, RowSource):
        with pytest.raises(DataError, match=rf"^{path}: ") as caught:
            read(path)
        assert "\n" not in str(caught.value)


def test_object_npy_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "objects.npy"
    np.save(path, np.array([[{"a": 1}, None]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"objects\.npy: \.npy of object samples"):
        read_image(path)


@pytest.mark.parametrize("tile", [None, 32])
def test_skip_bad_skips_damaged_npy_in_every_mode(tmp_path: Path, tile: int | None) -> None:
    (tmp_path / "in").mkdir()
    for name in ("empty", "truncated", "huge_header", "header_unclosed"):
        (tmp_path / "in" / f"{name}.npy").write_bytes(BAD_NPY[name])
    np.save(tmp_path / "in" / "good.npy", float_image(5, 32))
    written = tiny_translator().translate_files(
        [tmp_path / "in"], tmp_path / "out", suffix=".tif", tile=tile, skip_bad=True, progress=False
    )
    assert [p.name for p in written] == ["good.tif"]


def tiff_bytes(**options: object) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8), **options)
    return buffer.getvalue()


@pytest.mark.parametrize("options", [{}, {"compression": "zlib", "tile": (16, 16)}], ids=["strips", "tiled_zlib"])
def test_damaged_tiffs_are_one_line_errors(tmp_path: Path, options: dict) -> None:
    whole = tiff_bytes(**options)
    rng = np.random.default_rng(1)
    cuts = [*range(0, 12), *range(12, len(whole), 97)]
    damaged = [whole[:n] for n in cuts] + [whole[:8] + rng.bytes(200) for _ in range(10)]
    for data in damaged:
        path = tmp_path / "damaged.tif"
        path.write_bytes(data)
        for read in (read_image, lambda p: (s := RowSource(p)).rows(0, s.height)):
            try:
                read(path)
            except DataError as exc:
                assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)


def test_windowed_reader_refuses_every_cut_the_whole_decoder_refuses(tmp_path: Path) -> None:
    whole = tiff_bytes(compression="zlib", tile=(16, 16))
    path = tmp_path / "cut.tif"
    for n in range(8, len(whole), 7):  # cuts inside the IFD lose the tile offsets: no tile must read as zeros
        path.write_bytes(whole[:n])
        try:
            expected = read_image(path)
        except DataError:
            expected = None
        try:
            source = RowSource(path)
            got = source.rows(0, source.height)
        except DataError as exc:
            assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
            got = None
        assert (got is None) == (expected is None), (
            f"cut at {n}: whole decode {expected is None}, windows {got is None}"
        )
        assert got is None or np.array_equal(got, expected)


def test_one_sided_folders_are_not_taken_for_aligned_images(tmp_path: Path) -> None:
    crops = photo_crops("coffee", 32, 2)
    only_a = write_folders(tmp_path / "a_only", [(c, c) for c in crops])
    for f in (only_a / "B").iterdir():
        f.unlink()
    (only_a / "B").rmdir()
    with pytest.raises(DataError, match=r"a_only: has A/ but no B/ folder; add .*a_only/B with the partner images"):
        find_pairs(only_a, "auto")
    (only_a / "A").rename(only_a / "B")
    with pytest.raises(DataError, match=r"has B/ but no A/ folder"):
        find_pairs(only_a, "auto")
    with pytest.raises(DataError, match=r"expected A/ and B/ sub-folders for --layout folders; missing .*a_only/A/"):
        find_pairs(only_a, "folders")
    assert find_pairs(only_a, "aligned")[0] == "aligned"  # asked for explicitly: A|B images in B/
    with pytest.raises(DataError, match="has B/ but no A/ folder"):
        check_dataset(only_a)  # `data check` refuses what training would


def test_damaged_dicom_and_nifti_are_one_line_errors(tmp_path: Path) -> None:
    nibabel = pytest.importorskip("nibabel")

    ct = write_ct(tmp_path / "ct.dcm", np.arange(24 * 20, dtype=np.uint16).reshape(24, 20)).read_bytes()
    long_length = bytearray(ct)
    long_length[139] = 254  # the file meta group length element (UL) now claims 65028 bytes
    nii = nibabel.Nifti1Image(np.zeros((20, 16), np.float32), np.eye(4)).to_bytes()
    bad_type = bytearray(nii)
    bad_type[70:72] = (4096).to_bytes(2, "little")  # no such NIfTI data type
    damaged = {"ct.dcm": [bytes(long_length)] + [ct[:n] for n in range(0, len(ct), 53)]}
    damaged["v.nii"] = [bytes(bad_type)] + [nii[:n] for n in range(0, len(nii), 41)]
    for name, versions in damaged.items():
        path = tmp_path / name
        for data in versions:
            path.write_bytes(data)
            try:
                read_image(path)
            except DataError as exc:
                assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)


def test_non_finite_slice_deep_in_a_volume_is_found_before_writing(tmp_path: Path) -> None:
    nibabel = pytest.importorskip("nibabel")

    (tmp_path / "in").mkdir()
    volume = np.random.default_rng(6).random((32, 32, 6), dtype=np.float32)
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "in" / "good.nii")
    volume[3, 4, 5] = np.nan  # in the last slice: the first one alone looks fine
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "in" / "bad.nii")
    t = tiny_translator()
    with pytest.raises(DataError, match=r"bad\.nii: 1 of 1024 samples are NaN"):
        t.translate_files([tmp_path / "in"], tmp_path / "out", progress=False)
    assert not list(tmp_path.glob("out/*"))
    written = t.translate_files([tmp_path / "in"], tmp_path / "out", progress=False, skip_bad=True)
    assert [p.name for p in written] == ["good.nii"]


@pytest.mark.parametrize("cut", [1, 16])
def test_volume_cut_short_is_a_one_line_error_and_skippable(tmp_path: Path, cut: int) -> None:
    nibabel = pytest.importorskip("nibabel")

    (tmp_path / "in").mkdir()
    volume = np.random.default_rng(7).random((32, 32, 6), dtype=np.float32)
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "in" / "good.nii")
    data = (tmp_path / "in" / "good.nii").read_bytes()
    (tmp_path / "in" / "cut.nii").write_bytes(data[:-cut])  # the header is whole: nibabel fails reading slices
    t = tiny_translator()
    with pytest.raises(DataError, match=r"^\S*cut\.nii: corrupt or truncated NIfTI data \(Expected") as caught:
        t.translate_files([tmp_path / "in"], tmp_path / "out", progress=False)
    assert "\n" not in str(caught.value) and not list(tmp_path.glob("out/*"))
    written = t.translate_files([tmp_path / "in"], tmp_path / "out", progress=False, skip_bad=True)
    assert [p.name for p in written] == ["good.nii"]


def make_odd_entries(folder: Path) -> list[str]:
    """Entries named like images that are no readable files: their names (a folder named x.png is not one)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dangling.png").symlink_to(folder / "missing.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "null.png").symlink_to(os.devnull)
    os.mkfifo(folder / "fifo.png")  # opening it would block until a writer came
    (folder / "folder.png").mkdir()
    return ["dangling.png", "fifo.png", "loop.png", "null.png"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_links_fifos_and_devices_named_like_images_are_refused_unopened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = make_odd_entries(tmp_path / "in")
    write_image(tmp_path / "in" / "good.png", photo_crops("coffee", 32, 1)[0])
    t = tiny_translator("uint8")
    for tile in (None, 32):
        with pytest.raises(
            DataError, match=r"\.png: (dangling symlink|not a regular|cannot be opened).*\(and 3 more\)$"
        ):
            t.translate_files([tmp_path / "in"], tmp_path / "out", tile=tile, progress=False)
        capsys.readouterr()
        written = t.translate_files(
            [tmp_path / "in"], tmp_path / f"out{tile}", tile=tile, skip_bad=True, progress=False
        )
        assert [p.name for p in written] == ["good.png"]
        err = capsys.readouterr().err
        assert "skipped 4 file(s)" in err and all(name in err for name in odd), err
        assert "fifo.png: not a regular file" in err and "loop.png: cannot be opened" in err
        assert "dangling.png: dangling symlink" in err
    data = tmp_path / "ds"
    write_folders(data, [(c, 255 - c) for c in photo_crops("coffee", 32, 2)])
    make_odd_entries(data / "A")
    report = check_dataset(data)
    assert sorted(Path(f).name for p in report.problems for f in p.files) == odd


def test_pillow_32_bit_images_are_not_clipped_to_16_bits() -> None:
    wide = Image.fromarray(np.array([[70000, -5], [3, 4]], dtype=np.int32), mode="I")
    with pytest.raises(DataError, match="input: int32 samples have no default value range"):
        tiny_translator("uint16")(wide)
    narrow = Image.fromarray(np.array([[65535, 0], [3, 4]], dtype=np.int32), mode="I")
    assert np.array_equal(pil_to_array(narrow), np.array([[65535, 0], [3, 4]], dtype=np.uint16))


def test_an_image_too_large_for_memory_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.save(tmp_path / "large.npy", np.zeros((4, 4), np.uint8))

    def out_of_memory(*_: object, **__: object) -> None:
        raise MemoryError

    monkeypatch.setattr(np, "load", out_of_memory)
    with pytest.raises(DataError, match=r"large\.npy: too large to decode in this memory; translate it with --tile"):
        read_image(tmp_path / "large.npy")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_tag_is_applied_like_exif(tmp_path: Path, orientation: int) -> None:
    arr = np.random.default_rng(orientation).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    tif = tmp_path / "scan.tif"
    tifffile.imwrite(tif, arr, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(tmp_path / "same.png", exif=exif)
    expected = read_image(tmp_path / "same.png")  # as PIL.ImageOps.exif_transpose shows it (tested above)
    assert np.array_equal(read_image(tif), expected)
    source = RowSource(tif)
    assert source.streamed == (orientation == 1)  # a turned TIFF is decoded whole, then turned
    assert np.array_equal(source.rows(0, source.height), expected)
