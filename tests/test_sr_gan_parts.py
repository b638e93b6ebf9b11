"""The SR GANs' parts: the relativistic average GAN loss on hand-made logits, the VGG-style and U-Net
discriminators, and the VGG19 perceptual layers of ESRGAN and Real-ESRGAN."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from diptych.data.degradations import gaussian_kernel_1d, unsharp_mask
from diptych.losses import SRPerceptualLoss, relativistic_average_loss
from diptych.nets.sr_discriminators import UNetDiscriminatorSN, VGGStyleDiscriminator
from diptych.nets.vgg import vgg_features


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_relativistic_average_loss_on_hand_made_logits() -> None:
    """real (2, 0), fake (-1, 1): the averages are 1 and 0. BCE(x, 1) = softplus(-x), BCE(x, 0) = softplus(x)."""
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])
    # D: real - mean(fake) = (2, 0) should be real; fake - mean(real) = (-2, 0) should be fake.
    d = 0.5 * ((softplus(-2) + softplus(0)) / 2 + (softplus(-2) + softplus(0)) / 2)
    # G: the targets swap.
    g = 0.5 * ((softplus(2) + softplus(0)) / 2 + (softplus(2) + softplus(0)) / 2)
    assert relativistic_average_loss(real, fake, for_discriminator=True).item() == pytest.approx(d, abs=1e-6)
    assert relativistic_average_loss(real, fake, for_discriminator=False).item() == pytest.approx(g, abs=1e-6)


def test_relativistic_gradients_follow_basicsr() -> None:
    """D's loss treats each average as a constant; G's keeps the gradient through the fakes' average."""
    real, fake = torch.tensor([2.0, 0.0], requires_grad=True), torch.tensor([-1.0, 1.0], requires_grad=True)
    relativistic_average_loss(real, fake, for_discriminator=True).backward()
    # d/dfake of 0.5 * mean(softplus(fake - 1)) only: 0.5 * sigmoid(fake - 1) / 2
    expected = 0.25 * torch.sigmoid(torch.tensor([-2.0, 0.0]))
    torch.testing.assert_close(fake.grad, expected)
    fake.grad = None
    relativistic_average_loss(real.detach(), fake, for_discriminator=False).backward()
    # G: 0.5 * mean(softplus(real - mean(fake))) + 0.5 * mean(softplus(-(fake - mean(real))))
    r, f = real.detach(), fake.detach()
    through_mean = 0.5 * torch.sigmoid(r - f.mean()).mean() * (-1 / 2)
    direct = 0.5 * (-torch.sigmoid(-(f - r.mean()))) / 2
    torch.testing.assert_close(fake.grad, direct + through_mean)


def test_vgg_style_discriminator_is_esrgans_at_128_and_takes_other_sizes() -> None:
    torch.manual_seed(0)
    d = VGGStyleDiscriminator(3, ndf=8).eval()
    convs = [m for m in d.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 10 and sum(c.stride == (2, 2) for c in convs) == 5
    assert [c.out_channels for c in convs] == [8, 8, 16, 16, 32, 32, 64, 64, 64, 64]
    x = torch.rand(2, 3, 128, 128)
    assert d.features(x).shape == (2, 64, 4, 4)  # the 4 x 4 features of ESRGAN's VGG128: pooling changes nothing
    assert torch.equal(d.pool(d.features(x)), d.features(x))
    assert d(x).shape == (2, 1) and d(torch.rand(1, 3, 48, 80)).shape == (1, 1)
    assert d.classifier[0].in_features == 64 * 16 and d.classifier[0].out_features == 100


def test_unet_discriminator_gives_a_logit_per_pixel_with_spectral_norm() -> None:
    torch.manual_seed(0)
    d = UNetDiscriminatorSN(3, ndf=8)
    for size in ((64, 64), (37, 50)):
        assert d(torch.rand(2, 3, *size)).shape == (2, 1, *size)
    normalised = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d) and parametrize.is_parametrized(m)]
    assert len(normalised) == 8  # every conv but the first and the last, as Real-ESRGAN's
    assert not parametrize.is_parametrized(d.conv0) and not parametrize.is_parametrized(d.out)


