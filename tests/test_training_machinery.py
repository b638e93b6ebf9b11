"""Shared training machinery: generator EMA, spectral norm, two time-scale learning rates, warm-up."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from diptych.checkpoint import resolve_checkpoint
from diptych.config import RunConfig
from diptych.ema import WeightAverage, ema_decay
from diptych.errors import ConfigError
from diptych.evaluate import evaluate
from diptych.export import export_generator
from diptych.nets import MultiscaleDiscriminator, PatchDiscriminator, init_weights
from diptych.nets.layers import spectral_normalise
from diptych.recipes import create_recipe
from diptych.train import Trainer, resume_config, train, warmed_up, warmup_factor
from diptych.translate import Translator

from .conftest import straight_and_resumed, tiny_config
from .test_cli import run_cli
from .test_cyclegan import cyclegan_config, unpaired_root

# --- EMA -----------------------------------------------------------------------------------------------------------


def test_ema_update_by_hand() -> None:
    """One update: average = d * average + (1 - d) * weights with the warmed-up d, batch-norm running statistics
    too; other buffers (the batch count) are copied."""
    net = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0]]))
        net[0].bias.fill_(4.0)
    ema = WeightAverage({"g": net}, decay=0.999)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[3.0, 6.0]]))
        net[0].bias.fill_(0.0)
        net[1].running_mean.fill_(0.25)
        net[1].running_var.fill_(3.0)
        net[1].num_batches_tracked.fill_(7)
    ema.update({"g": net}, step=0)  # decay min(0.999, 1 / 10) = 0.1
    average = ema.modules["g"]
    torch.testing.assert_close(average[0].weight, torch.tensor([[0.1 * 1 + 0.9 * 3, 0.1 * 2 + 0.9 * 6]]))
    torch.testing.assert_close(average[0].bias, torch.tensor([0.1 * 4.0]))
    torch.testing.assert_close(average[1].running_mean, torch.tensor([0.9 * 0.25]))
    torch.testing.assert_close(average[1].running_var, torch.tensor([0.1 * 1.0 + 0.9 * 3.0]))
    assert average[1].num_batches_tracked.item() == 7
    assert not any(p.requires_grad for p in average.parameters())
    ema.update({"g": net}, step=10**6)  # decay 0.999 from now on
    torch.testing.assert_close(average[0].bias, torch.tensor([0.999 * 0.4]))


def test_ema_decay_warms_up() -> None:
    assert ema_decay(0.999, 0) == pytest.approx(0.1)
    assert ema_decay(0.999, 8) == pytest.approx(0.5)
    assert ema_decay(0.999, 90) == pytest.approx(0.91)
    assert ema_decay(0.999, 10**6) == 0.999
    assert ema_decay(0.5, 10) == 0.5  # 11 / 20 is above the decay asked for


def _files(run: Path) -> dict[str, torch.Tensor]:
    folder = resolve_checkpoint(run)
    return {f"{f.name}:{k}": v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


@pytest.mark.parametrize(("precision", "accum"), [("fp32", 1), ("bf16", 2)])
def test_resume_is_exact_with_ema_spectral_norm_and_warm_up(
    aligned_dataset: Path, tmp_path: Path, precision: str, accum: int
) -> None:
    """2N steps straight == N steps, resume, N steps: the same raw weights, averages and power-iteration state."""

    def config(max_steps: int) -> RunConfig:
        cfg = tiny_config(aligned_dataset, max_steps=max_steps, gan_loss="hinge", seed=5, precision=precision)
        cfg.train.ema, cfg.train.warmup_steps, cfg.train.lr_d, cfg.train.accum_steps = 0.9, 5, 4e-4, accum
        cfg.data.batch_size = 2
        cfg.discriminator.spectral_norm, cfg.discriminator.norm = True, "none"
        return cfg

    straight, resumed = straight_and_resumed(config, tmp_path, steps=6, half=3)
    a, b = _files(straight), _files(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert any(k.startswith("discriminator.safetensors:") and k.endswith("._u") for k in a)
    ema = [k for k in a if k.startswith("generator.ema.safetensors:")]
    assert ema and any(not torch.equal(a[k], a[k.replace(".ema", "")]) for k in ema)


@pytest.fixture
def ema_run(aligned_dataset: Path, tmp_path: Path) -> Trainer:
    """A finished tiny pix2pix run with --ema 0.5 and validation on two held-out pairs."""
    cfg = tiny_config(aligned_dataset, max_steps=4, ema=0.5, lr=0.01, precision="fp32")  # (the average lags visibly)
    cfg.validation.fraction, cfg.validation.every = 0.25, 2
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    trainer.fit()
    return trainer


def test_validation_scores_the_average(ema_run: Trainer) -> None:
    logged = [json.loads(x) for x in (ema_run.run_dir / "log.jsonl").read_text().splitlines()]
    last = [r for r in logged if "val_psnr" in r][-1]
    assert last["step"] == 4
    averaged = ema_run.validator(ema_run.inference_networks()).means["psnr"]
    raw = ema_run.validator(ema_run.recipe.networks).means["psnr"]
    assert last["val_psnr"] == round(averaged, 6) and averaged != raw
    best = ema_run.run_dir / "checkpoints" / "best"
    assert {p.name for p in best.glob("*.safetensors")} == {"generator.safetensors", "generator.ema.safetensors"}


def test_inference_runs_the_average_unless_raw_is_asked_for(
    ema_run: Trainer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = ema_run.run_dir
    x = torch.linspace(-1, 1, 3 * 32 * 32).reshape(1, 3, 32, 32)
    default = Translator.load(run, device="cpu", precision="fp32")
    raw = Translator.load(run, device="cpu", precision="fp32", weights="raw")
    assert (default.weights, default.weights_path.name) == ("ema", "generator.ema.safetensors")
    assert (raw.weights, raw.weights_path.name) == ("raw", "generator.safetensors")
    with torch.no_grad():
        expected = ema_run.averaged["generator"].eval()(x)
    # (inference folds batch norms into convolutions: equal up to float rounding)
    torch.testing.assert_close(default.translate_tensor(x), expected, atol=5e-4, rtol=0)
    assert (raw.translate_tensor(x) - expected).abs().max() > 1e-2
    # A lone weights file is what it holds.
    lone = Translator.load(resolve_checkpoint(run) / "generator.ema.safetensors", device="cpu", precision="fp32")
    assert lone.weights == "ema" and torch.equal(lone.translate_tensor(x), default.translate_tensor(x))
    with pytest.raises(ConfigError, match="holds the moving average of the weights; pass the checkpoint folder"):
        Translator.load(resolve_checkpoint(run) / "generator.ema.safetensors", weights="raw")

    exported = export_generator(run, tmp_path / "g.pt", "torchscript")
    assert exported.weights == "ema"
    with torch.no_grad():
        torch.testing.assert_close(Translator.load(tmp_path / "g.pt").translate_tensor(x), expected, atol=1e-4, rtol=0)
    with zipfile.ZipFile(tmp_path / "g.pt") as archive:
        stored = next(n for n in archive.namelist() if n.endswith("extra/diptych.json"))
        assert json.loads(archive.read(stored))["weights"] == "ema"
    assert export_generator(run, tmp_path / "raw.pt", "torchscript", weights="raw").weights == "raw"

    code, _, err = run_cli(["info", run], capsys)
    assert code == 0 and "inference weights: ema (the moving average, decay 0.5" in err
    data = Path(ema_run.config.data.root)
    protocol = evaluate(run, data, tmp_path / "ev", max_items=1, progress=False, device="cpu").summary["protocol"]
    assert protocol["weights"] == "ema"
    raw_protocol = evaluate(run, data, tmp_path / "ev_raw", max_items=1, progress=False, weights="raw").summary
    assert raw_protocol["protocol"]["weights"] == "raw"
    assert raw_protocol["protocol"]["generator_sha256"] != protocol["generator_sha256"]


def test_raw_weights_by_default_and_ema_refused_without_an_average(
    aligned_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = train(tiny_config(aligned_dataset, max_steps=1), tmp_path / "run", progress=False).run_dir
    assert not list(resolve_checkpoint(run).glob("*.ema.safetensors"))
    manifest = json.loads((resolve_checkpoint(run) / "manifest.json").read_text())
    assert "ema" not in manifest["networks"]["generator"]
    assert Translator.load(run, device="cpu").weights == "raw"
    code, _, err = run_cli(
        ["translate", run, str(aligned_dataset), "--out", tmp_path / "o", "--weights", "ema"], capsys
    )
    assert code == 1 and err.strip().endswith("holds no weight average (trained without --ema); use --weights raw")
    assert not (tmp_path / "o").exists()
    code, _, err = run_cli(["info", run], capsys)
    assert code == 0 and "inference weights: raw" in err


def test_cyclegan_keeps_an_average_of_each_generator(tmp_path: Path) -> None:
    config = cyclegan_config(unpaired_root(tmp_path), 2)
    config.train.ema, config.discriminator.spectral_norm = 0.999, True
    run = train(config, tmp_path / "run", progress=False).run_dir
    folder = resolve_checkpoint(run)
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in ("G_A", "G_B"):
        assert manifest["networks"][name]["ema"] == {"file": f"{name}.ema.safetensors", "decay": 0.999}
        with safe_open(str(folder / f"{name}.ema.safetensors"), "pt") as f:
            assert f.metadata()["network"] == name and f.metadata()["weights"] == "ema"
    for name in ("D_A", "D_B"):
        assert "ema" not in manifest["networks"][name] and manifest["networks"][name]["spec"]["spectral_norm"]
    for direction, name in (("AtoB", "G_A"), ("BtoA", "G_B")):
        t = Translator.load(run, direction=direction, device="cpu")
        assert t.weights_path.name == f"{name}.ema.safetensors"


def test_a_manifest_written_before_spectral_norm_existed_still_loads(aligned_dataset: Path, tmp_path: Path) -> None:
    """Format-2 checkpoints of earlier versions have no spectral_norm in their specs; it is their default, off."""
    run = train(tiny_config(aligned_dataset, max_steps=1), tmp_path / "run", progress=False).run_dir
    folder = resolve_checkpoint(run)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["networks"]["discriminator"]["spec"]["spectral_norm"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    config = json.loads((folder / "config.json").read_text())
    for section, key in (("discriminator", "spectral_norm"), ("train", "ema"), ("train", "lr_d")):
        del config[section][key]
    (folder / "config.json").write_text(json.dumps(config))
    assert Translator.load(run, device="cpu").weights == "raw"


# --- spectral norm -------------------------------------------------------------------------------------------------


def test_spectral_norm_divides_a_known_matrix_by_its_largest_singular_value() -> None:
    conv = nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 1.0]]).reshape(2, 2, 1, 1))
    module = nn.Sequential(conv)
    spectral_normalise(module)
    x = torch.randn(1, 2, 4, 4)
    for _ in range(20):  # one power iteration per training forward
        module(x)
    normalised = conv.weight.detach().reshape(2, 2)
    torch.testing.assert_close(normalised, torch.tensor([[1.0, 0.0], [0.0, 1 / 3]]), atol=1e-5, rtol=0)
    assert torch.linalg.matrix_norm(normalised, ord=2).item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("net", ["patchgan", "multiscale"])
def test_spectrally_normalised_discriminators_after_initialisation(net: str) -> None:
    """init_weights draws the raw weights and restarts the power iteration from them; with enough iterations (one
    per training forward, or access to the weight) every convolution's largest singular value is 1."""
    torch.manual_seed(0)
    d = (
        PatchDiscriminator(6, 8, 2, "none", True)
        if net == "patchgan"
        else MultiscaleDiscriminator(6, 2, 8, 2, "none", True)
    )
    init_weights(d, "normal", 0.02)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    for m in convs:
        assert m.parametrizations.weight.original.std().item() == pytest.approx(0.02, rel=0.3)
        # The estimate of the largest singular value approaches it from below, so the norm starts a little above 1.
        assert 1.0 - 1e-4 < torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item() < 1.2
        for _ in range(300):
            weight = m.weight
        assert torch.linalg.matrix_norm(weight.detach().flatten(1), ord=2).item() == pytest.approx(1.0, abs=1e-2)
    keys = d.state_dict().keys()
    assert any(k.endswith("parametrizations.weight.0._u") for k in keys)
    assert any(k.endswith("parametrizations.weight.0._v") for k in keys)


