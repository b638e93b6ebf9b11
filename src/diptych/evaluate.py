"""`diptych evaluate`: translate a test split, score every output against its target, write a reproducible report."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .atomic import atomic_path, write_text_atomic
from .data.io import from_tensor, to_tensor, write_image
from .data.paired import Pair, file_stem
from .errors import CheckpointError, ConfigError
from .metrics import DEFAULT_METRICS, MetricProtocol, summarize, validate_metric_names
from .metrics.feature import SET_METRICS, inception_distances
from .metrics.lpips import LPIPS, load_lpips, load_st_lpips, st_lpips_available, st_lpips_weights
from .metrics.pixel import ALL_METRICS
from .report import EvaluationRow, write_evaluation_report
from .scoring import ImageScorer, instance_map, load_test_pairs, score_pairs
from .translate import Translator

METRICS_FILE = "metrics.json"
PER_IMAGE_FILE = "per_image.csv"
REPORT_FILE = "report.html"


@dataclass(frozen=True)
class DeepMetricOptions:
    """Local weight files for the feature-network metrics (FID/KID: Inception-v3; LPIPS: AlexNet or VGG16;
    ST-LPIPS: AlexNet or VGG16, from the installed stlpips-pytorch package unless a file is given)."""

    inception_weights: Path | None = None
    inception_variant: str = "fid"
    lpips_weights: tuple[Path, ...] = ()
    lpips_net: str = "alex"
    st_lpips_weights: Path | None = None
    st_lpips_net: str = "alex"

    def describe(self, names: list[str]) -> dict[str, Any]:
        """The networks and weight files (with hashes) behind the requested metrics."""
        out: dict[str, Any] = {}
        if {"fid", "kid"} & set(names) and self.inception_weights:
            out["inception"] = {
                "variant": self.inception_variant,
                "weights": str(self.inception_weights),
                "sha256": file_sha256(Path(self.inception_weights)),
                "input": "RGB resized to 299x299 (bilinear); grey repeated, extra channels dropped",
            }
        if "lpips" in names:
            out["lpips"] = {
                "net": self.lpips_net,
                "weights": [{"file": str(f), "sha256": file_sha256(Path(f))} for f in self.lpips_weights],
            }
        if "st_lpips" in names:
            weights = st_lpips_weights(self.st_lpips_net, self.st_lpips_weights)
            out["st_lpips"] = {
                "net": self.st_lpips_net,
                "weights": {"file": str(weights), "sha256": file_sha256(weights)},
                "input": "RGB in [-1, 1] (grey repeated, extra channels dropped), upsampled to 32 px if smaller",
            }
        return out

    def networks(self, names: list[str]) -> dict[str, LPIPS]:
        """The per-image feature networks the metric names ask for, loaded (an error names a missing file)."""
        out: dict[str, LPIPS] = {}
        if "lpips" in names:
            out["lpips"] = load_lpips(self.lpips_weights, self.lpips_net)
        if "st_lpips" in names:
            out["st_lpips"] = load_st_lpips(self.st_lpips_net, self.st_lpips_weights)
        return out


def metric_names(metrics: list[str] | tuple[str, ...] | None, deep: DeepMetricOptions) -> tuple[list[str], list[str]]:
    """The metrics to compute and notes on defaults left out: None asks for DEFAULT_METRICS, of which ST-LPIPS is
    skipped without its weights (named metrics are all computed, or fail with the fix)."""
    if metrics is not None:
        return validate_metric_names(list(metrics), ALL_METRICS), []
    if deep.st_lpips_weights is not None or st_lpips_available(deep.st_lpips_net):
        return list(DEFAULT_METRICS), []
    note = (
        "st_lpips skipped: its weights ship in the stlpips-pytorch package, which is not installed "
        "(pip install 'diptych[perceptual]', or give --st-lpips-weights FILE)"
    )
    return [n for n in DEFAULT_METRICS if n != "st_lpips"], [note]


@dataclass
class Evaluation:
    """Where an evaluation wrote its files, and its summary."""

    out_dir: Path
    summary: dict[str, Any]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    out_dir: str | Path,
    *,
    phase: str = "test",
    layout: str = "auto",
    metrics: list[str] | tuple[str, ...] | None = None,
    channels: str = "all",
    crop_border: int = 0,
    test_mode: str | None = None,
    seed: int = 0,
    device: str = "auto",
    max_items: int = 0,
    progress: bool = True,
    deep: DeepMetricOptions | None = None,
    precision: str = "fp32",
    instance_dir: str | Path | None = None,
    direction: str | None = None,
    weights: str | None = None,
) -> Evaluation:
    """Translate the test pairs at their own size, score them, and write metrics.json, per_image.csv and report.html.

    metrics: names from ALL_METRICS; None: DEFAULT_METRICS (without ST-LPIPS where its weights are missing: noted)."""
    deep = deep or DeepMetricOptions()
    names, notes = metric_names(metrics, deep)
    if not isinstance(max_items, int) or max_items < 0:
        raise ConfigError(f"--max-items {max_items!r} must be an integer >= 0 (0 = all pairs)")
    if not isinstance(crop_border, int) or crop_border < 0:
        raise ConfigError(f"--crop-border {crop_border!r} must be an integer >= 0")
    image_names = [n for n in names if n not in SET_METRICS]
    set_names = [n for n in names if n in SET_METRICS]
    # Load feature networks first: a missing weights file should fail before any translation.
    networks = deep.networks(names)
    distances = (
        inception_distances(set_names, deep.inception_weights, deep.inception_variant, "cpu") if set_names else None
    )
    translator = Translator.load(
        checkpoint, device=device, mode=test_mode, seed=seed, precision=precision, direction=direction, weights=weights
    )
    weights_file = translator.weights_path
    if weights_file is None:
        raise CheckpointError(f"{checkpoint}: not a diptych checkpoint (expected a folder or a .safetensors file)")
    layout, base, pairs = load_test_pairs(Path(data), phase, layout, translator.config.data.nifti_axis)
    if max_items:
        pairs = pairs[:max_items]
    direction = translator.config.data.direction
    protocol = MetricProtocol(channels=channels, crop_border=crop_border, sample_type=translator.out_dtype.name)
    out_dir = Path(out_dir)
    rows: list[EvaluationRow] = []
    per_image: list[dict[str, Any]] = []
    if translator.needs_instances and instance_dir is None:
        raise ConfigError("this model was trained with instance maps: pass --instance-dir DIR (the test maps' folder)")
    inst_dir = translator.instance_folder(instance_dir)

    def encode(arr: np.ndarray, pair: Pair) -> torch.Tensor:
        instances = None if inst_dir is None else instance_map(inst_dir, pair, arr)
        return translator.encode(arr, str(pair.a_path), instances)

    scored = score_pairs(
        translator.translate_tensor,
        encode,
        pairs,
        layout,
        direction,
        ImageScorer(image_names, protocol, networks),
        translator.out_range,
    )
    for pair, a, b, out, values in tqdm(scored, total=len(pairs), desc="evaluate", unit="img", disable=not progress):
        if distances is not None:
            distances.update(out[None], to_tensor(b, translator.out_range)[None])
        stem = file_stem(pair.name)
        out_arr = translator.decode(out)
        output_file = write_image(out_dir / "outputs" / f"{stem}.png", out_arr)
        previews = {
            kind: _preview(arr, out_dir / "previews" / f"{stem}_{kind}.png")
            for kind, arr in (("input", a), ("output", out_arr), ("target", b))
        }
        rows.append(EvaluationRow(pair.name, previews["input"], previews["output"], previews["target"], values))
        per_image.append({"name": pair.name, "output": output_file.relative_to(out_dir).as_posix(), **values})
    metric_summaries: dict[str, Any] = {n: summarize([r[n] for r in per_image]).to_dict() for n in image_names}
    if distances is not None:
        for name, value in distances.compute().items():
            metric_summaries[name] = {
                "mean": value,
                "std": None,
                "n": len(per_image),
                "ci95_low": None,
                "ci95_high": None,
            }
    summary = {
        "metrics": {n: metric_summaries[n] for n in names},
        "count": len(per_image),
        "notes": notes,
        "protocol": {
            "checkpoint": str(Path(checkpoint).resolve()),
            "weights": translator.weights,
            "generator_sha256": file_sha256(weights_file),
            "data": str(base.resolve()),
            "phase": phase,
            "layout": layout,
            "direction": direction,
            "preprocess": "none: each input translated at its own size (reflect-padded as the generator pads: a U-Net to a multiple of 32 and per level, pix2pixHD to its stride)",
            "test_mode": translator.mode,
            "seed": seed,
            "precision": precision,
            "metrics": protocol.to_dict(),
            "feature_networks": deep.describe(names),
            "confidence_interval": CONFIDENCE_INTERVAL,
            **environment(translator.device),
        },
    }
    return write_evaluation(out_dir, summary, per_image, rows, image_names)


CONFIDENCE_INTERVAL = "95%, Student t with n-1 degrees of freedom, over images"


def environment(device: torch.device) -> dict[str, str]:
    """The software and device an evaluation ran on (part of every evaluation's protocol)."""
    return {
        "diptych": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }


def write_evaluation(
    out_dir: Path, summary: dict[str, Any], per_image: list[dict[str, Any]], rows: list[EvaluationRow], names: list[str]
) -> Evaluation:
    """Write metrics.json, per_image.csv and report.html of an evaluation into out_dir."""
    write_text_atomic(out_dir / METRICS_FILE, json.dumps(_finite(summary), indent=2))
    _write_csv(out_dir / PER_IMAGE_FILE, per_image, names)
    write_evaluation_report(rows, out_dir / REPORT_FILE, summary, names)
    return Evaluation(out_dir, summary)


def _preview(arr: np.ndarray, path: Path) -> Path:
    """An 8-bit PNG a browser can show (16-bit data and floats in [0, 1] scaled by their sample type's range,
    other data by its own minimum and maximum)."""
    low, high = float(arr.min()), float(arr.max())
    if arr.dtype == np.uint16 or (arr.dtype.kind == "f" and low >= 0.0 and high <= 1.0):
        arr = from_tensor(to_tensor(arr), np.uint8)
    elif arr.dtype != np.uint8:
        arr = from_tensor(to_tensor(arr, (low, high if high > low else low + 1.0)), np.uint8)
    if arr.shape[2] not in (1, 3, 4):
        arr = arr[:, :, :3] if arr.shape[2] > 3 else arr[:, :, :1]
    return write_image(path, arr)


def _write_csv(path: Path, rows: list[dict[str, Any]], names: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["name", "output", *names])
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def _finite(obj: Any) -> Any:
    """Replace NaN/inf by None so metrics.json is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
