"""Super-resolution generators: output sizes, parameter counts of the standard models, skips, ranges, bf16."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from diptych.nets.compact import CompactSRNet
from diptych.nets.geometry import Geometry
from diptych.nets.inference import prepare_for_inference
from diptych.nets.rrdb import RRDBNet
from diptych.nets.sr import EFFECTIVE_REACH, SuperResolutionNet
from diptych.nets.srresnet import MSRResNet


def tiny(arch: str, channels: tuple[int, int], scale: int, **kwargs: object) -> SuperResolutionNet:
    """A few-kilobyte network of a family."""
    cin, cout = channels
    if arch == "msrresnet":
        return MSRResNet(cin, cout, scale, ngf=8, n_blocks=2, **kwargs)
    if arch == "rrdbnet":
        return RRDBNet(cin, cout, scale, ngf=8, n_blocks=1, growth=4, **kwargs)
    return CompactSRNet(cin, cout, scale, ngf=8, n_convs=2, **kwargs)


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


CASES = [
    ("msrresnet", 2),
    ("msrresnet", 3),
    ("msrresnet", 4),
    ("msrresnet", 8),
    ("rrdbnet", 1),
    ("rrdbnet", 2),
    ("rrdbnet", 4),
    ("compact", 2),
    ("compact", 3),
    ("compact", 4),
]


@pytest.mark.parametrize(("arch", "scale"), CASES)
@pytest.mark.parametrize("channels", [(1, 1), (3, 3), (4, 4), (1, 3)])
def test_output_is_exactly_scale_times_odd_inputs(arch: str, scale: int, channels: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = tiny(arch, channels, scale).eval()
    for h, w in [(7, 11), (1, 1), (5, 2)]:
        with torch.no_grad():
            y = net(torch.rand(2, channels[0], h, w) * 2 - 1)
        assert y.shape == (2, channels[1], scale * h, scale * w)
        assert torch.isfinite(y).all()
    assert net.geometry.scale == scale


def test_geometry_of_each_family() -> None:
    """Scale, padding and context (the receptive radius in input pixels, capped at EFFECTIVE_REACH body pixels)."""
    assert tiny("msrresnet", (3, 3), 4).geometry == Geometry(stride=1, multiple=1, min_side=1, scale=4, context=7)
    assert tiny("compact", (3, 3), 3).geometry == Geometry(stride=1, multiple=1, min_side=1, scale=3, context=4)
    # x2 and x1 RRDBNets fold 2x2 / 4x4 pixels into channels: inputs are padded to that multiple.
    assert tiny("rrdbnet", (3, 3), 4).geometry == Geometry(stride=1, multiple=1, min_side=1, scale=4, context=19)
    assert tiny("rrdbnet", (3, 3), 2).geometry == Geometry(stride=2, multiple=2, min_side=2, scale=2, context=38)
    assert tiny("rrdbnet", (3, 3), 1).geometry == Geometry(stride=4, multiple=4, min_side=4, scale=1, context=76)
    assert CompactSRNet(3, 3, 2, upscale=4).geometry.context == 19  # (+1 for the final bicubic resize)
    assert CompactSRNet(3, 3, 4, ngf=4, n_convs=40).geometry.context == EFFECTIVE_REACH
    with torch.device("meta"):
        assert RRDBNet(3, 3).geometry.context == EFFECTIVE_REACH == 32  # x4plus: 350 convolutions deep


@pytest.mark.parametrize(("arch", "scale"), [("msrresnet", 4), ("compact", 3), ("rrdbnet", 4)])
def test_context_is_the_receptive_radius(arch: str, scale: int) -> None:
    """The outputs of one LR column depend on input columns up to `context` pixels away and on none farther: the
    gradient is exactly zero beyond (a change there cannot reach them; nearer, a deep network's influence can be
    below float rounding, which is why EFFECTIVE_REACH caps the context)."""
    torch.manual_seed(0)
    net = tiny(arch, (3, 3), scale).eval()
    context, column = net.geometry.context, 2
    x = (torch.rand(1, 3, 8, column + context + 4) * 2 - 1).requires_grad_()
    net(x)[..., column * scale : (column + 1) * scale].sum().backward()
    reached = (x.grad.abs().sum(dim=(0, 1, 2)) > 0).nonzero().max().item() - column
    assert reached == context


def test_standard_models_have_the_published_parameter_counts() -> None:
    with torch.device("meta"):  # (no memory, no initialisation)
        assert n_params(RRDBNet(3, 3)) == 16_697_987  # ESRGAN / Real-ESRGAN x4plus: 23 blocks, 64 features, growth 32
        assert n_params(RRDBNet(3, 3, n_blocks=6)) == 4_467_779  # Real-ESRGAN's x4plus anime model
        assert n_params(MSRResNet(3, 3)) == 1_517_571  # BasicSR's MSRResNet x4: 16 blocks, 64 features
        assert n_params(CompactSRNet(3, 3)) == 621_424  # realesr-animevideov3: 64 features, 16 convs, x4, PReLU
        # x2 RRDBNet sees 4x the input channels; only its first convolution grows.
        assert n_params(RRDBNet(3, 3, scale=2)) - n_params(RRDBNet(3, 3)) == 64 * 9 * 9


@pytest.mark.parametrize("pixel_range", ["signed", "unit"])
def test_global_skips_add_the_nearest_or_bilinear_upscaled_input(pixel_range: str) -> None:
    x = torch.rand(1, 3, 5, 7) * 2 - 1
    compact = tiny("compact", (3, 3), 4, pixel_range=pixel_range)
    msr = tiny("msrresnet", (3, 3), 2, pixel_range=pixel_range)
    with torch.no_grad():
        for last in (compact.body[-1], msr.conv_last):
            last.weight.zero_()
            last.bias.fill_(0.25)  # a constant residual, in the weights' value range
        shift = 0.5 if pixel_range == "unit" else 0.25  # [0, 1] -> [-1, 1] doubles a difference
        assert torch.allclose(compact(x), F.interpolate(x, scale_factor=4, mode="nearest") + shift, atol=1e-6)
        bilinear = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        assert torch.allclose(msr(x), bilinear + shift, atol=1e-6)


def test_skip_needs_matching_channels() -> None:
    assert not tiny("compact", (1, 3), 2).skip and tiny("compact", (3, 3), 2).skip
    assert not tiny("msrresnet", (3, 3), 2, skip=False).skip
    with pytest.raises(ValueError, match=r"global skip needs as many input as output channels \(1 != 3\)"):
        tiny("msrresnet", (1, 3), 2, skip=True)


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: RRDBNet(3, 3, scale=3), "RRDBNet upscales by 1, 2, 4, not 3"),
        (lambda: MSRResNet(3, 3, scale=5), "MSRResNet upscales by 2, 3, 4, 8, not 5"),
        (lambda: CompactSRNet(3, 3, scale=4, upscale=2), "not scale 4 with upscale 2"),
        (lambda: CompactSRNet(3, 3, act="gelu"), "unknown activation 'gelu'"),
        (lambda: CompactSRNet(3, 3, pixel_range="percent"), "unknown pixel_range 'percent'"),
    ],
)
def test_unsupported_settings_are_refused(build: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        build()  # type: ignore[operator]


def test_compact_with_a_final_resize_is_the_bicubic_resize_of_its_pixel_shuffle_output() -> None:
    torch.manual_seed(1)
    x4 = tiny("compact", (3, 3), 4).eval()
    x3 = tiny("compact", (3, 3), 3, upscale=4).eval()
    x3.load_state_dict(x4.state_dict())
    x = torch.rand(1, 3, 6, 9) * 2 - 1
    with torch.no_grad():
        expected = F.interpolate(x4(x), size=(18, 27), mode="bicubic", align_corners=False)
        assert torch.allclose(x3(x), expected, atol=1e-6)


@pytest.mark.parametrize(("arch", "scale"), [("msrresnet", 4), ("rrdbnet", 2), ("compact", 3)])
def test_bf16_forward_is_finite_and_close_to_fp32(arch: str, scale: int) -> None:
    torch.manual_seed(2)
    net = tiny(arch, (3, 3), scale).eval()
    x = torch.rand(1, 3, 9, 13) * 2 - 1
    with torch.no_grad():
        fp32 = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = net(x)
    assert bf16.shape == fp32.shape and torch.isfinite(bf16).all()
    assert (bf16.float() - fp32).abs().max() < 0.1  # bf16 keeps 8 bits of mantissa
    # As the translator runs it: conv weights stored in bf16 (PReLU slopes stay fp32).
    prepare_for_inference(net, torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        stored = net(x)
    assert torch.isfinite(stored).all() and (stored.float() - fp32).abs().max() < 0.1


@pytest.mark.parametrize("arch", ["msrresnet", "rrdbnet"])
def test_activation_checkpointing_gives_the_same_output_and_gradients(arch: str) -> None:
    torch.manual_seed(3)
    net = tiny(arch, (3, 3), 2)
    x = torch.rand(1, 3, 6, 6)
    plain = net(x)
    plain.square().mean().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net.checkpointing = True
    again = net(x)
    again.square().mean().backward()
    assert torch.equal(plain, again)
    assert all(torch.allclose(g, p.grad, atol=1e-7) for g, p in zip(grads, net.parameters(), strict=True))


@pytest.mark.parametrize("arch", ["msrresnet", "rrdbnet"])
def test_residual_networks_start_with_esrgans_small_initialisation(arch: str) -> None:
    torch.manual_seed(5)
    net = MSRResNet(3, 3, ngf=32, n_blocks=2) if arch == "msrresnet" else RRDBNet(3, 3, ngf=32, n_blocks=1)
    for conv in [m for m in net.modules() if isinstance(m, nn.Conv2d)]:
        fan_in = conv.weight[0].numel()
        assert conv.weight.std().item() == pytest.approx(0.1 * (2 / fan_in) ** 0.5, rel=0.15)  # Kaiming x 0.1
        assert torch.all(conv.bias == 0)


def test_compact_body_passes_its_signal_and_gradient_through_all_its_layers() -> None:
    """With PyTorch's default initialisation the 18-layer body shrank its input ~1e6x and its first layer's gradient
    fell under Adam's epsilon, so it never learnt; Kaiming-normal keeps both of order one (the head starts at 0.1x)."""
    torch.manual_seed(0)
    net = CompactSRNet(3, 3, scale=4)
    x = torch.rand(2, 3, 24, 24) * 2 - 1
    body = net.body[:-1](x)  # the features the head reads
    assert 0.1 < body.std().item() < 10
    out = net.body(x)
    out.square().mean().backward()
    first = net.body[0].weight.grad.abs().mean().item()
    assert first > 1e-6, first  # 7e-12 with the default initialisation
    head = net.body[-1].weight
    assert head.std().item() == pytest.approx(0.1 * (2 / head[0].numel()) ** 0.5, rel=0.15)
