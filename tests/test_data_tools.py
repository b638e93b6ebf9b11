"""`diptych data` tools: combine/split, pair builders, the dataset checker and glyph rendering."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2gray, rgb2lab
from skimage.feature import canny
from skimage.filters import gaussian

from diptych.cli import main
from diptych.data import find_pairs
from diptych.data.io import list_images, read_image, write_image
from diptych.data.samples import sample_photo
from diptych.data.tools.make_pairs import CropOptions, TaskOptions, make_pairs

from .conftest import photo_crops


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_partner_folders(root: Path) -> tuple[Path, Path]:
    """A/ (16-bit grey) and B/ (16-bit grey) partners, with a train/ and a test/ sub-folder."""
    crops = photo_crops("astronaut", 48, 3)
    for i, c in enumerate(crops):
        split = "test" if i == 2 else "train"
        grey16 = (c[:, :, :1].astype(np.uint16) * 257) + i
        write_image(root / "A" / split / f"img{i}.png", grey16)
        write_image(root / "B" / split / f"img{i}.tif", 65535 - grey16)
    return root / "A", root / "B"


# --- combine / split ---------------------------------------------------------------------------------------------


def test_combine_keeps_bit_depth_and_subfolders_and_split_inverts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_dir, b_dir = write_partner_folders(tmp_path / "src")
    code, out, _ = run_cli(capsys, "data", "combine", a_dir, b_dir, tmp_path / "aligned", "--workers", "2")
    assert code == 0 and "wrote 3 aligned" in out
    combined = read_image(tmp_path / "aligned" / "train" / "img1.png")
    assert combined.dtype == np.uint16 and combined.shape == (48, 96, 1)
    np.testing.assert_array_equal(combined[:, :48], read_image(a_dir / "train" / "img1.png"))
    np.testing.assert_array_equal(combined[:, 48:], read_image(b_dir / "train" / "img1.tif"))
    assert find_pairs(tmp_path / "aligned", "auto", "test")[2][0].name == "img2"

    code, out, _ = run_cli(capsys, "data", "split", tmp_path / "aligned", tmp_path / "back")
    assert code == 0 and "wrote 3 pair(s)" in out
    for i, split in enumerate(("train", "train", "test")):
        np.testing.assert_array_equal(
            read_image(tmp_path / "back" / "A" / split / f"img{i}.png"), read_image(a_dir / split / f"img{i}.png")
        )
        np.testing.assert_array_equal(
            read_image(tmp_path / "back" / "B" / split / f"img{i}.png"), read_image(b_dir / split / f"img{i}.tif")
        )
    layout, _, pairs = find_pairs(tmp_path / "back", "auto", "train")
    assert layout == "folders" and [p.name for p in pairs] == ["img0", "img1"]


def test_combine_missing_partner_is_one_line_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_dir, b_dir = write_partner_folders(tmp_path / "src")
    (b_dir / "test" / "img2.tif").unlink()
    code, _, err = run_cli(capsys, "data", "combine", a_dir, b_dir, tmp_path / "aligned")
    assert code == 1
    assert err.startswith("diptych: error: ") and "no partner" in err and "test/img2" in err and err.count("\n") == 1
    assert not (tmp_path / "aligned").exists()


def test_combine_size_mismatch_errors_and_leaves_nothing_or_resizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_dir, b_dir = write_partner_folders(tmp_path / "src")
    write_image(b_dir / "train" / "img1.tif", np.zeros((40, 44, 1), np.uint16))
    code, _, err = run_cli(capsys, "data", "combine", a_dir, b_dir, tmp_path / "aligned")
    assert code == 1 and "img1" in err and "44x40" in err and "--resize b-to-a" in err
    assert not (tmp_path / "aligned").exists()  # the pairs written before the failure were removed again

    code, _, _ = run_cli(capsys, "data", "combine", a_dir, b_dir, tmp_path / "aligned", "--resize", "b-to-a")
    assert code == 0
    assert read_image(tmp_path / "aligned" / "train" / "img1.png").shape == (48, 96, 1)


def test_combine_channels_mismatch_and_conversion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    crop = photo_crops("coffee", 32, 1)[0]
    write_image(tmp_path / "A" / "x.png", crop[:, :, :1])
    write_image(tmp_path / "B" / "x.png", crop)
    code, _, err = run_cli(capsys, "data", "combine", tmp_path / "A", tmp_path / "B", tmp_path / "out")
    assert code == 1 and "--channels" in err and "1 channel" in err
    code, _, _ = run_cli(capsys, "data", "combine", tmp_path / "A", tmp_path / "B", tmp_path / "out", "--channels", "3")
    assert code == 0
    out = read_image(tmp_path / "out" / "x.png")
    assert out.shape == (32, 64, 3)
    np.testing.assert_array_equal(out[:, :32], np.repeat(crop[:, :, :1], 3, axis=2))


def test_split_refuses_to_overwrite_and_odd_width(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    crop = photo_crops("coffee", 32, 1)[0]
    write_image(tmp_path / "al" / "a.png", np.concatenate([crop, crop], axis=1))
    write_image(tmp_path / "al" / "a.v2.jpg", np.concatenate([crop, 255 - crop], axis=1))  # a dot in the name
    assert run_cli(capsys, "data", "split", tmp_path / "al", tmp_path / "out")[0] == 0
    assert sorted(p.name for p in (tmp_path / "out" / "B").iterdir()) == ["a.png", "a.v2.png"]
    code, _, err = run_cli(capsys, "data", "split", tmp_path / "al", tmp_path / "out")
    assert code == 1 and "already exists" in err and "--overwrite" in err
    assert run_cli(capsys, "data", "split", tmp_path / "al", tmp_path / "out", "--overwrite")[0] == 0
    write_image(tmp_path / "odd" / "b.png", crop[:, :31])
    code, _, err = run_cli(capsys, "data", "split", tmp_path / "odd", tmp_path / "out2")
    assert code == 1 and "odd" in err and "b.png" in err
    # a folders-layout dataset (A/ and B/ partners) is not halved into nonsense
    write_image(tmp_path / "pairs" / "train" / "A" / "c.png", crop)
    write_image(tmp_path / "pairs" / "train" / "B" / "c.png", crop)
    code, _, err = run_cli(capsys, "data", "split", tmp_path / "pairs", tmp_path / "out3")
    assert code == 1 and "A/ and B/" in err and "pairs/train" in err and not (tmp_path / "out3").exists()


def test_combine_and_split_overwrite_remove_an_earlier_runs_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rebuilding into the same folder with --overwrite leaves only this run's images (inputs inside it are kept)."""
    crops = photo_crops("coffee", 16, 3)
    for i, c in enumerate(crops):
        write_image(tmp_path / "A" / f"x{i}.png", c)
        write_image(tmp_path / "B" / f"x{i}.png", 255 - c)
    out = tmp_path / "ab"
    assert run_cli(capsys, "data", "combine", tmp_path / "A", tmp_path / "B", out)[0] == 0
    for side in ("A", "B"):
        (tmp_path / side / "x2.png").unlink()
    (out / "notes.txt").write_text("mine")  # not an image: left alone
    code, text, _ = run_cli(capsys, "data", "combine", tmp_path / "A", tmp_path / "B", out, "--overwrite")
    assert code == 0 and "removed 1 file(s)" in text
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "x0.png", "x1.png"]

    split = tmp_path / "split"
    write_image(out / "sub" / "y.png", np.concatenate([crops[2], crops[2]], axis=1))
    assert run_cli(capsys, "data", "split", out, split)[0] == 0
    (out / "sub" / "y.png").unlink()
    code, text, _ = run_cli(capsys, "data", "split", out, split, "--overwrite")
    assert code == 0 and "removed 2 file(s)" in text
    assert sorted(p.relative_to(split).as_posix() for p in split.rglob("*.png")) == [
        "A/x0.png", "A/x1.png", "B/x0.png", "B/x1.png",
    ]  # fmt: skip

    # the input folders inside OUT are not "an earlier run's files"
    code, text, _ = run_cli(capsys, "data", "combine", tmp_path / "A", tmp_path / "B", tmp_path, "--overwrite")
    assert code == 0 and len(list_images(tmp_path / "A")) == 2 and len(list_images(tmp_path / "B")) == 2


