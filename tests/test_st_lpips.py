"""ST-LPIPS (shift-tolerant LPIPS): weights from the installed stlpips-pytorch package or a file, its values against
the package's own code, the perceptual training loss, and what happens without the package."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from skimage.filters import gaussian

from diptych.data.io import to_tensor
from diptych.errors import ConfigError
from diptych.losses import STLPIPSLoss
from diptych.metrics import lpips as lpips_module
from diptych.metrics.lpips import load_st_lpips, lpips_distance, st_lpips_available, st_lpips_weights
from diptych.nets.blurpool import BlurDownsample

from .conftest import photo_crops, tiny_config, write_aligned
from .test_cli import assert_one_error_line, run_cli

PACKAGE_ONLY_IMPORTS = ("torchvision", "torchvision.models", "IPython", "torchsummary")


def crop_pair(size: int = 64, shift: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Two overlapping crops of a real photo, `shift` pixels apart, as 3xHxW in [-1, 1]."""
    (photo,) = photo_crops("astronaut", size + shift, 1, seed=5)
    return to_tensor(photo[:size, :size]), to_tensor(photo[shift:, shift:][:size, :size])


@pytest.fixture
def stlpips_code(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """The package's own stlpips module. Its shift-tolerant path never uses torchvision, IPython or torchsummary
    (none installed here), which its modules import at the top: empty stand-ins satisfy those imports."""
    for name in PACKAGE_ONLY_IMPORTS:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setattr(sys.modules["IPython"], "embed", None, raising=False)
    monkeypatch.setattr(sys.modules["torchsummary"], "summary", None, raising=False)
    from stlpips_pytorch import stlpips

    yield stlpips
    for name in [n for n in sys.modules if n.startswith("stlpips_pytorch")]:
        del sys.modules[name]  # (imported against the stand-ins: not left for other tests)


@pytest.fixture
def no_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if stlpips-pytorch were not installed."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        lpips_module.importlib.util, "find_spec", lambda name, *a: None if name == "stlpips_pytorch" else real(name, *a)
    )


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_loads_from_the_installed_package_frozen_and_in_eval_mode(net: str) -> None:
    path = st_lpips_weights(net)
    assert path.name == f"{net}_shift_tolerant.pth" and "stlpips_pytorch" in path.parts
    model = load_st_lpips(net)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.title == f"ST-LPIPS-{net}"
    blur = [m for m in model.features if isinstance(m, BlurDownsample)]
    assert len(blur) == (3 if net == "alex" else 4)
    kernel = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    assert all(torch.equal(b.filt[0, 0], kernel) for b in blur)  # the file's filters are the binomial ones


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_zero_for_identical_images_and_growing_with_blur_and_noise(net: str) -> None:
    model = load_st_lpips(net)
    (photo,) = photo_crops("chelsea", 64, 1, seed=2)
    x = to_tensor(photo)
    assert lpips_distance(model, x, x) == pytest.approx(0.0, abs=1e-7)
    blurred = [
        lpips_distance(model, to_tensor(gaussian(photo / 255.0, sigma=s, channel_axis=2).astype(np.float32)), x)
        for s in (0.7, 1.5, 3.0)
    ]
    assert 0 < blurred[0] < blurred[1] < blurred[2]
    rng = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=rng)
    noisy = [lpips_distance(model, (x + s * noise).clamp(-1, 1), x) for s in (0.02, 0.08, 0.3)]
    assert 0 < noisy[0] < noisy[1] < noisy[2]
    grey = x.mean(0, keepdim=True)
    assert lpips_distance(model, grey, grey) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_equals_the_package_own_code_on_a_real_pair(net: str, stlpips_code: types.ModuleType) -> None:
    """The same number as stlpips.LPIPS(net, variant="shift_tolerant"), layer by layer and in the end."""
    x, y = crop_pair()
    reference = stlpips_code.LPIPS(net=net, variant="shift_tolerant", verbose=False)
    ours = load_st_lpips(net)
    with torch.no_grad():
        expected = float(reference(x[None], y[None]).flatten()[0])
        theirs = reference.net.forward(reference.scaling_layer(x[None]))
        for a, b in zip(theirs, ours._taps(x[None]), strict=True):
            assert torch.equal(a, b)
    assert expected > 0.01
    assert lpips_distance(ours, x, y) == pytest.approx(expected, rel=1e-6)


