"""Measure `diptych data check`'s alignment scores: the figures docs/data.md quotes for true, wrong and shifted pairs.

Not a timing benchmark: it reproduces the score ranges of the alignment check on scikit-image's bundled photos
(no download), so docs/data.md's claims can be re-checked after the scoring changes.

    python benchmarks/check_scores.py             # score ranges, about 1 minute
    python benchmarks/check_scores.py --flagged   # also: pairs flagged on make-pairs output, several minutes

For every task of `data make-pairs` (grey, blur, x4 downscale, JPEG at quality 10, noise, Canny edges), `--per-photo` random
crops of each bundled photo are scored against their true partner, against a crop of another photo (wrong
partner) and against their partner shifted by `--shift` pixels. Pairs the check would call too flat to judge
(weak or concentrated structure, as `check.py` decides) are left out, as the check leaves them out.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from diptych.data.io import write_image
from diptych.data.samples import SAMPLE_PHOTOS, sample_photo
from diptych.data.tools import check
from diptych.data.tools.make_pairs import CropOptions, TaskOptions, make_pairs

TASKS = {
    "grey": TaskOptions("gray"),
    "blur": TaskOptions("blur"),
    "downscale x4": TaskOptions("downscale", scale=4),
    "jpeg q10": TaskOptions("jpeg", quality=10),
    "noise": TaskOptions("noise"),
    "edges": TaskOptions("edges"),
}
# The flagged-pairs run uses make-pairs' default options (JPEG quality 20), as docs/data.md's claims about it do.
DEFAULT_TASKS = {task.task: TaskOptions(task.task) for task in TASKS.values()}
Score = tuple[float, float, float, float, float]  # correlation, structure of A and B, spread of A and B


def judged(scores: list[Score], median_a: float, median_b: float) -> list[float]:
    """The correlations of the pairs the check would judge (finite, neither side too flat or too sparse)."""
    return [s[0] for s in scores if np.isfinite(s[0]) and check.judgeable(s[1:], median_a, median_b)]


def score_ranges(size: int, per_photo: int, shift: int, seed: int) -> None:
    """Print the range of judged scores for true, wrong-partner and shifted pairs, per task."""
    rng = np.random.default_rng(seed)
    photos = [sample_photo(name) for name in SAMPLE_PHOTOS]
    boxes = [
        (i, int(rng.integers(0, p.shape[0] - size + 1)), int(rng.integers(0, p.shape[1] - size - shift + 1)))
        for i, p in enumerate(photos)
        for _ in range(per_photo)
    ]
    print(f"| pairs | true partner | wrong partner | B shifted by {shift} px |\n|---|---|---|---|")
    pooled_wrong: list[float] = []
    pooled_shifted: list[float] = []
    for name, task in TASKS.items():
        degraded = [task.degrade(p, np.random.default_rng([seed, i])) for i, p in enumerate(photos)]
        true, wrong, shifted = [], [], []
        for k, (i, y, x) in enumerate(boxes):
            a = degraded[i][y : y + size, x : x + size]
            true.append(check.alignment_score(a, photos[i][y : y + size, x : x + size]))
            j, y2, x2 = boxes[(k + per_photo) % len(boxes)]  # the same place in the next photo
            wrong.append(check.alignment_score(a, photos[j][y2 : y2 + size, x2 : x2 + size]))
            shifted.append(check.alignment_score(a, photos[i][y : y + size, x + shift : x + shift + size]))
        finite = [s for s in true if np.isfinite(s[0])]
        medians = float(np.median([s[1] for s in finite])), float(np.median([s[2] for s in finite]))
        cells = []
        for scores in (true, wrong, shifted):
            kept = judged(scores, *medians)
            cells.append(f"{min(kept):.2f}..{max(kept):.2f} (n={len(kept)})" if kept else "-")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
        pooled_wrong.extend(judged(wrong, *medians))
        pooled_shifted.extend(judged(shifted, *medians))
    print(f"all tasks: wrong partner {min(pooled_wrong):.2f}..{max(pooled_wrong):.2f}, ", end="")
    print(f"shifted {min(pooled_shifted):.2f}..{max(pooled_shifted):.2f}")


def flagged_pairs(sizes: tuple[int, ...], seeds: tuple[int, ...], workers: int) -> None:
    """Build make-pairs datasets (default task options) from the bundled photos and print what `data check` flags."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in SAMPLE_PHOTOS:
            write_image(root / "photos" / f"{name}.png", sample_photo(name))
        out = root / "pairs"
        for size in sizes:
            for name, task in DEFAULT_TASKS.items():
                variants = [(f"seed {s}", CropOptions(size, 3), s) for s in seeds]
                variants.append(("grid", CropOptions(size, 0, True), 0))
                for label, crops, seed in variants:
                    shutil.rmtree(out, ignore_errors=True)
                    make_pairs(root / "photos", out, task, crops, seed=seed, workers=workers)
                    report = check.check_dataset(out, workers=workers)
                    flagged = [Path(p.files[0]).name for p in report.problems if p.kind == "misaligned"]
                    too_flat = report.alignment.get("too_flat", 0)
                    print(f"{size} px {name:12s} {label:7s} too flat {too_flat:2d}, flagged {flagged}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="crop size of the scored pairs")
    parser.add_argument("--per-photo", type=int, default=4, help="crops per bundled photo")
    parser.add_argument("--shift", type=int, default=16, help="pixels B is shifted by for the shifted pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flagged", action="store_true", help="also run data check on make-pairs datasets")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    score_ranges(args.size, args.per_photo, args.shift, args.seed)
    if args.flagged:
        flagged_pairs((128, 256), (7, 0, 1), args.workers)


if __name__ == "__main__":
    main()