# --- two time-scale learning rates and warm-up ---------------------------------------------------------------------


def test_discriminators_get_lr_d_in_every_recipe() -> None:
    for recipe, d_optimizers in (("pix2pix", ["discriminator"]), ("pix2pixhd", ["discriminator"]), ("cyclegan", ["D"])):
        config = RunConfig().use_recipe(recipe)
        g = config.generator
        g.in_channels = g.out_channels = 3
        tiny = {"ngf": 4, "depth": 3, "n_blocks": 1, "n_local": 0, "n_down_global": 2, "n_blocks_global": 1}
        for name, value in tiny.items():
            if hasattr(g, name):  # (each generator family has only its own fields)
                setattr(g, name, value)
        config.discriminator.ndf = 4
        config.train.lr, config.train.lr_d = 1e-4, 4e-4
        optimizers = create_recipe(config, torch.device("cpu")).optimizers
        for name, opt in optimizers.items():
            assert opt.param_groups[0]["lr"] == (4e-4 if name in d_optimizers else 1e-4), (recipe, name)
        config.train.lr_d = 0.0  # the default: --lr for every network
        assert {o.param_groups[0]["lr"] for o in create_recipe(config, torch.device("cpu")).optimizers.values()} == {
            1e-4
        }


def test_warm_up_factor_and_exact_restore() -> None:
    t = RunConfig().train
    assert [warmup_factor(t, k) for k in (0, 5)] == [1.0, 1.0]
    t.warmup_steps = 4
    assert [warmup_factor(t, k) for k in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with warmed_up([opt], 0.3):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.03)
    assert opt.param_groups[0]["lr"] == 0.1


