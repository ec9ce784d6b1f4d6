"""MNIST-style data sets (MNIST, Fashion-MNIST): four IDX files, images and labels per split."""
from __future__ import annotations

import os

import numpy as np

from .idx import read_idx

# The four files, named as the official archives name them; each may be gzipped (".gz") or plain.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def find_idx_files(directory):
    """Return {role: path} when ``directory`` holds all four IDX files (gz preferred), else None."""
    found = {}
    for role, stem in IDX_FILES.items():
        for name in (stem + ".gz", stem):
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                found[role] = path
                break
        else:
            return None
    return found


def _split(files, images_role: str, labels_role: str):
    images, labels = read_idx(files[images_role]), read_idx(files[labels_role])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{files[images_role]} and {files[labels_role]}: expected images "
                         f"(N, H, W) and labels (N,), got {images.shape} and {labels.shape}")
    return images[:, None], labels.astype(np.int64)


def read_idx_dataset(files):
    """Read the four IDX files found by ``find_idx_files``.

    Returns ``(x_train, y_train, x_test, y_test)``: x uint8 ``(N, 1, H, W)``, y int64 ``(N,)``.
    """
    x_train, y_train = _split(files, "train_images", "train_labels")
    x_test, y_test = _split(files, "test_images", "test_labels")
    return x_train, y_train, x_test, y_test
