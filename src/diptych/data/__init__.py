"""Data: image I/O that keeps precision, paired and unpaired datasets, joint transforms."""

from .io import from_tensor, list_images, read_image, to_tensor, write_image
from .paired import DatasetSummary, Pair, PairedDataset, collate_pairs, find_pairs, open_paired_dataset
from .transforms import JointTransform
from .unpaired import Domain, UnpairedDataset, UnpairedSummary, find_unpaired_files, open_unpaired_dataset

__all__ = [
    "DatasetSummary",
    "Domain",
    "JointTransform",
    "Pair",
    "PairedDataset",
    "UnpairedDataset",
    "UnpairedSummary",
    "collate_pairs",
    "find_pairs",
    "find_unpaired_files",
    "from_tensor",
    "list_images",
    "open_paired_dataset",
    "open_unpaired_dataset",
    "read_image",
    "to_tensor",
    "write_image",
]
