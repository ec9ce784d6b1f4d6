"""Data sets (IDX, CIFAR pickles), seeded splits, mini-batching and batch augmentation.

    splits = minidl.data.load_dataset("fashion_mnist")          # train / val / test
    batches = minidl.data.BatchIterator(*splits.train, batch_size=100, rng=0,
                                        augment=minidl.data.make_augmentation(crop_padding=4, flip=True))
"""
from .augment import (Compose, RandomCrop, RandomErasing, RandomFlip, make_augmentation,
                      random_crop, random_erasing, random_flip)
from .batching import BatchIterator
from .cifar import read_cifar
from .datasets import DatasetSplits, channel_stats, load_dataset
from .fetch import ChecksumError, download, download_file, md5sum
from .idx import read_idx, write_idx
from .sources import DATASET_NAMES, SOURCES, DatasetNotFoundError, find_dataset, get_source

__all__ = [
    "BatchIterator", "ChecksumError", "Compose", "DATASET_NAMES", "DatasetNotFoundError",
    "DatasetSplits", "RandomCrop", "RandomErasing", "RandomFlip", "SOURCES", "channel_stats",
    "download", "download_file", "find_dataset", "get_source", "load_dataset",
    "make_augmentation", "md5sum", "random_crop", "random_erasing", "random_flip", "read_cifar",
    "read_idx", "write_idx",
]
