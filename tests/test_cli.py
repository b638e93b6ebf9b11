"""The `diptych` command line: help, one-line errors for every bad input, and train -> translate -> info."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from diptych.cli import main
from diptych.data.io import read_image, write_image

from .conftest import photo_crops, write_aligned
from .test_data import BAD_KINDS, make_bad_dataset

TINY = [
    "--depth", "4", "--ngf", "8", "--ndf", "8", "--n-layers", "2",
    "--preprocess", "crop", "--crop-size", "32", "--workers", "0", "--no-progress",
]  # fmt: skip


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Call main() in-process; return (exit code, stdout, stderr). argparse exits are turned into codes."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, *names: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith("diptych: error: "), line
    for name in names:
        assert name in line, f"{name!r} not named in {line!r}"
    return line


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def squash(text: str) -> str:
    """Help text with argparse's line wrapping undone."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained for 3 steps through the CLI (shared by the translate tests; never modified)."""
    root = tmp_path_factory.mktemp("trained")
    crops = photo_crops("astronaut", 48, 4)
    write_aligned(root / "data", [(c, 255 - c) for c in crops])
    code = main(["train", "--data", str(root / "data"), "--run-dir", str(root / "run"), "--max-steps", "3", *TINY])
    assert code == 0
    return root / "run"


# ---------------------------------------------------------------------------------------------------------------
# Help


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["train", "translate", "demo", "convert-reference", "info", "--version"]),
        (
            ["train"],
            [
                "--data DIR",
                "--direction {AtoB,BtoA}",
                "(default: AtoB)",
                "--gan-loss {vanilla,lsgan,hinge,wgangp}",
                "(default: pix2pix: vanilla, pix2pix-",  # (argparse may wrap after a name's hyphen)
                "lsgan, pix2pixhd: lsgan, cyclegan: lsgan)",
                "--upsample bilinear --spectral-norm --batch-size 4 --ema 0.999 --lr 0.0004;",
                "--lr-policy {linear,step,cosine,plateau}",
                "(default: linear)",
                "--resume RUN_DIR",
                "--run-dir",
                "--config",
                "--crop-size N",
                "(default: 256)",
                "--lambda-l1 X",
                "(default: pix2pix: 100.0, pix2pix-",
                "100.0, pix2pixhd: 0.0)",
                "--skip-bad, --no-skip-bad",
                "--netG {compact_x2,compact_x3,compact_x4,compact_x8,msrresnet_x2,msrresnet_x3,msrresnet_x4,"
                "msrresnet_x8,resnet_6blocks,resnet_9blocks,rrdbnet_x1,rrdbnet_x2,rrdbnet_x4,unet_128,unet_256}",
                # each recipe's defaults under their own flags (the generator's norm is --g-norm, not --d-norm)
                "pix2pixhd: --arch hd --ngf 32 --g-norm instance --num-d 2 --d-norm instance;",
                "cyclegan: --arch resnet --n-blocks 9 --g-norm instance --dropout 0.0 --d-norm instance",
                "diptych train --resume runs/facades",
            ],
        ),
        (
            ["translate"],
            ["checkpoint", "INPUT", "--out", "--batch-size", "(default: 4)", "--test-mode {eval,paper}", "--aligned"],
        ),
        (["demo"], ["--out", "(default: demo_out)", "--steps", "(default: 800", "--crop-size", "--overwrite"]),
        (["convert-reference"], ["pth", "out", "--no-dropout", "--direction {AtoB,BtoA}", "--test-mode"]),
        (["info"], ["checkpoint", "run folder, checkpoint folder or .safetensors file"]),
    ],
    ids=["top", "train", "translate", "demo", "convert-reference", "info"],
)
def test_help(capsys: pytest.CaptureFixture[str], argv: list[str], expected: list[str]) -> None:
    code, out, err = run_cli([*argv, "--help"], capsys)
    assert code == 0
    assert err == ""
    text = squash(out)
    assert text.startswith("usage: diptych")
    for item in expected:
        assert item in text, f"{item!r} missing from `diptych {' '.join(argv)} --help`"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.startswith("diptych ")


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli([], capsys)
    assert code == 2 and "COMMAND" in err