# --- make-pairs ----------------------------------------------------------------------------------------------------

PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle")


def small_photo(name: str, short: int = 96) -> np.ndarray:
    """A bundled photo resized so its shorter side is `short` (keeps the tests fast)."""
    photo = sample_photo(name)
    h, w = photo.shape[:2]
    scale = short / min(h, w)
    return np.asarray(Image.fromarray(photo).resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS))


@pytest.fixture(scope="module")
def photos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for name in PHOTO_NAMES:
        write_image(root / f"{name}.png", small_photo(name))
    return root


def find_in(photo: np.ndarray, crop: np.ndarray) -> bool:
    """Whether `crop` occurs somewhere in `photo` (exact pixels)."""
    windows = np.lib.stride_tricks.sliding_window_view(photo, crop.shape)[:, :, 0]
    return bool(np.all(windows == crop, axis=(2, 3, 4)).any())


def test_make_pairs_splits_by_source_photo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], photos_dir: Path
) -> None:
    out = tmp_path / "pairs"
    argv = ["data", "make-pairs", photos_dir, out, "--task", "blur", "--crop", "32", "--crops-per-image", "3"]
    code, text, _ = run_cli(capsys, *argv, "--split", "0.6,0.2,0.2", "--seed", "3")
    assert code == 0 and "train: 9 pair(s) from 3 photo(s)" in text and "test: 3 pair(s) from 1 photo(s)" in text
    manifest = json.loads((out / "make_pairs.json").read_text())
    sources = manifest["sources"]
    assert sorted(sources["train"] + sources["val"] + sources["test"]) == sorted(PHOTO_NAMES)
    assert not set(sources["train"]) & (set(sources["val"]) | set(sources["test"]))
    for split in ("train", "val", "test"):
        layout, _, pairs = find_pairs(out, "auto", split)
        assert layout == "folders" and len(pairs) == 3 * len(sources[split])
        for pair in pairs:
            source = pair.name.rsplit("_", 1)[0]
            assert source in sources[split]
            b = read_image(pair.b_path)
            assert b.shape == (32, 32, 3) and find_in(read_image(photos_dir / f"{source}.png"), b)
    # Same seed, same dataset; another seed, another split or other crops.
    assert run_cli(capsys, *argv, "--split", "0.6,0.2,0.2", "--seed", "3", "--overwrite")[0] == 0
    assert json.loads((out / "make_pairs.json").read_text())["sources"] == sources


