"""Loading generators trained by junyanz/pytorch-CycleGAN-and-pix2pix (fixtures made by its own code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diptych.errors import CheckpointError
from diptych.reference import convert_reference_unet, import_reference_generator
from diptych.translate import Translator

FIXTURES = Path(__file__).parent / "fixtures" / "reference"


@pytest.mark.parametrize(
    ("name", "depth", "norm", "in_ch"),
    [
        ("unet256_batch_ngf4", 8, "batch", 3),
        ("unet128_batch_ngf4_in1", 7, "batch", 1),
        ("unet256_instance_ngf4", 8, "instance", 3),
    ],
)
def test_converted_generator_reproduces_reference_output(name: str, depth: int, norm: str, in_ch: int) -> None:
    state = torch.load(FIXTURES / f"{name}_net_G.pth", weights_only=True)
    io = torch.load(FIXTURES / f"{name}_io.pt", weights_only=True)
    cfg, converted = convert_reference_unet(state)
    assert (cfg.depth, cfg.norm, cfg.in_channels, cfg.out_channels, cfg.ngf) == (depth, norm, in_ch, 3, 4)
    from diptych.nets import create_generator

    g = create_generator(cfg).eval()
    g.load_state_dict(converted, strict=True)
    with torch.no_grad():
        out = g(io["input"])
    scale = io["output"].abs().max().item()
    assert torch.allclose(out, io["output"], rtol=1e-5, atol=1e-6 * scale)


def test_import_writes_a_translatable_checkpoint(tmp_path: Path) -> None:
    out = import_reference_generator(FIXTURES / "unet256_instance_ngf4_net_G.pth", tmp_path / "ref")
    assert (out / "generator.safetensors").is_file() and (out / "config.json").is_file()
    io = torch.load(FIXTURES / "unet256_instance_ngf4_io.pt", weights_only=True)
    t = Translator.load(out, device="cpu", precision="fp32")  # bit-for-bit with the reference
    assert t.mode == "eval"
    y = t.translate_tensor(io["input"])
    assert torch.allclose(y, io["output"], atol=1e-6)
    # Any size works on the imported model too.
    arr = np.random.default_rng(0).integers(0, 256, (45, 300, 3), dtype=np.uint8)
    assert t(arr).shape == (45, 300, 3)


def test_batchnorm_import_defaults_to_reference_test_behaviour(tmp_path: Path) -> None:
    out = import_reference_generator(FIXTURES / "unet256_batch_ngf4_net_G.pth", tmp_path / "ref")
    assert Translator.load(out, device="cpu").mode == "paper"  # test.py without --eval
    assert Translator.load(out, device="cpu", mode="eval").mode == "eval"


def test_dataparallel_prefix_is_stripped() -> None:
    state = torch.load(FIXTURES / "unet128_batch_ngf4_in1_net_G.pth", weights_only=True)
    cfg, _ = convert_reference_unet({f"module.{k}": v for k, v in state.items()})
    assert cfg.depth == 7


def test_non_reference_files_rejected(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a reference U-Net"):
        convert_reference_unet({"conv.weight": torch.zeros(1)})
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match=r"junk\.pth"):
        import_reference_generator(junk, tmp_path / "out")
    assert not (tmp_path / "out").exists()