# ---------------------------------------------------------------------------------------------------------------
# Bad data through `diptych train`


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_train_on_bad_data_fails_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    root, overrides, names = make_bad_dataset(kind, tmp_path / "ds")
    run = tmp_path / "run"
    argv = ["train", "--data", root, "--max-steps", "1", "--run-dir", run, *TINY]
    argv += ["--crop-size", overrides["crop_size"]]  # the last one wins
    code, _, err = run_cli(argv, capsys)
    assert code == 1
    assert_one_error_line(err, *names)
    assert not (run / "checkpoints").exists()
    assert not list(tmp_path.rglob("*.safetensors"))


def test_train_skip_bad_trains_on_the_good_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, _, (bad,) = make_bad_dataset("truncated_png", tmp_path / "ds")
    run = tmp_path / "run"
    code, out, err = run_cli(
        ["train", "--data", root, "--max-steps", "1", "--run-dir", run, "--skip-bad", *TINY], capsys
    )
    assert code == 0, err
    assert "skipped 1 bad pair(s)" in err and bad in err
    assert "trained 1 steps" in out
    assert (run / "checkpoints" / "step_00000001" / "generator.safetensors").is_file()


def test_bad_data_error_from_the_installed_command(tmp_path: Path) -> None:
    """The real entry point in a fresh process: exit 1, one stderr line (no traceback, no warnings)."""
    root, _, (bad,) = make_bad_dataset("truncated_jpeg", tmp_path / "ds")
    run = tmp_path / "run"
    argv = ["train", "--data", str(root), "--max-steps", "1", "--run-dir", str(run), *TINY]
    proc = subprocess.run(
        [sys.executable, "-m", "diptych.cli", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert_one_error_line(proc.stderr, bad, "truncated")
    assert proc.stdout == ""
    assert not (run / "checkpoints").exists()


# ---------------------------------------------------------------------------------------------------------------
# Bad options


def test_unknown_gan_loss_is_an_argparse_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["train", "--data", tmp_path, "--gan-loss", "wasserstein"], capsys)
    assert code == 2
    assert "--gan-loss" in err and "invalid choice: 'wasserstein'" in err


def test_load_size_smaller_than_crop_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], aligned_dataset: Path
) -> None:
    run = tmp_path / "run"
    argv = ["train", "--data", aligned_dataset, "--run-dir", run, "--max-steps", "1", "--workers", "0"]
    code, _, err = run_cli([*argv, "--load-size", "100", "--crop-size", "256"], capsys)
    assert code == 1
    assert_one_error_line(err, "--load-size 100", "--crop-size 256")
    assert not (run / "checkpoints").exists()


@pytest.mark.parametrize(
    ("content", "names"),
    [
        ({"train": {"lr": 0.001, "learning_rate": 0.1}}, ["learning_rate", "'train'"]),
        ({"generator": {"depth": 4}, "optimizer": "adam"}, ["'optimizer'"]),
        ("{not json", ["not valid JSON"]),
    ],
    ids=["unknown-key-in-section", "unknown-section", "invalid-json"],
)
def test_bad_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], aligned_dataset: Path, content: object, names: list[str]
) -> None:
    cfg = tmp_path / "my_config.json"
    cfg.write_text(content if isinstance(content, str) else json.dumps(content))
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--config", cfg, "--data", aligned_dataset, "--run-dir", run, *TINY], capsys)
    assert code == 1
    assert_one_error_line(err, str(cfg), *names)
    assert not (run / "checkpoints").exists()


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "nope.json"
    code, _, err = run_cli(["train", "--config", cfg, "--run-dir", tmp_path / "run"], capsys)
    assert code == 1
    assert_one_error_line(err, str(cfg))


def test_train_without_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["train", "--run-dir", tmp_path / "run", "--max-steps", "1"], capsys)
    assert code == 1
    assert_one_error_line(err, "--data")


# ---------------------------------------------------------------------------------------------------------------
# train -> translate -> info


