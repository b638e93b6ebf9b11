"""`diptych export`: a trained generator as ONNX or TorchScript, checked against PyTorch on real images.

The exported graph is the generator at inference settings (eval mode: running BatchNorm statistics, no dropout) for
inputs of any batch size whose height and width are at least its minimum side and multiples of its stride (ResNet and
HD generators; a U-Net's of 2**min(depth, 5): its deeper levels pad themselves inside the graph); the loader in
exported.py pads other sizes exactly as the PyTorch generator does. The run configuration travels in the file (ONNX
metadata_props / TorchScript extra file), so `diptych translate model.onnx ...` needs nothing else.
The file is written to a temporary name and renamed only after the parity check passes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .atomic import atomic_path
from .config import generator_families
from .data.io import LUMA, read_image
from .data.samples import sample_photo
from .errors import ConfigError, DataError, ExportError
from .exported import (
    METADATA_KEY,
    ONNX_EXTRA_HINT,
    ExportedGenerator,
    export_metadata,
    exported_kind,
    load_exported,
)
from .nets.geometry import Geometry
from .translate import Translator

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
DEFAULT_TOLERANCE = 1e-4  # max |exported - PyTorch| on outputs in [-1, 1] (fp32; 1/255 is ~0.008 in these units)
CHECK_PHOTOS = ("astronaut", "coffee")
MAX_CHECK_SIDE = 8192  # parity-check images are translated whole, by PyTorch and by the export


@dataclass(frozen=True)
class ParityCheck:
    """One comparison of the exported model with PyTorch: a batch of check images at one size."""

    height: int
    width: int
    batch: int
    max_abs_diff: float


@dataclass(frozen=True)
class ExportResult:
    """What `export_generator` wrote and measured."""

    path: Path
    format: str
    backend: str
    checks: tuple[ParityCheck, ...]
    tolerance: float
    opset: int | None
    weights: str = "raw"  # which of the checkpoint's weights were exported: "raw" or "ema" (the moving average)

    @property
    def max_abs_diff(self) -> float:
        """The largest difference over all parity checks."""
        return max(c.max_abs_diff for c in self.checks)


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' (or 'N' for a square) as (height, width)."""
    parts = text.lower().split("x")
    try:
        h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
        if len(parts) > 2 or not (1 <= h <= MAX_CHECK_SIDE and 1 <= w <= MAX_CHECK_SIDE):
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"--check-size {text!r}: expected HEIGHTxWIDTH in pixels, each 1 .. {MAX_CHECK_SIDE}, e.g. 256x384"
        ) from None
    return h, w


def default_export_path(checkpoint: Path, fmt: str) -> Path:
    """<checkpoint name>.onnx / .pt in the current folder (a run folder's name, or the checkpoint folder's)."""
    name = checkpoint.parent.name if checkpoint.suffix == ".safetensors" else checkpoint.resolve().name
    return Path(name + SUFFIXES[fmt])