def test_make_pairs_overwrite_with_another_split_leaves_no_old_crops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], photos_dir: Path
) -> None:
    """Rebuilding into the same folder with another seed must not leave the old run's crops in other splits."""
    out = tmp_path / "pairs"
    argv = ["data", "make-pairs", photos_dir, out, "--task", "blur", "--crop", "32", "--split", "0.6,0.2,0.2"]
    assert run_cli(capsys, *argv, "--seed", "1", "--crops-per-image", "3")[0] == 0
    (out / "notes.txt").write_text("mine")  # not a split folder: left alone
    code, text, _ = run_cli(capsys, *argv, "--seed", "2", "--crops-per-image", "2", "--overwrite")
    assert code == 0 and "removed" in text
    sources = json.loads((out / "make_pairs.json").read_text())["sources"]
    on_disk = {
        split: {p.stem.rsplit("_", 1)[0] for p in (out / split).rglob("*.png")} for split in ("train", "val", "test")
    }
    assert on_disk == {split: set(names) for split, names in sources.items()}
    assert sum(1 for _ in out.rglob("*.png")) == 2 * 2 * len(PHOTO_NAMES)
    assert (out / "notes.txt").read_text() == "mine"


def test_make_pairs_refuses_photos_of_mixed_formats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], photos_dir: Path
) -> None:
    """One grey photo among colour ones would give a dataset that training refuses: stop with nothing written."""
    mixed = tmp_path / "photos"
    for p in photos_dir.iterdir():
        write_image(mixed / p.name, read_image(p))
    write_image(mixed / "grey.png", small_photo("coffee")[:, :, :1])
    code, _, err = run_cli(capsys, "data", "make-pairs", mixed, tmp_path / "out", "--task", "blur", "--crop", "32")
    assert code == 1 and "grey.png (1 x uint8)" in err and "3 x uint8" in err
    assert not (tmp_path / "out").exists()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def make_one(tmp_path: Path, capsys: pytest.CaptureFixture[str], photo: np.ndarray, *options: str) -> np.ndarray:
    """Run make-pairs on one whole photo (no crop, all in train) and return A."""
    write_image(tmp_path / "in" / "p.png", photo)
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
    code, _, err = run_cli(capsys, "data", "make-pairs", tmp_path / "in" / "p.png", out, "--split", "1,0,0", *options)
    assert code == 0, err
    np.testing.assert_array_equal(read_image(out / "train" / "B" / "p.png"), photo)
    return read_image(out / "train" / "A" / "p.png")


