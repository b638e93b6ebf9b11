"""The generator family registry: every family builds from its defaults, round-trips through JSON and refuses the
options of other families; and a family defined outside diptych's modules trains, translates and exports through
the CLI once it is registered (nothing else names families)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from diptych.cli import build_parser, config_from_args
from diptych.config import (
    V2_GENERATOR_KEYS,
    GeneratorConfig,
    RunConfig,
    config_from_dict,
    config_from_json,
    field_names,
    flag_name,
    generator_families,
    opt,
    within,
)
from diptych.errors import ConfigError
from diptych.nets import GENERATOR_FAMILIES, create_generator, generator_config, generator_spec
from diptych.nets.families import by_name
from diptych.nets.geometry import Geometry
from diptych.recipes.base import warn_below_generator_stride

from .conftest import TINY_FLAGS, photo_crops, write_aligned
from .test_cli import assert_one_error_line, run_cli

FAMILIES = list(GENERATOR_FAMILIES)
SHARED = {f.name for f in dataclasses.fields(GeneratorConfig)}


def own_fields(arch: str) -> list[dataclasses.Field]:
    """A family's fields beyond the shared ones."""
    return [f for f in dataclasses.fields(GENERATOR_FAMILIES[arch]) if f.name not in SHARED]


def foreign_fields() -> list[tuple[str, str, dataclasses.Field]]:
    """(family, the family owning the field, field) for every field of another family that a family lacks."""
    return [
        (arch, other, f)
        for arch in FAMILIES
        for other in FAMILIES
        for f in own_fields(other)
        if f.name not in field_names(GENERATOR_FAMILIES[arch])
    ]


def test_there_are_families_and_the_first_is_the_default() -> None:
    assert FAMILIES[:3] == ["unet", "resnet", "hd"] and generator_families() is GENERATOR_FAMILIES
    assert type(RunConfig().generator) is GENERATOR_FAMILIES["unet"]
    assert RunConfig().to_dict()["generator"]["arch"] == "unet"


@pytest.mark.parametrize("arch", FAMILIES)
def test_every_family_builds_from_its_defaults_with_its_declared_geometry(arch: str) -> None:
    cfg = RunConfig().use_generator(arch)
    cfg.ngf, cfg.in_channels, cfg.out_channels = 4, 2, 3
    assert type(cfg) is GENERATOR_FAMILIES[arch] and cfg.arch == arch
    net = create_generator(cfg).eval()
    assert net.geometry == cfg.geometry()  # known without building, as the module reports it
    side = cfg.geometry().min_side + 3  # off the padding multiple
    with torch.no_grad():
        out = net(torch.rand(1, 2, side, side + 5) * 2 - 1)
    assert out.shape == (1, 3, side * cfg.geometry().scale, (side + 5) * cfg.geometry().scale)
    assert out.abs().max() <= 1


@pytest.mark.parametrize("arch", FAMILIES)
def test_every_family_round_trips_through_json_with_its_own_fields_only(arch: str) -> None:
    config = RunConfig()
    g = config.use_generator(arch)
    g.in_channels, g.out_channels = 1, 3
    for f in own_fields(arch):  # a value other than the default that the family accepts, where the field has one
        if f.metadata.get("choices"):
            setattr(g, f.name, f.metadata["choices"][-1])
        elif isinstance(f.default, int):
            bounds = f.metadata["bounds"]
            for value in (int(bounds.low) + 1, int(min(bounds.high, 1024))):
                setattr(g, f.name, value)
                with contextlib.suppress(ConfigError):
                    g.check()  # (rules between fields, e.g. a pixel shuffle at least the scale)
                    break
    stored = json.loads(config.validate().to_json())
    assert set(stored["generator"]) == field_names(GENERATOR_FAMILIES[arch])
    assert set(stored["generator"]) == SHARED | {f.name for f in own_fields(arch)}
    back = config_from_json(config.to_json(), "config.json", stored=True)
    assert back.generator == g and type(back.generator) is type(g)
    spec = generator_spec(g)  # the checkpoint manifest's architecture spec
    assert spec == {"kind": "generator", **stored["generator"]}
    assert generator_config(json.loads(json.dumps(spec)), "manifest.json") == g


