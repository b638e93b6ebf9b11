"""The super-resolution recipes (sr, esrgan, realesrgan) on tiny networks: training, exact resume (fp32 and bf16
with accumulation), the stored degradation, --init-from, SR evaluation beside bicubic, and one-line errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diptych.checkpoint import resolve_checkpoint
from diptych.cli import main
from diptych.config import RunConfig, load_config
from diptych.data import collate_pairs
from diptych.data.degradations import DegradationConfig, unsharp_mask
from diptych.data.io import read_image, write_image
from diptych.data.resize import bicubic_downscale, bicubic_upscale, modcrop
from diptych.data.samples import sample_photo
from diptych.errors import ConfigError
from diptych.evaluate_sr import evaluate_sr
from diptych.recipes.sr import denormals_flushed
from diptych.train import Trainer, train

from .conftest import checkpoint_weights, photo_crops, straight_and_resumed, untimed_log

TINY = ["--scale", "2", "--ngf", "8", "--n-blocks", "2", "--lr-crop", "16", "--batch-size", "2", "--workers", "0"]


@pytest.fixture
def hr_folder(tmp_path: Path) -> Path:
    """Six 64x64 crops of a real photo (HR images only)."""
    for i, crop in enumerate(photo_crops("astronaut", 64, 6, seed=3)):
        write_image(tmp_path / "hr" / f"p{i}.png", crop)
    return tmp_path / "hr"


def sr_config(data: Path, recipe: str = "sr", **method: object) -> RunConfig:
    """A tiny x2 MSRResNet run of a recipe (no perceptual loss, unless asked: it keeps these runs fast)."""
    config = RunConfig().use_recipe(recipe)
    if recipe != "sr":
        config.use_generator("msrresnet")
        config.method.lambda_perceptual = 0.0
        config.discriminator.ndf = 8
    config.generator.scale, config.generator.ngf, config.generator.n_blocks = 2, 8, 2
    config.method.lr_crop = 32 if recipe == "esrgan" else 16  # (64 px HR crops: the VGG discriminator's smallest)
    config.data.root, config.data.workers, config.data.batch_size = str(data), 0, 2
    config.train.log_every, config.train.seed = 1, 3
    for key, value in method.items():
        setattr(config.method if hasattr(config.method, key) else config.train, key, value)
    return config


def test_recipe_defaults_follow_basicsr() -> None:
    for recipe, arch, batch in (("sr", "msrresnet", 16), ("esrgan", "rrdbnet", 16), ("realesrgan", "rrdbnet", 12)):
        config = RunConfig().use_recipe(recipe)
        t = config.train
        assert (config.generator.arch, config.generator.scale, config.data.batch_size) == (arch, 4, batch)
        assert (t.beta1, t.beta2, t.ema) == (0.9, 0.99, 0.999)
    assert RunConfig().use_recipe("sr").train.lr == 2e-4
    esrgan = RunConfig().use_recipe("esrgan").method
    assert (esrgan.lambda_pixel, esrgan.lambda_perceptual, esrgan.lambda_gan) == (1e-2, 1.0, 5e-3)
    # The perceptual loss works offline by default (ST-LPIPS); the papers' VGG19 loss needs a file, so it is opt-in.
    assert (esrgan.lambda_vgg, esrgan.perceptual_net) == (0.0, "vgg")
    real = RunConfig().use_recipe("realesrgan").method
    assert (real.degradation, real.lr_crop, real.lambda_gan) == ("realesrgan", 64, 0.1)


def test_sr_trains_on_hr_images_and_stores_its_data(hr_folder: Path, tmp_path: Path) -> None:
    result = train(sr_config(hr_folder, max_steps=4), tmp_path / "run", progress=False)
    assert result.steps == 4
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(0 < r["G_L1"] < 1 for r in log)
    stored = load_config(resolve_checkpoint(tmp_path / "run") / "config.json", stored=True)
    assert (stored.generator.scale, stored.method.lr_crop, stored.method.degradation) == (2, 16, "bicubic")
    assert stored.train.ema == 0.999
    manifest = json.loads((resolve_checkpoint(tmp_path / "run") / "manifest.json").read_text())
    assert set(manifest["networks"]) == {"generator"} and "ema" in manifest["networks"]["generator"]


@pytest.mark.parametrize(
    ("recipe", "precision", "accum"), [("sr", "fp32", 1), ("esrgan", "bf16", 2), ("realesrgan", "fp32", 1)]
)
def test_resume_is_exact(hr_folder: Path, tmp_path: Path, recipe: str, precision: str, accum: int) -> None:
    """2N steps straight == N, stop, resume, N: identical weights (generator, discriminator, EMA) and logs."""

    def config(steps: int) -> RunConfig:
        cfg = sr_config(hr_folder, recipe, max_steps=steps, precision=precision, accum_steps=accum)
        cfg.train.ema = 0.9
        return cfg

    straight, resumed = straight_and_resumed(config, tmp_path, steps=6, half=3)
    a, b = checkpoint_weights(straight), checkpoint_weights(resumed)
    assert (
        a.keys() == b.keys() and any("ema" in k for k in a) and (recipe == "sr" or any("discriminator" in k for k in a))
    )
    for key in a:
        assert torch.equal(a[key], b[key]), key
    logs = [untimed_log(run) for run in (tmp_path / "straight", tmp_path / "resumed")]
    assert logs[0] == logs[1]


def test_realesrgan_stores_every_degradation_setting(hr_folder: Path, tmp_path: Path) -> None:
    cfg = sr_config(hr_folder, "realesrgan", max_steps=1)
    cfg.method.degradation_settings = {"second": {"noise_range": [1, 10]}}
    train(cfg, tmp_path / "run", progress=False)
    stored = load_config(resolve_checkpoint(tmp_path / "run") / "config.json", stored=True).method
    expected = json.loads(json.dumps(DegradationConfig.from_json({"second": {"noise_range": [1, 10]}}).to_json()))
    assert stored.degradation_settings == expected and expected["second"]["noise_range"] == [1, 10]
    assert expected["first"]["jpeg_range"] == list(DegradationConfig().first.jpeg_range)
    # evaluate makes its LR with the stored degradation, seeded per image: the same seed, the same scores
    runs = [
        evaluate_sr(tmp_path / "run", hr_folder, tmp_path / f"e{i}", seed=s, progress=False)
        for i, s in enumerate((0, 0, 1))
    ]
    means = [[m["mean"] for m in r.summary["metrics"].values()] for r in runs]
    assert means[0] == means[1] and means[0] != means[2]
    assert "Real-ESRGAN degradation" in runs[0].summary["protocol"]["lr"]


@pytest.mark.parametrize(("sharpen", "weight"), [(True, 0.5), (True, 2.0), (False, 0.5)])
def test_realesrgan_compares_outputs_with_sharpened_targets(
    hr_folder: Path, tmp_path: Path, sharpen: bool, weight: float
) -> None:
    """The first step's logged pixel loss is L1(initial G(LR), target) with the target the unsharp-masked HR crop
    (--sharpen-weight as given), or the HR crop itself with --no-sharpen-targets."""
    cfg = sr_config(
        hr_folder, "realesrgan", max_steps=1, precision="fp32", sharpen_targets=sharpen, sharpen_weight=weight
    )
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    generator = copy.deepcopy(trainer.recipe.networks["generator"]).eval()
    batch = collate_pairs([trainer.dataset[key] for key in list(trainer._sampler())[: cfg.data.batch_size]])
    trainer.fit()
    logged = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])["G_L1"]
    hr = batch["HR"]
    sharpened = unsharp_mask((hr + 1) / 2, weight=weight) * 2 - 1
    assert float((sharpened - hr).abs().max()) > 0.05  # the photo crops have edges to sharpen
    with torch.no_grad():
        fake = generator(batch["LR"])
    assert logged == pytest.approx(float((fake - (sharpened if sharpen else hr)).abs().mean()), abs=2e-6)
    assert logged != pytest.approx(float((fake - (hr if sharpen else sharpened)).abs().mean()), abs=1e-4)


def test_sharpening_settings_need_sharpened_targets(
    hr_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--recipe", "realesrgan", "--data", str(hr_folder), *TINY, "--max-steps", "1", "--no-sharpen-targets"]
    err = run_cli([*args, "--sharpen-radius", "20", "--run-dir", str(tmp_path / "run")], capsys)
    assert "--sharpen-radius applies to --sharpen-targets; drop it or drop --no-sharpen-targets" in err
    assert not (tmp_path / "run").exists()


def test_esrgan_starts_from_the_sr_run_and_refuses_another_architecture(hr_folder: Path, tmp_path: Path) -> None:
    train(sr_config(hr_folder, max_steps=2), tmp_path / "psnr", progress=False)
    psnr_ema = load_file(resolve_checkpoint(tmp_path / "psnr") / "generator.ema.safetensors")
    cfg = sr_config(hr_folder, "esrgan", max_steps=1, init_from=str(tmp_path / "psnr"), lr=1e-30, ema=0.0)
    train(cfg, tmp_path / "gan", progress=False)
    started = load_file(resolve_checkpoint(tmp_path / "gan") / "generator.safetensors")
    for key, value in psnr_ema.items():  # (a step of lr 1e-30 leaves the weights where --init-from put them)
        torch.testing.assert_close(started[key], value, rtol=0, atol=1e-20)
    wider = sr_config(hr_folder, "esrgan", max_steps=1, init_from=str(tmp_path / "psnr"))
    wider.generator.ngf = 16
    with pytest.raises(
        ConfigError, match=r"--init-from .*psnr: its generator differs from this run's: ngf 8 \(this run: 16\)"
    ):
        train(wider, tmp_path / "gan2", progress=False)


def test_sr_evaluation_scores_y_with_a_border_of_the_scale_beside_bicubic(hr_folder: Path, tmp_path: Path) -> None:
    train(sr_config(hr_folder, max_steps=2), tmp_path / "run", progress=False)
    summary = evaluate_sr(tmp_path / "run", hr_folder, tmp_path / "eval", progress=False, device="cpu").summary
    assert set(summary["metrics"]) == {"psnr", "ssim", "bicubic_psnr", "bicubic_ssim"}
    assert summary["protocol"]["metrics"]["channels"] == "y" and summary["protocol"]["metrics"]["crop_border"] == 2
    # The baseline, computed independently: MATLAB rgb2ycbcr's Y of the 8-bit images, 2 px border, PSNR over 255.
    psnrs = []
    for i in range(6):
        hr = modcrop(read_image(hr_folder / f"p{i}.png"), 2).astype(np.float64)
        lr = np.clip(np.round(bicubic_downscale(hr, 2)), 0, 255)
        up = np.clip(np.round(bicubic_upscale(lr, 2)), 0, 255)
        y = [16 + (img @ np.array([65.481, 128.553, 24.966])) / 255 for img in (hr, up)]
        mse = np.mean((y[0][2:-2, 2:-2] - y[1][2:-2, 2:-2]) ** 2)
        psnrs.append(10 * np.log10(255**2 / mse))
    assert summary["metrics"]["bicubic_psnr"]["mean"] == pytest.approx(np.mean(psnrs), abs=1e-4)  # (float32 Y)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["metrics"]["bicubic_psnr"]["n"] == 6 and "bicubic" in metrics["protocol"]["baseline"]
    report = (tmp_path / "eval" / "report.html").read_text()
    assert "bicubic_psnr" in report
    assert read_image(tmp_path / "eval" / "outputs" / "p0.png").shape == (64, 64, 3)
    plain = evaluate_sr(tmp_path / "run", hr_folder, tmp_path / "eval2", progress=False, channels="all", crop_border=0)
    assert plain.summary["protocol"]["metrics"]["channels"] == "all"
    assert plain.summary["metrics"]["bicubic_psnr"]["mean"] != pytest.approx(np.mean(psnrs), abs=1e-3)


def test_cli_evaluate_dispatches_sr_runs(hr_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--recipe",
                "sr",
                "--data",
                str(hr_folder),
                *TINY,
                "--max-steps",
                "1",
                "--run-dir",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    assert main(["evaluate", str(run), str(hr_folder), "--no-progress", "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "bicubic_psnr" in out and (tmp_path / "ev" / "metrics.json").is_file()
    assert main(["evaluate", str(run), str(hr_folder), "--layout", "aligned", "--out", str(tmp_path / "e2")]) == 1
    assert "--layout does not apply to a super-resolution run" in capsys.readouterr().err


def test_sr_evaluation_reports_st_lpips_on_rgb_inside_the_border(
    hr_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--metrics psnr,st_lpips` on an SR run: ST-LPIPS of the model and of bicubic (the stlpips-pytorch wheel's
    AlexNet weights unless --st-lpips-net vgg), on RGB with the scale's border removed, as written to disk."""
    from diptych.metrics.lpips import load_st_lpips, lpips_distance

    run = tmp_path / "run"
    train(sr_config(hr_folder, max_steps=1), run, progress=False)
    args = ["evaluate", str(run), str(hr_folder), "--metrics", "psnr,st_lpips", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "ev")]) == 0
    assert "bicubic_st_lpips" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"psnr", "st_lpips", "bicubic_psnr", "bicubic_st_lpips"}
    assert metrics["protocol"]["feature_networks"]["st_lpips"]["net"] == "alex"
    model = load_st_lpips("alex")
    hr = torch.from_numpy(modcrop(read_image(hr_folder / "p0.png"), 2)).permute(2, 0, 1).float() / 127.5 - 1
    out = torch.from_numpy(read_image(tmp_path / "ev" / "outputs" / "p0.png")).permute(2, 0, 1).float() / 127.5 - 1
    expected = lpips_distance(model, out[:, 2:-2, 2:-2], hr[:, 2:-2, 2:-2])
    rows = (tmp_path / "ev" / "per_image.csv").read_text().splitlines()
    header, first = rows[0].split(","), dict(zip(rows[0].split(","), rows[1].split(","), strict=True))
    assert "bicubic_st_lpips" in header and float(first["st_lpips"]) == pytest.approx(expected, abs=1e-5)
    assert main([*args, "--st-lpips-net", "vgg", "--out", str(tmp_path / "vgg")]) == 0
    vgg = json.loads((tmp_path / "vgg" / "metrics.json").read_text())
    assert vgg["protocol"]["feature_networks"]["st_lpips"]["net"] == "vgg"
    assert vgg["metrics"]["st_lpips"]["mean"] != pytest.approx(metrics["metrics"]["st_lpips"]["mean"], abs=1e-6)
    assert main(["evaluate", str(run), str(hr_folder), "--metrics", "fid", "--out", str(tmp_path / "no")]) == 1
    assert "unknown metric 'fid'" in capsys.readouterr().err
    # Validation that selects by ST-LPIPS scores it as evaluate does.
    cfg = sr_config(hr_folder, max_steps=1)
    cfg.validation.root, cfg.validation.every, cfg.validation.metric = str(hr_folder), 1, "st_lpips"
    train(cfg, tmp_path / "val_run", progress=False)
    val = next(
        json.loads(x) for x in (tmp_path / "val_run" / "log.jsonl").read_text().splitlines() if "val_st_lpips" in x
    )
    scores = evaluate_sr(tmp_path / "val_run" / "checkpoints" / "best", hr_folder, tmp_path / "e3", progress=False,
                         metrics=["st_lpips"]).summary["metrics"]  # fmt: skip
    assert val["val_st_lpips"] == pytest.approx(scores["st_lpips"]["mean"], abs=1e-4)
    assert val["val_bicubic_st_lpips"] == pytest.approx(scores["bicubic_st_lpips"]["mean"], abs=1e-5)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `diptych train`, expect exit 1, return the one error line."""
    assert main(["train", *args, "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_user_errors_are_one_line(hr_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data", str(hr_folder), *TINY, "--max-steps", "1"]
    run = ["--run-dir", str(tmp_path / "run")]
    err = run_cli(["--recipe", "sr", *base, "--lr-crop", "40", *run], capsys)
    assert "p0.png: 64x64 is smaller than the HR crop 80x80 (--lr-crop 40 x --scale 2)" in err
    err = run_cli(["--recipe", "sr", *base, "--arch", "rrdbnet", "--scale", "3", *run], capsys)
    assert "--scale 3" in err
    err = run_cli(["--recipe", "sr", "--data", str(hr_folder), "--arch", "unet", "--max-steps", "1", *run], capsys)
    assert "--recipe sr trains upscalers, but the unet generator has no --scale; use --arch msrresnet" in err
    err = run_cli(["--recipe", "esrgan", *base, "--arch", "msrresnet", "--lambda-vgg", "1", *run], capsys)
    assert "--lambda-vgg 1.0 needs --vgg-weights FILE" in err
    err = run_cli(["--recipe", "sr", *base, "--degradation-settings", '{"second": {}}', *run], capsys)
    assert "--degradation-settings applies to --degradation realesrgan only" in err
    err = run_cli(
        ["--recipe", "sr", *base, "--degradation", "realesrgan", "--degradation-settings", '{"thrid": {}}', *run],
        capsys,
    )
    assert "thrid" in err and "unknown setting" in err
    vgg = tmp_path / "vgg19.pth"
    vgg.write_bytes(b"")
    err = run_cli(["--recipe", "esrgan", *base, "--arch", "msrresnet", "--vgg-weights", str(vgg), *run], capsys)
    assert "--lr-crop 16 x scale 2 = 32 px HR crops are too small for the VGG-style discriminator (at least 64)" in err
    err = run_cli(["--recipe", "sr", *base, "--crop-size", "64", *run], capsys)
    assert "--crop-size does not apply to --recipe sr (its crops are --lr-crop LR pixels" in err
    err = run_cli(["--recipe", "sr", *TINY, "--max-steps", "1", *run], capsys)
    assert "no dataset given; pass the folder of HR images (--data DIR)" in err
    err = run_cli(["--recipe", "sr", *base, "--val-fraction", "0.2", *run], capsys)
    assert "--val-fraction: --recipe sr validates on whole held-out HR images; give a folder of them" in err
    assert not (tmp_path / "run").exists()


def test_lr_hr_pairs_must_differ_by_the_scale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    crops = photo_crops("coffee", 40, 3, seed=1)
    for i, crop in enumerate(crops):
        write_image(tmp_path / "HR" / f"c{i}.png", crop)
        lr = crop[::2, ::2] if i != 1 else crop[:19, ::2]  # c1's LR is one row short
        write_image(tmp_path / "LR" / f"c{i}.png", np.ascontiguousarray(lr))
    args = ["--recipe", "sr", "--data", str(tmp_path / "HR"), "--lr-dir", str(tmp_path / "LR"), *TINY]
    err = run_cli([*args, "--max-steps", "1", "--run-dir", str(tmp_path / "run")], capsys)
    assert "HR/c1.png: HR size 40x40 is not 2 x its LR partner" in err and "(20x19, so 40x38 expected)" in err
    (tmp_path / "LR" / "c1.png").unlink()
    (tmp_path / "HR" / "c1.png").unlink()
    assert main(["train", *args, "--max-steps", "2", "--run-dir", str(tmp_path / "ok"), "--no-progress"]) == 0
    assert len(load_file(resolve_checkpoint(tmp_path / "ok") / "generator.safetensors")) > 0
    # realesrgan on pairs: the stored degradation (how evaluate makes LR) does not stop a resume
    real = ["--recipe", "realesrgan", "--arch", "msrresnet", "--lambda-perceptual", "0", "--ndf", "8"]
    real += ["--data", str(tmp_path / "HR"), "--lr-dir", str(tmp_path / "LR"), *TINY, "--no-progress"]
    assert main(["train", *real, "--max-steps", "1", "--run-dir", str(tmp_path / "real")]) == 0
    assert main(["train", "--resume", str(tmp_path / "real"), "--max-steps", "2", "--no-progress"]) == 0
    assert "_00000002" in resolve_checkpoint(tmp_path / "real").name


def test_a_small_x2_model_beats_bicubic_on_a_held_out_photo(tmp_path: Path) -> None:
    """300 steps (about 5 s on one core) on three real photos; scored on part of a fourth, Y channel, 2 px border."""
    for name in ("astronaut", "chelsea", "coffee"):
        write_image(tmp_path / "train" / f"{name}.png", sample_photo(name)[:256, :256])
    write_image(tmp_path / "test" / "rocket.png", sample_photo("rocket")[100:228, 200:328])
    config = RunConfig().use_recipe("sr")
    config.generator.scale, config.generator.ngf, config.generator.n_blocks = 2, 16, 2
    config.method.lr_crop = 24
    config.data.root, config.data.workers, config.data.batch_size = str(tmp_path / "train"), 0, 8
    config.train.max_steps, config.train.lr, config.train.ema, config.train.lr_policy = 300, 1e-3, 0.99, "cosine"
    config.train.save_every = config.train.log_every = 300
    train(config, tmp_path / "run", progress=False)
    scores = evaluate_sr(tmp_path / "run", tmp_path / "test", tmp_path / "eval", progress=False).summary["metrics"]
    assert scores["psnr"]["mean"] > scores["bicubic_psnr"]["mean"] + 0.3, scores


def test_data_check_reports_sr_data_for_a_scale(hr_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(hr_folder), "--scale", "2", "--lr-crop", "16"]) == 0
    assert "6 usable HR images for x2 with --lr-crop 16 (3 x uint8); 0 problem(s)" in capsys.readouterr().out
    write_image(hr_folder / "small.png", np.zeros((20, 30, 3), np.uint8))
    assert main(["data", "check", str(hr_folder), "--scale", "2", "--lr-crop", "16"]) == 1
    captured = capsys.readouterr()
    assert "1 problem(s)" in captured.out and "small.png: 30x20 is smaller than the HR crop 32x32" in captured.err


def test_the_perceptual_loss_reads_local_vgg19_weights(hr_folder: Path, tmp_path: Path) -> None:
    """One realesrgan step with the perceptual loss from a VGG19 file in torchvision's layout (random weights; its
    conv1_2 term keeps the loss visible where conv5_4 of random weights alone rounds to 0 in the log)."""
    from safetensors.torch import save_file

    from diptych.nets.vgg import vgg_features

    torch.manual_seed(0)
    save_file(
        {f"features.{k}": v for k, v in vgg_features("vgg19").state_dict().items()}, tmp_path / "vgg19.safetensors"
    )
    cfg = sr_config(
        hr_folder, "realesrgan", max_steps=1, lambda_vgg=1.0, vgg_weights=str(tmp_path / "vgg19.safetensors")
    )
    train(cfg, tmp_path / "run", progress=False)
    log = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert log["G_VGG"] > 0 and {"G_L1", "G_GAN", "D"} <= set(log)


def test_esrgan_default_perceptual_loss_is_st_lpips_and_needs_no_file(hr_folder: Path, tmp_path: Path) -> None:
    """ESRGAN's perceptual term works offline by default: ST-LPIPS (VGG16) from the stlpips-pytorch wheel."""
    cfg = sr_config(hr_folder, "esrgan", max_steps=1, lambda_perceptual=1.0)
    train(cfg, tmp_path / "run", progress=False)
    log = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert log["G_ST_LPIPS"] > 0 and "G_VGG" not in log


