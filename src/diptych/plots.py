"""Training curves as a PNG in the run folder: losses, learning rate and validation metrics against steps."""

from __future__ import annotations

import json
from pathlib import Path

from .atomic import atomic_path

CURVES_FILE = "curves.png"


def plot_training_curves(log_file: Path, out_file: Path) -> Path | None:
    """Plot every series in log.jsonl (one panel per loss family, learning rate, validation metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not log_file.is_file():
        return None
    records = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    series: dict[str, tuple[list[int], list[float]]] = {}
    for rec in records:
        for key, value in rec.items():
            if key in ("step", "epoch", "time_s") or not isinstance(value, int | float):
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(rec["step"])
            ys.append(value)
    if not series:
        return None
    panels: dict[str, list[str]] = {}
    for key in series:
        if key.startswith("lr_"):
            panels.setdefault("learning rate", []).append(key)
        elif key.startswith("val_"):
            panels.setdefault(f"validation {key[4:]}", []).append(key)
        elif key.startswith("D_"):
            panels.setdefault("discriminator losses", []).append(key)
        elif key.startswith("G_"):
            panels.setdefault(f"generator {key[2:]}", []).append(key)
        else:
            panels.setdefault(key, []).append(key)
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, (title, keys) in zip(axes.flat, panels.items(), strict=False):
        for key in keys:
            xs, ys = series[key]
            ax.plot(xs, ys, label=key, marker="o" if len(xs) < 20 else None, markersize=3)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(out_file) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out_file
