"""`diptych data` tools: combine/split, pair builders, the dataset checker and glyph rendering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diptych.cli import main
from diptych.data import find_pairs
from diptych.data.io import read_image, write_image

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
    assert run_cli(capsys, "data", "split", tmp_path / "al", tmp_path / "out")[0] == 0
    code, _, err = run_cli(capsys, "data", "split", tmp_path / "al", tmp_path / "out")
    assert code == 1 and "already exists" in err and "--overwrite" in err
    assert run_cli(capsys, "data", "split", tmp_path / "al", tmp_path / "out", "--overwrite")[0] == 0
    write_image(tmp_path / "odd" / "b.png", crop[:, :31])
    code, _, err = run_cli(capsys, "data", "split", tmp_path / "odd", tmp_path / "out2")
    assert code == 1 and "odd" in err and "b.png" in err
