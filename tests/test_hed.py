"""HED soft edges: the network matches the published PyTorch port's layout and forward pass; make-pairs uses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from diptych.data.io import read_image, write_image
from diptych.nets.hed import HEDNetwork, hed_state_dict

from .conftest import photo_crops
from .test_data_tools import run_cli


def vgg_block(cin: int, cout: int, convs: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.MaxPool2d(2, 2)] if pool else []
    for i in range(convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


class PortLayoutHED(nn.Module):
    """An independent, test-only HED in the port's layout: named stages (pool first), Score convs, Combine + sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.netVggOne = vgg_block(3, 64, 2, False)
        self.netVggTwo = vgg_block(64, 128, 2, True)
        self.netVggThr = vgg_block(128, 256, 3, True)
        self.netVggFou = vgg_block(256, 512, 3, True)
        self.netVggFiv = vgg_block(512, 512, 3, True)
        for name, c in zip(("One", "Two", "Thr", "Fou", "Fiv"), (64, 128, 256, 512, 512), strict=True):
            setattr(self, f"netScore{name}", nn.Conv2d(c, 1, 1))
        self.netCombine = nn.Sequential(nn.Conv2d(5, 1, 1), nn.Sigmoid())

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        bgr = rgb[:, [2, 1, 0]] * 255.0 - torch.tensor([104.00698793, 116.66876762, 122.67891434]).view(1, 3, 1, 1)
        x, scores = bgr, []
        for name in ("One", "Two", "Thr", "Fou", "Fiv"):
            x = getattr(self, f"netVgg{name}")(x)
            score = getattr(self, f"netScore{name}")(x)
            scores.append(F.interpolate(score, size=rgb.shape[-2:], mode="bilinear", align_corners=False))
        return self.netCombine(torch.cat(scores, 1))


@pytest.fixture(scope="module")
def port_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[PortLayoutHED, Path]:
    """A randomly initialised port-layout HED and its weights saved as the port's file is ('module' prefixes)."""
    torch.manual_seed(0)
    ref = PortLayoutHED().eval()
    with torch.no_grad():  # scale the side outputs so the fused map is not saturated for test images
        for p in ref.parameters():
            p.mul_(0.5)
    path = tmp_path_factory.mktemp("hed") / "network-bsds500.pytorch"
    torch.save({k.replace("net", "module", 1): v for k, v in ref.state_dict().items()}, path)
    return ref, path


def test_hed_matches_the_port_layout(port_weights: tuple[PortLayoutHED, Path]) -> None:
    ref, path = port_weights
    model = HEDNetwork().eval()
    model.load_state_dict(hed_state_dict(torch.load(path, weights_only=True)), strict=True)
    x = torch.rand(2, 3, 50, 70)  # not a multiple of 16: side outputs are interpolated back to 50x70
    with torch.no_grad():
        ours, theirs = model(x), ref(x)
    assert ours.shape == (2, 1, 50, 70)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert ours.min() >= 0 and ours.max() <= 1 and ours.std() > 1e-4


def test_make_pairs_with_hed_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], port_weights: tuple[PortLayoutHED, Path]
) -> None:
    ref, path = port_weights
    photo = photo_crops("chelsea", 48, 1)[0]
    write_image(tmp_path / "in" / "c.png", photo)
    argv = ["data", "make-pairs", tmp_path / "in", tmp_path / "out", "--task", "edges", "--split", "1,0"]
    code, _, err = run_cli(capsys, *argv, "--hed-weights", path)
    assert code == 0, err
    a = read_image(tmp_path / "out" / "train" / "A" / "c.png")
    with torch.no_grad():
        prob = ref(torch.from_numpy(photo / 255.0).permute(2, 0, 1)[None].float())[0, 0].numpy()
    assert a.shape == (48, 48, 1) and a.dtype == np.uint8
    assert np.abs(a[:, :, 0].astype(float) - np.round((1 - prob) * 255)).max() <= 1  # black edges on white

    (tmp_path / "bad.pth").write_bytes(b"junk")
    code, _, err = run_cli(capsys, *argv, "--overwrite", "--hed-weights", tmp_path / "bad.pth")
    assert code == 1 and "bad.pth" in err and err.count("\n") == 1
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    code, _, err = run_cli(capsys, *argv, "--overwrite", "--hed-weights", tmp_path / "other.pth")
    assert code == 1 and "not HED weights" in err
    code, _, err = run_cli(capsys, *argv, "--overwrite", "--hed-weights", tmp_path / "none.pth")
    assert code == 1 and "file not found" in err
    code, _, err = run_cli(capsys, *argv[:-4], "--task", "blur", "--hed-weights", path)
    assert code == 1 and "only applies to --task edges" in err