def test_weights_from_a_path_and_refused_files(tmp_path: Path) -> None:
    shutil.copy(st_lpips_weights("alex"), tmp_path / "alex.pth")
    x, y = crop_pair(48)
    assert lpips_distance(load_st_lpips("alex", tmp_path / "alex.pth"), x, y) == lpips_distance(
        load_st_lpips("alex"), x, y
    )
    with pytest.raises(ConfigError, match="not found"):
        load_st_lpips("alex", tmp_path / "absent.pth")
    torch.save({"lin0.model.1.weight": torch.zeros(1, 64, 1, 1)}, tmp_path / "partial.pth")
    with pytest.raises(ConfigError, match=r"partial.pth: ST-LPIPS-alex weights incomplete"):
        load_st_lpips("alex", tmp_path / "partial.pth")
    shutil.copy(st_lpips_weights("alex"), tmp_path / "alex_for_vgg.pth")
    with pytest.raises(ConfigError, match="ST-LPIPS-vgg"):
        load_st_lpips("vgg", tmp_path / "alex_for_vgg.pth")


def test_perceptual_loss_gives_gradients_to_the_output_only() -> None:
    """Descending the loss brings an image closer to its target; the network itself gets no gradient."""
    loss_fn = STLPIPSLoss("alex")
    x, target = crop_pair(48, shift=6)
    image = x[None].clone().requires_grad_(True)
    optimiser = torch.optim.Adam([image], lr=0.01)
    values = []
    for _ in range(15):
        optimiser.zero_grad()
        loss = loss_fn(image, target[None])
        loss.backward()
        optimiser.step()
        values.append(float(loss.detach()))
    assert values[-1] < 0.7 * values[0]
    assert all(p.grad is None for p in loss_fn.parameters())
    grey = loss_fn(x[None].mean(1, keepdim=True), x[None].mean(1, keepdim=True))
    assert float(grey) == pytest.approx(0.0, abs=1e-7)


def test_pix2pix_trains_with_the_perceptual_loss_and_keeps_it_out_of_checkpoints(tmp_path: Path) -> None:
    from diptych.train import train

    crops = photo_crops("rocket", 48, 4)
    write_aligned(tmp_path / "ds", [(c, 255 - c) for c in crops])
    config = tiny_config(tmp_path / "ds", max_steps=2, lambda_perceptual=10.0, perceptual_net="alex")
    run = train(config, tmp_path / "run", progress=False).run_dir
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    logged = [r["G_ST_LPIPS"] for r in records if "G_ST_LPIPS" in r]
    assert len(logged) == 2 and all(0 < v < 2 for v in logged)
    stored = json.loads((run / "config.json").read_text())["method"]
    assert (stored["lambda_perceptual"], stored["perceptual_net"]) == (10.0, "alex")
    tensors = {k for f in (run / "checkpoints").rglob("*.safetensors") for k in load_file(f)}
    assert tensors and not any(k.startswith(("lins.", "model.", "features.")) for k in tensors)
    latest = run / "checkpoints" / (run / "checkpoints" / "LATEST").read_text().strip()
    assert sorted(f.name for f in latest.glob("*.safetensors")) == [
        "discriminator.safetensors",
        "generator.safetensors",
    ]


