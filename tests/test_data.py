"""Paired data: layouts, channels and bit depth, joint transforms, and a DataError for every bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diptych.config import DataConfig
from diptych.data import JointTransform, find_pairs, open_paired_dataset
from diptych.data.io import from_tensor, read_image, to_tensor, write_image
from diptych.errors import DataError

from .conftest import photo_crops, write_aligned, write_folders

PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")


def data_config(root: Path | str, **overrides: object) -> DataConfig:
    """A DataConfig that reads the data untouched (no resize, crop or flip) unless overridden."""
    cfg = DataConfig(root=str(root), preprocess="none", flip=False, workers=0)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def noise(shape: tuple[int, ...], seed: int = 0, dtype: type = np.uint8) -> np.ndarray:
    high = 256 if dtype == np.uint8 else 65536
    return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# ---------------------------------------------------------------------------------------------------------------
# Bad inputs: shared with test_cli.py (each builds a dataset and says which file or folder the error must name).

GOOD_SIZE = 40  # every good image is 40x40 (aligned: 80x40), so a 32 crop fits


def _good_pairs(count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    crops = photo_crops("astronaut", GOOD_SIZE, count, seed=seed)
    return [(c, 255 - c) for c in crops]


def make_bad_dataset(kind: str, root: Path) -> tuple[Path, dict[str, object], list[str]]:
    """Build a dataset with one problem; return (dataset folder, DataConfig overrides, strings the error names)."""
    overrides: dict[str, object] = {"preprocess": "crop", "crop_size": 32}
    if kind in ("corrupt", "truncated_png", "truncated_jpeg", "not_an_image", "odd_width"):
        write_aligned(root, _good_pairs(2))
        a, b = _good_pairs(1, seed=5)[0]
        if kind == "corrupt":
            bad = root / "img_bad.png"
            bad.write_bytes(np.random.default_rng(0).bytes(600))
        elif kind == "truncated_png":
            bad = truncate(write_image(root / "img_bad.png", np.concatenate([a, b], axis=1)))
        elif kind == "truncated_jpeg":
            bad = root / "img_bad.jpg"
            Image.fromarray(np.concatenate([a, b], axis=1)).save(bad, quality=90)
            truncate(bad)
        elif kind == "not_an_image":
            bad = root / "img_bad.png"
            bad.write_text("name,value\nthis is a csv file, not an image\n")
        else:
            bad = write_image(root / "img_bad.png", np.concatenate([a, b], axis=1)[:, :-1])
        return root, overrides, [str(bad)]
    if kind == "size_mismatch":
        write_folders(root, _good_pairs(2))
        a, b = _good_pairs(1, seed=5)[0]
        write_image(root / "A" / "odd.png", a)
        bad = write_image(root / "B" / "odd.png", b[:-8])
        return root, overrides, [str(bad), str(root / "A" / "odd.png")]
    if kind in ("only_in_A", "only_in_B"):
        write_folders(root, _good_pairs(2))
        side = "A" if kind == "only_in_A" else "B"
        write_image(root / side / "lonely.png", _good_pairs(1, seed=5)[0][0])
        return root, overrides, [str(root / side), "lonely"]
    if kind == "empty":
        root.mkdir(parents=True)
        (root / "notes.txt").write_text("no images here")
        return root, overrides, [str(root)]
    if kind == "empty_folders":
        (root / "A").mkdir(parents=True)
        (root / "B").mkdir()
        return root, overrides, [str(root / "A"), str(root / "B")]
    if kind == "missing":
        return root / "does_not_exist", overrides, [str(root / "does_not_exist")]
    if kind == "crop_too_large":
        write_aligned(root, _good_pairs(2))
        return root, {"preprocess": "crop", "crop_size": 48}, [str(root / "img_000.png"), "48x48"]
    if kind == "mixed_channels":
        write_folders(root, _good_pairs(2))
        a, b = _good_pairs(1, seed=5)[0]
        bad = write_image(root / "A" / "z_gray.png", a[:, :, :1])
        write_image(root / "B" / "z_gray.png", b)
        return root, overrides, [str(bad), "1+3", "3+3"]
    raise AssertionError(kind)


BAD_KINDS = (
    "corrupt",
    "truncated_png",
    "truncated_jpeg",
    "not_an_image",
    "size_mismatch",
    "only_in_A",
    "only_in_B",
    "empty",
    "empty_folders",
    "missing",
    "odd_width",
    "crop_too_large",
    "mixed_channels",
)


# ---------------------------------------------------------------------------------------------------------------
# Layouts


def _layout_dataset(variant: str, root: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], Path, str]:
    """Write 3 pairs (A = crop, B = 255 - crop) in a layout variant, plus decoys in other phases."""
    pairs = _good_pairs(3)
    decoys = _good_pairs(2, seed=9)
    if variant == "aligned":
        return pairs, write_aligned(root, pairs), "aligned"
    if variant == "aligned/train":
        write_aligned(root / "test", decoys)
        return pairs, write_aligned(root / "train", pairs), "aligned"
    if variant == "A/ B/":
        return pairs, write_folders(root, pairs), "folders"
    if variant == "train/A train/B":
        write_folders(root / "test", decoys)
        return pairs, write_folders(root / "train", pairs), "folders"
    if variant == "A/train B/train":
        for i, (a, b) in enumerate(pairs):
            write_image(root / "A" / "train" / f"img_{i:03d}.png", a)
            write_image(root / "B" / "train" / f"img_{i:03d}.png", b)
        for i, (a, b) in enumerate(decoys):
            write_image(root / "A" / "test" / f"img_{i:03d}.png", a)
            write_image(root / "B" / "test" / f"img_{i:03d}.png", b)
        return pairs, root, "folders"
    raise AssertionError(variant)


@pytest.mark.parametrize("variant", ["aligned", "aligned/train", "A/ B/", "train/A train/B", "A/train B/train"])
def test_layouts_are_found_and_read(tmp_path: Path, variant: str) -> None:
    pairs, base, layout = _layout_dataset(variant, tmp_path / "ds")
    ds = open_paired_dataset(data_config(tmp_path / "ds"))
    assert ds.summary.layout == layout
    assert ds.summary.root == base
    assert (ds.summary.in_channels, ds.summary.out_channels, ds.summary.dtype) == (3, 3, "uint8")
    assert len(ds) == len(pairs)  # the decoys in test/ are not used
    for i, (a, b) in enumerate(pairs):
        item = ds[i]
        assert item["name"].startswith(f"img_{i:03d}")
        assert torch.equal(item["A"], to_tensor(a))
        assert torch.equal(item["B"], to_tensor(b))


def test_phase_option_selects_another_subfolder(tmp_path: Path) -> None:
    _layout_dataset("aligned/train", tmp_path / "ds")
    ds = open_paired_dataset(data_config(tmp_path / "ds", phase="test"))
    assert ds.summary.root == tmp_path / "ds" / "test"
    assert len(ds) == 2
    assert torch.equal(ds[0]["A"], to_tensor(_good_pairs(2, seed=9)[0][0]))


def test_forced_folders_layout_without_folders_is_an_error(aligned_dataset: Path) -> None:
    with pytest.raises(DataError, match="expected A/ and B/") as exc:
        open_paired_dataset(data_config(aligned_dataset, layout="folders"))
    assert str(aligned_dataset) in str(exc.value)


def test_direction_btoa_swaps_aligned_halves(aligned_dataset: Path) -> None:
    crops = photo_crops("astronaut", 64, 8)
    ab = open_paired_dataset(data_config(aligned_dataset))
    ba = open_paired_dataset(data_config(aligned_dataset, direction="BtoA"))
    for i in (0, 5):
        assert torch.equal(ab[i]["A"], to_tensor(crops[i]))
        assert torch.equal(ab[i]["B"], to_tensor(255 - crops[i]))
        assert torch.equal(ba[i]["A"], to_tensor(255 - crops[i]))
        assert torch.equal(ba[i]["B"], to_tensor(crops[i]))
        # a raw pixel: A is the left half of the file unless BtoA
        raw = read_image(aligned_dataset / f"img_{i:03d}.png")
        assert ab[i]["A"][0, 3, 7].item() == pytest.approx(raw[3, 7, 0] / 127.5 - 1, abs=1e-6)
        assert ba[i]["A"][0, 3, 7].item() == pytest.approx(raw[3, 64 + 7, 0] / 127.5 - 1, abs=1e-6)


def test_direction_btoa_swaps_folders_and_channel_counts(folders_dataset: Path) -> None:
    crops = photo_crops("coffee", 64, 8)
    gray = [np.round(c.mean(axis=2, keepdims=True)).astype(np.uint8) for c in crops]
    ab = open_paired_dataset(data_config(folders_dataset))
    ba = open_paired_dataset(data_config(folders_dataset, direction="BtoA"))
    assert (ab.summary.in_channels, ab.summary.out_channels) == (1, 3)
    assert (ba.summary.in_channels, ba.summary.out_channels) == (3, 1)
    assert ab[2]["A"].shape == (1, 64, 64) and ab[2]["B"].shape == (3, 64, 64)
    assert torch.equal(ab[2]["A"], to_tensor(gray[2]))
    assert torch.equal(ba[2]["A"], to_tensor(crops[2]))
    assert torch.equal(ba[2]["B"], to_tensor(gray[2]))


# ---------------------------------------------------------------------------------------------------------------
# Channels and bit depth


@pytest.mark.parametrize(("mode", "channels"), [("L", 1), ("RGB", 3), ("RGBA", 4)])
def test_read_png_keeps_channels(tmp_path: Path, mode: str, channels: int) -> None:
    arr = noise((24, 40, channels))
    Image.fromarray(arr[:, :, 0] if channels == 1 else arr, mode=mode).save(tmp_path / "x.png")
    got = read_image(tmp_path / "x.png")
    assert got.dtype == np.uint8
    assert got.shape == (24, 40, channels)
    assert np.array_equal(got, arr)


def test_read_16bit_grayscale_png(tmp_path: Path) -> None:
    arr = noise((24, 40), dtype=np.uint16)
    arr[0, 0], arr[0, 1] = 0, 65535
    Image.frombytes("I;16", (40, 24), arr.astype("<u2").tobytes()).save(tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as img:
        assert img.mode == "I;16"
    got = read_image(tmp_path / "x.png")
    assert got.dtype == np.uint16
    assert got.shape == (24, 40, 1)
    assert np.array_equal(got[:, :, 0], arr)
    t = to_tensor(got)
    assert t.shape == (1, 24, 40)
    assert t.min().item() == -1.0 and t.max().item() == 1.0


@pytest.mark.parametrize(("dtype", "top"), [(np.uint8, 255), (np.uint16, 65535)])
def test_to_tensor_range_and_exact_round_trip(dtype: type, top: int) -> None:
    every_value = np.arange(top + 1, dtype=dtype).reshape(1, -1, 1)
    t = to_tensor(every_value)
    assert t.dtype == torch.float32
    assert t.min().item() == -1.0 and t.max().item() == 1.0
    assert t[0, 0, 0].item() == -1.0 and t[0, 0, -1].item() == 1.0
    assert np.array_equal(from_tensor(t, dtype), every_value)
    image = noise((16, 24, 3), seed=3, dtype=dtype)
    back = from_tensor(to_tensor(image), dtype)
    assert back.dtype == dtype and np.array_equal(back, image)


def test_from_tensor_clips_out_of_range() -> None:
    t = torch.tensor([[[-3.0, -1.0, 0.0, 1.0, 7.0]]])
    assert from_tensor(t, np.uint8)[0, :, 0].tolist() == [0, 0, 128, 255, 255]
    assert from_tensor(t, np.uint16)[0, :, 0].tolist() == [0, 0, 32768, 65535, 65535]


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_write_uint16_multichannel_goes_to_tiff(tmp_path: Path, channels: int) -> None:
    arr = noise((20, 28, channels), seed=channels, dtype=np.uint16)
    written = write_image(tmp_path / "out.webp", arr)  # (PNG holds 16-bit colour: test_input_validation)
    assert written == tmp_path / "out.tif"
    assert not (tmp_path / "out.webp").exists()
    back = read_image(written)
    assert back.dtype == np.uint16 and back.shape == arr.shape
    assert np.array_equal(back, arr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]  # no temp files left


def test_write_uint16_grayscale_png_round_trip(tmp_path: Path) -> None:
    arr = noise((20, 28, 1), dtype=np.uint16)
    arr[0, 0, 0], arr[0, 1, 0] = 0, 65535
    written = write_image(tmp_path / "out.png", arr)
    assert written == tmp_path / "out.png"
    with Image.open(written) as img:
        assert img.mode == "I;16"
    back = read_image(written)
    assert back.dtype == np.uint16 and np.array_equal(back, arr)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_write_uint8_png_round_trip(tmp_path: Path, channels: int) -> None:
    arr = noise((20, 28, channels), seed=channels)
    written = write_image(tmp_path / "out.png", arr)
    assert written == tmp_path / "out.png"
    assert np.array_equal(read_image(written), arr)


def test_dataset_channels_and_dtype_come_from_the_data(tmp_path: Path) -> None:
    # A: RGBA uint8, B: grayscale uint8
    rgba = [noise((40, 40, 4), seed=i) for i in range(2)]
    write_folders(tmp_path / "rgba", [(a, a[:, :, :1]) for a in rgba])
    ds = open_paired_dataset(data_config(tmp_path / "rgba"))
    assert (ds.summary.in_channels, ds.summary.out_channels, ds.summary.dtype) == (4, 1, "uint8")
    assert ds[1]["A"].shape == (4, 40, 40) and ds[1]["B"].shape == (1, 40, 40)
    assert torch.equal(ds[1]["A"], to_tensor(rgba[1]))
    # 16-bit grayscale on both sides
    g16 = [noise((40, 40, 1), seed=i, dtype=np.uint16) for i in range(2)]
    g16[0][0, 0, 0], g16[0][0, 1, 0] = 0, 65535
    write_folders(tmp_path / "g16", [(g, 65535 - g) for g in g16])
    ds = open_paired_dataset(data_config(tmp_path / "g16"))
    assert (ds.summary.in_channels, ds.summary.out_channels, ds.summary.dtype) == (1, 1, "uint16")
    item = ds[0]
    assert item["A"].min().item() == -1.0 and item["A"].max().item() == 1.0
    assert np.array_equal(from_tensor(item["A"], np.uint16), g16[0])
    assert np.array_equal(from_tensor(item["B"], np.uint16), 65535 - g16[0])


# ---------------------------------------------------------------------------------------------------------------
# JointTransform


def _paired_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A: 48x64 RGB noise; B: one channel that is 255 - A's red channel, i.e. B == -A[:1] as tensors."""
    a = noise((48, 64, 3), seed=seed)
    return to_tensor(a), to_tensor(255 - a[:, :, :1])