@pytest.mark.parametrize(("arch", "owner", "f"), foreign_fields(), ids=lambda v: getattr(v, "name", v))
def test_a_flag_of_another_family_is_refused(arch: str, owner: str, f: dataclasses.Field, tmp_path: Path) -> None:
    value = str(f.metadata["choices"][0]) if f.metadata.get("choices") else str(f.default)
    args = build_parser().parse_args(["train", "--data", str(tmp_path), "--arch", arch, f"--{flag_name(f)}", value])
    with pytest.raises(ConfigError) as caught:
        config_from_args(args)
    message = str(caught.value)
    assert f"--{flag_name(f)} is an option of --arch " in message and owner in message
    assert f"not of the {arch} generator this run uses; drop it" in message
    # The same field in a configuration file written by hand (no format_version: held to the current format).
    with pytest.raises(ConfigError, match=rf"c\.json: generator\.{f.name} is an option of --arch .*not of the {arch}"):
        config_from_dict({"generator": {"arch": arch, f.name: f.default}}, "c.json")


def test_netg_presets_come_from_the_families_and_explicit_flags_win(tmp_path: Path) -> None:
    parser = build_parser()

    def generator(*flags: str) -> Any:
        return config_from_args(parser.parse_args(["train", "--data", str(tmp_path), *flags])).validate().generator

    assert (generator("--netG", "unet_128").arch, generator("--netG", "unet_128").depth) == ("unet", 7)
    assert generator("--netG", "resnet_6blocks", "--n-blocks", "2").n_blocks == 2
    assert generator("--netG", "resnet_6blocks", "--arch", "unet").arch == "unet"  # (the preset's n_blocks unused)
    cyclegan = generator("--recipe", "cyclegan", "--netG", "resnet_6blocks")
    assert (cyclegan.arch, cyclegan.n_blocks, cyclegan.norm, cyclegan.dropout) == ("resnet", 6, "instance", 0.0)
    unet = generator("--recipe", "cyclegan", "--arch", "unet", "--ngf", "8")
    assert (unet.arch, unet.ngf, unet.norm, unet.dropout) == ("unet", 8, "instance", 0.5)  # shared fields kept


def test_format_2_generator_sections_keep_their_familys_fields() -> None:
    """Format 2 stored every family's fields: the migration keeps the chosen family's (and refuses nothing)."""
    format_2 = ("unet", "resnet", "hd")  # (the families format 2 knew)
    known = set(V2_GENERATOR_KEYS) | {f.name for f in dataclasses.fields(GeneratorConfig)}  # (no later field)
    stored = {
        f.name: f.default for arch in format_2 for f in dataclasses.fields(GENERATOR_FAMILIES[arch]) if f.name in known
    }
    raw = {"format_version": 2, "recipe": "pix2pix", "generator": {**stored, "arch": "resnet", "n_blocks": 3}}
    g = config_from_dict(raw, "old.json").generator
    assert (g.arch, g.n_blocks) == ("resnet", 3) and not hasattr(g, "depth")
    raw["generator"]["arch"] = "nope"
    with pytest.raises(ConfigError, match=r"old\.json: --arch 'nope' \(generator\.arch\) is not one of: unet, resnet"):
        config_from_dict(raw, "old.json")


def test_a_field_of_another_family_cannot_be_set_by_mistake() -> None:
    g = RunConfig().generator
    with pytest.raises(AttributeError):
        g.n_blocks = 3  # type: ignore[attr-defined]  # a U-Net has no residual blocks
    config = RunConfig()
    config.generator.arch = "resnet"  # the name changed, not the fields: a bug, not a user error
    with pytest.raises(ValueError, match="use_generator"):
        config.validate()


# A family from outside diptych's own modules, registered for a test as a new module would be.