def test_steps_flush_denormals_on_cpus_and_restore_the_default() -> None:
    tiny = torch.tensor([1e-39])  # a denormal float32
    with denormals_flushed(torch.device("cpu")):
        assert float(tiny * 1.0) == 0.0
    assert float(tiny * 1.0) > 0.0


def test_validation_scores_held_out_hr_images_as_evaluate_does(hr_folder: Path, tmp_path: Path) -> None:
    for i, crop in enumerate(photo_crops("coffee", 48, 2, seed=5)):
        write_image(tmp_path / "val" / f"v{i}.png", crop)
    cfg = sr_config(hr_folder, max_steps=2)
    cfg.validation.root, cfg.validation.every = str(tmp_path / "val"), 2
    train(cfg, tmp_path / "run", progress=False)
    logged = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    val = next(r for r in logged if "val_psnr" in r)
    assert {"val_psnr", "val_ssim", "val_l1", "val_bicubic_psnr"} <= set(val)
    best = tmp_path / "run" / "checkpoints" / "best"
    assert json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())["step"] == 2
    scores = evaluate_sr(best, tmp_path / "val", tmp_path / "eval", progress=False, device="cpu").summary["metrics"]
    assert val["val_psnr"] == pytest.approx(scores["psnr"]["mean"], abs=1e-3)
    assert val["val_bicubic_psnr"] == pytest.approx(scores["bicubic_psnr"]["mean"], abs=1e-4)


def test_no_flip_keeps_crops_as_they_are(hr_folder: Path) -> None:
    from diptych.data.io import to_tensor
    from diptych.recipes.sr import SRRecipe

    config = sr_config(hr_folder)
    config.data.flip = False
    dataset = SRRecipe.open_dataset(config, resume=False)
    image = to_tensor(read_image(hr_folder / "p0.png"))
    index = next(i for i, item in enumerate(dataset.items) if item.name == "p0")
    for seed in range(6):
        hr = dataset[(index, seed)]["HR"]
        windows = image.unfold(1, 32, 1).unfold(2, 32, 1)  # every 32 x 32 window: C x y x x x 32 x 32
        assert (windows == hr[:, None, None]).flatten(3).all(-1).all(0).any(), seed