@pytest.mark.parametrize("preprocess", PREPROCESS_MODES)
def test_joint_transform_applies_the_same_draw_to_a_and_b(preprocess: str) -> None:
    transform = JointTransform(preprocess, load_size=48, crop_size=32, flip=True)
    unflipped = JointTransform(preprocess, load_size=48, crop_size=32, flip=False)  # same crop draws, no flip
    a, b = _paired_inputs()
    torch.testing.assert_close(b, -a[:1], rtol=0, atol=1e-6)
    flipped = set()
    for seed in range(8):
        out_a, out_b = transform([a, b], _rng(seed))
        assert out_b.shape[0] == 1 and out_a.shape[0] == 3
        assert out_a.shape[1:] == out_b.shape[1:]
        torch.testing.assert_close(out_b, -out_a[:1], rtol=0, atol=1e-6)
        again_a, again_b = transform([a, b], _rng(seed))
        assert torch.equal(again_a, out_a) and torch.equal(again_b, out_b)  # same seed, same draw
        plain = unflipped([a], _rng(seed))[0]
        assert torch.equal(out_a, plain) or torch.equal(out_a, plain.flip(-1))
        flipped.add(not torch.equal(out_a, plain))
    assert flipped == {True, False}, "flip=True never (or always) flipped over 8 seeds"


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize(
    ("preprocess", "resized", "output"),
    [
        ("resize_and_crop", (48, 48), (32, 32)),
        ("crop", (48, 64), (32, 32)),
        ("scale_width", (36, 48), (36, 48)),  # 48 wide, aspect ratio 3:4 kept
        ("scale_width_and_crop", (36, 48), (32, 32)),
        ("none", (48, 64), (48, 64)),
    ],
)
def test_joint_transform_output_sizes(preprocess: str, resized: tuple[int, int], output: tuple[int, int]) -> None:
    transform = JointTransform(preprocess, load_size=48, crop_size=32, flip=True)
    assert transform.resized_size(48, 64) == resized
    assert transform.output_size(48, 64) == output
    a, b = _paired_inputs()
    out_a, out_b = transform([a, b], _rng(1))
    assert tuple(out_a.shape) == (3, *output) and tuple(out_b.shape) == (1, *output)


