"""The discriminators of the super-resolution GANs: ESRGAN's VGG-style classifier and Real-ESRGAN's U-Net with
spectral norm (one realness logit per pixel)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import spectral_normalise

LEAKY_SLOPE = 0.2
VGG_STAGES = 5  # stride-2 stages: a 128 px input ends as 4 x 4 features, as ESRGAN's VGG128
VGG_POOLED = 4  # features are averaged to 4 x 4 before the classifier (the identity for 128 px inputs)


class VGGStyleDiscriminator(nn.Module):
    """ESRGAN's VGG-style discriminator: five stages of (3x3 conv, 4x4 stride-2 conv) with batch norm and leaky
    ReLU (widths ndf, 2, 4, 8, 8 x ndf), then a 100-unit layer and one logit per image. For 128 px inputs it is
    ESRGAN's VGG128; other sizes (at least 32 px, 64 to train on single images) are averaged to the same 4 x 4
    features first."""

    def __init__(self, in_channels: int, ndf: int = 64, spectral_norm: bool = False) -> None:
        super().__init__()
        widths = [ndf, ndf * 2, ndf * 4, ndf * 8, ndf * 8]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 3, 1, 1), nn.LeakyReLU(LEAKY_SLOPE, True)]
        cin = ndf
        for i, width in enumerate(widths):
            if i > 0:  # (the first stage's 3x3 conv is the stem above, without norm)
                layers += [nn.Conv2d(cin, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width)]
                layers.append(nn.LeakyReLU(LEAKY_SLOPE, True))
            layers += [nn.Conv2d(width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width)]
            layers.append(nn.LeakyReLU(LEAKY_SLOPE, True))
            cin = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(VGG_POOLED)
        self.classifier = nn.Sequential(
            nn.Linear(cin * VGG_POOLED * VGG_POOLED, 100), nn.LeakyReLU(LEAKY_SLOPE, True), nn.Linear(100, 1)
        )
        if spectral_norm:
            spectral_normalise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x C x H x W (H, W >= 32) -> N x 1 logits."""
        return self.classifier(self.pool(self.features(x)).flatten(1))


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's discriminator: a U-Net (three stride-2 convs down, bilinear x2 up with skip additions) whose
    convolutions but the first and last are spectrally normalised; one logit per input pixel. Any size; sides
    that are not multiples of 8 are reflect-padded and the logits cropped back."""

    MULTIPLE = 8

    def __init__(self, in_channels: int, ndf: int = 64) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(in_channels, ndf, 3, 1, 1)
        self.down = nn.ModuleList([nn.Conv2d(ndf * 2**i, ndf * 2 ** (i + 1), 4, 2, 1, bias=False) for i in range(3)])
        self.up = nn.ModuleList(
            [nn.Conv2d(ndf * 2 ** (3 - i), ndf * 2 ** (2 - i), 3, 1, 1, bias=False) for i in range(3)]
        )
        self.refine = nn.Sequential(
            nn.Conv2d(ndf, ndf, 3, 1, 1, bias=False),
            nn.LeakyReLU(LEAKY_SLOPE, True),
            nn.Conv2d(ndf, ndf, 3, 1, 1, bias=False),
            nn.LeakyReLU(LEAKY_SLOPE, True),
        )
        for module in (self.down, self.up, self.refine):
            spectral_normalise(module)
        self.out = nn.Conv2d(ndf, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x C x H x W -> N x 1 x H x W logits."""
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.MULTIPLE, -w % self.MULTIPLE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect" if min(h, w) > max(pad_h, pad_w) else "replicate")
        skips = [F.leaky_relu(self.conv0(x), LEAKY_SLOPE)]
        for conv in self.down:
            skips.append(F.leaky_relu(conv(skips[-1]), LEAKY_SLOPE))
        y = skips.pop()
        for conv in self.up:
            y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
            y = F.leaky_relu(conv(y), LEAKY_SLOPE) + skips.pop()
        return self.out(self.refine(y))[..., :h, :w]
