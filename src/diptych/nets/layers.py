"""Small layer helpers shared by the networks: norms, conv bias rules, weight init, stride padding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm


def make_norm(kind: str, channels: int) -> nn.Module:
    """A 2-D normalisation layer: batch (affine, running stats), instance (no affine, as pix2pix), or none."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if kind == "instance":
        return InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


class InstanceNorm2d(nn.InstanceNorm2d):
    """nn.InstanceNorm2d that keeps a channels-last input channels-last (as batch norm of each image alone)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.instance_norm makes its input contiguous: a channels-last activation would be copied to NCHW and the
        # next convolution would run on NCHW. One image's batch statistics are its instance statistics. (On the
        # CPU, torch 2.13's F.instance_norm of one channels-last image also returns wrong input gradients when the
        # incoming gradient is channels-last, as the next layer's would be; batch norm has no such problem.)
        if self.affine or self.track_running_stats or _exporting() or x.dim() != 4 or not _channels_last(x):
            return super().forward(x)
        if x.shape[0] == 1:
            return F.batch_norm(x, None, None, training=True, eps=self.eps)
        return torch.cat([F.batch_norm(image, None, None, training=True, eps=self.eps) for image in x.split(1)])


def _channels_last(x: torch.Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _exporting() -> bool:
    # Exported graphs take NCHW inputs and keep InstanceNormalization as one operator.
    return torch.compiler.is_exporting() or torch.jit.is_tracing()


class ReflectionPad2d(nn.ReflectionPad2d):
    """nn.ReflectionPad2d that pads in its input's dtype, also under autocast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # CPU autocast runs reflection_pad2d in fp32: a bf16 activation would be cast up, padded and cast down again
        # by the next conv, forward and backward. Padding only copies values, so bf16 gives the same result.
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x)


def conv_bias(norm: str) -> bool:
    """Whether a conv directly followed by `norm` needs a bias (mean-subtracting norms cancel it)."""
    return norm == "none"


def spectral_normalise(module: nn.Module) -> None:
    """Spectral normalisation (torch's parametrization, one power iteration per training forward) of every
    convolution's weight in a module; the power iteration's vectors are buffers, so they travel with the weights."""
    for m in list(module.modules()):
        if isinstance(m, nn.Conv2d):
            spectral_norm(m)


def init_weights(module: nn.Module, kind: str = "normal", gain: float = 0.02) -> None:
    """Initialise conv/linear weights (normal, xavier, kaiming, orthogonal), zero biases, BN weight ~ N(1, gain);
    a spectrally normalised weight is initialised raw, and its power iteration restarted from the new weight."""
    for m in list(module.modules()):  # (a list: re-registering spectral norm replaces child modules)
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            normalised = parametrize.is_parametrized(m, "weight")
            if normalised:
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
            if kind == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif kind == "orthogonal":
                nn.init.orthogonal_(m.weight, gain=gain)
            else:
                raise ValueError(f"unknown init {kind!r}")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            if normalised:
                spectral_norm(m)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


def pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int = 0) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad H and W at the bottom and right up to a multiple, and at least `minimum` (repeating the
    reflection for tiny images); return the original size.

    Padding only at the end keeps the network's downsampling grid anchored at the image's top-left pixel, so a
    tile that starts on a multiple of the stride sees the same grid as the whole image (see tiling.py)."""
    h, w = x.shape[-2:]
    target_h = max(-(-h // multiple) * multiple, minimum)
    target_w = max(-(-w // multiple) * multiple, minimum)
    while x.shape[-2] < target_h or x.shape[-1] < target_w:
        cur_h, cur_w = x.shape[-2:]
        # Reflection can add at most size - 1 pixels per side per pass.
        pad_h = min(target_h - cur_h, cur_h - 1) if cur_h > 1 else 0
        pad_w = min(target_w - cur_w, cur_w - 1) if cur_w > 1 else 0
        if pad_h == 0 and pad_w == 0:
            x = F.pad(x, (0, target_w - cur_w, 0, target_h - cur_h), mode="replicate")
            break
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    return x, (h, w)


def pad_to_even(x: torch.Tensor) -> torch.Tensor:
    """Reflect-pad one row at the bottom and one column at the right where H or W is odd (a stride-2 level's
    input), so the level halves it exactly; a no-op (no copy) for even sizes. Exported graphs pad by the
    sizes' parity unconditionally, which ONNX and TorchScript express for any input size."""
    if torch.compiler.is_exporting() or torch.jit.is_tracing() or x.shape[-1] % 2 or x.shape[-2] % 2:
        return F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2), mode="reflect")
    return x


def crop_padded(y: torch.Tensor, x_padded_shape: torch.Size, size: tuple[int, int], scale: int = 1) -> torch.Tensor:
    """Undo pad_to_multiple on an output `scale` times the spatial size of the padded input."""
    h, w = size
    return y[..., : h * scale, : w * scale]
