"""A CycleGAN checkpoint written by diptych's format 2 still translates both ways, evaluates, exports and resumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from diptych.checkpoint import load_training_state, read_checkpoint_config, read_manifest, resolve_checkpoint
from diptych.config import FORMAT_VERSION, load_config
from diptych.export import export_generator
from diptych.train import resume_config, train
from diptych.translate import Translator

from .conftest import ACROSS_CPUS
from .test_cli import run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "v2_checkpoint"
NETWORKS = ("G_A", "G_B", "D_A", "D_B")


@pytest.fixture
def v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the fixture folder, made the working directory (the run stores its data root as 'data')."""
    folder = tmp_path / "v2"
    shutil.copytree(FIXTURE, folder)
    monkeypatch.chdir(folder)
    return folder


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_v2_checkpoint_translates_as_when_it_was_written(v2: Path, direction: str) -> None:
    expected = load_file(v2 / "expected.safetensors")
    translator = Translator.load(v2 / "run", device="cpu", mode="eval", precision="fp32", direction=direction)
    output = translator.translate_tensor(expected[f"{direction}_input"])
    torch.testing.assert_close(output, expected[f"{direction}_output"], rtol=0, atol=1e-6)


def test_v2_checkpoint_translates_and_evaluates_from_the_cli(v2: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["translate", "run", "data/testB/b_3.png", "--out", "out", "--device", "cpu", "--direction", "BtoA"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert np.asarray(Image.open(v2 / "out" / "b_3.png")).shape == (32, 32)  # colour B -> grey A
    code, _, err = run_cli(["evaluate", "run", "data", "--out", "ev", "--no-progress"], capsys)
    assert code == 0, err
    summary = json.loads((v2 / "ev" / "metrics.json").read_text())
    a_to_b = summary["directions"]["AtoB"]["metrics"]
    assert a_to_b["cycle_l1"]["n"] == 2 and 0 < a_to_b["cycle_l1"]["mean"] < 2
    assert a_to_b["psnr"]["n"] == 1  # a_5 has a partner in testB


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_v2_checkpoint_exports(v2: Path, direction: str) -> None:
    out = v2 / f"{direction}.pt"
    result = export_generator(v2 / "run", out, "torchscript", check_sizes=[(32, 32), (27, 45)], direction=direction)
    assert result.path.is_file() and result.max_abs_diff <= 1e-4
    exported = Translator.load(out, device="cpu")
    assert exported.in_channels == (1 if direction == "AtoB" else 3)


def test_v2_checkpoint_resumes_exactly(v2: Path) -> None:
    """3 steps by the old code + 1 resumed step by this code == 4 steps straight by this code, pools included, to
    the rounding of the CPU the fixture was written on (bit for bit on that one)."""
    resumed = train(resume_config("run", {"train": {"max_steps": 4}}), "run", resume=True, progress=False)
    assert resumed.steps == 4
    config = load_config(v2 / "run" / "config.json")
    config.train.max_steps = 4
    train(config, "straight", progress=False)
    for net in NETWORKS:
        a = load_file(resolve_checkpoint(v2 / "run") / f"{net}.safetensors")
        b = load_file(resolve_checkpoint(v2 / "straight") / f"{net}.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(
                a[key], b[key], rtol=0, atol=ACROSS_CPUS, msg=lambda m, where=f"{net} {key}": f"{where}: {m}"
            )
    pools = [load_training_state(resolve_checkpoint(v2 / run))["recipe"] for run in ("run", "straight")]
    for name in ("fake_A", "fake_B"):
        for x, y in zip(pools[0][name]["images"], pools[1][name]["images"], strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=50 * ACROSS_CPUS)  # images made by those weights


def test_v2_checkpoint_reads_as_the_current_format(v2: Path) -> None:
    """Format 2 stored every generator family's fields; read, the configuration holds the ResNet's own only."""
    folder = resolve_checkpoint(v2 / "run")
    assert '"n_blocks_global": 9' in (folder / "config.json").read_text()  # (format 2)
    config = read_checkpoint_config(folder)
    assert config.format_version == FORMAT_VERSION == 3 and config.recipe == "cyclegan"
    assert json.loads(config.to_json())["generator"] == {
        "arch": "resnet",
        "dropout": 0.0,
        "in_channels": 1,
        "n_blocks": 2,
        "ngf": 4,
        "norm": "instance",
        "out_channels": 3,
    }
    manifest = read_manifest(folder, config)
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["generators"] == {"AtoB": "G_A", "BtoA": "G_B"}
    assert manifest["networks"]["G_B"]["spec"]["in_channels"] == 3
    assert manifest["domains"]["A"]["channels"] == 1 and manifest["domains"]["B"]["channels"] == 3
