"""Semantic label maps as network input: one-hot channels (with an ignore label) and instance boundary maps."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError


def one_hot_labels(
    labels: np.ndarray, label_nc: int, ignore_label: int | None = None, name: str = "label map"
) -> torch.Tensor:
    """An HxW integer label map as label_nc x H x W float channels in {0, 1}; ignored pixels are all zero."""
    if labels.ndim == 3:
        if labels.shape[2] != 1:
            raise DataError(f"{name}: a label map must have one channel, found {labels.shape[2]}")
        labels = labels[:, :, 0]
    check_label_range(labels, label_nc, ignore_label, name)
    ids = torch.from_numpy(labels.astype(np.int64))
    valid = torch.ones_like(ids, dtype=torch.bool) if ignore_label is None else ids != ignore_label
    out = torch.zeros(label_nc, *ids.shape)
    out.scatter_(0, torch.where(valid, ids, 0)[None], valid[None].float())
    return out


def check_label_range(labels: np.ndarray, label_nc: int, ignore_label: int | None, name: str) -> None:
    """Raise DataError naming the file if a label (other than the ignore label) is outside 0 .. label_nc - 1."""
    ids = labels.astype(np.int64, copy=False)
    valid = ids if ignore_label is None else ids[ids != ignore_label]
    if valid.size and (int(valid.max()) >= label_nc or int(valid.min()) < 0):
        value = int(valid.max()) if int(valid.max()) >= label_nc else int(valid.min())
        raise DataError(
            f"{name}: has label {value}, outside 0..{label_nc - 1}; raise --label-nc or set --ignore-label {value}"
        )


def instance_boundaries(
    instances: np.ndarray, name: str = "instance map", size: tuple[int, int] | None = None
) -> torch.Tensor:
    """A 1 x H x W map that is 1 where a pixel's instance id differs from a 4-neighbour's (pix2pixHD's edge map)."""
    if instances.ndim == 3:
        instances = instances[:, :, 0]
    if size is not None and instances.shape != size:
        raise DataError(
            f"{name}: size {instances.shape[1]}x{instances.shape[0]} differs from its label map ({size[1]}x{size[0]})"
        )
    ids = torch.from_numpy(instances.astype(np.int64))
    edge = torch.zeros_like(ids, dtype=torch.bool)
    dy = ids[1:] != ids[:-1]
    dx = ids[:, 1:] != ids[:, :-1]
    edge[1:] |= dy
    edge[:-1] |= dy
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    return edge[None].float()
