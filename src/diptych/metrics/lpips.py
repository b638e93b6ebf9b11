"""LPIPS (Zhang et al. 2018, v0.1) and ST-LPIPS (shift-tolerant LPIPS, Ghildyal & Liu 2022) without torchvision.

LPIPS weights come from local files: the torchvision ImageNet backbone (alexnet-owt-*.pth or vgg16-*.pth: keys
`features.N.*`) and the LPIPS linear layers (the lpips package's weights/v0.1/alex.pth or vgg.pth: keys
`linK.model.1.weight`); one merged file holding both sets of keys works too.

ST-LPIPS uses anti-aliased backbones (stride-1 pools followed by blurred subsampling; AlexNet's first convolution at
stride 1) whose weights, linear layers included, ship in the stlpips-pytorch wheel (BSD-2-Clause) as
`stlpips_pytorch/weights/vST0.0/{alex,vgg}_shift_tolerant.pth` (keys `net.sliceK.N.*`, `linK.model.1.weight`,
`scaling_layer.*`). diptych reads those files from the installed package (or a path) and never imports the
package's code, which needs torchvision.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..nets.blurpool import BlurDownsample
from ..nets.vgg import vgg_features
from ..weights import load_state_dict_file

NETS = ("alex", "vgg")
# AlexNet's layers as torchvision numbers them: ("conv", in, out, kernel, stride, padding), ("relu",),
# ("max", kernel, stride) and, in the shift-tolerant variant, ("blur", channels).
ALEX_LAYERS: tuple[tuple[object, ...], ...] = (
    ("conv", 3, 64, 11, 4, 2),
    ("relu",),
    ("max", 3, 2),
    ("conv", 64, 192, 5, 1, 2),
    ("relu",),
    ("max", 3, 2),
    ("conv", 192, 384, 3, 1, 1),
    ("relu",),
    ("conv", 384, 256, 3, 1, 1),
    ("relu",),
    ("conv", 256, 256, 3, 1, 1),
    ("relu",),
)
ST_ALEX_LAYERS: tuple[tuple[object, ...], ...] = (
    ("conv", 3, 64, 11, 1, 2),
    ("blur", 64),
    ("relu",),
    ("max", 3, 1),
    ("blur", 64),
    ("conv", 64, 192, 5, 1, 2),
    ("relu",),
    ("max", 3, 1),
    ("blur", 192),
    ("conv", 192, 384, 3, 1, 1),
    ("relu",),
    ("conv", 384, 256, 3, 1, 1),
    ("relu",),
    ("conv", 256, 256, 3, 1, 1),
    ("relu",),
)
# After which layer (by features index) a tap is taken: every ReLU of AlexNet, relu1_2 .. relu5_3 of VGG16.
TAPS = {
    ("alex", False): (1, 4, 7, 9, 11),
    ("alex", True): (2, 6, 10, 12, 14),
    ("vgg", False): (3, 8, 15, 22, 29),
    ("vgg", True): (3, 9, 17, 25, 33),
}
CHANNELS = {"alex": [64, 192, 384, 256, 256], "vgg": [64, 128, 256, 512, 512]}
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
MIN_SIDE = 32  # smaller images are upsampled to this before the comparison

ST_LPIPS_PACKAGE = "stlpips_pytorch"
ST_LPIPS_FILES = {net: f"weights/vST0.0/{net}_shift_tolerant.pth" for net in NETS}
ST_LPIPS_MISSING = (
    "ST-LPIPS needs the weights that the stlpips-pytorch package ships: pip install 'diptych[perceptual]' "
    "(or stlpips-pytorch==0.0.2)"
)


def _layers(spec: tuple[tuple[object, ...], ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for kind, *args in spec:
        if kind == "conv":
            cin, cout, k, s, p = (int(a) for a in args)  # type: ignore[call-overload]
            layers.append(nn.Conv2d(cin, cout, k, stride=s, padding=p))
        elif kind == "max":
            layers.append(nn.MaxPool2d(int(args[0]), stride=int(args[1])))  # type: ignore[call-overload]
        elif kind == "blur":
            layers.append(BlurDownsample(int(args[0])))  # type: ignore[call-overload]
        else:
            layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


def _backbone(net: str, shift_tolerant: bool) -> nn.Sequential:
    if net == "vgg":
        return vgg_features("vgg16", antialiased=shift_tolerant)
    return _layers(ST_ALEX_LAYERS if shift_tolerant else ALEX_LAYERS)


class LPIPS(nn.Module):
    """Learned perceptual distance between two image batches in [-1, 1]; returns one value per image.

    shift_tolerant: the ST-LPIPS networks (anti-aliased backbones), otherwise LPIPS v0.1. Frozen, in eval mode."""

    def __init__(self, net: str = "alex", shift_tolerant: bool = False) -> None:
        super().__init__()
        if net not in NETS:
            raise ConfigError(f"unknown LPIPS network {net!r}; use alex or vgg")
        self.net = net
        self.shift_tolerant = shift_tolerant
        self.taps = TAPS[net, shift_tolerant]
        self.features = _backbone(net, shift_tolerant)[: self.taps[-1] + 1]
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS[net])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @property
    def title(self) -> str:
        """The metric's name with its backbone, e.g. ST-LPIPS-alex."""
        return f"{'ST-' if self.shift_tolerant else ''}LPIPS-{self.net}"

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        x = (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(x.shape[0], device=x.device)
        for fx, fy, lin in zip(self._taps(x), self._taps(y), self.lins, strict=True):
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((nx - ny) ** 2).mean(dim=(1, 2, 3))
        return total


def _mapped(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weight-file keys -> LPIPS's: torchvision's `features.N.*`, ST-LPIPS's `net.sliceK.N.*` and
    `scaling_layer.*`, and the linear layers' `linK.model.1.weight` (other keys are ignored)."""
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("features."):
            mapped[key] = value
        elif key.startswith("net.slice"):
            mapped["features." + key.split(".", 2)[2]] = value
        elif key.startswith("scaling_layer."):
            mapped[key.removeprefix("scaling_layer.")] = value
        elif key.startswith("lin") and key.endswith(".weight"):
            index = key[3 : key.index(".")]
            if index.isdigit():
                mapped[f"lins.{index}.weight"] = value
    return mapped


def _load(model: LPIPS, files: list[Path]) -> LPIPS:
    """Fill a model from weight files; the input scaling and blur filters default to their standard values."""
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_state_dict_file(f, model.title))
    mapped = _mapped(state)
    own = model.state_dict()
    optional = ("shift", "scale")
    missing = [k for k in own if k not in mapped and k not in optional and not k.endswith(".filt")]
    if missing:
        hint = "" if model.shift_tolerant else "; give both the backbone and the linear-layer files"
        raise ConfigError(
            f"{', '.join(map(str, files))}: {model.title} weights incomplete (missing {missing[:3]}){hint}"
        )
    try:
        model.load_state_dict({**own, **{k: v for k, v in mapped.items() if k in own}}, strict=True)
    except RuntimeError as exc:
        raise ConfigError(
            f"{', '.join(map(str, files))}: {model.title} weights do not fit ({str(exc).splitlines()[0]})"
        ) from None
    return model


def load_lpips(files: list[str | Path] | tuple[str | Path, ...], net: str = "alex") -> LPIPS:
    """LPIPS with the backbone and linear-layer weights read from the given local file(s)."""
    if not files:
        raise ConfigError(
            "LPIPS needs local weights: pass --lpips-weights BACKBONE.pth LIN.pth (torchvision's alexnet/vgg16 and "
            "the lpips package's v0.1 linear layers); diptych never downloads weights"
        )
    return _load(LPIPS(net), [Path(f) for f in files])


def st_lpips_weights(net: str, weights: str | Path | None = None, flag: str | None = "--st-lpips-weights") -> Path:
    """The ST-LPIPS weight file: `weights` if given, else the one in the installed stlpips-pytorch package."""
    if net not in NETS:
        raise ConfigError(f"unknown ST-LPIPS network {net!r}; use alex or vgg")
    if weights:
        return Path(weights)
    spec = importlib.util.find_spec(ST_LPIPS_PACKAGE)  # locates the package without running its code
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / ST_LPIPS_FILES[net]
        if path.is_file():
            return path
    alternative = f", or give the file ({net}_shift_tolerant.pth) with {flag}" if flag else ""
    raise ConfigError(ST_LPIPS_MISSING + alternative)


def st_lpips_available(net: str = "alex") -> bool:
    """Whether the installed stlpips-pytorch package provides the ST-LPIPS weights of `net`."""
    try:
        st_lpips_weights(net)
    except ConfigError:
        return False
    return True


def load_st_lpips(
    net: str = "alex", weights: str | Path | None = None, flag: str | None = "--st-lpips-weights"
) -> LPIPS:
    """ST-LPIPS (shift-tolerant LPIPS) with weights from `weights` or from the installed stlpips-pytorch package;
    `flag`: the option that gives a file, named in the error when there is none (None: no such option)."""
    return _load(LPIPS(net, shift_tolerant=True), [st_lpips_weights(net, weights, flag)])


def as_rgb(x: torch.Tensor) -> torch.Tensor:
    """BxCxHxW -> Bx3xHxW: grey repeated, extra channels (alpha, bands) dropped."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]


def at_least_min_side(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both batches upsampled (bilinear) to MIN_SIDE on a side shorter than that, which the backbones need."""
    if min(x.shape[-2:]) >= MIN_SIDE:
        return x, y
    size = (max(MIN_SIDE, x.shape[-2]), max(MIN_SIDE, x.shape[-1]))
    return (
        F.interpolate(x, size=size, mode="bilinear", align_corners=False),
        F.interpolate(y, size=size, mode="bilinear", align_corners=False),
    )


def lpips_distance(model: LPIPS, output: torch.Tensor, target: torch.Tensor) -> float:
    """(ST-)LPIPS of one CxHxW pair in [-1, 1] (grey repeated to RGB; extra channels dropped)."""
    x, y = at_least_min_side(as_rgb(output.float()[None]), as_rgb(target.float()[None]))
    device = next(model.parameters()).device
    with torch.no_grad():
        return float(model(x.to(device), y.to(device))[0])
