"""How visible tile borders are: mean jump across given border lines relative to the image's own texture."""

from __future__ import annotations

import numpy as np


def seam_score(image: np.ndarray, rows: list[int], cols: list[int], band: int = 2) -> float:
    """Mean |difference| between neighbouring pixels across the border lines divided by the mean |difference|
    over the bands of `band` pixels either side of them (excluding the border itself).

    About 1 means the borders look like their surroundings. Naive tiling shows either as a jump (well above 1)
    or as a ridge of smoothing where both tiles were padded (well below 1); see seam_visibility.
    `rows`/`cols` are the first row/column index after each border (0 < index < size).
    """
    x = image.astype(np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    dy = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2))  # dy[i]: between rows i and i + 1
    dx = np.abs(np.diff(x, axis=1)).mean(axis=(0, 2))
    across, near = [], []
    for lines, diffs in ((rows, dy), (cols, dx)):
        for r in lines:
            if not 0 < r < len(diffs) + 1:
                raise ValueError(f"border index {r} is outside the image")
            across.append(diffs[r - 1])
            near += [diffs[i] for i in range(r - 1 - band, r + band) if i != r - 1 and 0 <= i < len(diffs)]
    if not across:
        raise ValueError("no border lines given")
    return float(np.mean(across) / max(np.mean(near), 1e-12))


def seam_visibility(image: np.ndarray, rows: list[int], cols: list[int], band: int = 2) -> float:
    """|log seam_score|: 0 for invisible borders, growing with a jump or a smoothing ridge along them."""
    return abs(float(np.log(max(seam_score(image, rows, cols, band), 1e-12))))