def test_make_pairs_edges_are_canny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = small_photo("chelsea")
    a = make_one(tmp_path, capsys, photo, "--task", "edges", "--canny-sigma", "1.5")
    expected = np.where(canny(rgb2gray(photo), sigma=1.5), 0, 255)
    assert a.shape == (*photo.shape[:2], 1) and set(np.unique(a)) == {0, 255}
    np.testing.assert_array_equal(a[:, :, 0], expected)
    assert 0.02 < np.mean(a == 0) < 0.3


def test_make_pairs_gray_and_lab(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = small_photo("coffee")
    a = make_one(tmp_path, capsys, photo, "--task", "gray")
    luma = photo.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert a.shape[2] == 1 and np.abs(a[:, :, 0] - luma).max() <= 0.5 + 1e-9
    lab = make_one(tmp_path, capsys, photo, "--task", "gray", "--lab")
    lightness = rgb2lab(photo)[:, :, 0] * 2.55
    assert np.abs(lab[:, :, 0] - lightness).max() <= 0.5 + 1e-6
    assert np.abs(lab.astype(float) - a.astype(float)).mean() > 1  # L* is not luma


def test_make_pairs_downscale_blur_noise_jpeg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = small_photo("astronaut", 128)
    x2 = make_one(tmp_path, capsys, photo, "--task", "downscale", "--scale", "2")
    x4 = make_one(tmp_path, capsys, photo, "--task", "downscale", "--scale", "4")
    assert x2.shape == x4.shape == photo.shape
    low = np.asarray(Image.fromarray(photo).resize((photo.shape[1] // 4, photo.shape[0] // 4), Image.BICUBIC))
    # A is the bicubic x4 image brought back to full size (Pillow's 8-bit path rounds between passes: within a few levels)
    reference = np.asarray(Image.fromarray(low).resize(photo.shape[1::-1], Image.BICUBIC)).astype(float)
    assert np.abs(x4 - reference).mean() < 0.3 and np.abs(x4 - reference).max() <= 8
    assert 15 < psnr(x4, photo) < psnr(x2, photo) < 40

    blurred = make_one(tmp_path, capsys, photo, "--task", "blur", "--blur-sigma", "1.5")
    expected = gaussian(photo / 255.0, sigma=1.5, channel_axis=-1) * 255
    assert np.abs(blurred - expected).max() <= 0.5 + 1e-6

    noisy = make_one(tmp_path, capsys, photo, "--task", "noise", "--noise-sigma", "0.04", "--seed", "1")
    diff = noisy.astype(float) - photo.astype(float)
    mid = (photo > 40) & (photo < 215)  # away from clipping
    assert abs(diff[mid].std() - 0.04 * 255) < 0.3 and abs(diff[mid].mean()) < 0.2
    again = make_one(tmp_path, capsys, photo, "--task", "noise", "--noise-sigma", "0.04", "--seed", "1")
    other = make_one(tmp_path, capsys, photo, "--task", "noise", "--noise-sigma", "0.04", "--seed", "2")
    np.testing.assert_array_equal(again, noisy)
    assert not np.array_equal(other, noisy)

    q10 = make_one(tmp_path, capsys, photo, "--task", "jpeg", "--quality", "10")
    q60 = make_one(tmp_path, capsys, photo, "--task", "jpeg", "--quality", "60")
    assert 22 < psnr(q10, photo) < psnr(q60, photo) < 45


def test_make_pairs_aligned_grid_and_16bit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo16 = small_photo("rocket").astype(np.uint16) * 257
    write_image(tmp_path / "in" / "r.tif", photo16)
    out = tmp_path / "al"
    argv = ["data", "make-pairs", tmp_path / "in", out, "--task", "gray", "--crop", "32", "--grid", "--aligned"]
    code, text, _ = run_cli(capsys, *argv, "--split", "1,0")
    h, w = photo16.shape[:2]
    tiles = (h // 32) * (w // 32)
    assert code == 0 and f"train: {tiles} pair(s)" in text
    files = sorted((out / "train").iterdir())
    assert len(files) == tiles and all(f.suffix == ".png" for f in files)  # 16-bit RGB PNG keeps its 16 bits
    first = read_image(files[0])
    assert first.dtype == np.uint16 and first.shape == (32, 64, 3)
    np.testing.assert_array_equal(first[:, 32:], photo16[:32, :32])
    assert np.all(first[:, :32, 0] == first[:, :32, 1])  # grey A repeated to B's channels
    assert find_pairs(out, "auto")[0] == "aligned"


def test_make_pairs_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], photos_dir: Path) -> None:
    write_image(tmp_path / "deep" / "d.png", small_photo("coffee").astype(np.uint16) * 257)
    code, _, err = run_cli(capsys, "data", "make-pairs", tmp_path / "deep", tmp_path / "o", "--task", "jpeg")
    assert code == 1 and "d.png" in err and "8-bit" in err and not (tmp_path / "o").exists()
    code, _, err = run_cli(
        capsys, "data", "make-pairs", photos_dir, tmp_path / "o", "--task", "blur", "--split", "0.5,0.6"
    )
    assert code == 1 and "--split" in err
    code, _, err = run_cli(capsys, "data", "make-pairs", photos_dir, tmp_path / "o", "--task", "blur", "--crop", "500")
    assert code == 1 and "smaller than --crop 500" in err


# --- check ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def clean_dataset(tmp_path: Path, photos_dir: Path) -> Path:
    """24 grey -> colour pairs of 40x40 crops in train/ val/ test/ (A/ and B/ folders), split by photo."""
    out = tmp_path / "clean"
    make_pairs(photos_dir, out, TaskOptions("gray"), CropOptions(40, 6), (0.6, 0.2, 0.2), seed=0, workers=1)
    (out / "make_pairs.json").unlink()
    return out


def check_report(capsys: pytest.CaptureFixture[str], root: Path, tmp_path: Path) -> tuple[int, str, dict]:
    code, out, _ = run_cli(capsys, "data", "check", root, "--json", tmp_path / "report.json")
    return code, out, json.loads((tmp_path / "report.json").read_text())


def test_check_clean_dataset_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str], clean_dataset: Path) -> None:
    code, out, report = check_report(capsys, clean_dataset, tmp_path)
    assert code == 0 and "no problems found" in out
    assert report["ok"] and report["pairs"] == {"train": 18, "val": 6, "test": 6}
    assert report["formats"] == {"1 x uint8 + 3 x uint8": 30}
    assert report["alignment"]["median"] > 0.9


def test_check_finds_every_defect(tmp_path: Path, capsys: pytest.CaptureFixture[str], clean_dataset: Path) -> None:
    train_a, train_b = clean_dataset / "train" / "A", clean_dataset / "train" / "B"
    names = sorted(p.name for p in train_a.iterdir())
    # corrupt: a truncated PNG
    data = (train_b / names[0]).read_bytes()
    (train_b / names[0]).write_bytes(data[: len(data) // 2])
    # missing partner
    (train_b / names[1]).unlink()
    # size mismatch
    write_image(train_b / names[2], read_image(train_b / names[2])[:36])
    # duplicate across splits: a training pair copied into test/
    for side in ("A", "B"):
        (clean_dataset / "test" / side / "leak.png").write_bytes(
            (clean_dataset / "train" / side / names[3]).read_bytes()
        )
    # mixed format: one 16-bit target (written as TIFF)
    write_image((train_b / names[4]).with_suffix(".tif"), read_image(train_b / names[4]).astype(np.uint16) * 257)
    (train_b / names[4]).unlink()
    # misaligned: the wrong partner (another photo's crop) and a partner shifted by a quarter of its width
    other = sorted((clean_dataset / "val" / "B").iterdir())[0]
    (train_b / names[5]).write_bytes(other.read_bytes())
    b6 = read_image(train_b / names[6])
    write_image(train_b / names[6], np.roll(b6, 10, axis=1))

    code, out, report = check_report(capsys, clean_dataset, tmp_path)
    assert code == 1 and not report["ok"]
    by_kind: dict[str, list[str]] = {}
    for problem in report["problems"]:
        by_kind.setdefault(problem["kind"], []).append(problem["message"])
    assert set(by_kind) == {"unreadable", "missing_partner", "size_mismatch", "duplicate", "mixed_format", "misaligned"}
    assert names[0] in by_kind["unreadable"][0] and len(by_kind["unreadable"]) == 1
    assert names[1] in by_kind["missing_partner"][0]
    assert names[2] in by_kind["size_mismatch"][0] and "40x36" in by_kind["size_mismatch"][0]
    assert "leak.png" in by_kind["duplicate"][0] and "across splits test, train" in by_kind["duplicate"][0]
    assert len(by_kind["mixed_format"]) == 1 and names[4].split(".")[0] in by_kind["mixed_format"][0]
    odd = next(p for p in report["problems"] if p["kind"] == "mixed_format")  # the B file is the odd one, not A
    assert odd["message"].startswith(str(train_b / names[4].split(".")[0])) and "/A/" not in odd["message"]
    assert odd["files"] == [str(train_b / f"{names[4].split('.')[0]}.tif")]
    flagged = " ".join(by_kind["misaligned"])
    assert names[5].split(".")[0] in flagged and names[6].split(".")[0] in flagged
    assert len(by_kind["misaligned"]) == 2  # and no good pair
    for kind in by_kind:
        assert f"[{kind}]" in out


@pytest.mark.parametrize("task", [TaskOptions("edges"), TaskOptions("downscale", scale=4), TaskOptions("blur")])
def test_check_does_not_flag_honest_sky_crops_but_still_flags_defects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], task: TaskOptions
) -> None:
    """128-pixel make-pairs crops of the rocket photo's sky (a dark first column, or a few Canny specks beside the
    tower) scored 0.05 (edges) .. 0.70 (blur) and were flagged 'misaligned'; a wrong partner and a 16-pixel shift
    in the same dataset must still be."""
    root = tmp_path / task.task
    rng = np.random.default_rng(0)
    photos = {name: sample_photo(name) for name in ("rocket", "astronaut", "coffee", "chelsea")}
    for name, photo in photos.items():
        degraded = task.degrade(photo, np.random.default_rng(0))
        h, w = photo.shape[:2]
        boxes = [(19, 86), (233, 184)] if name == "rocket" else []  # the sky crops that were flagged
        boxes += [(int(rng.integers(0, h - 128)), int(rng.integers(0, w - 144))) for _ in range(4)]
        for k, (y, x) in enumerate(boxes):
            write_image(root / "A" / f"{name}_{k}.png", degraded[y : y + 128, x : x + 128])
            write_image(root / "B" / f"{name}_{k}.png", photo[y : y + 128, x : x + 128])
        if name == "coffee":  # B shifted by 16 of 128 pixels, for the second check below (a crop with enough
            y, x = boxes[2]  # structure: some edge maps' 16-pixel shifts score like true pairs, see docs/data.md)
            shifted = photo[y : y + 128, x + 16 : x + 144]
    code, out, report = check_report(capsys, root, tmp_path)
    assert code == 0 and report["ok"], out
    assert report["alignment"]["too_flat"] >= 1 and report["alignment"]["judged"] >= 14
    (root / "B" / "astronaut_0.png").write_bytes((root / "B" / "chelsea_1.png").read_bytes())  # a wrong partner
    write_image(root / "B" / "coffee_2.png", shifted)
    code, out, report = check_report(capsys, root, tmp_path)
    flagged = sorted(Path(p["files"][0]).stem for p in report["problems"] if p["kind"] == "misaligned")
    assert code == 1 and flagged == ["astronaut_0", "coffee_2"], out


def test_check_aligned_odd_width_and_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    crops = photo_crops("coffee", 32, 2)
    write_image(tmp_path / "al" / "a.png", np.concatenate([crops[0], 255 - crops[0]], axis=1))
    write_image(tmp_path / "al" / "b.png", np.concatenate([crops[1], crops[1]], axis=1)[:, :63])
    code, out, _ = run_cli(capsys, "data", "check", tmp_path / "al")
    assert code == 1 and "[odd_width]" in out and "b.png" in out and "aligned layout, 2 pair(s)" in out
    code, _, err = run_cli(capsys, "data", "check", tmp_path / "nothing")
    assert code == 1 and "does not exist" in err


def test_check_reads_nifti_volumes_slice_by_slice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Volumes that training reads (slice i of A with slice i of B) are checked the same way, not 'unreadable'."""
    nib = pytest.importorskip("nibabel")
    grey = photo_crops("astronaut", 32, 1)[0].astype(np.int16).mean(axis=2)
    volume = np.stack([np.roll(grey, 3 * z, axis=1) + 10 * z for z in range(4)], axis=2).astype(np.int16)
    for side, vol in (("A", volume), ("B", (volume * 2.0 - 100).astype(np.float32))):
        (tmp_path / "ds" / side).mkdir(parents=True)
        nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "ds" / side / "v.nii.gz"))
    code, out, _ = run_cli(capsys, "data", "check", tmp_path / "ds")
    assert code == 0 and "4 pair(s)" in out and "no problems found" in out
    code, out, _ = run_cli(capsys, "data", "check", tmp_path / "ds", "--nifti-axis", "0")
    assert code == 0 and "32 pair(s)" in out


# --- glyphs --------------------------------------------------------------------------------------------------------

MPL_FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def test_glyphs_renders_both_fonts_and_skips_missing_and_blank(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sans, serif = MPL_FONTS / "DejaVuSans.ttf", MPL_FONTS / "DejaVuSerif.ttf"
    (tmp_path / "chars.txt").write_text("Ag\n€中", encoding="utf-8")  # 中 is in neither DejaVu font
    code, out, err = run_cli(
        capsys, "data", "glyphs", sans, serif, tmp_path / "g", "--chars", "A ", "--chars-file", tmp_path / "chars.txt",
        "--range", "0030-0032", "--size", "64",
    )  # fmt: skip
    assert code == 0, err
    assert "wrote 6 glyph pair(s)" in out  # A g € 0 1 2
    assert "skipped 1 character(s) missing from a font: U+4E2D" in out
    assert "skipped 1 character(s) drawn blank: U+0020" in out
    layout, _, pairs = find_pairs(tmp_path / "g", "folders")
    assert layout == "folders" and sorted(p.name for p in pairs) == [
        "U+0030", "U+0031", "U+0032", "U+0041", "U+0067", "U+20AC",
    ]  # fmt: skip
    a, b = read_image(tmp_path / "g" / "A" / "U+0041.png"), read_image(tmp_path / "g" / "B" / "U+0041.png")
    assert a.shape == b.shape == (64, 64, 1) and a.dtype == np.uint8
    for glyph in (a, b):
        ink = glyph[:, :, 0] < 128
        assert 0.05 < ink.mean() < 0.5
        ys, xs = np.nonzero(ink)
        assert abs(ys.mean() - 32) < 6 and abs(xs.mean() - 32) < 6  # centred
    assert np.mean(a != b) > 0.03  # serif and sans differ


def test_glyphs_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sans = MPL_FONTS / "DejaVuSans.ttf"
    (tmp_path / "bad.ttf").write_bytes(b"not a font")
    code, _, err = run_cli(capsys, "data", "glyphs", sans, tmp_path / "bad.ttf", tmp_path / "g", "--chars", "A")
    assert code == 1 and "bad.ttf" in err and "font" in err
    code, _, err = run_cli(capsys, "data", "glyphs", sans, sans, tmp_path / "g", "--range", "zz")
    assert code == 1 and "--range" in err
    code, _, err = run_cli(capsys, "data", "glyphs", sans, sans, tmp_path / "g", "--chars", "中")
    assert code == 1 and "none of the 1 character" in err and not (tmp_path / "g").exists()
    code, _, _ = run_cli(
        capsys, "data", "glyphs", sans, sans, tmp_path / "al", "--chars", "xy", "--aligned", "--size", "32"
    )
    assert code == 0 and read_image(tmp_path / "al" / "U+0078.png").shape == (32, 64, 1)


def test_glyphs_warns_once_when_glyphs_are_clipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --font-size larger than the --size canvas clips glyphs: written, with one warning line counting them."""
    sans, serif = MPL_FONTS / "DejaVuSans.ttf", MPL_FONTS / "DejaVuSerif.ttf"
    base = ["data", "glyphs", sans, serif, tmp_path / "g", "--chars", "AMW.", "--size", "32"]
    code, out, err = run_cli(capsys, *base, "--font-size", "64")
    assert code == 0 and "wrote 4 glyph pair(s)" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "warning: 3 glyph(s)" in lines[0] and "--font-size" in lines[0], err
    assert "U+0041 U+004D U+0057" in lines[0] and "U+002E" not in lines[0]  # the full stop fits
    code, _, err = run_cli(capsys, *base, "--overwrite")  # the default size fits
    assert code == 0 and err == ""


def test_glyphs_overwrite_removes_an_earlier_runs_glyphs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rendering other characters into the same folder with --overwrite leaves only the new pairs."""
    sans, serif = MPL_FONTS / "DejaVuSans.ttf", MPL_FONTS / "DejaVuSerif.ttf"
    base = ["data", "glyphs", sans, serif, tmp_path / "g", "--size", "32"]
    assert run_cli(capsys, *base, "--chars", "abc")[0] == 0
    code, out, _ = run_cli(capsys, *base, "--chars", "xy", "--overwrite")
    assert code == 0 and "removed 6 file(s)" in out
    assert sorted(p.name for p in (tmp_path / "g").rglob("*.png")) == ["U+0078.png"] * 2 + ["U+0079.png"] * 2