def default_check_sizes(stride: int, minimum: int) -> list[tuple[int, int]]:
    """A square multiple of the stride and a non-square size that is no multiple (so padding is exercised)."""
    m = max(stride, minimum)
    return [(2 * m, 2 * m), (m + stride // 2 + 3, 2 * m + stride // 4 + 5)]


def export_generator(
    checkpoint: str | Path,
    out: str | Path | None = None,
    fmt: str = "onnx",
    *,
    opset: int | None = None,
    check_sizes: Sequence[tuple[int, int]] | None = None,
    check_images: Sequence[str | Path] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    test_mode: str | None = None,
    overwrite: bool = False,
    direction: str | None = None,
    weights: str | None = None,
) -> ExportResult:
    """Export a checkpoint's generator to ONNX or TorchScript, verify it against PyTorch, then write `out`."""
    checkpoint = Path(checkpoint)
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of: {', '.join(FORMATS)}")
    out = Path(out) if out is not None else default_export_path(checkpoint, fmt)
    if (out.suffix.lower() == ".onnx") != (fmt == "onnx"):
        want = ".onnx" if fmt == "onnx" else "another suffix (e.g. .pt)"
        kind = "an ONNX" if fmt == "onnx" else "a TorchScript"
        raise ConfigError(f"--out {out}: {kind} export needs {want}; translate picks the backend from the suffix")
    if out.exists() and not overwrite:
        raise ConfigError(f"--out {out}: already exists; pass --overwrite to replace it")
    _check_writable(out)
    if not tolerance > 0:
        raise ConfigError(f"--tolerance {tolerance} must be > 0")
    if exported_kind(checkpoint) is not None:
        raise ConfigError(f"{checkpoint}: is already an exported model; export from its checkpoint instead")
    if fmt == "onnx":
        _require_onnx()
    # (rejects non-generator files and directions the checkpoint does not offer)
    translator = Translator.load(
        checkpoint, device="cpu", mode="eval", precision="fp32", direction=direction, weights=weights
    )
    config = translator.config
    if config.test_mode == "paper" and test_mode != "eval":
        raise ExportError(
            f"{checkpoint}: its test mode is 'paper' (dropout and per-image batch statistics), which an inference "
            "graph cannot express; pass --test-mode eval to export the deterministic eval-mode generator"
        )
    if test_mode not in (None, "eval"):
        raise ExportError(f"--test-mode {test_mode}: exports hold the eval-mode generator only; use --test-mode eval")
    if not config.generator.exportable:
        supported = [arch for arch, family in generator_families().items() if family.exportable]
        raise ExportError(
            f"{checkpoint}: the {config.generator.arch!r} generator cannot be exported yet (supported: "
            f"{', '.join(supported)})"
        )
    config.test_mode = "eval"
    # The default layout: a channels-last module traces batch-specialised shape guards.
    generator = translator.generator.eval().to(memory_format=torch.contiguous_format)
    if hasattr(generator, "checkpointing"):
        generator.checkpointing = False  # activation checkpointing is a training-time detail
    # The network's own geometry: its downsampling, and how it pads inputs (a multiple, and a minimum side).
    geometry: Geometry = generator.geometry
    stride, multiple, minimum = geometry.stride, geometry.multiple, geometry.min_side
    sizes = list(check_sizes) if check_sizes else default_check_sizes(stride, minimum)
    inputs = _check_inputs(translator, check_images)
    metadata = export_metadata(config, stride, multiple, minimum, geometry.scale, translator.weights or "raw")
    blocks = max(2, -(-minimum // stride))  # example size in strides; >= 2 so no dimension is specialised to 1
    example = torch.zeros(1, config.generator.in_channels, blocks * stride, blocks * stride)
    with atomic_path(out) as tmp:
        with _quiet_exporter():
            if fmt == "onnx":
                opset = _export_onnx(generator, example, multiple, minimum, metadata, tmp, opset)
            else:
                _export_torchscript(generator, example, metadata, tmp)
        exported, _ = load_exported(tmp, torch.device("cpu"), fmt)
        checks = parity_checks(generator, exported, inputs, sizes, translator.labels is not None)
        worst = max(checks, key=lambda c: c.max_abs_diff)
        if not worst.max_abs_diff <= tolerance:
            raise ExportError(
                f"{out}: parity check failed: exported {fmt} differs from PyTorch by {worst.max_abs_diff:.3g} at "
                f"{worst.height}x{worst.width} (tolerance {tolerance:g}); nothing was written (a larger --tolerance accepts it)"
            )
    return ExportResult(
        out,
        fmt,
        exported.backend,
        tuple(checks),
        tolerance,
        opset if fmt == "onnx" else None,
        translator.weights or "raw",
    )


def parity_checks(
    reference: nn.Module,
    exported: ExportedGenerator,
    inputs: Sequence[torch.Tensor],
    sizes: Sequence[tuple[int, int]],
    labels: bool,
) -> list[ParityCheck]:
    """Run the check images, resized to each size and batched, through both models; record the max difference."""
    checks = []
    for h, w in sizes:
        # Label maps stay one-hot under nearest resizing; photos are resized smoothly.
        mode = {"mode": "nearest"} if labels else {"mode": "bilinear", "antialias": True, "align_corners": False}
        batch = torch.cat([F.interpolate(x[None], size=(h, w), **mode) for x in inputs])
        with torch.no_grad():
            expected = reference(batch).float()
            got = exported(batch).float()
        if got.shape != expected.shape:
            raise ExportError(
                f"exported model returned {tuple(got.shape)} for {h}x{w}, PyTorch {tuple(expected.shape)}"
            )
        checks.append(ParityCheck(h, w, batch.shape[0], float((got - expected).abs().max())))
    return checks


def _check_inputs(translator: Translator, files: Sequence[str | Path] | None) -> list[torch.Tensor]:
    """The check images as generator inputs (CxHxW): the user's files, or bundled photos in the model's channels."""
    labels = translator.labels
    arrays: list[tuple[str, np.ndarray]] = []
    for file in files or ():
        path = Path(file)
        if not path.is_file():
            raise DataError(f"--check-images {path}: no such file")
        arr = read_image(path, palette_indices=labels is not None)
        arrays.append((str(path), arr if arr.ndim == 3 else arr[:, :, None]))
    if not arrays:
        for name in CHECK_PHOTOS:
            photo = sample_photo(name)
            if labels is not None:
                # A label map with real structure: the photo's luminance quantised into the model's classes.
                grey = photo.astype(np.float64) @ LUMA
                photo = np.minimum(grey * labels.label_nc / 256.0, labels.label_nc - 1).astype(np.uint16)[:, :, None]
            arrays.append((f"bundled photo {name!r}", photo))
    # Models trained with instance maps also get the label map as the instance map (only boundaries matter).
    instances = translator.needs_instances
    return [translator.encode(arr, name, arr if instances else None) for name, arr in arrays]


def _require_onnx() -> None:
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(f"--format onnx needs the {module} package; {ONNX_EXTRA_HINT}") from None


def _export_onnx(
    generator: nn.Module,
    example: torch.Tensor,
    multiple: int,
    minimum: int,
    metadata: str,
    dest: Path,
    opset: int | None,
) -> int:
    """torch.onnx's dynamo exporter with dynamic batch and H, W >= minimum (multiples of `multiple`)."""
    import onnx
    from torch.export import Dim

    def side(name: str) -> object:
        return (
            Dim(name, min=minimum) if multiple == 1 else multiple * Dim(f"{name}_blocks", min=-(-minimum // multiple))
        )

    dims = {0: Dim("batch"), 2: side("height"), 3: side("width")}
    try:
        program = torch.onnx.export(
            generator,
            (example,),
            dynamo=True,
            dynamic_shapes=(dims,),
            input_names=["input"],
            output_names=["output"],
            opset_version=opset,
            verbose=False,
        )
    except Exception as exc:  # the exporter raises many types; the first line names the unsupported part
        raise ExportError(
            f"the generator cannot be exported to ONNX ({type(exc).__name__}: {_first_line(exc)}); "
            "try --format torchscript"
        ) from exc
    proto = program.model_proto
    proto.metadata_props.add(key=METADATA_KEY, value=metadata)
    proto.doc_string = f"diptych generator; input: N x C x H x W in [-1, 1], H and W at least {minimum}" + (
        f" and multiples of {multiple}" if multiple > 1 else ""
    )
    got = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset is not None and got != opset:  # the exporter keeps its own opset when conversion fails
        raise ExportError(f"--opset {opset}: the exporter could not convert the graph (it produced opset {got})")
    onnx.save_model(proto, str(dest))
    return got


def _check_writable(out: Path) -> None:
    """Fail before the (slow) export if `out`'s folder cannot take a file."""
    probe = out.with_name(f".{out.name}.{os.getpid()}.probe")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot be written ({exc.strerror or exc}); choose another path") from None


def _export_torchscript(generator: nn.Module, example: torch.Tensor, metadata: str, dest: Path) -> None:
    """torch.jit.trace at a stride-multiple size. The input padding branches are not taken and the U-Net's per-level
    padding is traced from the sizes' parity, so the graph is size-generic."""
    try:
        with torch.no_grad():
            traced = torch.jit.trace(generator, example, check_trace=False)
    except Exception as exc:
        raise ExportError(
            f"the generator cannot be traced to TorchScript ({type(exc).__name__}: {_first_line(exc)})"
        ) from exc
    torch.jit.save(traced, str(dest), _extra_files={METADATA_KEY: metadata})


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporters' progress lines and expected warnings (tracer warnings on the padding branches)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)  # failures still surface: as the ExportError raised below
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no message"
