"""Data: image I/O that keeps precision, paired datasets, joint transforms."""

from .io import from_tensor, list_images, read_image, to_tensor, write_image
from .paired import DatasetSummary, Pair, PairedDataset, collate_pairs, find_pairs, open_paired_dataset
from .transforms import JointTransform

__all__ = [
    "DatasetSummary",
    "JointTransform",
    "Pair",
    "PairedDataset",
    "collate_pairs",
    "find_pairs",
    "from_tensor",
    "list_images",
    "open_paired_dataset",
    "read_image",
    "to_tensor",
    "write_image",
]