def test_scale_width_keeps_aspect_ratio() -> None:
    transform = JointTransform("scale_width", load_size=64, crop_size=16, flip=False)
    for h, w in ((30, 40), (120, 80), (50, 100)):
        rh, rw = transform.output_size(h, w)
        assert rw == 64
        assert rh / rw == pytest.approx(h / w, abs=1 / 64)
        img = torch.zeros(1, h, w)
        assert transform([img], _rng(0))[0].shape == (1, rh, rw)


def test_crop_windows_depend_on_the_seed_only() -> None:
    h, w = 48, 64
    coded = (np.arange(h * w).reshape(h, w, 1)).astype(np.uint16)  # each pixel holds its own position
    t = to_tensor(coded)
    transform = JointTransform("crop", crop_size=32, flip=False)
    corners = []
    for seed in range(10):
        out = from_tensor(transform([t], _rng(seed))[0], np.uint16)[:, :, 0]
        again = from_tensor(transform([t], _rng(seed))[0], np.uint16)[:, :, 0]
        assert np.array_equal(out, again)  # same seed, same crop
        top, left = divmod(int(out[0, 0]), w)
        assert np.array_equal(out, coded[top : top + 32, left : left + 32, 0])  # a true window of the input
        corners.append((top, left))
    assert len(set(corners)) >= 5, f"different seeds gave too few different crops: {corners}"


