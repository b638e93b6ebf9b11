"""`diptych evaluate` of a super-resolution run: LR inputs made from HR images the way the model was trained (MATLAB
bicubic by default), scored on the Y channel with a border crop of `scale` (the papers' protocol), next to the
bicubic upscale of the same LR scored the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .data.io import from_tensor, strip_image_suffix, write_image
from .data.paired import file_stem
from .errors import CheckpointError, ConfigError
from .evaluate import (
    CONFIDENCE_INTERVAL,
    DeepMetricOptions,
    Evaluation,
    _preview,
    environment,
    file_sha256,
    write_evaluation,
)
from .metrics import MetricProtocol, summarize, validate_metric_names
from .metrics.pixel import BASELINE_PREFIX, PIXEL_METRICS
from .recipes.sr import degradation_of
from .report import EvaluationRow
from .scoring import list_hr_images, score_sr_image
from .translate import Translator

SR_METRICS = ("psnr", "ssim")


def evaluate_sr(
    checkpoint: str | Path,
    hr_dir: str | Path,
    out_dir: str | Path,
    *,
    phase: str = "test",
    metrics: list[str] | tuple[str, ...] = SR_METRICS,
    channels: str = "y",
    crop_border: int | None = None,
    seed: int = 0,
    device: str = "auto",
    max_items: int = 0,
    progress: bool = True,
    precision: str = "fp32",
    weights: str | None = None,
    st_lpips_net: str = "alex",
    st_lpips_weights: str | Path | None = None,
) -> Evaluation:
    """Score an SR model on the HR images of a folder (its `phase` sub-folder if there is one): each HR is cropped to
    a multiple of the scale, its LR made with the model's degradation (seeded per image), upscaled by the model and
    by MATLAB bicubic; both are scored against the HR (crop_border None: the scale). st_lpips (lower is better) is
    computed on RGB with the same border crop, by the installed stlpips-pytorch package's weights of `st_lpips_net`
    or `st_lpips_weights`."""
    names = validate_metric_names(list(metrics), (*PIXEL_METRICS, "st_lpips"))
    deep = DeepMetricOptions(
        st_lpips_weights=Path(st_lpips_weights) if st_lpips_weights else None, st_lpips_net=st_lpips_net
    )
    networks = deep.networks(names)
    if not isinstance(max_items, int) or max_items < 0:
        raise ConfigError(f"--max-items {max_items!r} must be an integer >= 0 (0 = all images)")
    translator = Translator.load(checkpoint, device=device, precision=precision, weights=weights)
    if translator.weights_path is None:
        raise CheckpointError(f"{checkpoint}: not a diptych checkpoint (expected a folder or a .safetensors file)")
    config = translator.config
    scale = config.generator.geometry().scale
    border = scale if crop_border is None else crop_border
    if not isinstance(border, int) or border < 0:
        raise ConfigError(f"--crop-border {border!r} must be an integer >= 0")
    degradation = degradation_of(config)
    folder, files = list_hr_images(Path(hr_dir), phase)
    files = files[: max_items or None]
    protocol = MetricProtocol(channels=channels, crop_border=border, sample_type=translator.out_dtype.name)
    out = Path(out_dir)
    rows: list[EvaluationRow] = []
    per_image: list[dict[str, Any]] = []
    for index, path in enumerate(tqdm(files, desc="evaluate", unit="img", disable=not progress)):
        rng = np.random.default_rng([seed, index])
        scored = score_sr_image(
            path,
            rng,
            translator.translate_tensor,
            degradation,
            scale,
            config.generator.in_channels,
            names,
            protocol,
            translator.out_range,
            networks,
        )
        hr_arr, lr, values = scored.hr_array, scored.lr, scored.values
        name = strip_image_suffix(path.relative_to(folder)).as_posix()
        stem = file_stem(name)
        sr_arr = translator.decode(scored.output)
        written = write_image(out / "outputs" / f"{stem}.png", sr_arr)
        previews = {
            kind: _preview(arr, out / "previews" / f"{stem}_{kind}.png")
            for kind, arr in (
                ("input", from_tensor(lr, hr_arr.dtype, translator.out_range)),
                ("output", sr_arr),
                ("target", hr_arr),
            )
        }
        rows.append(EvaluationRow(name, previews["input"], previews["output"], previews["target"], values))
        per_image.append({"name": name, "output": written.relative_to(out).as_posix(), **values})
    columns = [*names, *(f"{BASELINE_PREFIX}{n}" for n in names)]
    summary = {
        "metrics": {n: summarize([r[n] for r in per_image]).to_dict() for n in columns},
        "count": len(per_image),
        "protocol": {
            "checkpoint": str(Path(checkpoint).resolve()),
            "weights": translator.weights,
            "generator_sha256": file_sha256(translator.weights_path),
            "data": str(folder.resolve()),
            "task": f"super-resolution x{scale}",
            "hr": f"each image cropped at the bottom and right to sides divisible by {scale} (modcrop)",
            "lr": _describe_lr(degradation is not None, scale, seed),
            "baseline": f"{BASELINE_PREFIX}*: the same LR upscaled x{scale} by MATLAB bicubic (antialiased imresize), "
            "rounded to the data's sample type and scored the same way",
            "precision": precision,
            "metrics": protocol.to_dict(),
            **({"feature_networks": deep.describe(names)} if networks else {}),
            "confidence_interval": CONFIDENCE_INTERVAL,
            **environment(translator.device),
        },
    }
    return write_evaluation(out, summary, per_image, rows, columns)


def _describe_lr(degraded: bool, scale: int, seed: int) -> str:
    """How the LR inputs were made, for the protocol."""
    if degraded:
        return (
            f"the model's Real-ESRGAN degradation (its stored settings) to 1/{scale}, drawn from "
            f"numpy.random.default_rng([{seed}, image index]); rounded to the data's sample levels"
        )
    return f"MATLAB bicubic (antialiased imresize) by 1/{scale}; rounded to the data's sample levels"
