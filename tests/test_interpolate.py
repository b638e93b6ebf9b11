"""`diptych interpolate`: (1 - alpha) x A + alpha x B of two checkpoints' generators, refused across architectures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from diptych.checkpoint import open_generator, write_checkpoint_folder
from diptych.cli import main
from diptych.config import RunConfig
from diptych.errors import ConfigError
from diptych.interpolate import INTERPOLATION_FILE, blend, interpolate
from diptych.nets import create_generator, init_weights


def checkpoint(folder: Path, seed: int, ema: bool = False, ngf: int = 4) -> tuple[Path, nn.Module]:
    """A tiny U-Net checkpoint with weights drawn from `seed` (and an average of other weights with ema)."""
    config = RunConfig()
    config.generator.in_channels = config.generator.out_channels = 3
    config.generator.depth, config.generator.ngf = 3, ngf
    config.data.sample_type = "uint8"
    torch.manual_seed(seed)
    generator = create_generator(config.generator)
    init_weights(generator, "normal", 0.5)
    averaged = {}
    if ema:
        config.train.ema = 0.9
        average = create_generator(config.generator)
        init_weights(average, "normal", 0.5)
        averaged = {"generator": average}
    write_checkpoint_folder(folder, config.validate(), {"generator": generator}, averaged=averaged)
    return folder, averaged.get("generator", generator)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return open_generator(path)[0].state_dict()


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_the_endpoints_reproduce_each_run_exactly(tmp_path: Path, alpha: float) -> None:
    a, net_a = checkpoint(tmp_path / "a", 1)
    b, net_b = checkpoint(tmp_path / "b", 2)
    out = interpolate(a, b, alpha, tmp_path / "mix").out_dir
    expected = (net_a if alpha == 0 else net_b).state_dict()
    got = weights(out)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def test_half_is_the_mean_and_translates_like_any_checkpoint(tmp_path: Path) -> None:
    a, net_a = checkpoint(tmp_path / "a", 1)
    b, net_b = checkpoint(tmp_path / "b", 2)
    out = interpolate(a, b, 0.5, tmp_path / "mix").out_dir
    got, wa, wb = weights(out), net_a.state_dict(), net_b.state_dict()
    float_keys = [k for k, v in wa.items() if v.is_floating_point()]
    assert float_keys
    for key in float_keys:
        torch.testing.assert_close(got[key], (wa[key] + wb[key]) / 2, rtol=0, atol=1e-7)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    generator = open_generator(out)[0].eval()
    assert generator(x).shape == (1, 3, 16, 16)
    assert json.loads((out / INTERPOLATION_FILE).read_text())["alpha"] == 0.5


def test_moving_averages_are_blended_where_present_and_said_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, average_a = checkpoint(tmp_path / "a", 1, ema=True)
    b, _ = checkpoint(tmp_path / "b", 2)
    assert main(["interpolate", str(a), str(b), "--alpha", "0", "--out", str(tmp_path / "mix")]) == 0
    assert "(ema weights)" in capsys.readouterr().out
    got = weights(tmp_path / "mix")
    for key, value in average_a.state_dict().items():
        assert torch.equal(got[key], value), key
    note = json.loads((tmp_path / "mix" / INTERPOLATION_FILE).read_text())
    assert note["weights"] == {"a": "ema", "b": "raw"}
    raw = tmp_path / "raw"
    assert main(["interpolate", str(a), str(b), "--alpha", "0", "--weights", "raw", "--out", str(raw)]) == 0
    assert json.loads((raw / INTERPOLATION_FILE).read_text())["weights"] == {"a": "raw", "b": "raw"}
    assert not all(torch.equal(weights(raw)[k], v) for k, v in average_a.state_dict().items())


def test_different_architectures_are_refused_in_one_line_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = checkpoint(tmp_path / "a", 1, ngf=4)
    b, _ = checkpoint(tmp_path / "b", 2, ngf=8)
    assert main(["interpolate", str(a), str(b), "--alpha", "0.3", "--out", str(tmp_path / "mix")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "different generator architectures (ngf: 4 vs 8)" in err
    assert not (tmp_path / "mix").exists()


def test_alpha_and_out_are_checked(tmp_path: Path) -> None:
    a, _ = checkpoint(tmp_path / "a", 1)
    with pytest.raises(ConfigError, match=r"--alpha 1.5 must be a number in \[0, 1\]"):
        interpolate(a, a, 1.5, tmp_path / "mix")
    with pytest.raises(ConfigError, match="already exists"):
        interpolate(a, a, 0.5, a)
    with pytest.raises(SystemExit):
        main(["interpolate", str(a), str(a), "--alpha", "-0.1", "--out", str(tmp_path / "mix")])


def test_blend_keeps_integer_buffers_of_the_first() -> None:
    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([3.0, 7.0]), "n": torch.tensor(9)}
    mixed = blend(a, b, 0.25)
    assert torch.equal(mixed["w"], torch.tensor([1.5, 4.0])) and int(mixed["n"]) == 5
