"""Reading ncnn models: the text `.param` graph and the `.bin` weights (fp32 or fp16 storage), local files only.

The `.param` holds a magic number, the layer and blob counts, then one line per layer: type, name, input and output
counts, the input and output blob names and `key=value` parameters (`-233xx=n,v1,...` for arrays, key xx). The
`.bin` holds the weights of the layers that have any, in layer order, each as that layer type's `load_model` reads
them: a convolution's weights behind a 4-byte storage tag, its bias as raw fp32; a PReLU's slopes as raw fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import CheckpointError

PARAM_MAGIC = 7767517
ARRAY_KEY_BASE = -23300  # an array parameter's key is ARRAY_KEY_BASE - its id
TAG_FP32 = 0x00000000
TAG_FP32_SCALED = 0x0002C056  # raw fp32 "with extra scaling" (the scales live elsewhere; the data is plain fp32)
TAG_FP16 = 0x01306B47
# Layer types that carry no weights, and those whose weights this reader understands.
WEIGHTLESS = frozenset({"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "ReLU", "Noop"})
WEIGHTED = frozenset({"Convolution", "PReLU"})

Param = int | float | str | tuple[int | float, ...]


@dataclass(frozen=True)
class NcnnLayer:
    """One layer of an ncnn graph: its type, name, input and output blobs, parameters by id, weights in load order."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, Param]
    weights: tuple[torch.Tensor, ...] = ()

    def get(self, key: int, default: Param) -> Param:
        """A parameter, or ncnn's default for it."""
        return self.params.get(key, default)


def read_ncnn_model(param: str | Path, weights: str | Path) -> list[NcnnLayer]:
    """The layers of an ncnn model, in file order, with their weights as float32 tensors (CheckpointError naming
    the file for what is not an ncnn text model, a layer type without a weight reader, or a size mismatch)."""
    param, weights = Path(param), Path(weights)
    layers = parse_param(param)
    try:
        blob = weights.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{weights}: cannot read the ncnn weights ({exc.strerror or exc})") from None
    reader = _WeightReader(blob, weights)
    loaded = [layer_with_weights(layer, reader) for layer in layers]
    if reader.offset != len(blob):
        raise CheckpointError(
            f"{weights}: {len(blob) - reader.offset} bytes are left after the weights {param.name} describes; "
            "is it the .bin of another model?"
        )
    return loaded


def parse_param(path: Path) -> list[NcnnLayer]:
    """The layers of a text .param file (weights not yet read)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable ncnn text .param file ({exc})") from None
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or lines[0] != [str(PARAM_MAGIC)] or len(lines[1]) != 2:
        raise CheckpointError(f"{path}: not an ncnn text .param file (it starts with magic {PARAM_MAGIC})")
    try:
        count = int(lines[1][0])
        layers = [_parse_layer(fields) for fields in lines[2:]]
    except (ValueError, IndexError) as exc:
        raise CheckpointError(f"{path}: damaged ncnn .param file ({exc})") from None
    if len(layers) != count:
        raise CheckpointError(f"{path}: declares {count} layers but holds {len(layers)}; the file is truncated")
    return layers


def _parse_layer(fields: list[str]) -> NcnnLayer:
    kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
    inputs, outputs = fields[4 : 4 + n_in], fields[4 + n_in : 4 + n_in + n_out]
    if len(outputs) != n_out:
        raise ValueError(f"layer {name} lists fewer blobs than it declares")
    params: dict[int, Param] = {}
    for item in fields[4 + n_in + n_out :]:
        key_text, _, value = item.partition("=")
        key = int(key_text)
        if key <= ARRAY_KEY_BASE:
            count, *values = value.split(",")
            if len(values) != int(count):
                raise ValueError(f"layer {name}: array parameter {key} declares {count} values")
            params[ARRAY_KEY_BASE - key] = tuple(_number(v) for v in values)
        else:
            params[key] = _number(value)
    return NcnnLayer(kind, name, tuple(inputs), tuple(outputs), params)


def _number(text: str) -> int | float:
    """An ncnn parameter value: floats are written with a point or an exponent."""
    return float(text) if any(c in text for c in ".eE") else int(text)


class _WeightReader:
    """Sequential reads from a .bin, as ncnn's ModelBin does them."""

    def __init__(self, blob: bytes, path: Path) -> None:
        self.blob, self.path, self.offset = blob, path, 0

    def take(self, size: int, what: str) -> bytes:
        if self.offset + size > len(self.blob):
            raise CheckpointError(f"{self.path}: ends inside {what}; it is truncated or belongs to another .param")
        data = self.blob[self.offset : self.offset + size]
        self.offset += size
        return data

    def tagged(self, count: int, what: str) -> torch.Tensor:
        """`count` values behind a storage tag (ModelBin::load type 0): fp32 or fp16; quantised data is refused."""
        tag = int.from_bytes(self.take(4, what), "little")
        if tag in (TAG_FP32, TAG_FP32_SCALED):
            return self.raw(count, what)
        if tag == TAG_FP16:
            data = self.take(-(-count * 2 // 4) * 4, what)  # fp16 data is padded to 4 bytes
            return torch.from_numpy(np.frombuffer(data, dtype="<f2", count=count).astype(np.float32))
        raise CheckpointError(
            f"{self.path}: {what} is stored quantised (tag {tag:#010x}); only fp32 and fp16 ncnn models convert"
        )

    def raw(self, count: int, what: str) -> torch.Tensor:
        """`count` raw little-endian fp32 values (ModelBin::load type 1)."""
        return torch.from_numpy(np.frombuffer(self.take(count * 4, what), dtype="<f4").copy())


def layer_with_weights(layer: NcnnLayer, reader: _WeightReader) -> NcnnLayer:
    """The layer with the weights its type reads from the .bin (none for weightless types)."""
    what = f"the weights of layer {layer.name}"
    if layer.type == "Convolution":
        if layer.get(8, 0) or layer.get(19, 0):
            raise CheckpointError(f"{reader.path}: layer {layer.name} is an int8 or dynamic-weight convolution")
        out = int(layer.get(0, 0))
        weights = [reader.tagged(int(layer.get(6, 0)), what)]
        if layer.get(5, 0):
            weights.append(reader.raw(out, what))
        return NcnnLayer(layer.type, layer.name, layer.inputs, layer.outputs, layer.params, tuple(weights))
    if layer.type == "PReLU":
        slopes = reader.raw(int(layer.get(0, 0)), what)
        return NcnnLayer(layer.type, layer.name, layer.inputs, layer.outputs, layer.params, (slopes,))
    if layer.type not in WEIGHTLESS:
        supported = ", ".join(sorted(WEIGHTLESS | WEIGHTED))
        raise CheckpointError(f"{reader.path}: layer {layer.name} has type {layer.type}, not one of {supported}")
    return layer
