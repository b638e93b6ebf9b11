"""`diptych interpolate`: network interpolation (ESRGAN's fidelity <-> realism knob), a checkpoint whose generator
weights are (1 - alpha) x A's + alpha x B's for two runs of one architecture."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .atomic import write_text_atomic
from .checkpoint import (
    open_generator,
    read_checkpoint_config,
    read_manifest,
    resolve_checkpoint,
    write_checkpoint_folder,
)
from .config import RunConfig
from .errors import ConfigError
from .nets import generator_spec

INTERPOLATION_FILE = "interpolation.json"


@dataclass(frozen=True)
class Interpolation:
    """What `interpolate` wrote: the checkpoint folder, alpha, and which weights of each run it blended."""

    out_dir: Path
    alpha: float
    weights_a: str
    weights_b: str


def blend(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) x a + alpha x b for every floating-point tensor (exactly a at 0 and b at 1); others from a."""
    return {k: (1 - alpha) * v + alpha * b[k] if v.is_floating_point() else v.clone() for k, v in a.items()}


def interpolate(
    run_a: str | Path, run_b: str | Path, alpha: float, out_dir: str | Path, weights: str | None = None
) -> Interpolation:
    """Write a checkpoint folder whose every generator blends A's and B's (their moving averages where they have
    them, unless `weights` says "raw" or "ema"); ConfigError in one line, nothing written, when the two differ in
    architecture or domains. The blend keeps A's configuration, without a weight average of its own."""
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not (math.isfinite(alpha) and 0 <= alpha <= 1):
        raise ConfigError(f"--alpha {alpha!r} must be a number in [0, 1] (0 = RUN_A, 1 = RUN_B)")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: already exists; choose a new folder")
    config = read_checkpoint_config(run_a)
    offered = read_manifest(resolve_checkpoint(run_a), config)["generators"]
    networks = {}
    kinds: tuple[str, str] = ("raw", "raw")
    for direction, name in offered.items():
        gen_a, view_a, _, kind_a = open_generator(run_a, direction, weights)
        try:
            gen_b, view_b, _, kind_b = open_generator(run_b, direction, weights)
        except ConfigError as exc:
            raise ConfigError(f"{run_b}: cannot be blended with {run_a} ({exc})") from None
        check_blendable(view_a, view_b, str(run_a), str(run_b))
        gen_a.load_state_dict(blend(gen_a.state_dict(), gen_b.state_dict(), float(alpha)))
        networks[name] = gen_a
        kinds = (kind_a, kind_b)
    written = copy.deepcopy(config)
    written.train.ema = 0.0  # (the blend is stored as the checkpoint's weights; it has no average of its own)
    write_checkpoint_folder(out, written, networks)
    note = {"a": str(run_a), "b": str(run_b), "alpha": alpha, "weights": {"a": kinds[0], "b": kinds[1]}}
    write_text_atomic(out / INTERPOLATION_FILE, json.dumps(note, indent=2))
    return Interpolation(out, float(alpha), *kinds)


def check_blendable(a: RunConfig, b: RunConfig, name_a: str, name_b: str) -> None:
    """ConfigError naming the first difference that makes two generators' weights meaningless to blend: an
    architecture field, or the channels, sample type or value range of their inputs and outputs."""
    spec_a, spec_b = generator_spec(a.generator), generator_spec(b.generator)
    for key in sorted(set(spec_a) | set(spec_b)):
        if spec_a.get(key) != spec_b.get(key):
            raise ConfigError(
                f"{name_a} and {name_b} have different generator architectures ({key}: {spec_a.get(key)} vs "
                f"{spec_b.get(key)}); interpolation blends two runs of one architecture"
            )
    for key in ("sample_type", "input_sample_type", "input_range", "output_range"):
        if getattr(a.data, key) != getattr(b.data, key):
            raise ConfigError(
                f"{name_a} and {name_b} map their images differently (data.{key}: {getattr(a.data, key)} vs "
                f"{getattr(b.data, key)}); interpolation blends runs trained on the same kind of data"
            )
