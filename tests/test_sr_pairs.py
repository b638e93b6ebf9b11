"""Super-resolution training pairs: HR-only folders (bicubic or degraded LR on the fly) and LR/HR folder pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diptych.data.degradations import DegradationConfig
from diptych.data.io import to_tensor, write_image
from diptych.data.resize import bicubic_downscale
from diptych.data.samples import sample_photo
from diptych.data.sr_pairs import SRCrop, open_hr_folder, open_lr_hr_folders
from diptych.errors import ConfigError, DataError


@pytest.fixture
def hr_folder(tmp_path: Path) -> Path:
    """Two real photos (8-bit RGB PNG) of different sizes."""
    root = tmp_path / "hr"
    write_image(root / "astronaut.png", sample_photo("astronaut")[100:260, 150:330])
    write_image(root / "sub" / "coffee.png", sample_photo("coffee")[50:150, 200:330])
    return root


def unit(t: torch.Tensor) -> torch.Tensor:
    return (t + 1) / 2


def test_hr_crops_with_bicubic_lr_made_of_them(hr_folder: Path) -> None:
    ds = open_hr_folder(hr_folder, SRCrop(scale=2, lr_crop=24))
    assert len(ds) == 2 and [item.name for item in ds.items] == ["astronaut", "sub/coffee"]
    assert (ds.domain.channels, ds.domain.sample_type) == (3, "uint8")
    for key in [(0, 5), (1, 5), (1, 6)]:
        sample = ds[key]
        assert sample["HR"].shape == (3, 48, 48) and sample["LR"].shape == (3, 24, 24)
        expected = bicubic_downscale(unit(sample["HR"]), 2).clamp(0, 1)
        expected = (expected * 255).round() / 255  # rounded to the data's 8-bit levels, as a saved LR file
        assert torch.allclose(unit(sample["LR"]), expected, atol=1e-6)


def test_hr_crop_is_a_crop_of_the_file(hr_folder: Path) -> None:
    ds = open_hr_folder(hr_folder, SRCrop(scale=4, lr_crop=10, flip=False, rotate=False))
    hr = ds[(1, 3)]["HR"]
    whole = to_tensor(sample_photo("coffee")[50:150, 200:330])
    windows = whole.unfold(1, 40, 1).unfold(2, 40, 1)  # every 40 x 40 window: 3 x 61 x 91 x 40 x 40
    matches = (windows == hr[:, None, None]).flatten(3).all(dim=3).all(dim=0)
    assert int(matches.sum()) >= 1


def test_same_key_same_pair_other_keys_differ(hr_folder: Path) -> None:
    for degradation in (None, DegradationConfig()):
        ds = open_hr_folder(hr_folder, SRCrop(scale=4, lr_crop=16), degradation)
        first = ds[(0, 11)]
        again = open_hr_folder(hr_folder, SRCrop(scale=4, lr_crop=16), degradation)[(0, 11)]
        assert torch.equal(first["LR"], again["LR"]) and torch.equal(first["HR"], again["HR"])
        other_epoch, other_index = ds[(0, 12)], ds[(1, 11)]
        assert not torch.equal(first["LR"], other_epoch["LR"])
        assert not torch.equal(first["HR"], other_index["HR"][:, :64, :64])


def test_degraded_lr_has_the_lr_size_and_stays_in_range(hr_folder: Path) -> None:
    ds = open_hr_folder(hr_folder, SRCrop(scale=4, lr_crop=20), DegradationConfig())
    for seed in range(3):
        sample = ds[(0, seed)]
        assert sample["LR"].shape == (3, 20, 20) and sample["HR"].shape == (3, 80, 80)
        assert float(sample["LR"].min()) >= -1 and float(sample["LR"].max()) <= 1
        lr = unit(sample["LR"])
        assert torch.allclose(lr, (lr * 255).round() / 255, atol=1e-6)


def test_16_bit_grey_and_float_images_keep_their_precision(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grey16 = (rng.random((40, 44, 1)) * 65535).astype(np.uint16)
    write_image(tmp_path / "g16" / "a.png", grey16)
    ds = open_hr_folder(tmp_path / "g16", SRCrop(scale=2, lr_crop=16))
    assert (ds.domain.channels, ds.domain.sample_type, ds.levels) == (1, "uint16", 65535)
    lr = unit(ds[(0, 0)]["LR"]).double()
    assert torch.allclose(lr * 65535, (lr * 65535).round(), atol=1e-2)  # 16-bit steps, finer than 8-bit ones
    assert not torch.allclose(lr * 255, (lr * 255).round(), atol=1e-2)
    (tmp_path / "f").mkdir()
    np.save(tmp_path / "f" / "a.npy", rng.random((40, 44, 2)).astype(np.float32))
    ds = open_hr_folder(tmp_path / "f", SRCrop(scale=2, lr_crop=16))
    sample = ds[(0, 0)]
    assert ds.levels is None and sample["LR"].shape == (2, 16, 16)
    assert torch.allclose(unit(sample["LR"]), bicubic_downscale(unit(sample["HR"]), 2).clamp(0, 1), atol=1e-6)


def test_multi_band_16_bit_tiff_through_the_degradation(tmp_path: Path) -> None:
    """4 bands of uint16 (JPEG compresses them one by one as grey images): the LR keeps 16-bit steps."""
    rng = np.random.default_rng(1)
    write_image(tmp_path / "t" / "bands.tif", (rng.random((64, 72, 4)) * 65535).astype(np.uint16))
    ds = open_hr_folder(tmp_path / "t", SRCrop(scale=4, lr_crop=12), DegradationConfig())
    assert (ds.domain.channels, ds.domain.sample_type) == (4, "uint16")
    for seed in range(2):
        sample = ds[(0, seed)]
        assert sample["LR"].shape == (4, 12, 12) and sample["HR"].shape == (4, 48, 48)
        lr = unit(sample["LR"]).double()
        assert torch.allclose(lr * 65535, (lr * 65535).round(), atol=1e-2)


def test_hr_image_smaller_than_the_crop_is_named(hr_folder: Path) -> None:
    with pytest.raises(DataError) as info:
        open_hr_folder(hr_folder, SRCrop(scale=4, lr_crop=30))
    message = str(info.value)
    assert "coffee.png: 130x100 is smaller than the HR crop 120x120 (--lr-crop 30 x --scale 4)" in message
    assert "\n" not in message
    kept = open_hr_folder(hr_folder, SRCrop(scale=4, lr_crop=30), skip_bad=True)
    assert [item.name for item in kept.items] == ["astronaut"]


def test_hr_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a folder; pass the folder of HR images"):
        open_hr_folder(tmp_path / "missing", SRCrop(2, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        open_hr_folder(tmp_path / "empty", SRCrop(2, 8))
    write_image(tmp_path / "mixed" / "a.png", np.zeros((32, 32, 3), np.uint8))
    write_image(tmp_path / "mixed" / "b.png", np.zeros((32, 32, 1), np.uint8))
    with pytest.raises(DataError, match=r"b\.png: has 1 x uint8, but earlier HR images have 3 x uint8"):
        open_hr_folder(tmp_path / "mixed", SRCrop(2, 8))
    bad = DegradationConfig(final_sinc_prob=2.0)
    with pytest.raises(ConfigError, match=r"degradation\.final_sinc_prob"):
        open_hr_folder(tmp_path / "mixed", SRCrop(2, 8), bad)
    with pytest.raises(ConfigError, match="--scale 0: must be an integer"):
        SRCrop(0, 8)


def write_lr_hr(root: Path, scale: int, sizes: dict[str, tuple[int, int]], seed: int = 0) -> tuple[Path, Path]:
    """LR/HR folders where each LR pixel is the mean of its scale x scale HR block (so aligned crops agree)."""
    rng = np.random.default_rng(seed)
    for name, (h, w) in sizes.items():
        hr = rng.integers(0, 256, (h * scale, w * scale, 1)).astype(np.float32) / 255
        lr = hr.reshape(h, scale, w, scale, 1).mean(axis=(1, 3))
        for side, arr in (("HR", hr), ("LR", lr)):
            (root / side).mkdir(parents=True, exist_ok=True)
            np.save(root / side / f"{name}.npy", arr)
    return root / "LR", root / "HR"


def test_lr_hr_pairs_are_cropped_at_the_same_place(tmp_path: Path) -> None:
    lr_dir, hr_dir = write_lr_hr(tmp_path, 3, {"a": (20, 25), "b": (17, 30)})
    ds = open_lr_hr_folders(lr_dir, hr_dir, SRCrop(scale=3, lr_crop=12))
    assert len(ds) == 2 and ds.domain.sample_type == "float32"
    for key in [(0, 1), (1, 1), (1, 2), (0, 9)]:  # flips and rotations included: they commute with block means
        sample = ds[key]
        lr, hr = unit(sample["LR"]), unit(sample["HR"])
        assert lr.shape == (1, 12, 12) and hr.shape == (1, 36, 36)
        assert torch.allclose(torch.nn.functional.avg_pool2d(hr[None], 3)[0], lr, atol=1e-6)
    assert torch.equal(ds[(1, 4)]["LR"], ds[(1, 4)]["LR"])


def test_lr_hr_pair_not_differing_by_the_scale_is_named(tmp_path: Path) -> None:
    lr_dir, hr_dir = write_lr_hr(tmp_path, 2, {"a": (20, 20), "b": (16, 18)})
    np.save(hr_dir / "b.npy", np.zeros((33, 36, 1), np.float32))
    with pytest.raises(DataError) as info:
        open_lr_hr_folders(lr_dir, hr_dir, SRCrop(scale=2, lr_crop=8))
    assert f"{hr_dir / 'b.npy'}: HR size 36x33 is not 2 x its LR partner" in str(info.value)
    assert "(18x16, so 36x32 expected)" in str(info.value)
    with pytest.raises(DataError, match="HR size 40x40 is not 4 x its LR partner"):
        open_lr_hr_folders(lr_dir, hr_dir, SRCrop(scale=4, lr_crop=4))
    kept = open_lr_hr_folders(lr_dir, hr_dir, SRCrop(scale=2, lr_crop=8), skip_bad=True)
    assert [p.name for p in kept.pairs] == ["a"]


def test_lr_hr_names_crops_and_channels_are_checked(tmp_path: Path) -> None:
    lr_dir, hr_dir = write_lr_hr(tmp_path, 2, {"a": (10, 12)})
    np.save(lr_dir / "only_lr.npy", np.zeros((10, 10, 1), np.float32))
    with pytest.raises(DataError, match="1 image\\(s\\) have no partner of the same name"):
        open_lr_hr_folders(lr_dir, hr_dir, SRCrop(scale=2, lr_crop=8))
    (lr_dir / "only_lr.npy").unlink()
    with pytest.raises(DataError, match="24x20 is smaller than the HR crop 24x24 \\(--lr-crop 12 x --scale 2\\)"):
        open_lr_hr_folders(lr_dir, hr_dir, SRCrop(scale=2, lr_crop=12))
    np.save(hr_dir / "a.npy", np.zeros((20, 24, 3), np.float32))
    with pytest.raises(DataError, match="has 3 channel\\(s\\) but its LR partner"):
        open_lr_hr_folders(lr_dir, hr_dir, SRCrop(scale=2, lr_crop=8))
