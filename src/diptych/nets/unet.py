"""U-Net generator (pix2pix) with flat parameter names and any depth, and its generator family (--arch unet)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import MAX_DOWNSAMPLINGS, GeneratorConfig, fraction, opt, within
from ..errors import ConfigError
from .geometry import Geometry
from .layers import conv_bias, make_norm, pad_to_even, pad_to_multiple
from .sr import SKIPS

UPSAMPLES = ("transpose", "resize", "bilinear")  # resize: nearest-neighbour, then a 3x3 convolution


def level_channels(level: int, ngf: int) -> int:
    """Channels at a U-Net level: ngf doubled per level, capped at 8 * ngf (as pix2pix)."""
    return ngf * min(2**level, 8)


class DownBlock(nn.Module):
    """Encoder step: stride-2 4x4 conv, then norm and LeakyReLU(0.2) (the innermost has neither)."""

    FOLDABLE = (("conv", "norm"),)  # forward applies norm straight to conv's output (see inference.py)

    def __init__(self, in_ch: int, out_ch: int, norm: str, outermost: bool, innermost: bool) -> None:
        super().__init__()
        use_norm = not (outermost or innermost)
        self.conv = nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=not use_norm or conv_bias(norm))
        self.norm = make_norm(norm, out_ch) if use_norm else nn.Identity()
        # The innermost output goes straight into the decoder's ReLU.
        self.act = nn.Identity() if innermost else nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class UpBlock(nn.Module):
    """Decoder step: ReLU, 2x upsampling conv, then norm and optional dropout (the outermost ends in tanh)."""

    FOLDABLE = (("conv", "norm"),)

    def __init__(self, in_ch: int, out_ch: int, norm: str, outermost: bool, dropout: float, upsample: str) -> None:
        super().__init__()
        bias = outermost or conv_bias(norm)
        self.act = nn.ReLU(inplace=True)
        if upsample == "transpose":
            self.conv = nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=bias)
            self.upsample = nn.Identity()
        else:
            # Nearest repeats each pixel in a 2x2 block, which the 3x3 conv can still turn into a faint period-2
            # pattern; bilinear interpolation leaves no such block structure for it to amplify. The conv pads with
            # zeros: reflection made the innermost level's map (a 1x1 map upsampled) constant, so with batch 1 its
            # batch norm learnt a variance of 0 and eval-mode outputs saturated.
            mode = "nearest" if upsample == "resize" else "bilinear"
            self.upsample = nn.Upsample(scale_factor=2, mode=mode)
            self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=1, padding=1, bias=bias)
        self.norm = nn.Identity() if outermost else make_norm(norm, out_ch)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_act = nn.Tanh() if outermost else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_act(self.dropout(self.norm(self.conv(self.upsample(self.act(x))))))


class UNetGenerator(nn.Module):
    """pix2pix U-Net: `depth` stride-2 levels with skip connections, for inputs of any size.

    Inputs are reflect-padded to a multiple of 2**min(depth, 5) (32), not of 2**depth: deeper levels even out
    their own (small) inputs with one reflected row or column where a side is odd, and the decoder crops each
    upsampled map to its skip's size. A 1100 px side costs 1120 px of work instead of 1280, and the large
    upper levels never see odd sizes (which run 30% slower on oneDNN). Inputs smaller than 2**depth are
    padded up to it, so that every level has at least two pixels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        depth: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        dropout: float = 0.5,
        upsample: str = "transpose",
        skip: bool | None = False,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.depth = depth
        self.skip = resolve_unet_skip(skip, in_channels, out_channels)
        self.geometry = unet_geometry(depth)
        chans = [level_channels(i, ngf) for i in range(depth)]
        self.down = nn.ModuleList(
            DownBlock(
                in_channels if i == 0 else chans[i - 1],
                chans[i],
                norm,
                outermost=i == 0,
                innermost=i == depth - 1,
            )
            for i in range(depth)
        )
        self.up = nn.ModuleList()
        for i in range(depth):
            in_ch = chans[i] if i == depth - 1 else 2 * chans[i]
            out_ch = out_channels if i == 0 else chans[i - 1]
            # As in pix2pix, dropout sits in the decoder blocks between level 4 and the innermost.
            drop = dropout if 4 <= i < depth - 1 else 0.0
            self.up.append(UpBlock(in_ch, out_ch, norm, outermost=i == 0, dropout=drop, upsample=upsample))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        h, _ = pad_to_multiple(x, self.geometry.multiple, minimum=self.geometry.min_side)
        base = x if self.skip else None
        del x  # (without a skip, a padded copy is not held through the whole pass)
        skips = []
        for block in self.down:
            h = block(pad_to_even(h))
            skips.append(h)
        skips.pop()  # the innermost output is h itself
        for i in reversed(range(self.depth)):
            if i < self.depth - 1:
                skip = skips.pop()
                h = torch.cat([skip, h[..., : skip.shape[-2], : skip.shape[-1]]], dim=1)
                del skip  # released once joined
            h = self.up[i](h)
        h = h[..., :height, :width]
        if base is not None:
            # A residual generator (DeblurGAN's learn_residual): the tanh output is a correction to the input,
            # so the untrained network already returns its input; a grey input is the base of every colour.
            h = (h + base).clamp(-1.0, 1.0)
        return h


