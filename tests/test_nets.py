"""Network shapes, receptive fields, parameter layout and initialisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diptych.errors import ConfigError
from diptych.nets import PatchDiscriminator, UNetConfig, UNetGenerator, create_generator, init_weights, receptive_field
from diptych.nets.geometry import Geometry
from diptych.nets.layers import crop_padded, make_norm, pad_to_multiple


@pytest.mark.parametrize("depth", [1, 3, 5, 7, 8])
@pytest.mark.parametrize("size", [(8, 8), (37, 53), (64, 17), (130, 129)])
def test_unet_any_size_and_depth(depth: int, size: tuple[int, int]) -> None:
    g = UNetGenerator(3, 2, depth=depth, ngf=4).eval()
    x = torch.rand(2, 3, *size) * 2 - 1
    y = g(x)
    assert y.shape == (2, 2, *size)
    assert y.abs().max() <= 1.0  # tanh output


def test_unet_levels_pad_themselves_instead_of_the_input() -> None:
    """An 1100 px side costs 1120 px of work, not 1280 (depth 8): the input is padded to a multiple of 32, and
    deeper levels give their odd inputs one reflected row or column."""
    g = UNetGenerator(3, 3, depth=7, ngf=4).eval()
    seen: list[tuple[int, ...]] = []
    hooks = [b.register_forward_pre_hook(lambda _, a: seen.append(tuple(a[0].shape[-2:]))) for b in g.down]
    assert g(torch.rand(1, 3, 1100, 200)).shape == (1, 3, 1100, 200)
    assert seen == [(1120, 224), (560, 112), (280, 56), (140, 28), (70, 14), (36, 8), (18, 4)]
    for h in hooks:
        h.remove()
    assert g(torch.rand(1, 3, 5, 9)).shape == (1, 3, 5, 9)  # below the stride: padded up to it first
    assert g.geometry == Geometry(stride=128, multiple=32, min_side=128, scale=1)


def test_unet_256_matches_reference_layout() -> None:
    g = UNetGenerator(3, 3, depth=8, ngf=64)
    names = [n for n, _ in g.named_parameters()]
    assert names[0] == "down.0.conv.weight"
    assert max(n.count(".") for n in names) == 3  # flat: down.3.norm.weight, not model.model.1.model.3...
    # The reference unet_256 has 54,413,955 parameters; our bias rule adds the outermost and innermost biases.
    assert sum(p.numel() for p in g.parameters()) == 54_413_955 + 64 + 512
    dropouts = [i for i, blk in enumerate(g.up) if isinstance(blk.dropout, nn.Dropout)]
    assert dropouts == [4, 5, 6]  # the paper's dropout in the first three decoder blocks after the bottleneck
    assert g.up[4].dropout.p == 0.5


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_conv_bias_only_where_no_norm_follows(norm: str) -> None:
    g = UNetGenerator(3, 3, depth=5, ngf=4, norm=norm)
    has_norm = norm != "none"
    assert g.down[0].conv.bias is not None  # outermost: no norm after it
    assert g.down[4].conv.bias is not None  # innermost: no norm after it
    assert (g.down[2].conv.bias is None) == has_norm
    assert (g.up[2].conv.bias is None) == has_norm
    assert g.up[0].conv.bias is not None  # output layer
    d = PatchDiscriminator(6, ndf=4, n_layers=3, norm=norm)
    assert (d.blocks[1].conv.bias is None) == has_norm
    assert d.blocks[0].conv.bias is not None and d.head.bias is not None


@pytest.mark.parametrize("upsample", ["resize", "bilinear"])
def test_dropout_zero_and_resize_upsampling(upsample: str) -> None:
    g = UNetGenerator(3, 3, depth=6, ngf=4, dropout=0.0, upsample=upsample).train()
    assert not any(isinstance(m, nn.Dropout) for m in g.modules())
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in g.modules())
    x = torch.randn(1, 3, 50, 70)
    assert g(x).shape == x.shape
    assert g.up[0].upsample.mode == {"resize": "nearest", "bilinear": "bilinear"}[upsample]


def test_eval_mode_is_deterministic_and_train_mode_is_noisy() -> None:
    torch.manual_seed(0)
    g = UNetGenerator(3, 3, depth=6, ngf=4)
    x = torch.randn(1, 3, 64, 64)
    g.eval()
    assert torch.equal(g(x), g(x))
    g.train()
    with torch.no_grad():
        assert not torch.equal(g(x), g(x))  # dropout


def _empirical_receptive_field(d: nn.Module, size: int) -> int:
    """Width of the input region that influences the centre output pixel (by gradients)."""
    x = torch.randn(1, 2, size, size, requires_grad=True)
    out = d(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    cols = (x.grad.abs().sum(dim=(0, 1, 2)) > 0).nonzero().flatten()
    return int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize(("n_layers", "rf"), [(0, 1), (1, 16), (2, 34), (3, 70), (4, 142), (5, 286)])
def test_patchgan_receptive_fields(n_layers: int, rf: int) -> None:
    assert receptive_field(n_layers) == rf
    d = PatchDiscriminator(2, ndf=2, n_layers=n_layers, norm="none")
    nn.init.constant_(d.head.weight, 1.0)  # no exactly-zero weights hiding part of the field
    for m in d.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.uniform_(m.weight, 0.1, 1.0)
    size = 1024 if n_layers == 5 else 512
    empirical = _empirical_receptive_field(d, size)
    # Zero padding at an interior pixel does not shrink the field; strided 4x4 kernels may cover <= rf.
    assert empirical <= rf and empirical >= rf - 2**n_layers


def test_patchgan_70_gives_30x30_on_256() -> None:
    d = PatchDiscriminator(6, ndf=64, n_layers=3)
    assert d(torch.randn(1, 6, 256, 256)).shape == (1, 1, 30, 30)
    assert sum(p.numel() for p in d.parameters()) == 2_768_705  # as the reference basic D
    feats = d.forward_features(torch.randn(1, 6, 256, 256))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 1]


@pytest.mark.parametrize("kind", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_weights(kind: str) -> None:
    torch.manual_seed(0)
    g = UNetGenerator(3, 3, depth=5, ngf=16)
    init_weights(g, kind, 0.02)
    w = g.down[2].conv.weight
    if kind == "normal":
        assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002
    elif kind == "xavier":
        fan_in, fan_out = w.shape[1] * 16, w.shape[0] * 16
        expected = 0.02 * (2.0 / (fan_in + fan_out)) ** 0.5
        assert abs(w.std().item() - expected) / expected < 0.1
    elif kind == "kaiming":
        expected = (2.0 / (w.shape[1] * 16)) ** 0.5
        assert abs(w.std().item() - expected) / expected < 0.1
    else:
        flat = g.down[3].conv.weight.flatten(1)  # 64 x 512: rows orthogonal
        gram = flat @ flat.T / 0.02**2
        assert torch.allclose(gram, torch.eye(gram.shape[0]), atol=1e-3)
    assert torch.all(g.down[0].conv.bias == 0)
    bn = g.down[1].norm
    assert abs(bn.weight.mean().item() - 1.0) < 0.02 and torch.all(bn.bias == 0)


def test_pad_and_crop_roundtrip() -> None:
    for h, w in [(1, 1), (3, 200), (255, 256), (300, 7)]:
        x = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w)
        padded, size = pad_to_multiple(x, 64)
        assert padded.shape[-2] % 64 == 0 and padded.shape[-1] % 64 == 0
        assert torch.equal(crop_padded(padded, padded.shape, size), x)
        # An output at `scale` times the padded size is cropped to `scale` times the original size.
        upscaled = torch.repeat_interleave(torch.repeat_interleave(padded, 3, dim=-2), 3, dim=-1)
        assert crop_padded(upscaled, padded.shape, size, scale=3).shape[-2:] == (3 * h, 3 * w)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_instance_norm_keeps_channels_last_with_instance_norms_values(batch: int, dtype: torch.dtype) -> None:
    """A channels-last input stays channels-last, forward and backward, with F.instance_norm's values on NCHW."""
    torch.manual_seed(0)
    x = (torch.randn(batch, 5, 9, 7) * 3 + 1).to(dtype)
    grad = torch.randn(batch, 5, 9, 7).to(dtype)
    norm = make_norm("instance", 5)
    plain = x.clone().requires_grad_(True)
    nn.functional.instance_norm(plain).backward(grad)
    last = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    out = norm(last)
    out.backward(grad.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert last.grad is not None and last.grad.is_contiguous(memory_format=torch.channels_last)
    tol = {"rtol": 0.02, "atol": 0.02} if dtype == torch.bfloat16 else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(out, nn.functional.instance_norm(x.float()).to(dtype), **tol)
    torch.testing.assert_close(last.grad, plain.grad, **tol)
    # NCHW inputs take nn.InstanceNorm2d's own path, bit for bit.
    assert torch.equal(norm(x), nn.InstanceNorm2d(5)(x))


def test_create_generator_requires_channels() -> None:
    with pytest.raises(ValueError, match="channels"):
        create_generator(UNetConfig())
    g = create_generator(UNetConfig(depth=3, ngf=4, in_channels=4, out_channels=1))
    assert g(torch.randn(1, 4, 8, 8)).shape == (1, 1, 8, 8)


@pytest.mark.parametrize(("in_channels", "skip", "residual"), [(3, None, True), (1, None, False), (1, True, True)])
def test_unet_skip_adds_the_input_clamped(in_channels: int, skip: bool | None, residual: bool) -> None:
    """With a skip the output is clamp(input + tanh branch, -1, 1), a grey input added to every channel; auto
    (None) adds it only when the channel counts match."""
    torch.manual_seed(0)
    g = UNetGenerator(in_channels, 3, depth=4, ngf=4, skip=skip).eval()
    plain = UNetGenerator(in_channels, 3, depth=4, ngf=4).eval()
    plain.load_state_dict(g.state_dict())  # the skip adds no weights
    x = torch.rand(2, in_channels, 20, 28) * 2 - 1
    branch = plain(x)
    expected = (branch + x).clamp(-1, 1) if residual else branch
    assert torch.equal(g(x), expected)
    assert g.skip is residual


def test_unet_skip_on_refuses_channels_it_cannot_add() -> None:
    with pytest.raises(ValueError, match="1 or 3 input channels, not 2"):
        UNetGenerator(2, 3, depth=3, ngf=4, skip=True)
    with pytest.raises(ConfigError, match=r"^--skip on: the U-Net adds its input .* not 2; use --skip auto or off$"):
        create_generator(UNetConfig(depth=3, ngf=4, in_channels=2, out_channels=3, skip="on"))
    assert UNetConfig().skip == "off"  # the paper's U-Net has none by default
