"""`diptych evaluate` for unpaired methods: per direction, the cycle reconstruction error of X -> G(X) -> F(G(X)),
FID/KID between the translated images and the target domain's images, and the paired metrics where the target
domain holds an image of the same name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .atomic import write_text_atomic
from .data.io import read_image, strip_image_suffix, to_tensor, write_image
from .data.unpaired import find_unpaired_files
from .errors import ConfigError
from .evaluate import (
    METRICS_FILE,
    PER_IMAGE_FILE,
    REPORT_FILE,
    DeepMetricOptions,
    Evaluation,
    _finite,
    _preview,
    _write_csv,
    environment,
    file_sha256,
)
from .metrics import MetricProtocol, summarize
from .metrics.checkerboard import checkerboard_score
from .metrics.feature import FeatureDistances, inception_distances
from .metrics.pixel import compute_pixel_metrics
from .report import EvaluationRow, write_evaluation_report
from .translate import Translator

CYCLE_METRICS = ("l1", "psnr")  # of the reconstruction against the input, reported as cycle_l1 and cycle_psnr
PAIRED_METRICS = ("psnr", "ssim", "l1")  # of the translation against a same-named target, when there is one
SET_METRICS = ("fid", "kid")
BACK = {"AtoB": "BtoA", "BtoA": "AtoB"}


def evaluate_unpaired(
    checkpoint: str | Path,
    data: str | Path,
    out_dir: str | Path,
    *,
    directions: tuple[str, ...] = ("AtoB", "BtoA"),
    phase: str = "test",
    device: str = "auto",
    max_items: int = 0,
    progress: bool = True,
    deep: DeepMetricOptions | None = None,
    precision: str = "fp32",
    weights: str | None = None,
) -> Evaluation:
    """Translate each domain's test images both ways, score them, and write metrics.json, per-direction
    per_image.csv and report.html (input | translated | reconstructed | target when paired)."""
    deep = deep or DeepMetricOptions()
    out_dir = Path(out_dir)
    files = dict(zip("AB", find_unpaired_files(Path(data), phase), strict=True))
    translators = {
        d: Translator.load(checkpoint, device=device, mode="eval", precision=precision, direction=d, weights=weights)
        for d in dict.fromkeys([*directions, *(BACK[d] for d in directions)])
    }
    notes = []
    if deep.inception_weights is None:
        notes.append("fid/kid skipped: pass --inception-weights FILE (Inception-v3 weights; never downloaded)")
    results: dict[str, Any] = {}
    for direction in directions:
        distances = (
            inception_distances(list(SET_METRICS), deep.inception_weights, deep.inception_variant, "cpu")
            if deep.inception_weights is not None
            else None
        )
        sources = files[direction[0]][: max_items or None]
        targets = {strip_image_suffix(p).name: p for p in files[direction[-1]]}
        results[direction] = _score_direction(
            translators[direction],
            translators[BACK[direction]],
            sources,
            targets,
            out_dir / direction,
            distances,
            progress,
        )
    first = translators[directions[0]]
    summary = {
        "directions": {d: r["summary"] for d, r in results.items()},
        "notes": notes,
        "protocol": {
            "checkpoint": str(Path(checkpoint).resolve()),
            "weights": first.weights,
            "weights_sha256": {d: file_sha256(t.weights_path) for d, t in translators.items() if t.weights_path},
            "data": str(Path(data).resolve()),
            "phase": phase,
            "cycle": "each input translated, decoded to its target domain's sample type, translated back; compared "
            "with the input in [0, 1] of its sample type's range",
            "set_metrics": "FID/KID between all translated images and all of the target domain's test images",
            "test_mode": "eval",
            "precision": precision,
            "recipe": first.config.recipe,
            **environment(first.device),
        },
    }
    write_text_atomic(out_dir / METRICS_FILE, json.dumps(_finite(summary), indent=2))
    for direction, result in results.items():
        page_summary = {**result["summary"], "protocol": {**summary["protocol"], "direction": direction}}
        names = list(result["summary"]["metrics"])
        image_names = [n for n in names if n not in SET_METRICS]
        _write_csv(out_dir / direction / PER_IMAGE_FILE, result["per_image"], image_names)
        # (each direction's folder is an evaluation of its own, which `diptych compare` reads)
        write_text_atomic(out_dir / direction / METRICS_FILE, json.dumps(_finite(page_summary), indent=2))
        write_evaluation_report(result["rows"], out_dir / direction / REPORT_FILE, page_summary, image_names)
    return Evaluation(out_dir, summary)


def _score_direction(
    forward: Translator,
    back: Translator,
    sources: list[Path],
    targets: dict[str, Path],
    out_dir: Path,
    distances: FeatureDistances | None,
    progress: bool,
) -> dict[str, Any]:
    """Score one direction; returns its summary, report rows and per-image values."""
    if not sources:
        raise ConfigError(f"{out_dir.name}: the source domain has no test images")
    in_protocol = MetricProtocol(sample_type=forward.config.data.input_sample_type or "uint8")
    out_protocol = MetricProtocol(sample_type=forward.out_dtype.name)
    rows, per_image = [], []
    for path in tqdm(sources, desc=f"evaluate {out_dir.name}", unit="img", disable=not progress):
        name = strip_image_suffix(path).name
        arr = read_image(path)
        x = forward.encode(arr, str(path))
        y = forward.translate_tensor(x[None])[0]
        translated = forward.decode(y)
        rec = back.translate_tensor(back.encode(translated, str(path))[None])[0]
        cycle = compute_pixel_metrics(rec, x, list(CYCLE_METRICS), in_protocol)
        values = {f"cycle_{k}": v for k, v in cycle.items()}
        # No target to compare with: the output's periodic peaks against its own neighbouring frequencies.
        written = (to_tensor(translated, forward.out_range).double() + 1) / 2
        values["checkerboard"] = checkerboard_score(written, None, out_protocol.sample_type)
        target_arr = read_image(targets[name]) if name in targets else None
        if target_arr is not None and target_arr.shape == translated.shape:
            target = to_tensor(target_arr, forward.out_range)
            values.update(compute_pixel_metrics(y, target, list(PAIRED_METRICS), out_protocol))
        if distances is not None:
            distances.add(y[None], real=False)
        output_file = write_image(out_dir / "outputs" / f"{name}.png", translated)
        previews = {
            kind: _preview(image, out_dir / "previews" / f"{name}_{kind}.png")
            for kind, image in (("input", arr), ("output", translated), ("reconstructed", back.decode(rec)))
        }
        target_preview = (
            None if target_arr is None else _preview(target_arr, out_dir / "previews" / f"{name}_target.png")
        )
        rows.append(
            EvaluationRow(
                name, previews["input"], previews["output"], target_preview, values, previews["reconstructed"]
            )
        )
        per_image.append({"name": name, "output": output_file.relative_to(out_dir).as_posix(), **values})
    names = list(dict.fromkeys(k for r in per_image for k in r if k not in ("name", "output")))
    metrics: dict[str, Any] = {n: summarize([r[n] for r in per_image if n in r]).to_dict() for n in names}
    if distances is not None:
        for path in targets.values():
            distances.add(to_tensor(read_image(path), forward.out_range)[None], real=True)
        for n, value in distances.compute().items():
            metrics[n] = {"mean": value, "std": None, "n": len(per_image), "ci95_low": None, "ci95_high": None}
    return {"summary": {"metrics": metrics, "count": len(per_image)}, "rows": rows, "per_image": per_image}
