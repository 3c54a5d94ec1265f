"""Data: host-memory datasets, the registered sources, augmentations and the batch loader."""

from robustdata.data.dataset import DataSplits, Dataset, split_indices
