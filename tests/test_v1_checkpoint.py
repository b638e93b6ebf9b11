"""A checkpoint written by diptych's format 1 (before the manifest) still translates, evaluates, exports and resumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from diptych.checkpoint import read_checkpoint_config, read_manifest, resolve_checkpoint
from diptych.config import FORMAT_VERSION, load_config
from diptych.errors import ConfigError
from diptych.export import export_generator
from diptych.train import resume_config, train
from diptych.translate import Translator

from .conftest import ACROSS_CPUS
from .test_cli import assert_one_error_line, run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "v1_checkpoint"


@pytest.fixture
def v1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the fixture folder, made the working directory (the run stores its data root as 'data')."""
    folder = tmp_path / "v1"
    shutil.copytree(FIXTURE, folder)
    monkeypatch.chdir(folder)
    return folder


def test_v1_checkpoint_translates_as_when_it_was_written(v1: Path) -> None:
    expected = load_file(v1 / "expected.safetensors")
    translator = Translator.load(v1 / "run", device="cpu", mode="eval", precision="fp32")
    torch.testing.assert_close(translator.translate_tensor(expected["input"]), expected["output"], rtol=0, atol=1e-6)


def test_v1_checkpoint_translates_and_evaluates_from_the_cli(v1: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["translate", "run", "data/img_0.png", "--out", "out", "--device", "cpu"], capsys)
    assert code == 0, err
    out = np.asarray(Image.open(v1 / "out" / "img_0.png"))
    assert out.shape == (32, 64, 3)  # the whole aligned image is the input: same size out
    code, _, err = run_cli(["evaluate", "run", "data", "--out", "ev", "--metrics", "l1,psnr", "--no-progress"], capsys)
    assert code == 0, err
    summary = json.loads((v1 / "ev" / "metrics.json").read_text())
    assert summary["metrics"]["psnr"]["n"] == 4 and 0 < summary["metrics"]["l1"]["mean"] < 2


def test_v1_checkpoint_exports(v1: Path) -> None:
    result = export_generator(v1 / "run", v1 / "g.pt", "torchscript", check_sizes=[(32, 32), (27, 45)])
    assert result.path.is_file() and result.max_abs_diff <= 1e-4


def test_v1_checkpoint_resumes_exactly(v1: Path) -> None:
    """3 steps by the old code + 1 resumed step by this code == 4 steps straight by this code, to the
    rounding of the CPU the fixture was written on (bit for bit on that one)."""
    resumed = train(resume_config("run", {"train": {"max_steps": 4}}), "run", resume=True, progress=False)
    assert resumed.steps == 4
    config = load_config(v1 / "run" / "config.json")
    config.train.max_steps = 4
    train(config, "straight", progress=False)
    for net in ("generator", "discriminator"):
        a = load_file(resolve_checkpoint(v1 / "run") / f"{net}.safetensors")
        b = load_file(resolve_checkpoint(v1 / "straight") / f"{net}.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(
                a[key], b[key], rtol=0, atol=ACROSS_CPUS, msg=lambda m, where=f"{net} {key}": f"{where}: {m}"
            )


def test_v1_checkpoint_reads_as_the_current_format(v1: Path) -> None:
    """No manifest, method options in "train", every generator family's fields in "generator": all come out of the
    one chain of migrations."""
    folder = resolve_checkpoint(v1 / "run")
    assert not (folder / "manifest.json").exists()
    config = read_checkpoint_config(folder)
    assert config.format_version == FORMAT_VERSION == 3
    assert config.method.lambda_l1 == 100.0 and config.method.gan_loss == "vanilla"
    assert json.loads(config.to_json())["generator"] == {
        "arch": "unet",
        "depth": 4,
        "dropout": 0.5,
        "in_channels": 3,
        "ngf": 4,
        "norm": "batch",
        "out_channels": 3,
        "skip": "off",  # (a later field: its default)
        "upsample": "transpose",
    }
    manifest = read_manifest(folder, config)
    assert manifest["format_version"] == FORMAT_VERSION and manifest["generators"] == {"AtoB": "generator"}
    assert manifest["networks"]["generator"]["spec"]["ngf"] == 4
    assert manifest["domains"]["A"]["channels"] == manifest["domains"]["B"]["channels"] == 3


def test_a_direction_the_checkpoint_cannot_serve_is_one_line(v1: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["translate", "run", "data/img_0.png", "--out", "out", "--direction", "BtoA"], capsys)
    assert code == 1
    assert_one_error_line(err, "--direction BtoA", "translates AtoB only", "pass --direction AtoB")
    assert not (v1 / "out").exists()
    with pytest.raises(ConfigError, match="translates AtoB only"):
        Translator.load(v1 / "run", direction="BtoA")
    code, _, err = run_cli(["export", "run", "--out", "g.pt", "--format", "torchscript", "--direction", "BtoA"], capsys)
    assert code == 1 and "translates AtoB only" in err and not (v1 / "g.pt").exists()
