"""LPIPS (Zhang et al. 2018, v0.1) without torchvision; backbone and linear-layer weights come from local files.

Expected weights: the torchvision ImageNet backbone (alexnet-owt-*.pth or vgg16-*.pth: keys `features.N.*`) and
the LPIPS linear layers (the lpips package's weights/v0.1/alex.pth or vgg.pth: keys `linK.model.1.weight`);
one merged file holding both sets of keys works too.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..nets.vgg import vgg_features
from ..weights import load_state_dict_file

# (conv in, conv out, kernel, stride, padding) per conv, and after which ReLU (by features index) a tap is taken.
ALEX_CONVS = {
    0: (3, 64, 11, 4, 2),
    3: (64, 192, 5, 1, 2),
    6: (192, 384, 3, 1, 1),
    8: (384, 256, 3, 1, 1),
    10: (256, 256, 3, 1, 1),
}
ALEX_POOLS = (2, 5)
ALEX_TAPS = (1, 4, 7, 9, 11)
VGG_TAPS = (3, 8, 15, 22, 29)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def _alexnet_features() -> tuple[nn.Sequential, tuple[int, ...], list[int]]:
    layers: list[nn.Module] = []
    for i in range(12):
        if i in ALEX_CONVS:
            cin, cout, k, s, p = ALEX_CONVS[i]
            layers.append(nn.Conv2d(cin, cout, k, stride=s, padding=p))
        elif i in ALEX_POOLS:
            layers.append(nn.MaxPool2d(3, stride=2))
        else:
            layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers), ALEX_TAPS, [64, 192, 384, 256, 256]


def _vgg16_features() -> tuple[nn.Sequential, tuple[int, ...], list[int]]:
    return vgg_features("vgg16"), VGG_TAPS, [64, 128, 256, 512, 512]


class LPIPS(nn.Module):
    """Learned perceptual distance between two image batches in [-1, 1]; returns one value per image."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in ("alex", "vgg"):
            raise ConfigError(f"unknown LPIPS network {net!r}; use alex or vgg")
        self.net = net
        self.features, self.taps, chans = _alexnet_features() if net == "alex" else _vgg16_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in chans)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        x = (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
            if i == self.taps[-1]:
                break
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(x.shape[0], device=x.device)
        for fx, fy, lin in zip(self._taps(x), self._taps(y), self.lins, strict=True):
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((nx - ny) ** 2).mean(dim=(1, 2, 3))
        return total


def load_lpips(files: list[str | Path], net: str = "alex") -> LPIPS:
    """LPIPS with the backbone and linear-layer weights read from the given local file(s)."""
    if not files:
        raise ConfigError(
            "LPIPS needs local weights: pass --lpips-weights BACKBONE.pth LIN.pth (torchvision's alexnet/vgg16 and "
            "the lpips package's v0.1 linear layers); diptych never downloads weights"
        )
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_state_dict_file(Path(f), "LPIPS"))
    model = LPIPS(net)
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("features."):
            mapped[key] = value
        elif key.startswith("lin") and key.endswith(".weight"):
            index = key[3 : key.index(".")]
            if index.isdigit():
                mapped[f"lins.{index}.weight"] = value
    own = model.state_dict()
    missing = [k for k in own if k not in mapped and k not in ("shift", "scale")]
    if missing:
        raise ConfigError(
            f"{', '.join(map(str, files))}: LPIPS-{net} weights incomplete (missing {missing[:3]}); "
            "give both the backbone and the linear-layer files"
        )
    try:
        model.load_state_dict({**own, **{k: v for k, v in mapped.items() if k in own}}, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"LPIPS-{net} weights do not fit ({str(exc).splitlines()[0]})") from None
    return model


def lpips_distance(model: LPIPS, output: torch.Tensor, target: torch.Tensor) -> float:
    """LPIPS of one CxHxW pair in [-1, 1] (grey repeated to RGB; extra channels dropped)."""

    def rgb(t: torch.Tensor) -> torch.Tensor:
        t = t.float()[None]
        return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t[:, :3]

    x, y = rgb(output), rgb(target)
    if min(x.shape[-2:]) < 32:
        x = F.interpolate(x, size=(max(32, x.shape[-2]), max(32, x.shape[-1])), mode="bilinear", align_corners=False)
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
    device = next(model.parameters()).device
    with torch.no_grad():
        return float(model(x.to(device), y.to(device))[0])