def test_flip_flips_sometimes_and_never_when_off() -> None:
    a, b = _paired_inputs(seed=4)
    on = JointTransform("none", flip=True)
    off = JointTransform("none", flip=False)
    seen = set()
    for seed in range(20):
        out_a, out_b = on([a, b], _rng(seed))
        if torch.equal(out_a, a):
            seen.add("same")
            assert torch.equal(out_b, b)
        else:
            assert torch.equal(out_a, a.flip(-1))
            assert torch.equal(out_b, b.flip(-1))
            seen.add("flipped")
        assert torch.equal(off([a, b], _rng(seed))[0], a)
    assert seen == {"same", "flipped"}


def test_transform_check_rejects_crop_larger_than_image() -> None:
    with pytest.raises(DataError, match=r"pics/x\.png: crop 64x64 is larger than the image \(48x40"):
        JointTransform("crop", crop_size=64).check(40, 48, "pics/x.png")
    JointTransform("resize_and_crop", load_size=72, crop_size=64).check(40, 48, "pics/x.png")  # resized first


# ---------------------------------------------------------------------------------------------------------------
# PairedDataset


def test_paired_dataset_summary_and_reproducible_keys(aligned_dataset: Path) -> None:
    cfg = data_config(aligned_dataset, preprocess="resize_and_crop", load_size=48, crop_size=32, flip=True)
    ds = open_paired_dataset(cfg)
    assert len(ds) == 8
    assert (ds.summary.layout, ds.summary.in_channels, ds.summary.out_channels) == ("aligned", 3, 3)
    assert ds.summary.dtype == "uint8" and ds.summary.skipped == ()
    first = ds[(3, 7)]
    assert first["name"] == "img_003"
    assert first["A"].shape == (3, 32, 32)
    torch.testing.assert_close(first["B"], -first["A"], rtol=0, atol=1e-6)  # B = 255 - A survives augmentation
    assert torch.equal(ds[(3, 7)]["A"], first["A"])
    reopened = open_paired_dataset(cfg)
    assert torch.equal(reopened[(3, 7)]["A"], first["A"])  # another process/worker gets the same sample
    assert torch.equal(ds[3]["A"], ds[(3, 0)]["A"])
    variants = {ds[(3, s)]["A"].numpy().tobytes() for s in range(6)}
    assert len(variants) > 1, "different seeds gave identical augmentations"
    assert not torch.equal(ds[(3, 7)]["A"], ds[(4, 7)]["A"])