def resolve_unet_skip(skip: bool | None, in_channels: int, out_channels: int) -> bool:
    """Whether the U-Net adds its input to its output: auto (None) when the channel counts match; on also for a
    one-channel input (added to every output channel)."""
    if skip is None:
        return in_channels == out_channels
    if skip and in_channels not in (1, out_channels):
        raise ValueError(f"a U-Net skip needs 1 or {out_channels} input channels, not {in_channels}")
    return skip


def unet_geometry(depth: int) -> Geometry:
    """A U-Net's geometry: inputs padded to a multiple of 2**min(depth, 5) (see UNetGenerator) and to the total
    downsampling."""
    return Geometry(stride=2**depth, multiple=2 ** min(depth, 5), min_side=2**depth)


@dataclass(slots=True)
class UNetConfig(GeneratorConfig):
    """--arch unet: pix2pix's U-Net."""

    help: ClassVar[str] = "pix2pix's U-Net with skip connections"
    presets: ClassVar[dict[str, dict[str, Any]]] = {"unet_256": {"depth": 8}, "unet_128": {"depth": 7}}

    arch: str = "unet"
    depth: int = opt(
        8,
        "number of 2x downsamplings (unet_256 = 8, unet_128 = 7); inputs are padded to a multiple of 2**depth",
        bounds=within(1, MAX_DOWNSAMPLINGS),
    )
    dropout: float = opt(
        0.5,
        "dropout in decoder levels 4 .. depth-2, the paper's noise (none exists with --depth <= 5); 0 disables",
        bounds=fraction(),
    )
    upsample: str = opt(
        "transpose",
        "decoder upsampling: transposed conv, or resize (nearest) or bilinear interpolation + 3x3 conv (both avoid "
        "the transposed conv's checkerboard artifacts)",
        choices=UPSAMPLES,
    )
    skip: str = opt(
        "off",
        "add the input to the output, so that the network learns a correction to it (a residual generator, for "
        "inputs that look like their outputs: grey -> colour, deblurring; measured worse for denoising); auto: when "
        "the channel counts match; on: also for a one-channel input",
        choices=tuple(SKIPS),
    )

    def check(self) -> None:
        """A skip the channel counts allow (once both are known)."""
        cin, cout = self.in_channels, self.out_channels
        if self.skip == "on" and cin and cout and cin not in (1, cout):
            raise ConfigError(
                f"--skip on: the U-Net adds its input to its output, which needs 1 or {cout} input channels, not "
                f"{cin}; use --skip auto or off"
            )

    def build(self) -> nn.Module:
        """The U-Net."""
        self.check()
        return UNetGenerator(
            self.in_channels,
            self.out_channels,
            self.depth,
            self.ngf,
            self.norm,
            self.dropout,
            self.upsample,
            skip=SKIPS[self.skip],
        )

    def geometry(self) -> Geometry:
        """Stride 2**depth, padded to 2**min(depth, 5)."""
        return unet_geometry(self.depth)

    def stride_hint(self, side: int) -> str:
        """A depth whose stride fits the side."""
        return f"--depth {max(1, side.bit_length() - 1)}"