class ToyGenerator(nn.Module):
    """`blocks` 3x3 convs (same size) and tanh."""

    def __init__(self, in_channels: int, out_channels: int, width: int, blocks: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(blocks):
            layers += [nn.Conv2d(in_channels if i == 0 else width, width, 3, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers, nn.Conv2d(width, out_channels, 3, padding=1), nn.Tanh())
        self.geometry = Geometry(stride=1, multiple=1, min_side=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@dataclass(slots=True)
class ToyConfig(GeneratorConfig):
    """--arch toy: a plain conv stack."""

    help: ClassVar[str] = "a plain stack of 3x3 convolutions"
    presets: ClassVar[dict[str, dict[str, Any]]] = {"toy_2": {"toy_blocks": 2}}

    arch: str = "toy"
    toy_blocks: int = opt(1, "convolutions before the output one", bounds=within(1, 4))

    def build(self) -> nn.Module:
        """The conv stack."""
        return ToyGenerator(self.in_channels, self.out_channels, self.ngf, self.toy_blocks)

    def geometry(self) -> Geometry:
        """Same size, no padding."""
        return Geometry(stride=1, multiple=1, min_side=1)


def test_a_new_family_is_one_class_and_one_registration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(GENERATOR_FAMILIES, "toy", ToyConfig)
    data = write_aligned(tmp_path / "data", [(c, 255 - c) for c in photo_crops("astronaut", 32, 2)])
    run = tmp_path / "run"
    tiny = TINY_FLAGS[2:]  # (no --depth: not a toy's option)
    code, _, err = run_cli(
        ["train", "--data", data, "--run-dir", run, *tiny, "--netG", "toy_2", "--max-steps", "1"], capsys
    )
    assert code == 0, err
    stored = json.loads((run / "config.json").read_text())["generator"]
    assert stored == {"arch": "toy", "in_channels": 3, "ngf": 8, "norm": "batch", "out_channels": 3, "toy_blocks": 2}
    code, _, err = run_cli(
        ["translate", run, data / "img_000.png", "--out", tmp_path / "out", "--device", "cpu"], capsys
    )
    assert code == 0, err
    assert np.asarray(Image.open(tmp_path / "out" / "img_000.png")).shape == (32, 64, 3)
    code, _, err = run_cli(["export", run, "--out", tmp_path / "toy.pt", "--format", "torchscript"], capsys)
    assert code == 0, err
    code, _, err = run_cli(
        ["train", "--data", data, "--run-dir", tmp_path / "r2", "--arch", "toy", "--depth", "4"], capsys
    )
    assert code == 1
    assert_one_error_line(err, "--depth is an option of --arch unet, not of the toy generator this run uses")
    assert not (tmp_path / "r2").exists()
    code, help_text, _ = run_cli(["train", "--help"], capsys)
    assert code == 0 and "--arch toy: a plain stack of 3x3 convolutions" in help_text and "--toy-blocks N" in help_text


@dataclass(slots=True)
class IntegerDropoutConfig(ToyConfig):
    """A family whose --dropout would be an integer."""

    arch: str = "int_dropout"
    dropout: int = opt(0, "not a fraction", bounds=within(0, 1))


@dataclass(slots=True)
class TwinConfig(ToyConfig):
    """A family that reuses ToyConfig's preset name."""

    arch: str = "twin"


def test_families_must_agree_on_shared_option_names_and_presets() -> None:
    with pytest.raises(TypeError, match=r"IntegerDropoutConfig\.dropout is a \('int', None\)"):
        by_name(*GENERATOR_FAMILIES.values(), IntegerDropoutConfig)
    with pytest.raises(TypeError, match=r"TwinConfig reuses a preset name of another family: \{'toy_2'\}"):
        by_name(ToyConfig, TwinConfig)
    assert list(by_name(ToyConfig, *GENERATOR_FAMILIES.values())) == ["toy", *FAMILIES]


@pytest.mark.parametrize(
    ("arch", "side", "hint"),
    [("unet", 16, "--depth 4"), ("hd", 16, "fewer --n-down-global"), ("resnet", 3, "larger crops")],
)
def test_images_below_the_stride_get_the_familys_hint(arch: str, side: int, hint: str) -> None:
    config = RunConfig()
    config.use_generator(arch)
    warnings: list[str] = []
    warn_below_generator_stride(config, side, warnings.append)
    stride = config.generator.geometry().stride
    assert warnings == [
        f"training images ({side} px) are smaller than the generator's stride ({stride}); they are mirror-padded, "
        f"which costs compute: consider {hint}"
    ]
    warn_below_generator_stride(config, stride, warnings.append)
    assert len(warnings) == 1