def test_max_items_limits_the_pairs(aligned_dataset: Path) -> None:
    ds = open_paired_dataset(data_config(aligned_dataset, max_items=3))
    assert [ds[i]["name"] for i in range(len(ds))] == ["img_000", "img_001", "img_002"]


def test_find_pairs_matches_names_across_extensions(tmp_path: Path) -> None:
    a, b = _good_pairs(1)[0]
    write_image(tmp_path / "A" / "sub" / "p.png", a)
    write_image(tmp_path / "B" / "sub" / "p.jpg", b)
    layout, base, pairs = find_pairs(tmp_path, "auto")
    assert (layout, base) == ("folders", tmp_path)
    assert [(p.name, p.a_path.name, p.b_path.name) for p in pairs] == [("sub/p", "p.png", "p.jpg")]


# ---------------------------------------------------------------------------------------------------------------
# Bad inputs


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_raises_data_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    root, overrides, names = make_bad_dataset(kind, tmp_path / "ds")
    with pytest.raises(DataError) as exc:
        open_paired_dataset(data_config(root, **overrides))
    message = str(exc.value)
    assert "\n" not in message
    for name in names:
        assert name in message, f"{kind}: {name!r} not in {message!r}"


def test_no_dataset_given_is_a_data_error() -> None:
    with pytest.raises(DataError, match="--data"):
        open_paired_dataset(DataConfig(root=""))


