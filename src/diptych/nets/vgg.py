"""VGG feature stacks with torchvision's parameter names (`features.N.*`), for perceptual losses and LPIPS."""

from __future__ import annotations

from torch import nn

from .blurpool import BlurDownsample

CONFIGS = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512),
}


def vgg_features(name: str, antialiased: bool = False) -> nn.Sequential:
    """The convolutional part of VGG16/VGG19 (3x3 convs, ReLU, 2x2 max pools), laid out as torchvision's.

    antialiased: each max pool becomes a 2x2 max pool with stride 1 followed by a BlurDownsample, as in the
    shift-tolerant LPIPS network (so every later layer index moves up by one per pool)."""
    layers: list[nn.Module] = []
    cin = 3
    for item in CONFIGS[name]:
        if item == "M" and antialiased:
            layers += [nn.MaxPool2d(2, stride=1), BlurDownsample(cin)]
        elif item == "M":
            layers.append(nn.MaxPool2d(2, stride=2))
        else:
            layers += [nn.Conv2d(cin, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            cin = int(item)
    return nn.Sequential(*layers)
