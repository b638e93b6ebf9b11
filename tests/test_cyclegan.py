"""CycleGAN: losses, exact resume with the image pools, both directions from one checkpoint, accumulation, bf16,
and the errors of unpaired training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image
from safetensors.torch import load_file

from diptych.checkpoint import load_training_state, resolve_checkpoint
from diptych.config import RunConfig
from diptych.data.io import write_image
from diptych.distributed import process_group
from diptych.errors import CheckpointError, ConfigError, DataError
from diptych.metrics.inception import InceptionFeatures
from diptych.recipes import create_recipe
from diptych.recipes.cyclegan import cycle_losses, identity_losses
from diptych.train import Trainer, resume_config, train
from diptych.translate import Translator

from .conftest import (
    CALLER_VARIABLES,
    SRC,
    TINY_FLAGS,
    free_port,
    photo_batch,
    photo_crops,
    record_channels_last,
    spawn_two_ranks,
)
from .test_cli import assert_one_error_line, run_cli
from .test_feature_metrics import _scaled_random

NETWORKS = ("G_A", "G_B", "D_A", "D_B")
# The CLI's tiny networks for CycleGAN: a one-block ResNet instead of the U-Net's --depth.
CYCLE_TINY = [*TINY_FLAGS[2:], "--n-blocks", "1"]
assert TINY_FLAGS[:2] == ["--depth", "4"]


def write_domains(root: Path, a: list[np.ndarray], b: list[np.ndarray]) -> Path:
    """root/trainA and root/trainB (the reference's layout), names and counts unrelated."""
    for i, img in enumerate(a):
        write_image(root / "trainA" / f"a_{i:03d}.png", img)
    for i, img in enumerate(b):
        write_image(root / "trainB" / f"photo_{i:02d}.png", img)
    return root


def unpaired_root(tmp_path: Path) -> Path:
    """Five 48 px astronaut crops in trainA, three coffee crops in trainB."""
    return write_domains(tmp_path / "unpaired", photo_crops("astronaut", 48, 5), photo_crops("coffee", 48, 3, seed=1))


@pytest.fixture
def unpaired(tmp_path: Path) -> Path:
    """Five 48 px astronaut crops in trainA, three coffee crops in trainB."""
    return unpaired_root(tmp_path)


def cyclegan_config(root: Path, max_steps: int, **method: object) -> RunConfig:
    """Tiny CycleGAN: 1-block ResNet generators with 4 filters, 34x34 PatchGANs, 32 px crops."""
    config = RunConfig().use_recipe("cyclegan")
    config.generator.ngf, config.generator.n_blocks = 4, 1
    config.discriminator.ndf, config.discriminator.n_layers = 4, 2
    config.data.root, config.data.workers = str(root), 0
    config.data.preprocess, config.data.crop_size, config.data.load_size = "crop", 32, 32
    config.train.epochs, config.train.epochs_decay, config.train.max_steps = 1, 2, max_steps
    config.train.log_every, config.train.seed, config.train.precision = 1, 3, "fp32"
    for key, value in method.items():
        setattr(config.method, key, value)
    return config


def weights(run: Path) -> dict[str, torch.Tensor]:
    folder = resolve_checkpoint(run)
    return {f"{n}.{k}": v for n in NETWORKS for k, v in load_file(folder / f"{n}.safetensors").items()}


def test_cycle_and_identity_losses_on_known_tensors() -> None:
    a, b = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    cycle_a, cycle_b = cycle_losses(a, a + 0.25, b, b - 0.5)
    assert (cycle_a.item(), cycle_b.item()) == (0.25, 0.5)
    idt_a, idt_b = identity_losses(lambda x: x * 0, lambda x: x + 1, a, b)  # G_A(b) = 0 vs b; G_B(a) = 1 vs a
    assert (idt_a.item(), idt_b.item()) == (1.0, 1.0)


def test_identity_weighting_follows_the_reference(unpaired: Path) -> None:
    """G's loss grows by lambda_identity x (lambda_B x idt_A + lambda_A x idt_B), as cycle_gan_model.py weights it."""
    config = cyclegan_config(unpaired, 1, lambda_a=3.0, lambda_b=7.0, lambda_identity=0.5)
    trainer = Trainer(config, unpaired / "run", progress=False)
    recipe = trainer.recipe
    a, b = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        loss, parts, _ = recipe.generator_loss(a, b)
        recipe.options.lambda_identity = 0.0
        without, _, _ = recipe.generator_loss(a, b)
    expected = 0.5 * (7.0 * parts["idt_A"] + 3.0 * parts["idt_B"])
    torch.testing.assert_close(loss - without, expected)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # bf16 runs channels-last on the CPU
def test_resume_is_exact_with_the_image_pools(unpaired: Path, tmp_path: Path, precision: str) -> None:
    """6 steps straight == 3 steps, stop, resume, 3 steps: the same weights and the same pools, bit for bit."""

    def config(steps: int) -> RunConfig:
        c = cyclegan_config(unpaired, steps, pool_size=2)
        c.train.precision = precision
        return c

    straight = train(config(6), tmp_path / "straight", progress=False)
    train(config(3), tmp_path / "resumed", progress=False)
    resumed = train(
        resume_config(tmp_path / "resumed", {"train": {"max_steps": 6}}),
        tmp_path / "resumed",
        resume=True,
        progress=False,
    )
    assert straight.steps == resumed.steps == 6
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    pools = [load_training_state(resolve_checkpoint(tmp_path / r))["recipe"] for r in ("straight", "resumed")]
    for name in ("fake_A", "fake_B"):
        assert len(pools[0][name]["images"]) == 2  # full, so later steps swapped images in and out
        assert all(torch.equal(x, y) for x, y in zip(pools[0][name]["images"], pools[1][name]["images"], strict=True))
        assert torch.equal(pools[0][name]["generator"], pools[1][name]["generator"])


def test_both_directions_from_one_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 1-channel domain A and a 3-channel domain B: G_A makes colour images, G_B grey ones (API and CLI)."""
    crops = photo_crops("astronaut", 48, 4)
    grey = [np.round(c.mean(axis=2)).astype(np.uint8) for c in crops]
    root = write_domains(tmp_path / "data", grey, photo_crops("coffee", 48, 3))
    run = tmp_path / "run"
    train(cyclegan_config(root, 2, lambda_identity=0.0), run, progress=False)
    manifest = json.loads((resolve_checkpoint(run) / "manifest.json").read_text())
    assert manifest["recipe"] == "cyclegan" and manifest["generators"] == {"AtoB": "G_A", "BtoA": "G_B"}
    assert manifest["domains"]["A"]["channels"] == 1 and manifest["domains"]["B"]["channels"] == 3
    assert manifest["networks"]["D_A"]["spec"]["judges"] == "B"
    # Each generator's spec holds its own family's fields only (no U-Net depth or pix2pixHD enhancers).
    spec = manifest["networks"]["G_A"]["spec"]
    assert spec["arch"] == "resnet" and "n_blocks" in spec and not {"depth", "upsample", "n_local"} & set(spec)
    to_b = Translator.load(run, device="cpu", direction="AtoB")
    to_a = Translator.load(run, device="cpu", direction="BtoA")
    assert Translator.load(run, device="cpu").config.data.direction == "AtoB"  # the default
    assert np.asarray(to_b(grey[0])).shape == (48, 48, 3)
    assert np.asarray(to_a(crops[0])).shape == (48, 48, 1)
    code, _, err = run_cli(
        ["translate", run, root / "trainB" / "photo_00.png", "--out", tmp_path / "out", "--direction", "BtoA"], capsys
    )
    assert code == 0, err
    assert np.asarray(Image.open(tmp_path / "out" / "photo_00.png")).shape == (48, 48)
    code, _, err = run_cli(
        ["export", run, "--out", tmp_path / "g_b.pt", "--format", "torchscript", "--direction", "BtoA"], capsys
    )
    assert code == 0, err
    exported = Translator.load(tmp_path / "g_b.pt", device="cpu")
    assert exported.in_channels == 3 and np.asarray(exported(crops[0])).shape == (48, 48, 1)


def test_accumulation_gives_the_whole_batchs_update(unpaired: Path, tmp_path: Path) -> None:
    """Batch 2 in one pass == batch 2 as 2 micro-batches (instance norm: per image; pools filled in the same order)."""

    def run(accum: int) -> dict[str, torch.Tensor]:
        config = cyclegan_config(unpaired, 2)
        config.data.batch_size, config.train.accum_steps = 2, accum
        train(config, tmp_path / f"accum{accum}", progress=False)
        return weights(tmp_path / f"accum{accum}")

    whole, split = run(1), run(2)
    for key in whole:
        torch.testing.assert_close(whole[key], split[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("precision", "channels_last"), [("bf16", True), ("fp32", False)])
def test_every_network_sees_channels_last_images_in_bf16_on_cpu(precision: str, channels_last: bool) -> None:
    """bf16 on the CPU: the step hands all four networks channels-last images (oneDNN convolves them without
    reordering); fp32 keeps NCHW. Batch 2, so the pooled fakes are stacked images too."""
    config = cyclegan_config(Path("unused"), 1)
    config.generator.in_channels = config.generator.out_channels = 3
    config.data.batch_size, config.train.precision = 2, precision
    recipe = create_recipe(config, torch.device("cpu"))
    seen = record_channels_last(recipe.networks)
    losses = recipe.train_step(photo_batch(32, 2))
    assert all(torch.isfinite(v) for v in losses.values())
    # G_A: a, fake_a, b (identity); D_A: fake_b (G update), real b and pooled fakes (D update); likewise the others.
    assert {name: len(flags) for name, flags in seen.items()} == {"G_A": 3, "G_B": 3, "D_A": 3, "D_B": 3}
    assert all(flag == channels_last for flags in seen.values() for flag in flags)


def test_bf16_on_cpu(unpaired: Path, tmp_path: Path) -> None:
    config = cyclegan_config(unpaired, 2)
    config.train.precision = "bf16"
    result = train(config, tmp_path / "bf16", progress=False)
    log = [json.loads(line) for line in (tmp_path / "bf16" / "log.jsonl").read_text().splitlines()]
    assert result.steps == 2 and all(np.isfinite(r["cycle_A"]) and np.isfinite(r["D_A"]) for r in log)


def test_identity_with_different_channel_counts_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    crops = photo_crops("astronaut", 48, 2)
    root = write_domains(tmp_path / "data", [c[..., 0] for c in crops], crops)
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--recipe", "cyclegan", "--data", root, "--run-dir", run, *CYCLE_TINY], capsys)
    assert code == 1
    assert_one_error_line(err, "--lambda-identity 0.5", "domain A has 1 channel(s) and B 3", "pass --lambda-identity 0")
    assert not run.exists()


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (
            ["--recipe", "cyclegan", "--lambda-l1", "5"],
            ["--lambda-l1 is an option of --recipe pix2pix / pix2pix-plus / pix2pixhd"],
        ),
        (["--recipe", "cyclegan", "--layout", "aligned"], ["--layout aligned holds pairs"]),
        (["--recipe", "cyclegan", "--label-nc", "3"], ["--label-nc", "paired data"]),
        (
            ["--lambda-identity", "0.1"],
            ["--lambda-identity is an option of --recipe cyclegan", "not of --recipe pix2pix"],
        ),
        (["--serial-batches"], ["--serial-batches is an option of --recipe cyclegan"]),
        (["--layout", "cyclegan"], ["--layout cyclegan holds unpaired domains", "use --recipe cyclegan"]),
        (["--recipe", "cyclegan", "--depth", "5"], ["--depth is an option of --arch unet", "resnet generator"]),
        (["--recipe", "cyclegan", "--upsample", "resize"], ["--upsample is an option of --arch unet"]),
        (["--n-blocks", "3"], ["--n-blocks is an option of --arch resnet", "unet generator"]),
    ],
)
def test_options_of_the_other_kind_of_data_are_one_line_errors(
    unpaired: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], words: list[str]
) -> None:
    run = tmp_path / "run"
    tiny = CYCLE_TINY if flags[:2] == ["--recipe", "cyclegan"] else TINY_FLAGS
    code, _, err = run_cli(["train", "--data", unpaired, "--run-dir", run, *tiny, *flags], capsys)
    assert code == 1
    assert_one_error_line(err, *words)
    assert not run.exists()


def test_an_empty_domain_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_domains(tmp_path / "data", photo_crops("astronaut", 48, 2), [])
    (root / "trainB").mkdir()
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--recipe", "cyclegan", "--data", root, "--run-dir", run, *CYCLE_TINY], capsys)
    assert code == 1
    assert_one_error_line(err, str(root / "trainB"), "holds no images", "add domain B's images there")
    assert not run.exists()
    with pytest.raises(DataError, match="holds no images"):
        Trainer(cyclegan_config(root, 1), run, progress=False)
    config = cyclegan_config(unpaired_root(tmp_path), 1)
    config.data.direction = "BtoA"
    with pytest.raises(ConfigError, match="--direction BtoA: --recipe cyclegan learns both directions"):
        Trainer(config, run, progress=False)
    assert not run.exists()


def _ddp_rank(rank: int, port: int, data: str, out: str) -> None:
    """One of two gloo processes: a 4-step CycleGAN run and a 2-step one to resume, global batch 2."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        for steps in (4, 2):
            config = cyclegan_config(Path(data), steps, pool_size=1)
            config.data.batch_size = 2
            with process_group("cpu") as ctx:
                Trainer(config, Path(out) / f"ddp{steps}", progress=False, dist=ctx).fit()
    finally:
        dist.destroy_process_group()


def test_ddp_keeps_a_pool_per_rank_and_resumes_exactly(unpaired: Path, tmp_path: Path) -> None:
    """Two processes: each pools its own fakes, both pools are saved, and a torchrun resume gives each rank its own
    back (4 steps straight == 2 + 2 resumed, bit for bit)."""
    spawn_two_ranks(_ddp_rank, str(unpaired), str(tmp_path))
    state = load_training_state(resolve_checkpoint(tmp_path / "ddp2"))
    ranks = state["recipe_ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["fake_A"]["images"][0], ranks[1]["fake_A"]["images"][0])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1"]
    cmd += ["--master-port", str(free_port()), "-m", "diptych", "train", "--resume", str(tmp_path / "ddp2")]
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    env = {k: v for k, v in env.items() if k not in CALLER_VARIABLES}
    done = subprocess.run(
        [*cmd, "--max-steps", "4", "--no-progress"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = weights(tmp_path / "ddp4"), weights(tmp_path / "ddp2")
    assert all(torch.equal(a[k], b[k]) for k in a)
    pools = [load_training_state(resolve_checkpoint(tmp_path / r))["recipe_ranks"] for r in ("ddp4", "ddp2")]
    for rank in range(2):
        for name in ("fake_A", "fake_B"):
            x, y = pools[0][rank][name], pools[1][rank][name]
            assert all(torch.equal(i, j) for i, j in zip(x["images"], y["images"], strict=True))


def test_evaluate_reports_cycle_error_set_distances_and_paired_metrics(
    unpaired: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Per direction: cycle L1/PSNR for every input, paired metrics where the other domain has the same name, FID/KID
    with a local Inception file (and a note without one); the report shows input | output | reconstructed | target."""
    run = tmp_path / "run"
    train(cyclegan_config(unpaired, 2), run, progress=False)
    a, b = photo_crops("astronaut", 40, 3, seed=5), photo_crops("coffee", 40, 2, seed=6)
    test = tmp_path / "test"
    for i, img in enumerate(a):
        write_image(test / "testA" / f"x{i}.png", img)
    write_image(test / "testB" / "x0.png", 255 - a[0])  # x0 has a partner: paired metrics for it only
    write_image(test / "testB" / "other.png", b[1])
    code, out, err = run_cli(["evaluate", run, test, "--out", tmp_path / "ev", "--no-progress"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    a_to_b, b_to_a = summary["directions"]["AtoB"], summary["directions"]["BtoA"]
    assert a_to_b["count"] == 3 and b_to_a["count"] == 2
    assert a_to_b["metrics"]["cycle_l1"]["n"] == 3 and 0 < a_to_b["metrics"]["cycle_l1"]["mean"] < 2
    assert a_to_b["metrics"]["psnr"]["n"] == 1 and b_to_a["metrics"]["psnr"]["n"] == 1  # x0 <-> x0
    assert a_to_b["metrics"]["checkerboard"]["n"] == 3 and b_to_a["metrics"]["checkerboard"]["n"] == 2  # no target
    assert "fid" not in a_to_b["metrics"] and "fid/kid skipped" in out
    report = (tmp_path / "ev" / "AtoB" / "report.html").read_text()
    assert "<th>input</th><th>output</th><th>reconstructed</th><th>target</th>" in report
    assert (tmp_path / "ev" / "BtoA" / "outputs" / "other.png").is_file()
    code, _, err = run_cli(["compare", tmp_path / "ev", tmp_path / "ev", "--out", tmp_path / "cmp"], capsys)
    assert code == 1 and "compare one direction's folder" in err and str(tmp_path / "ev" / "AtoB") in err
    code, out, err = run_cli(
        ["compare", tmp_path / "ev" / "AtoB", tmp_path / "ev" / "BtoA", "--out", tmp_path / "cmp"], capsys
    )
    assert code == 0, err
    assert "cycle_l1" in out
    for option in (["--metrics", "lpips"], ["--channels", "luminance"], ["--crop-border", "4"], ["--seed", "3"]):
        code, _, err = run_cli(["evaluate", run, test, "--out", tmp_path / "ev3", *option], capsys)
        assert code == 1 and f"{option[0]} does not apply to an unpaired run" in err, err
        assert_one_error_line(err)
    assert not (tmp_path / "ev3").exists()
    weights = tmp_path / "inception.pth"
    torch.save(_scaled_random(InceptionFeatures("fid")).state_dict(), weights)
    args = ["evaluate", run, test, "--out", tmp_path / "ev2", "--no-progress", "--inception-weights", weights]
    code, out, err = run_cli([*args, "--direction", "BtoA"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "ev2" / "metrics.json").read_text())
    assert list(summary["directions"]) == ["BtoA"]
    assert np.isfinite(summary["directions"]["BtoA"]["metrics"]["fid"]["mean"])
    assert "kid" in summary["directions"]["BtoA"]["metrics"]


def test_validation_scores_round_trips_and_pairs(unpaired: Path, tmp_path: Path) -> None:
    """--val-data with unrelated names: cycle metrics select the best step; with same-named images: paired ones too."""
    val = tmp_path / "val"
    crops = photo_crops("astronaut", 40, 2, seed=9)
    write_image(val / "valA" / "p.png", crops[0])
    write_image(val / "valB" / "q.png", crops[1])
    config = cyclegan_config(unpaired, 3)
    config.validation.root, config.validation.every = str(val), 2
    train(config, tmp_path / "run", progress=False)
    records = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    scored = [r for r in records if "val_cycle_psnr" in r]
    assert [r["step"] for r in scored] == [2, 3] and all("val_psnr" not in r for r in scored)
    assert {"val_cycle_psnr_A", "val_cycle_psnr_B", "val_cycle_l1"} <= set(scored[0])
    best = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert best["metric"] == "cycle_psnr"
    assert {p.name for p in (tmp_path / "run" / "checkpoints" / "best").glob("*.safetensors")} == {
        "G_A.safetensors",
        "G_B.safetensors",
    }
    write_image(val / "valB" / "p.png", 255 - crops[0])  # now p has a partner
    config.validation.every = 3
    train(config, tmp_path / "run2", progress=False)
    last = [json.loads(x) for x in (tmp_path / "run2" / "log.jsonl").read_text().splitlines()][-1]
    assert np.isfinite(last["val_psnr"]) and np.isfinite(last["val_cycle_psnr"])
    config.validation.root, config.validation.fraction = "", 0.2
    with pytest.raises(ConfigError, match="--val-fraction: --recipe cyclegan trains on unpaired domains"):
        Trainer(config, tmp_path / "run3", progress=False)


def test_a_lone_weights_file_serves_its_own_direction(unpaired: Path, tmp_path: Path) -> None:
    """G_B.safetensors alone (its folder's manifest, or none: copied elsewhere) translates B -> A only."""
    run = tmp_path / "run"
    train(cyclegan_config(unpaired, 1), run, progress=False)
    folder = resolve_checkpoint(run)
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(folder / "G_B.safetensors", lone / "G_B.safetensors")
    for path in (folder / "G_B.safetensors", lone / "G_B.safetensors"):
        t = Translator.load(path, device="cpu")
        assert t.config.data.direction == "BtoA" and t.weights_path == path
        with pytest.raises(ConfigError, match="translates BtoA only; pass --direction BtoA"):
            Translator.load(path, device="cpu", direction="AtoB")
    with pytest.raises(CheckpointError, match=r"holds the D_A's weights; pass G_A.safetensors \(AtoB\) or G_B"):
        Translator.load(folder / "D_A.safetensors", device="cpu")


def test_a_damaged_manifest_is_one_line(unpaired: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train(cyclegan_config(unpaired, 1), run, progress=False)
    manifest = resolve_checkpoint(run) / "manifest.json"
    raw = json.loads(manifest.read_text())
    for damaged, words in (
        ({**raw, "generators": "G_A"}, "damaged manifest ('generators'"),
        ({**raw, "format_version": 9}, "written by a newer diptych (format 9"),
        (
            {**raw, "networks": {**raw["networks"], "G_B": {"file": "G_B.safetensors", "spec": {"kind": "x"}}}},
            "'networks' disagree with the configuration stored beside it",
        ),
        # the recipe the manifest names is part of what it describes, as are its networks (fuzz: was accepted)
        ({**raw, "recipe": "pix2pix"}, "'recipe' disagree with the configuration stored beside it"),
        ({k: v for k, v in raw.items() if k != "recipe"}, "'recipe' disagree with the configuration stored beside it"),
    ):
        manifest.write_text(json.dumps(damaged))
        code, _, err = run_cli(
            ["translate", run, unpaired / "trainB", "--out", tmp_path / "o", "--direction", "BtoA"], capsys
        )
        assert code == 1
        assert_one_error_line(err, str(manifest.parent), words)
        assert not (tmp_path / "o").exists()
    # The manifest intact, the configuration beside it edited: the two no longer describe the same weights.
    manifest.write_text(json.dumps(raw))
    config_file = manifest.parent / "config.json"
    config = json.loads(config_file.read_text())
    config["generator"]["ngf"] += 1
    config_file.write_text(json.dumps(config))
    code, _, err = run_cli(["translate", run, unpaired / "trainB", "--out", tmp_path / "o"], capsys)
    assert code == 1
    assert_one_error_line(err, str(manifest), "disagree with the configuration stored beside it (config.json)")
    assert not (tmp_path / "o").exists()


def test_swapped_generator_files_are_refused(
    unpaired: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """G_A.safetensors and G_B.safetensors of equal shapes exchanged: each file records its network, so translating
    or resuming is a one-line error instead of running the other direction's generator (fuzz finding)."""
    run = tmp_path / "run"
    train(cyclegan_config(unpaired, 1), run, progress=False)
    folder = resolve_checkpoint(run)
    g_a, g_b = folder / "G_A.safetensors", folder / "G_B.safetensors"
    data_a, data_b = g_a.read_bytes(), g_b.read_bytes()
    g_a.write_bytes(data_b)
    g_b.write_bytes(data_a)
    for argv in (
        ["translate", run, unpaired / "trainA", "--out", tmp_path / "o", "--direction", "AtoB"],
        ["export", run, "--direction", "AtoB", "--format", "torchscript", "--out", tmp_path / "m.pt"],
        ["train", "--resume", run, "--max-steps", "2", "--no-progress"],
    ):
        code, _, err = run_cli(argv, capsys)
        assert code == 1
        assert_one_error_line(err, str(g_a), "holds the G_B's weights, not the G_A's")
    assert not (tmp_path / "o").exists() and not (tmp_path / "m.pt").exists()
    assert resolve_checkpoint(run) == folder  # nothing trained on