def test_dataset_path_that_is_a_file(tmp_path: Path) -> None:
    f = write_image(tmp_path / "x.png", noise((8, 8, 3)))
    with pytest.raises(DataError, match="not a folder") as exc:
        open_paired_dataset(data_config(f))
    assert str(f) in str(exc.value)


def test_mixed_bit_depths_are_rejected(tmp_path: Path) -> None:
    write_folders(tmp_path, [(noise((40, 40, 1)), noise((40, 40, 1), seed=1))])
    write_image(tmp_path / "A" / "z16.png", noise((40, 40, 1), dtype=np.uint16))
    write_image(tmp_path / "B" / "z16.png", noise((40, 40, 1), seed=1, dtype=np.uint16))
    with pytest.raises(DataError, match="uint16") as exc:
        open_paired_dataset(data_config(tmp_path))
    assert str(tmp_path / "A" / "z16.png") in str(exc.value)


@pytest.mark.parametrize(
    ("bad_kind", "reason"),
    [
        ("corrupt", "not an image file"),
        ("truncated_png", "truncated"),
        ("truncated_jpeg", "truncated"),
        ("not_an_image", "not an image file"),
    ],
)
def test_reading_a_bad_image_names_it(tmp_path: Path, bad_kind: str, reason: str) -> None:
    _, _, (bad,) = make_bad_dataset(bad_kind, tmp_path / "ds")
    with pytest.raises(DataError, match=reason) as exc:
        read_image(Path(bad))
    assert str(exc.value).startswith(f"{bad}: ")
    assert "--skip-bad" in str(exc.value)


