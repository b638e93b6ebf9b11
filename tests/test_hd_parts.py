"""pix2pixHD building blocks: coarse-to-fine generator, multi-scale discriminator, feature matching,
perceptual loss with local weights, and label/instance map conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from diptych.data.labels import instance_boundaries, one_hot_labels
from diptych.errors import ConfigError, DataError
from diptych.losses import (
    AdversarialLoss,
    PerceptualLoss,
    feature_matching_loss,
    load_vgg19_features,
    multiscale_adversarial,
)
from diptych.nets.hd import HDGenerator
from diptych.nets.multiscale import MultiscaleDiscriminator
from diptych.nets.resnet import ResnetGenerator
from diptych.nets.vgg import vgg_features


@pytest.mark.parametrize("n_local", [0, 1, 2])
@pytest.mark.parametrize("size", [(40, 72), (64, 64), (33, 100)])
def test_hd_generator_any_size(n_local: int, size: tuple[int, int]) -> None:
    g = HDGenerator(3, 2, ngf=4, n_local=n_local, n_down_global=2, n_blocks_global=2, n_blocks_local=1).eval()
    x = torch.rand(2, 3, *size) * 2 - 1
    y = g(x)
    assert y.shape == (2, 2, *size) and y.abs().max() <= 1
    assert g.geometry.stride == 2 ** (2 + n_local)


def test_global_weights_move_from_stage_one_to_stage_two() -> None:
    """Stage 1 trains the global generator alone; stage 2 wraps the same weights in a local enhancer."""
    torch.manual_seed(0)
    stage1 = HDGenerator(3, 3, ngf=4, n_local=0, n_down_global=2, n_blocks_global=1)
    stage2 = HDGenerator(3, 3, ngf=2, n_local=1, n_down_global=2, n_blocks_global=1)  # global width 2 * 2 = 4
    stage2.load_global(stage1.state_dict())
    for key, value in stage1.global_generator.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(stage2.global_generator.state_dict()[key], value)
    x = torch.rand(1, 3, 32, 32)
    g1 = stage1.global_generator.eval()
    assert torch.equal(g1.features(x), stage2.global_generator.eval().features(x))
    with pytest.raises(ValueError, match="do not fit"):
        HDGenerator(3, 3, ngf=8, n_local=1, n_down_global=2, n_blocks_global=1).load_global(stage1.state_dict())


def test_global_generator_parameter_count_matches_pix2pixhd_default() -> None:
    # pix2pixHD's G1 (ngf 64, 4 downsamplings, 9 blocks, instance norm) without conv biases before norms.
    g = ResnetGenerator(3, 3, 64, 4, 9, "instance")
    assert abs(sum(p.numel() for p in g.parameters()) / 1e6 - 182.4) < 0.5


def test_multiscale_discriminator_outputs() -> None:
    d = MultiscaleDiscriminator(6, num_d=3, ndf=4, n_layers=3)
    outs = d(torch.rand(2, 6, 256, 256))
    assert len(outs) == 3
    assert [o[-1].shape[-1] for o in outs] == [30, 14, 6]  # the pyramid halves the input per scale
    assert all(len(o) == 5 for o in outs)  # 4 feature blocks + logits


def test_feature_matching_loss_values() -> None:
    torch.manual_seed(0)
    real = [[torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 1, 1)] for _ in range(2)]
    fake = [[torch.ones(1, 2, 4, 4), torch.full((1, 2, 2, 2), 2.0), torch.full((1, 1, 1, 1), 9.0)] for _ in range(2)]
    # per scale: (4/2) * (1 + 2) = 6; averaged over 2 scales -> 6; the logits are not matched.
    assert feature_matching_loss(fake, real).item() == pytest.approx(6.0)
    assert feature_matching_loss(real, real).item() == 0.0
    fake_grad = [[t.clone().requires_grad_(True) for t in s] for s in fake]
    real_grad = [[t.clone().requires_grad_(True) for t in s] for s in real]
    feature_matching_loss(fake_grad, real_grad).backward()
    assert real_grad[0][0].grad is None and fake_grad[0][0].grad is not None  # real features are a fixed target


def test_multiscale_adversarial_sums_scales() -> None:
    outs = [[torch.zeros(1, 1, 2, 2)], [torch.zeros(1, 1, 1, 1)]]
    assert multiscale_adversarial(AdversarialLoss("lsgan"), outs, True).item() == pytest.approx(2.0)


def test_perceptual_loss_with_random_vgg19_from_a_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    features = vgg_features("vgg19")
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    torch.save(
        {f"features.{k}": v for k, v in features.state_dict().items()} | {"classifier.0.weight": torch.zeros(2, 2)},
        tmp_path / "vgg19.pth",
    )
    loss = PerceptualLoss(tmp_path / "vgg19.pth")
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert loss(x, x).item() == 0.0
    near, far = loss(x, (x + 0.05).clamp(-1, 1)).item(), loss(x, (x + 0.5).clamp(-1, 1)).item()
    assert 0 < near < far
    out = x.clone().requires_grad_(True)
    loss(out, (x + 0.3).clamp(-1, 1)).backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())  # the backbone is frozen


def test_perceptual_loss_needs_a_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--vgg-weights FILE"):
        load_vgg19_features(None)
    with pytest.raises(ConfigError, match="not found"):
        load_vgg19_features(tmp_path / "vgg19.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match="not VGG19"):
        load_vgg19_features(tmp_path / "bad.pth")


def test_one_hot_labels_with_ignore_label() -> None:
    labels = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    oh = one_hot_labels(labels, 3, ignore_label=255)
    assert oh.shape == (3, 2, 2)
    assert oh[:, 0, 0].tolist() == [1, 0, 0] and oh[:, 1, 0].tolist() == [0, 0, 1]
    assert oh[:, 1, 1].tolist() == [0, 0, 0]  # ignored
    with pytest.raises(DataError, match=r"label 255, outside 0\.\.2; raise --label-nc or set --ignore-label 255"):
        one_hot_labels(labels, 3, name="label map")


def test_instance_boundaries() -> None:
    inst = np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3]])
    edges = instance_boundaries(inst)[0]
    assert edges.tolist() == [[0, 1, 1], [1, 1, 1], [1, 1, 1]]
    assert instance_boundaries(np.ones((4, 4)))[0].sum() == 0
    with pytest.raises(DataError, match="differs from its label map"):
        instance_boundaries(inst, size=(4, 3))