def test_resume_with_the_perceptual_loss_is_exact(tmp_path: Path) -> None:
    """The loss holds no state: 2 steps + a resume to 4 give the weights of 4 straight steps, bit for bit."""
    from diptych.config import load_config
    from diptych.train import train

    write_aligned(tmp_path / "ds", [(c, 255 - c) for c in photo_crops("rocket", 48, 4)])

    def run(folder: Path, steps: int) -> None:
        train(
            tiny_config(tmp_path / "ds", max_steps=steps, lambda_perceptual=10.0, perceptual_net="alex"),
            folder,
            progress=False,
        )

    def latest(folder: Path) -> dict[str, torch.Tensor]:
        checkpoints = folder / "checkpoints"
        return load_file(checkpoints / (checkpoints / "LATEST").read_text().strip() / "generator.safetensors")

    run(tmp_path / "straight", 4)
    run(tmp_path / "resumed", 2)
    config = load_config(tmp_path / "resumed" / "config.json")
    config.train.max_steps = 4
    train(config, tmp_path / "resumed", resume=True, progress=False)
    straight, resumed = latest(tmp_path / "straight"), latest(tmp_path / "resumed")
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_without_the_package(no_package: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Training with the loss is refused before anything is written; evaluate notes the skipped default metric,
    and refuses it when asked for by name."""
    from diptych.evaluate import evaluate
    from diptych.train import train

    assert not st_lpips_available()
    with pytest.raises(ConfigError, match=r"pip install 'diptych\[perceptual\]'.*--st-lpips-weights"):
        load_st_lpips("alex")
    crops = photo_crops("rocket", 48, 5)
    write_aligned(tmp_path / "ds" / "train", [(c, 255 - c) for c in crops[:3]])
    write_aligned(tmp_path / "ds" / "test", [(c, 255 - c) for c in crops[3:]])
    with pytest.raises(ConfigError, match=r"stlpips-pytorch.*--perceptual-weights"):
        train(tiny_config(tmp_path / "ds", max_steps=1, lambda_perceptual=1.0), tmp_path / "refused", progress=False)
    assert not (tmp_path / "refused").exists()

    run = train(tiny_config(tmp_path / "ds", max_steps=1), tmp_path / "run", progress=False).run_dir
    result = evaluate(run, tmp_path / "ds", tmp_path / "ev", progress=False)
    assert "st_lpips" not in result.summary["metrics"] and "checkerboard" in result.summary["metrics"]
    (note,) = result.summary["notes"]
    assert note.startswith("st_lpips skipped") and "diptych[perceptual]" in note
    assert "st_lpips" not in (tmp_path / "ev" / "per_image.csv").read_text().splitlines()[0]
    with pytest.raises(ConfigError, match="stlpips-pytorch"):
        evaluate(run, tmp_path / "ds", tmp_path / "ev_named", metrics=["psnr", "st_lpips"], progress=False)
    assert not (tmp_path / "ev_named").exists()

    code, out, _ = run_cli(["evaluate", run, tmp_path / "ds", "--out", tmp_path / "ev_cli", "--no-progress"], capsys)
    assert code == 0 and "note: st_lpips skipped" in out
    code, _, err = run_cli(
        ["evaluate", run, tmp_path / "ds", "--out", tmp_path / "ev_cli2", "--metrics", "st_lpips"], capsys
    )
    assert code == 1
    assert_one_error_line(err, "stlpips-pytorch")


def test_evaluate_reports_st_lpips_with_its_weights(tmp_path: Path) -> None:
    """The default evaluation has an st_lpips column (the installed package's AlexNet), described in the protocol;
    --st-lpips-net vgg and a weights file are honoured."""
    from diptych.evaluate import DeepMetricOptions, evaluate
    from diptych.metrics.pixel import HIGHER_IS_BETTER
    from diptych.train import train

    crops = photo_crops("coffee", 48, 5)
    write_aligned(tmp_path / "ds" / "train", [(c, 255 - c) for c in crops[:3]])
    write_aligned(tmp_path / "ds" / "test", [(c, 255 - c) for c in crops[3:]])
    run = train(tiny_config(tmp_path / "ds", max_steps=1), tmp_path / "run", progress=False).run_dir
    result = evaluate(run, tmp_path / "ds", tmp_path / "ev", progress=False)
    assert result.summary["notes"] == []
    assert result.summary["metrics"]["st_lpips"]["n"] == 2 and result.summary["metrics"]["st_lpips"]["mean"] > 0
    assert HIGHER_IS_BETTER["st_lpips"] is False
    described = result.summary["protocol"]["feature_networks"]["st_lpips"]
    assert described["net"] == "alex" and described["weights"]["file"] == str(st_lpips_weights("alex"))
    shutil.copy(st_lpips_weights("vgg"), tmp_path / "vgg.pth")
    deep = DeepMetricOptions(st_lpips_weights=tmp_path / "vgg.pth", st_lpips_net="vgg")
    vgg = evaluate(run, tmp_path / "ds", tmp_path / "ev_vgg", metrics=["st_lpips"], deep=deep, progress=False)
    assert vgg.summary["protocol"]["feature_networks"]["st_lpips"]["weights"]["file"] == str(tmp_path / "vgg.pth")
    assert vgg.summary["metrics"]["st_lpips"]["mean"] != result.summary["metrics"]["st_lpips"]["mean"]