def test_truncated_jpeg_is_not_silently_accepted(tmp_path: Path) -> None:
    """Pillow decodes a truncated JPEG as grey if ImageFile.LOAD_TRUNCATED_IMAGES is set; diptych must refuse it."""
    img = photo_crops("coffee", 64, 1)[0]
    for progressive in (False, True):
        path = tmp_path / f"p{int(progressive)}.jpg"
        Image.fromarray(img).save(path, quality=90, progressive=progressive)
        assert read_image(path).shape == (64, 64, 3)
        data = path.read_bytes()
        for cut in (len(data) // 2, len(data) - 40):
            path.write_bytes(data[:cut])
            with pytest.raises(DataError, match="truncated") as exc:
                read_image(path)
            assert str(path) in str(exc.value)
        path.write_bytes(data)


@pytest.mark.parametrize(
    ("name", "arr"),
    [
        ("g16.png", noise((40, 40, 1), dtype=np.uint16)),
        ("c16.tif", noise((40, 40, 3), dtype=np.uint16)),
        ("f32.tif", np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)),
    ],
)
def test_truncated_16bit_and_tiff_files_are_rejected(tmp_path: Path, name: str, arr: np.ndarray) -> None:
    path = write_image(tmp_path / name, arr)
    assert path.name == name
    assert np.array_equal(read_image(path), arr)
    with pytest.raises(DataError, match="corrupt or truncated") as exc:
        read_image(truncate(path))
    assert str(path) in str(exc.value)


def test_skip_bad_skips_exactly_the_bad_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "ds"
    good = _good_pairs(3)
    write_folders(root, good, prefix="good")
    bad_files = []
    a, b = _good_pairs(1, seed=5)[0]
    # corrupt A, truncated B, non-image, size mismatch, different channel count (sorted after the good ones)
    (root / "A" / "m_corrupt.png").write_bytes(np.random.default_rng(1).bytes(300))
    write_image(root / "B" / "m_corrupt.png", b)
    bad_files.append(root / "A" / "m_corrupt.png")
    write_image(root / "A" / "m_trunc.png", a)
    bad_files.append(truncate(write_image(root / "B" / "m_trunc.png", b)))
    (root / "A" / "m_text.jpg").write_text("hello")
    write_image(root / "B" / "m_text.png", b)
    bad_files.append(root / "A" / "m_text.jpg")
    write_image(root / "A" / "m_size.png", a)
    bad_files.append(write_image(root / "B" / "m_size.png", b[:32]))
    bad_files.append(write_image(root / "A" / "z_gray.png", a[:, :, :1]))
    write_image(root / "B" / "z_gray.png", b)

    with pytest.raises(DataError):
        open_paired_dataset(data_config(root))
    capsys.readouterr()
    ds = open_paired_dataset(data_config(root, skip_bad=True))
    assert [ds[i]["name"] for i in range(len(ds))] == ["good_000", "good_001", "good_002"]
    assert torch.equal(ds[2]["B"], to_tensor(good[2][1]))
    assert len(ds.summary.skipped) == len(bad_files)
    for bad in bad_files:
        assert sum(str(bad) in msg for msg in ds.summary.skipped) == 1, bad
    err = capsys.readouterr().err
    assert f"skipped {len(bad_files)} bad pair(s)" in err
    for bad in bad_files:
        assert str(bad) in err