def test_train_writes_a_checkpoint(trained_run: Path) -> None:
    ckpt = trained_run / "checkpoints"
    assert (ckpt / "LATEST").read_text().strip() == "step_00000003"
    assert {p.name for p in (ckpt / "step_00000003").iterdir()} == {
        "config.json",
        "generator.safetensors",
        "discriminator.safetensors",
        "training_state.pt",
        "manifest.json",
    }
    log = [json.loads(line) for line in (trained_run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 3 and log[-1]["G_L1"] > 0  # logged every 10 steps and at the end
    stored = json.loads((trained_run / "config.json").read_text())
    assert stored["generator"]["in_channels"] == 3 and stored["data"]["sample_type"] == "uint8"


def test_translate_keeps_the_input_size(tmp_path: Path, capsys: pytest.CaptureFixture[str], trained_run: Path) -> None:
    photo = photo_crops("coffee", 64, 1)[0][:37, :53]
    src = write_image(tmp_path / "in" / "odd.png", photo)
    gray = write_image(tmp_path / "in" / "sub" / "gray.png", photo[:, :45, :1])  # converted to the model's 3 channels
    out = tmp_path / "out"
    code, stdout, err = run_cli(["translate", trained_run, src.parent, "--out", out, "--no-progress"], capsys)
    assert code == 0, err
    assert "wrote 2 image(s)" in stdout
    result = read_image(out / "odd.png")
    assert result.shape == (37, 53, 3) and result.dtype == np.uint8
    assert read_image(out / "sub" / "gray.png").shape == (37, 45, 3)
    assert src.read_bytes() == write_image(tmp_path / "again.png", photo).read_bytes()  # input untouched
    # single file, another format, through a checkpoint folder and through the weights file
    weights = trained_run / "checkpoints" / "step_00000003" / "generator.safetensors"
    for model, folder in ((weights.parent, "out_folder"), (weights, "out_file")):
        code, _, err = run_cli(["translate", model, gray, "--out", tmp_path / folder, "--format", "jpg"], capsys)
        assert code == 0, err
        with Image.open(tmp_path / folder / "gray.jpg") as img:
            assert img.size == (45, 37) and img.mode == "RGB"
    args = ["--format", "tif", "--tiff-compression", "zstd", "--no-progress"]
    code, _, err = run_cli(["translate", trained_run, src, "--out", tmp_path / "tif", *args], capsys)
    assert code == 0, err
    assert np.array_equal(read_image(tmp_path / "tif" / "odd.tif"), result)


def test_train_and_translate_16bit_grayscale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Channels and bit depth come from the data: a 1-channel uint16 model writes 16-bit grayscale PNGs."""
    rng = np.random.default_rng(0)
    for i in range(2):
        a = rng.integers(0, 65536, (40, 40, 1)).astype(np.uint16)
        write_image(tmp_path / "data" / "A" / f"p{i}.png", a)
        write_image(tmp_path / "data" / "B" / f"p{i}.png", 65535 - a)
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--data", tmp_path / "data", "--run-dir", run, "--max-steps", "2", *TINY], capsys)
    assert code == 0, err
    code, out, _ = run_cli(["info", run], capsys)
    info = json.loads(out)
    assert (info["generator"]["in_channels"], info["generator"]["out_channels"]) == (1, 1)
    assert info["data"]["sample_type"] == "uint16"
    src = write_image(tmp_path / "scan.png", rng.integers(0, 65536, (37, 53, 1)).astype(np.uint16))
    code, _, err = run_cli(["translate", run, src, "--out", tmp_path / "out", "--no-progress"], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "out" / "scan.png") as img:
        assert img.mode == "I;16" and img.size == (53, 37)
    result = read_image(tmp_path / "out" / "scan.png")
    assert result.dtype == np.uint16 and result.shape == (37, 53, 1)


def test_info_prints_the_stored_config(capsys: pytest.CaptureFixture[str], trained_run: Path) -> None:
    code, out, err = run_cli(["info", trained_run], capsys)
    checkpoint = trained_run / "checkpoints" / "step_00000003"
    assert code == 0 and err == f"checkpoint: {checkpoint}\ninference weights: raw (the weights as trained)\n"
    info = json.loads(out)
    assert info["generator"]["depth"] == 4
    assert info["generator"]["ngf"] == 8
    assert info["generator"]["in_channels"] == 3 and info["generator"]["out_channels"] == 3
    assert info["discriminator"]["n_layers"] == 2
    assert info["data"]["crop_size"] == 32 and info["train"]["max_steps"] == 3
    weights = trained_run / "checkpoints" / "step_00000003" / "generator.safetensors"
    code, out, _ = run_cli(["info", weights], capsys)
    assert code == 0 and json.loads(out) == info


# ---------------------------------------------------------------------------------------------------------------
# translate / info errors


def _bad_checkpoint(kind: str, tmp_path: Path, trained_run: Path) -> tuple[Path, Path]:
    """Return (CHECKPOINT argument, the file or folder the error must name)."""
    real = trained_run / "checkpoints" / "step_00000003" / "generator.safetensors"
    if kind == "missing":
        path = tmp_path / "no_such_run"
        return path, path
    if kind == "not_a_checkpoint":
        path = tmp_path / "just_a_folder"
        path.mkdir()
        write_image(path / "x.png", np.zeros((8, 8, 3), np.uint8))
        return path, path
    if kind == "truncated_file":
        path = tmp_path / "generator.safetensors"
        data = real.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, path
    if kind == "truncated_in_run":
        run = tmp_path / "run_copy"
        shutil.copytree(trained_run, run)
        path = run / "checkpoints" / "step_00000003" / "generator.safetensors"
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return run, path
    if kind == "foreign_safetensors":
        path = tmp_path / "other.safetensors"
        save_file({"weight": torch.zeros(4, 4)}, str(path))
        return path, path
    if kind == "foreign_in_run":
        run = tmp_path / "run_copy"
        shutil.copytree(trained_run, run)
        path = run / "checkpoints" / "step_00000003" / "generator.safetensors"
        save_file({"weight": torch.zeros(4, 4)}, str(path))
        return run, path
    if kind == "pth":
        path = tmp_path / "latest_net_G.pth"
        torch.save({"model.0.weight": torch.zeros(2)}, path)
        return path, path
    raise AssertionError(kind)


CHECKPOINT_KINDS = (
    "missing",
    "not_a_checkpoint",
    "truncated_file",
    "truncated_in_run",
    "foreign_safetensors",
    "foreign_in_run",
    "pth",
)


@pytest.mark.parametrize("kind", CHECKPOINT_KINDS)
def test_translate_bad_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trained_run: Path, kind: str
) -> None:
    checkpoint, named = _bad_checkpoint(kind, tmp_path, trained_run)
    image = write_image(tmp_path / "in.png", photo_crops("coffee", 40, 1)[0])
    out = tmp_path / "out"
    code, _, err = run_cli(["translate", checkpoint, image, "--out", out, "--no-progress"], capsys)
    assert code == 1
    assert_one_error_line(err, str(named))
    assert not out.exists()


@pytest.mark.parametrize("kind", ["missing", "not_a_checkpoint", "truncated_file", "foreign_safetensors", "pth"])
def test_info_bad_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str], trained_run: Path, kind: str) -> None:
    checkpoint, named = _bad_checkpoint(kind, tmp_path, trained_run)
    code, out, err = run_cli(["info", checkpoint], capsys)
    assert code == 1 and out == ""
    assert_one_error_line(err, str(named))


def test_translate_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str], trained_run: Path) -> None:
    out = tmp_path / "out"
    missing = tmp_path / "missing.png"
    code, _, err = run_cli(["translate", trained_run, missing, "--out", out], capsys)
    assert code == 1
    assert_one_error_line(err, str(missing))
    broken = tmp_path / "in" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    write_image(tmp_path / "in" / "fine.png", photo_crops("coffee", 40, 1)[0])
    code, _, err = run_cli(["translate", trained_run, broken.parent, "--out", out, "--no-progress"], capsys)
    assert code == 1
    assert_one_error_line(err, str(broken))
    code, stdout, err = run_cli(
        ["translate", trained_run, broken.parent, "--out", out, "--no-progress", "--skip-bad"], capsys
    )
    assert code == 0 and "wrote 1 image(s)" in stdout and str(broken) in err
    assert sorted(p.name for p in out.iterdir()) == ["fine.png"]
    # Every input skipped: the skipped file is listed, and the command fails instead of reporting success.
    code, stdout, err = run_cli(
        ["translate", trained_run, broken, "--out", tmp_path / "none", "--no-progress", "--skip-bad"], capsys
    )
    assert code == 1 and "wrote" not in stdout and str(broken) in err
    assert err.strip().splitlines()[-1].startswith("diptych: error: no image was translated: --skip-bad skipped every")
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())


def test_translate_refuses_to_overwrite_its_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trained_run: Path
) -> None:
    folder = tmp_path / "images"
    src = write_image(folder / "photo.png", photo_crops("coffee", 40, 1)[0])
    before = src.read_bytes()
    code, _, err = run_cli(["translate", trained_run, src, "--out", folder, "--no-progress"], capsys)
    assert code == 1
    line = assert_one_error_line(err, str(src))
    assert "overwrite" in line
    assert src.read_bytes() == before


def test_train_into_a_run_with_checkpoints_needs_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trained_run: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = snapshot(run)
    data = json.loads((run / "config.json").read_text())["data"]["root"]
    code, _, err = run_cli(["train", "--data", data, "--run-dir", run, "--max-steps", "5", *TINY], capsys)
    assert code == 1
    assert_one_error_line(err, str(run), "--resume")
    assert snapshot(run) == before


@pytest.mark.parametrize("extra", [["--run-dir", "elsewhere"], ["--netG", "unet_128"], ["--ngf", "16"]])
def test_resume_rejects_architecture_and_location_flags(
    capsys: pytest.CaptureFixture[str], trained_run: Path, extra: list[str]
) -> None:
    before = snapshot(trained_run)
    code, _, err = run_cli(["train", "--resume", trained_run, *extra], capsys)
    assert code == 1
    assert_one_error_line(err, extra[0])
    assert snapshot(trained_run) == before


def test_config_from_another_run_takes_channels_from_the_new_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trained_run: Path
) -> None:
    """Reusing a 3-channel run's config.json on 1-channel data works: channels come from the data."""
    gray = [(c[:, :, :1], c[:, :, 1:2]) for c in photo_crops("coffee", 32, 3)]
    data = write_aligned(tmp_path / "gray", gray)
    code, _, err = run_cli(
        [
            "train",
            "--config",
            trained_run / "config.json",
            "--data",
            data,
            "--run-dir",
            tmp_path / "run",
            "--max-steps",
            "1",
        ],
        capsys,
    )
    assert code == 0, err
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["generator"]["in_channels"] == 1 and stored["generator"]["depth"] == 4


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"train": {"lr": "fast"}}', ["train.lr", "float"]),
        ('{"train": 5}', ["section 'train'"]),
        ('{"data": {"flip": "no"}}', ["data.flip", "bool"]),
        ('{"train": {"epochs": 2.5}}', ["train.epochs", "int"]),
    ],
)
def test_config_values_are_type_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, words: list[str]
) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(content)
    code, _, err = run_cli(["train", "--config", cfg, "--data", tmp_path, "--run-dir", tmp_path / "run"], capsys)
    assert code == 1
    assert_one_error_line(err, "c.json", *words)
    assert not (tmp_path / "run").exists()


def test_negative_seed_is_an_option_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["train", "--data", tmp_path, "--seed", "-1", "--run-dir", tmp_path / "run"], capsys)
    assert code == 1
    assert_one_error_line(err, "--seed")
    assert not (tmp_path / "run").exists()


def test_translate_with_the_discriminator_file_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trained_run: Path
) -> None:
    disc = next((trained_run / "checkpoints").glob("step_*")) / "discriminator.safetensors"
    code, _, err = run_cli(["translate", disc, disc, "--out", tmp_path / "o"], capsys)
    assert code == 1
    assert_one_error_line(err, "discriminator", "generator.safetensors")


def test_demo_refuses_to_delete_a_folder_it_did_not_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    code, _, err = run_cli(["demo", "--out", tmp_path, "--overwrite", "--steps", "1"], capsys)
    assert code == 1
    assert_one_error_line(err, "not a diptych demo folder")
    assert (tmp_path / "precious.txt").read_text() == "keep me"