@pytest.mark.parametrize(("layers", "taps"), [("esrgan", [34]), ("realesrgan", [2, 7, 16, 25, 34])])
def test_perceptual_layers_are_the_papers_pre_activation_features(layers: str, taps: list[int]) -> None:
    torch.manual_seed(0)
    features = vgg_features("vgg19")
    names = {2: "conv1_2", 7: "conv2_2", 16: "conv3_4", 25: "conv4_4", 34: "conv5_4"}
    assert all(isinstance(features[i], torch.nn.Conv2d) for i in taps), [names[i] for i in taps]
    loss = SRPerceptualLoss(None, layers, features=features)
    x, y = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    weights = dict(zip(taps, SRPerceptualLoss.LAYERS[layers][1], strict=True))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    fx, fy, expected = ((x + 1) / 2 - mean) / std, ((y + 1) / 2 - mean) / std, 0.0
    for i, layer in enumerate(features[: taps[-1] + 1]):
        fx, fy = layer(fx), layer(fy)
        if i in weights:
            expected += weights[i] * F.l1_loss(fx, fy).item()
    assert loss(x, y).item() == pytest.approx(expected, rel=1e-5)


def test_unsharp_mask_is_real_esrgans_sharpened_target() -> None:
    """OpenCV's kernel for size 51 (sigma 8), constants unchanged, and a step edge sharpened as an independent
    scipy computation of img + 0.5 (img - blur), blended by the blurred mask of |detail| > 10/255."""
    from scipy.ndimage import convolve1d

    k = gaussian_kernel_1d(51)
    sigma = 0.3 * ((51 - 1) / 2 - 1) + 0.8
    assert sigma == pytest.approx(8.0) and float(k.sum()) == pytest.approx(1.0)
    assert float(k[25] / k[33]) == pytest.approx(math.exp(8**2 / (2 * 8**2)))
    flat = torch.full((1, 3, 40, 40), 0.3)
    torch.testing.assert_close(unsharp_mask(flat), flat)
    img = torch.full((1, 1, 40, 60), 0.2)
    img[..., 30:] = 0.8
    kernel = k.numpy()

    def blur(a):
        a = convolve1d(a, kernel, axis=0, mode="mirror")
        return convolve1d(a, kernel, axis=1, mode="mirror")

    x = img[0, 0].double().numpy()
    residual = x - blur(x)
    soft = blur((abs(residual) * 255 > 10).astype(float))
    sharp = (x + 0.5 * residual).clip(0, 1)
    expected = soft * sharp + (1 - soft) * x
    got = unsharp_mask(img)[0, 0].double().numpy()
    assert abs(got - expected).max() < 1e-5
    assert got[20, 29] < 0.2 and got[20, 30] > 0.8  # overshoot on both sides of the edge


def test_unsharp_mask_settings_scale_narrow_and_gate_the_overshoot() -> None:
    """A step from 0.2 to 0.8: weight 0 and a threshold above the step's detail leave it as it is; a larger weight
    overshoots more; a smaller kernel sharpens a narrower zone around the edge."""
    img = torch.full((1, 1, 8, 80), 0.2)
    img[..., 40:] = 0.8
    torch.testing.assert_close(unsharp_mask(img, weight=0.0), img)
    torch.testing.assert_close(unsharp_mask(img, threshold=255), img)
    half, double = unsharp_mask(img, weight=0.5)[0, 0, 4], unsharp_mask(img, weight=1.0)[0, 0, 4]
    assert 0.2 - double[39] > 0.2 - half[39] > 0 and double[40] - 0.8 > half[40] - 0.8 > 0
    narrow = unsharp_mask(img, radius=9)[0, 0, 4]
    changed = [int(((x - img[0, 0, 4]).abs() > 1e-3).sum()) for x in (narrow, half)]
    assert 0 < changed[0] < changed[1]
