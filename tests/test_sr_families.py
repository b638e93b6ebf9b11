"""The super-resolution generator families in the configuration: presets, scales each family supports, no
normalisation, skips the channels allow, and weights that keep their own initialisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from diptych.cli import build_parser, config_from_args
from diptych.config import GeneratorConfig, RunConfig
from diptych.errors import ConfigError
from diptych.nets import GENERATOR_FAMILIES
from diptych.nets.geometry import Geometry
from diptych.recipes import RECIPES
from diptych.recipes.base import check_scale

from .conftest import photo_crops, write_aligned
from .test_cli import assert_one_error_line, run_cli

SR_FAMILIES = ("msrresnet", "rrdbnet", "compact")


def generator(tmp_path: Path, *flags: str) -> GeneratorConfig:
    """The validated generator config of `diptych train` with these flags."""
    args = build_parser().parse_args(["train", "--data", str(tmp_path), *flags])
    return config_from_args(args).validate().generator


@pytest.mark.parametrize(
    ("preset", "arch", "scale", "geometry"),
    [
        ("rrdbnet_x4", "rrdbnet", 4, Geometry(1, 1, 1, 4, context=32)),  # (the effective reach, not 349)
        ("rrdbnet_x2", "rrdbnet", 2, Geometry(2, 2, 2, 2, context=64)),  # (a pixel-unshuffled input: even sides)
        ("msrresnet_x3", "msrresnet", 3, Geometry(1, 1, 1, 3, context=32)),  # (16 blocks: 35, capped)
        ("compact_x4", "compact", 4, Geometry(1, 1, 1, 4, context=18)),
        ("compact_x2", "compact", 2, Geometry(1, 1, 1, 2, context=18)),
    ],
)
def test_presets_give_the_family_its_scale_and_geometry(
    preset: str, arch: str, scale: int, geometry: Geometry, tmp_path: Path
) -> None:
    g = generator(tmp_path, "--netG", preset)
    assert (g.arch, g.scale, g.norm, g.geometry()) == (arch, scale, "none", geometry)
    g.in_channels = g.out_channels = 3
    assert g.build().geometry == geometry


def test_family_defaults_are_the_standard_models(tmp_path: Path) -> None:
    rrdb, msr, compact = (generator(tmp_path, "--arch", arch) for arch in ("rrdbnet", "msrresnet", "compact"))
    assert (rrdb.n_blocks, rrdb.growth, rrdb.ngf, rrdb.scale) == (23, 32, 64, 4)
    assert (msr.n_blocks, msr.skip, msr.pixel_range) == (16, "auto", "signed")
    assert (compact.n_convs, compact.act, compact.upscale) == (16, "prelu", 0)
    # Switching from the U-Net leaves its (batch) norm behind; a norm given by the user is kept and refused.
    assert {g.norm for g in (rrdb, msr, compact)} == {"none"}


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--arch", "rrdbnet", "--scale", "3"], "--scale 3: the rrdbnet generator upscales by 1, 2 or 4"),
        (["--netG", "msrresnet_x4", "--scale", "5"], "--scale 5: the msrresnet generator upscales by 2, 3, 4 or 8"),
        (["--arch", "compact", "--scale", "9"], "--scale 9 (generator.scale) is out of range"),
        (["--arch", "compact", "--g-norm", "batch"], "--g-norm batch: the compact generator has no normalisation"),
        (["--arch", "compact", "--scale", "4", "--upscale", "2"], "--upscale 2: the pixel shuffle must be one of"),
        (["--arch", "rrdbnet", "--ngf", "2"], "--ngf 2 (generator.ngf) is out of range: use an integer in [4, 256]"),
        (["--arch", "rrdbnet", "--growth", "200"], "--growth 200 (generator.growth) is out of range"),
        (
            ["--arch", "msrresnet", "--skip", "on", "--in-channels", "1", "--out-channels", "3"],
            "--skip on: a global skip adds the upscaled input to the output, which needs as many input as output "
            "channels (1 != 3)",
        ),
    ],
)
def test_settings_a_family_cannot_build_are_one_line_errors(
    flags: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match=r"^[^\n]+$") as caught:
        generator(tmp_path, *flags)
    assert words in str(caught.value)
    code, _, err = run_cli(["train", "--data", tmp_path, "--run-dir", tmp_path / "run", *flags], capsys)
    assert code == 1 and words in assert_one_error_line(err)
    assert not (tmp_path / "run").exists()


def test_a_scale_the_network_does_not_support_is_refused_when_built_from_python() -> None:
    g = RunConfig().use_generator("compact")
    g.in_channels, g.out_channels, g.scale = 3, 3, 5
    with pytest.raises(ConfigError, match="--scale 5: the compact generator upscales by 2, 3, 4 or 8"):
        g.build()


@pytest.mark.parametrize("arch", SR_FAMILIES)
def test_the_trainer_keeps_the_upscalers_own_initialisation(arch: str) -> None:
    assert GENERATOR_FAMILIES[arch].initialises_itself and not GENERATOR_FAMILIES["unet"].initialises_itself
    config = RunConfig()
    g = config.use_generator(arch)
    g.ngf, g.in_channels, g.out_channels = 32, 3, 3
    config.discriminator.ndf, config.discriminator.n_layers = 8, 2
    config.train.init, config.train.init_gain = "normal", 0.02
    torch.manual_seed(0)
    recipe = RECIPES["pix2pix"](config, torch.device("cpu"))
    # The recipe's generator keeps the initialisation its family gives it ...
    convs = [m for m in recipe.networks["generator"].modules() if isinstance(m, nn.Conv2d)]
    stds = [conv.weight.std().item() for conv in convs[1:-1]]  # (a body conv: fan-in 32 x 9 = 288)
    if arch == "compact":  # Kaiming-normal: std sqrt(2 / fan_in) = 0.083
        assert stds == pytest.approx([(2 / 288) ** 0.5] * len(stds), rel=0.15)
    else:  # ESRGAN's Kaiming x 0.1 = 0.0083
        assert max(stds) < 0.012
    # ... while the discriminator got --init-type normal with gain 0.02.
    d_convs = [m for m in recipe.networks["discriminator"].modules() if isinstance(m, nn.Conv2d)]
    assert d_convs[1].weight.std().item() == pytest.approx(0.02, rel=0.15)


@pytest.mark.parametrize("recipe", ["pix2pix", "cyclegan"])
def test_same_size_recipes_refuse_an_upscaling_generator_before_any_work(
    recipe: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_aligned(tmp_path / "data", [(c, c) for c in photo_crops("astronaut", 32, 2)])
    argv = ["train", "--data", data, "--run-dir", tmp_path / "run", "--recipe", recipe, "--netG", "compact_x2"]
    argv += ["--g-norm", "none"]  # (cyclegan sets instance norm, which the upscalers do not have)
    code, _, err = run_cli(argv, capsys)
    line = assert_one_error_line(err, "--scale 2: the compact generator upscales")
    assert code == 1 and f"--recipe {recipe} trains on targets of their inputs' size" in line
    assert not (tmp_path / "run").exists()
    config = RunConfig().use_recipe(recipe)
    config.use_generator("rrdbnet").scale = 1  # (x1: same size, on a pixel-unshuffled input)
    check_scale(RECIPES[recipe], config)