def test_warm_up_composes_with_the_epoch_schedule(aligned_dataset: Path, tmp_path: Path) -> None:
    """Two steps an epoch, linear decay over epochs 1 and 2, warm-up over 4 steps: lr = base x schedule x warm-up."""
    cfg = tiny_config(aligned_dataset, max_steps=5, lr=1e-3, lr_d=2e-3, warmup_steps=4)
    cfg.data.batch_size = 4
    cfg.train.epochs, cfg.train.epochs_decay = 1, 2
    run = train(cfg, tmp_path / "run", progress=False).run_dir
    logged = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    schedule = [1, 1, 2 / 3, 2 / 3, 1 / 3]
    warm = [1 / 4, 2 / 4, 3 / 4, 1, 1]
    expected = [s * w for s, w in zip(schedule, warm, strict=True)]
    assert [r["step"] for r in logged] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([r["lr_generator"] for r in logged], np.multiply(expected, 1e-3), rtol=1e-12)
    np.testing.assert_allclose([r["lr_discriminator"] for r in logged], np.multiply(expected, 2e-3), rtol=1e-12)
    state = torch.load(resolve_checkpoint(run) / "training_state.pt", weights_only=True)
    # The checkpoint holds the scheduled rates (the warm-up is a function of the step).
    assert state["optimizers"]["generator"]["param_groups"][0]["lr"] == pytest.approx(1e-3 / 3)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ema", "1"], "--ema 1.0 (train.ema) is out of range: use a finite number in [0, 1)"),
        (["--lr-d", "-1"], "--lr-d -1.0 (train.lr_d) is out of range: use a finite number in [0, 1]"),
        (["--warmup-steps", "-2"], "--warmup-steps -2 (train.warmup_steps) is out of range: use an integer >= 0"),
    ],
)
def test_bounds_are_one_line_errors(
    aligned_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    code, _, err = run_cli(["train", "--data", aligned_dataset, "--run-dir", tmp_path / "r", *flags], capsys)
    assert code == 1 and err.strip() == f"diptych: error: {message}"


def test_the_machinery_cannot_change_on_resume(aligned_dataset: Path, tmp_path: Path) -> None:
    train(tiny_config(aligned_dataset, max_steps=1), tmp_path / "run", progress=False)
    for key in ("ema", "lr_d", "warmup_steps"):
        with pytest.raises(ConfigError, match=f"--{key.replace('_', '-')} cannot change when resuming"):
            resume_config(tmp_path / "run", {"train": {key: 0.5}})


def test_a_batch_larger_than_the_dataset_is_said(aligned_dataset: Path, tmp_path: Path, capsys) -> None:
    """One process loads the 8 pairs as one short batch per step; the user is told instead of silently getting 8."""
    config = tiny_config(aligned_dataset, max_steps=1)
    config.data.batch_size = 12
    trainer = Trainer(config, tmp_path / "run", progress=True)
    assert trainer.steps_per_epoch == 1
    err = capsys.readouterr().err
    assert "warning: --batch-size 12 is larger than the 8 training items, so every step uses 8; cut large" in err
    config.data.batch_size = 8
    Trainer(config, tmp_path / "run2", progress=True)
    assert "is larger than" not in capsys.readouterr().err
