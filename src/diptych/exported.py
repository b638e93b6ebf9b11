"""Run generators exported by `diptych export` (ONNX via onnxruntime, TorchScript via torch.jit) like a checkpoint.

An exported graph holds the generator at inference settings for inputs whose height and width are multiples of the
network's padding multiple (2**min(depth, 5) for a U-Net, whose deeper levels pad themselves inside the graph; the stride for the HD
generator) and at least its minimum side; `ExportedGenerator` reflect-pads any input to that and crops the output
back, exactly as the PyTorch generator does internally, so the translator treats both the same way.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import MAX_DOWNSAMPLINGS, RunConfig, config_from_dict, parse_json
from .errors import CheckpointError, ConfigError
from .nets.geometry import Geometry
from .nets.layers import crop_padded, pad_to_multiple
from .weights import first_line

EXPORT_TAG = "diptych-export"
EXPORT_VERSION = 1  # the metadata layout this diptych writes, and the newest it reads
# Key of the JSON metadata: an ONNX metadata_props key, and a TorchScript extra file name.
METADATA_KEY = "diptych.json"
BACKENDS = ("torch", "onnxruntime")
ONNX_EXTRA_HINT = "pip install 'diptych[onnx]'"
MAX_EXPORT_SCALE = 16  # output/input size ratio an export's metadata may declare (super-resolution goes to x8)


def export_metadata(
    config: RunConfig, stride: int, multiple: int, min_side: int, scale: int = 1, weights: str = "raw"
) -> str:
    """The JSON stored in an exported file: what it is, the run configuration, the input constraints, the output
    scale, and which of the checkpoint's weights it holds ("raw", or "ema": their moving average)."""
    return json.dumps(
        {
            "format": EXPORT_TAG,
            "version": EXPORT_VERSION,
            "stride": stride,
            "multiple": multiple,
            "min_side": min_side,
            "scale": scale,
            "weights": weights,
            "config": config.to_dict(),
        }
    )


def exported_kind(path: Path) -> str | None:
    """'onnx' or 'torchscript' when `path` is an exported model file (by suffix / archive content), else None."""
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        # TorchScript archives hold compiled code; plain torch.save pickles (data.pkl) do not.
        if any("/code/" in name or name.endswith("/constants.pkl") for name in names):
            return "torchscript"
    return None


def backend_for(kind: str | None) -> str:
    """The backend that runs a file of this kind (None = a checkpoint)."""
    return "onnxruntime" if kind == "onnx" else "torch"


class ExportedGenerator(nn.Module):
    """An exported generator behind the nn.Module interface: pads to the graph's multiple, runs it, crops back."""

    def __init__(
        self,
        run: Callable[[torch.Tensor], torch.Tensor],
        geometry: Geometry,
        backend: str,
        path: Path,
    ) -> None:
        super().__init__()
        self._run = run
        self.geometry = geometry
        self.backend = backend
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, size = pad_to_multiple(x, self.geometry.multiple, minimum=self.geometry.min_side)
        return crop_padded(self._run(padded.float().contiguous()), padded.shape, size, self.geometry.scale)


def load_exported(
    path: str | Path, device: torch.device, kind: str | None = None
) -> tuple[ExportedGenerator, RunConfig]:
    """Open an exported model and its stored configuration; raise CheckpointError for files diptych did not export."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such exported model file")
    kind = kind or exported_kind(path)
    if kind == "onnx":
        return _load_onnx(path, device)
    if kind == "torchscript":
        return _load_torchscript(path, device)
    raise CheckpointError(
        f"{path}: not an ONNX or TorchScript file exported by diptych; create one with `diptych export`"
    )


def _parse_metadata(raw: str | bytes | None, path: Path) -> tuple[RunConfig, Geometry]:
    """The stored config and the graph's geometry; exports made before per-level padding (no "multiple") take
    inputs padded to the stride, and those made before output scales (no "scale") keep the input size."""
    if not raw:
        raise CheckpointError(
            f"{path}: has no diptych metadata, so it was not exported by diptych; use `diptych export`"
        )
    try:
        meta = parse_json(raw, str(path))
        if not isinstance(meta, dict) or meta.get("format") != EXPORT_TAG:
            raise ConfigError(f"{path}: its {METADATA_KEY} is not diptych export metadata")
        version = meta.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ConfigError(f"{path}: export metadata version {version!r} is not an integer >= 1")
        if version > EXPORT_VERSION:
            raise ConfigError(
                f"{path}: exported by a newer diptych (export format {version}, this one reads up to "
                f"{EXPORT_VERSION}): upgrade diptych"
            )
        config = config_from_dict(meta.get("config"), f"{path}: {METADATA_KEY} config", stored=True)
        stride = meta["stride"]
        padding = (stride, meta.get("multiple", stride), meta["min_side"])  # older exports: padded to the stride
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 2**MAX_DOWNSAMPLINGS for v in padding):
            raise ConfigError(f"{path}: export metadata stride/multiple/min_side {padding} are not sizes in pixels")
        scale = meta.get("scale", 1)
        if not isinstance(scale, int) or isinstance(scale, bool) or not 1 <= scale <= MAX_EXPORT_SCALE:
            raise ConfigError(f"{path}: export metadata scale {scale!r} is not an integer from 1 to {MAX_EXPORT_SCALE}")
        # (the context is the generator family's, from the stored configuration: exports of every version agree)
        return config, Geometry(*padding, scale=scale, context=config.generator.geometry().context)
    except KeyError as exc:
        raise CheckpointError(f"{path}: damaged diptych export metadata (no {exc}); export the model again") from None
    except ConfigError as exc:  # (each names the file)
        raise CheckpointError(f"{exc}; export the model again") from None


def _load_onnx(path: Path, device: torch.device) -> tuple[ExportedGenerator, RunConfig]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(f"{path}: running ONNX models needs onnxruntime; {ONNX_EXTRA_HINT}") from None
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError(
                f"--device {device}: this onnxruntime has no CUDA provider; install onnxruntime-gpu or use --device cpu"
            )
        providers.insert(0, "CUDAExecutionProvider")
    elif device.type != "cpu":
        raise ConfigError(f"--device {device}: the onnxruntime backend runs on cpu or cuda only")
    options = ort.SessionOptions()
    # Same thread budget as torch, so the two backends are compared (and share a machine) on equal terms.
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own pybind exception types for bad files
        raise CheckpointError(f"{path}: not a valid ONNX model ({first_line(exc)})") from None
    config, geometry = _parse_metadata(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), path)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    g = config.generator
    if (
        len(inputs) != 1
        or len(outputs) != 1
        or inputs[0].shape[1] != g.in_channels
        or outputs[0].shape[1] != g.out_channels
    ):
        raise CheckpointError(
            f"{path}: graph inputs/outputs do not match its stored configuration ({g.in_channels} -> {g.out_channels} "
            "channels); the file was altered after export, export it again"
        )
    input_name = inputs[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        out = session.run(None, {input_name: x.detach().cpu().numpy().astype(np.float32, copy=False)})[0]
        return torch.from_numpy(out).to(x.device)

    return ExportedGenerator(run, geometry, "onnxruntime", path), config


def _load_torchscript(path: Path, device: torch.device) -> tuple[ExportedGenerator, RunConfig]:
    extra = {METADATA_KEY: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; it still works
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except (RuntimeError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: not a valid TorchScript model ({first_line(exc)})") from None
    raw = extra[METADATA_KEY]
    config, geometry = _parse_metadata(raw, path)
    module.eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        return module(x)

    return ExportedGenerator(run, geometry, "torch", path), config
