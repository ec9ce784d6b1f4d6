"""Fixtures for the data tests: tiny data sets written in the real on-disk formats."""
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from minidl.data import write_idx
from minidl.data.cifar import CIFAR10, CIFAR100


@pytest.fixture(autouse=True)
def isolated_search_path(tmp_path, monkeypatch):
    """Keep the user's real data folders ($MINIDL_DATA, ./data, ~/.minidl/data) out of every test."""
    monkeypatch.delenv("MINIDL_DATA", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def fake_images(n, shape, seed):
    """Random uint8 images (N, *shape), reproducible from ``seed``."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


@pytest.fixture
def idx_dataset(tmp_path):
    """Write the four MNIST-style IDX files; returns (folder, arrays dict)."""

    def make(folder=None, n_train=200, n_test=50, compress=True, seed=0):
        folder = folder or tmp_path / "idx"
        os.makedirs(folder, exist_ok=True)
        rng = np.random.default_rng(seed)
        arrays = {
            "train-images-idx3-ubyte": fake_images(n_train, (28, 28), seed),
            "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
            "t10k-images-idx3-ubyte": fake_images(n_test, (28, 28), seed + 1),
            "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
        }
        for stem, array in arrays.items():
            write_idx(os.path.join(folder, stem + (".gz" if compress else "")), array)
        return folder, arrays

    return make


def _pickle_bytes(obj):
    # Protocol 2 with bytes keys, like the Python 2 originals.
    return pickle.dumps(obj, protocol=2)


@pytest.fixture
def cifar_dataset(tmp_path):
    """Write a tiny CIFAR-10 or CIFAR-100 as the official tar.gz or its extracted folder.

    Returns (directory to search, x_train (N,3,32,32), y_train, x_test, y_test, class names).
    """

    def make(variant="cifar10", archive=True, n_per_batch=20, n_test=30, seed=0, directory=None):
        layout, num_classes = (CIFAR10, 10) if variant == "cifar10" else (CIFAR100, 100)
        rng = np.random.default_rng(seed)
        names = [f"class_{i}".encode() for i in range(num_classes)]
        files, xs, ys = {}, [], []
        for i, name in enumerate(layout.train):
            n = n_per_batch * (5 if variant == "cifar100" else 1)
            x = fake_images(n, (3, 32, 32), seed + i)
            y = rng.integers(0, num_classes, n)
            xs.append(x)
            ys.append(y)
            files[name] = {b"data": x.reshape(n, -1), layout.label_key: y.tolist(),
                           b"batch_label": name.encode(), b"filenames": [b"f.png"] * n}
        x_test = fake_images(n_test, (3, 32, 32), seed + 100)
        y_test = rng.integers(0, num_classes, n_test)
        files[layout.test] = {b"data": x_test.reshape(n_test, -1), layout.label_key: y_test.tolist()}
        if variant == "cifar100":
            files[layout.train[0]][b"coarse_labels"] = [0] * len(ys[0])
            files[layout.meta] = {layout.names_key: names, b"coarse_label_names": [b"c"] * 20}
        else:
            files[layout.meta] = {layout.names_key: names, b"num_cases_per_batch": n_per_batch}
        directory = directory or tmp_path / f"{variant}_{'tar' if archive else 'dir'}"
        os.makedirs(directory, exist_ok=True)
        if archive:
            with tarfile.open(os.path.join(directory, layout.archive), "w:gz") as tar:
                for name, content in files.items():
                    data = _pickle_bytes(content)
                    info = tarfile.TarInfo(f"{layout.folder}/{name}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        else:
            os.makedirs(os.path.join(directory, layout.folder), exist_ok=True)
            for name, content in files.items():
                with open(os.path.join(directory, layout.folder, name), "wb") as f:
                    f.write(_pickle_bytes(content))
        return (directory, np.concatenate(xs), np.concatenate(ys), x_test, y_test,
                tuple(n.decode() for n in names))

    return make
