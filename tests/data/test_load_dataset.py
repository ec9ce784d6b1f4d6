"""load_dataset: search path, splits, seeds, subsets, normalisation and the missing-data message."""
import dataclasses
import os

import numpy as np
import pytest

from minidl import data
from minidl.data import DatasetNotFoundError, load_dataset
from minidl.data import datasets as datasets_module
from minidl.data.sources import SOURCES

REAL_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


@pytest.fixture
def no_system_fashion(monkeypatch, tmp_path):
    """Hide the Debian package's Fashion-MNIST so the search sees only the test's folders."""
    hidden = dataclasses.replace(SOURCES["fashion_mnist"], system_dirs=(str(tmp_path / "no-system-dir"),))
    monkeypatch.setitem(SOURCES, "fashion_mnist", hidden)


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "plain"])
def test_idx_dataset_shapes_dtypes_and_values(idx_dataset, compress):
    folder, arrays = idx_dataset(n_train=200, n_test=50, compress=compress)
    splits = load_dataset("mnist", data_dir=folder, val_fraction=0.1, normalize=False)
    x, y = splits.train
    assert x.shape == (180, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    assert splits.val[0].shape == (20, 1, 28, 28) and splits.test[0].shape == (50, 1, 28, 28)
    assert (splits.in_channels, splits.image_shape, splits.num_classes) == (1, (1, 28, 28), 10)
    assert splits.class_names == tuple("0123456789")
    # Without normalisation the test split is the file's pixels / 255, in file order.
    expected = arrays["t10k-images-idx3-ubyte"].astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(splits.test[0][:, 0], expected)
    np.testing.assert_array_equal(splits.test[1], arrays["t10k-labels-idx1-ubyte"])
    assert 0 <= x.min() and x.max() <= 1


def test_split_is_a_seeded_partition(idx_dataset):
    folder, arrays = idx_dataset(n_train=200)
    images = arrays["train-images-idx3-ubyte"].reshape(200, -1)

    def rows(x):  # recover each sample's index in the training file from its pixels
        lookup = {r.tobytes(): i for i, r in enumerate(images)}
        return [lookup[r.tobytes()] for r in np.rint(x.reshape(len(x), -1) * 255).astype(np.uint8)]

    a = load_dataset("mnist", data_dir=folder, seed=3, normalize=False)  # default: 5 % held out
    b = load_dataset("mnist", data_dir=folder, val_fraction=0.05, seed=3, normalize=False)
    c = load_dataset("mnist", data_dir=folder, val_fraction=0.05, seed=4, normalize=False)
    train, val = rows(a.train[0]), rows(a.val[0])
    assert len(val) == 10 and sorted(train + val) == list(range(200))
    np.testing.assert_array_equal(a.train[1], arrays["train-labels-idx1-ubyte"][train])
    np.testing.assert_array_equal(a.train[0], b.train[0])
    np.testing.assert_array_equal(a.val[0], b.val[0])
    assert rows(c.val[0]) != val


def test_normalisation_uses_train_statistics_only(idx_dataset):
    folder, arrays = idx_dataset(n_train=300)
    raw = load_dataset("mnist", data_dir=folder, val_fraction=0.2, seed=1, normalize=False)
    norm = load_dataset("mnist", data_dir=folder, val_fraction=0.2, seed=1)
    mean, std = raw.train[0].mean(dtype=np.float64), raw.train[0].std(dtype=np.float64)
    np.testing.assert_allclose(norm.mean, [mean], rtol=1e-6)
    np.testing.assert_allclose(norm.std, [std], rtol=1e-6)
    assert norm.mean.dtype == np.float32 and norm.mean.shape == (1,)
    np.testing.assert_allclose(norm.train[0].mean(dtype=np.float64), 0, atol=1e-5)
    np.testing.assert_allclose(norm.train[0].std(dtype=np.float64), 1, rtol=1e-5)
    # the other splits get the TRAIN statistics, not their own
    for split_raw, split_norm in ((raw.val, norm.val), (raw.test, norm.test)):
        np.testing.assert_allclose(split_norm[0], (split_raw[0] - mean) / std, atol=1e-5)
    assert abs(norm.test[0].mean() - (raw.test[0].mean() - mean) / std) < 1e-5
    np.testing.assert_array_equal(raw.mean, [0])
    np.testing.assert_array_equal(raw.std, [1])


def test_cifar_statistics_are_per_channel(cifar_dataset):
    directory, x_train, *_ = cifar_dataset("cifar10")
    splits = load_dataset("cifar10", data_dir=directory, val_fraction=0.0)
    expected = (x_train / 255).mean(axis=(0, 2, 3)), (x_train / 255).std(axis=(0, 2, 3))
    np.testing.assert_allclose(splits.mean, expected[0], rtol=1e-6)
    np.testing.assert_allclose(splits.std, expected[1], rtol=1e-6)
    assert splits.val[0].shape == (0, 3, 32, 32)
    np.testing.assert_allclose(splits.train[0].mean(axis=(0, 2, 3)), 0, atol=1e-5)


@pytest.mark.parametrize("archive", [True, False], ids=["tar.gz", "folder"])
def test_cifar100_fine_labels(cifar_dataset, archive):
    directory, _, y_train, _, y_test, names = cifar_dataset("cifar100", archive=archive)
    splits = load_dataset("CIFAR-100", data_dir=directory, val_fraction=0.1)
    assert splits.num_classes == 100 and splits.class_names == names and splits.in_channels == 3
    assert len(splits.train[1]) == 90 and len(splits.val[1]) == 10
    np.testing.assert_array_equal(np.sort(np.concatenate([splits.train[1], splits.val[1]])), np.sort(y_train))
    np.testing.assert_array_equal(splits.test[1], y_test)


def test_cifar100_edinburgh_split_sizes(monkeypatch):
    """50,000 training images at the default 5 % give 47,500 / 2,500 / 10,000."""
    source = SOURCES["cifar100"]
    tiny = np.zeros((50_000, 3, 1, 1), np.uint8), np.zeros((10_000, 3, 1, 1), np.uint8)

    def fake_read(src, location):  # real sizes, 1-pixel images: tests the split, not the reader
        return tiny[0], np.arange(50_000) % 100, tiny[1], np.arange(10_000) % 100, ("c",) * 100

    monkeypatch.setattr(datasets_module, "find_dataset", lambda name, data_dir: (source, "fake"))
    monkeypatch.setattr(datasets_module, "_read", fake_read)
    splits = load_dataset("cifar100")
    assert [len(s[1]) for s in (splits.train, splits.val, splits.test)] == [47_500, 2_500, 10_000]


def test_subset_is_a_prefix_with_proportional_val_and_test(idx_dataset):
    folder, _ = idx_dataset(n_train=400, n_test=100)
    full = load_dataset("mnist", data_dir=folder, val_fraction=0.05, seed=2, normalize=False)
    small = load_dataset("mnist", data_dir=folder, val_fraction=0.05, seed=2, subset=38, normalize=False)
    np.testing.assert_array_equal(small.train[0], full.train[0][:38])
    # 38 / 380 = 10 % of the 20 validation and 100 test samples
    assert (len(small.val[1]), len(small.test[1])) == (2, 10)
    np.testing.assert_array_equal(small.val[0], full.val[0][:2])
    assert small.test[1].dtype == np.int64


@pytest.mark.parametrize("kwargs, match", [
    ({"val_fraction": 1.0}, "val_fraction"), ({"val_fraction": -0.1}, "val_fraction"),
    ({"subset": 0}, "subset"), ({"subset": 2.5}, "subset"), ({"subset": 10_000}, "exceeds"),
])
def test_bad_arguments(idx_dataset, kwargs, match):
    folder, _ = idx_dataset()
    with pytest.raises(ValueError, match=match):
        load_dataset("mnist", data_dir=folder, **kwargs)


def test_names_and_unknown_name():
    assert data.get_source("Fashion-MNIST").name == "fashion_mnist"
    assert data.get_source("cifar-10").name == "cifar10"
    with pytest.raises(ValueError, match=r"imagenet.*fashion_mnist.*mnist.*cifar10.*cifar100"):
        load_dataset("imagenet")


def test_missing_data_message_names_paths_and_remedies(tmp_path, monkeypatch, no_system_fashion):
    monkeypatch.setenv("MINIDL_DATA", str(tmp_path / "env-root"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for path in (tmp_path / "env-root" / "fashion_mnist",
                 os.path.abspath(os.path.join("data", "fashion_mnist")),
                 os.path.expanduser(os.path.join("~", ".minidl", "data", "fashion_mnist")),
                 tmp_path / "no-system-dir"):
        assert str(path) in message
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "minidl.data.download('fashion_mnist'" in message
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz" in message
    # the search order is the documented one
    assert message.index(str(tmp_path / "env-root")) < message.index(os.path.abspath("data"))
    assert message.index(os.path.abspath("data")) < message.index(os.path.expanduser("~"))


def test_an_explicit_data_dir_is_the_only_place_searched(idx_dataset, tmp_path, monkeypatch):
    """The data in --data-dir, or a refusal naming it: never another copy found elsewhere."""
    folder, _ = idx_dataset(folder=os.path.join(tmp_path, "env", "fashion_mnist"))
    monkeypatch.setenv("MINIDL_DATA", str(tmp_path / "env"))
    assert len(load_dataset("fashion_mnist").test[1]) == 50            # found via $MINIDL_DATA
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion_mnist", data_dir=tmp_path / "given")
    message = str(info.value)
    assert f"not found in data_dir {tmp_path / 'given'}" in message
    searched = message.split("(an explicit")[0]
    assert str(tmp_path / "env") not in searched and "/usr/share/datasets" not in searched


def test_cifar_missing_message_points_to_download(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"cifar-100-python.tar.gz(.|\n)*download\('cifar100'"):
        load_dataset("cifar100", data_dir=tmp_path)


@pytest.mark.parametrize("where", ["env", "cwd", "home"])
def test_search_path_roots(idx_dataset, monkeypatch, tmp_path, where):
    root = {"env": tmp_path / "env", "cwd": "data", "home": os.path.expanduser("~/.minidl/data")}[where]
    if where == "env":
        monkeypatch.setenv("MINIDL_DATA", str(root))
    idx_dataset(folder=os.path.join(root, "mnist"))
    assert len(load_dataset("mnist", val_fraction=0).train[1]) == 200


def test_loose_idx_files_in_a_shared_root_are_not_guessed(idx_dataset, no_system_fashion):
    """MNIST files straight in ./data must not be loaded as Fashion-MNIST (same file names)."""
    idx_dataset(folder="data")
    with pytest.raises(DatasetNotFoundError):
        load_dataset("fashion_mnist")
    assert len(load_dataset("fashion_mnist", data_dir="data").test[1]) == 50  # explicit: trusted


def test_repr_is_short(idx_dataset):
    folder, _ = idx_dataset()
    text = repr(load_dataset("mnist", data_dir=folder))
    assert text.startswith("DatasetSplits('mnist', train=190, val=10, test=50") and len(text) < 200


@pytest.mark.skipif(not os.path.isdir(REAL_FASHION_MNIST), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    splits = load_dataset()  # the default data set, found in the Debian package's folder
    assert len(splits.train[1]) + len(splits.val[1]) == 60_000 and len(splits.val[1]) == 3_000
    assert splits.test[0].shape == (10_000, 1, 28, 28) and splits.num_classes == 10
    assert splits.class_names[0] == "T-shirt/top" and splits.class_names[9] == "Ankle boot"
    assert np.bincount(splits.test[1]).tolist() == [1000] * 10
    # published Fashion-MNIST training statistics: mean 0.2860, std 0.3530
    np.testing.assert_allclose(splits.mean, [0.2860], atol=5e-4)
    np.testing.assert_allclose(splits.std, [0.3530], atol=5e-4)