def test_skip_bad_with_nothing_good_left(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, _, (bad,) = make_bad_dataset("corrupt", tmp_path / "ds")
    for p in root.glob("img_0*.png"):
        p.unlink()
    with pytest.raises(DataError, match="no usable pairs left after skipping 1 bad one") as exc:
        open_paired_dataset(data_config(root, skip_bad=True))
    assert str(root) in str(exc.value)
    assert bad in capsys.readouterr().err


def test_two_files_with_one_name_are_an_error(tmp_path: Path) -> None:
    root = write_folders(tmp_path / "ds", _good_pairs(2))
    write_image(root / "A" / "img_000.jpg", noise((64, 64, 3)))
    with pytest.raises(DataError, match=r"img_000\.(jpg|png): has the same name"):
        find_pairs(root, "folders")


def test_hidden_folders_are_ignored(tmp_path: Path) -> None:
    root = write_folders(tmp_path / "ds", _good_pairs(2))
    write_image(root / "A" / ".ipynb_checkpoints" / "img_000-checkpoint.png", noise((64, 64, 3)))
    _, _, pairs = find_pairs(root, "folders")
    assert [p.name for p in pairs] == ["img_000", "img_001"]


def test_channel_first_tiff_stack_is_read_as_channels(tmp_path: Path) -> None:
    """A 5-band stack stored as pages (CYX, as many scientific tools write it) reads as HxWx5."""
    import tifffile

    stack = noise((5, 24, 20), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "bands.tif", stack)
    arr = read_image(tmp_path / "bands.tif")
    assert arr.shape == (24, 20, 5) and np.array_equal(arr[:, :, 3], stack[3])


def test_skip_bad_skips_missing_partners(tmp_path: Path) -> None:
    root = write_folders(tmp_path / "ds", _good_pairs(3))
    write_image(root / "A" / "lonely.png", noise((64, 64, 3)))
    ds = open_paired_dataset(data_config(root, skip_bad=True, layout="folders"))
    assert len(ds) == 3 and any("lonely.png: no partner" in s for s in ds.summary.skipped)


def test_missing_phase_folder_is_an_error_when_other_splits_exist(tmp_path: Path) -> None:
    write_aligned(tmp_path / "ds" / "train", _good_pairs(2))
    with pytest.raises(DataError, match=r"no val/ split \(found train/\)"):
        find_pairs(tmp_path / "ds", "auto", "val")


def test_eight_bit_inputs_with_sixteen_bit_targets(tmp_path: Path) -> None:
    """An 8-bit photo -> 16-bit map dataset: each side is scaled by its own range; outputs take the target's type."""
    pairs = [(noise((40, 40, 3), seed=i), noise((40, 40, 1), seed=i, dtype=np.uint16)) for i in range(3)]
    root = write_folders(tmp_path / "ds", pairs)
    ds = open_paired_dataset(data_config(root, layout="folders", preprocess="none", flip=False))
    assert (ds.summary.in_channels, ds.summary.out_channels, ds.summary.dtype) == (3, 1, "uint16")
    item = ds[0]
    assert torch.allclose(item["A"], to_tensor(pairs[0][0])) and torch.allclose(item["B"], to_tensor(pairs[0][1]))
    back = open_paired_dataset(data_config(root, layout="folders", preprocess="none", direction="BtoA"))
    assert back.summary.dtype == "uint8"


def test_decompression_bombs_are_refused_unless_the_limit_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from diptych.cli import main

    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 10000 pixels is more than twice the limit
    with pytest.raises(DataError, match=r"decompression-bomb limit .*--max-image-pixels"):
        read_image(path)
    # The CLI flag sets the limit for the run (0 = none); a negative one is refused with a one-line error.
    assert main(["--max-image-pixels", "-1", "info", str(tmp_path)]) == 1
    assert "--max-image-pixels -1 must be >= 0" in capsys.readouterr().err
    main(["--max-image-pixels", "0", "info", str(tmp_path / "missing")])
    assert Image.MAX_IMAGE_PIXELS is None
    assert read_image(path).shape == (100, 100, 3)
