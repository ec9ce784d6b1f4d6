"""CIFAR-10/100 reader: the official pickle layout, from the tar.gz and from the extracted folder."""
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from minidl.data import read_cifar
from minidl.data.cifar import CIFAR10, CIFAR100, find_cifar


@pytest.mark.parametrize("archive", [True, False], ids=["tar.gz", "folder"])
@pytest.mark.parametrize("variant, layout", [("cifar10", CIFAR10), ("cifar100", CIFAR100)])
def test_round_trip(cifar_dataset, variant, layout, archive):
    directory, x_train, y_train, x_test, y_test, names = cifar_dataset(variant, archive=archive)
    source = find_cifar(directory, layout)
    assert source is not None
    xtr, ytr, xte, yte, class_names = read_cifar(source, layout)
    assert xtr.shape == (100, 3, 32, 32) and xtr.dtype == np.uint8
    assert ytr.dtype == np.int64 and yte.dtype == np.int64
    np.testing.assert_array_equal(xtr, x_train)
    np.testing.assert_array_equal(ytr, y_train)
    np.testing.assert_array_equal(xte, x_test)
    np.testing.assert_array_equal(yte, y_test)
    assert class_names == names and len(class_names) == (10 if variant == "cifar10" else 100)


def test_channel_planes_are_red_green_blue(tmp_path):
    """Row layout: 1024 red, then green, then blue values, each plane row-major."""
    row = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.arange(1024) % 256]).astype(np.uint8)
    folder = tmp_path / CIFAR10.folder
    folder.mkdir()
    for name in (*CIFAR10.train, CIFAR10.test):
        (folder / name).write_bytes(pickle.dumps({b"data": row[None], b"labels": [3]}, protocol=2))
    x, y, _, _, names = read_cifar(folder, CIFAR10)
    assert names is None  # no batches.meta
    assert (x[0, 0] == 10).all() and (x[0, 1] == 20).all()
    assert x[0, 2, 1, 0] == 32 and x[0, 2, 0, 5] == 5  # row-major within the plane
    np.testing.assert_array_equal(y, [3] * 5)


def test_extracted_folder_itself_is_accepted(cifar_dataset):
    directory, *_ = cifar_dataset("cifar10", archive=False)
    inner = os.path.join(directory, CIFAR10.folder)
    assert find_cifar(inner, CIFAR10) == inner
    assert find_cifar(directory, CIFAR100) is None


def test_missing_batch_is_reported(cifar_dataset):
    directory, *_ = cifar_dataset("cifar10", archive=False)
    os.remove(os.path.join(directory, CIFAR10.folder, "data_batch_3"))
    # find_cifar no longer accepts the folder, and reading it anyway names the missing file
    assert find_cifar(directory, CIFAR10) is None
    with pytest.raises(ValueError, match="data_batch_3"):
        read_cifar(os.path.join(directory, CIFAR10.folder), CIFAR10)


def test_refuses_pickles_that_run_code(tmp_path):
    """A tampered batch that would call os.system must not be executed."""

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    archive = tmp_path / CIFAR10.archive
    with tarfile.open(archive, "w:gz") as tar:
        for name in (*CIFAR10.train, CIFAR10.test):
            data = pickle.dumps({b"data": Exploit(), b"labels": [0]}, protocol=2)
            info = tarfile.TarInfo(f"{CIFAR10.folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="refusing"):
        read_cifar(archive, CIFAR10)


def test_wrong_row_length(tmp_path):
    folder = tmp_path / CIFAR10.folder
    folder.mkdir()
    for name in (*CIFAR10.train, CIFAR10.test):
        (folder / name).write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8),
                                                  b"labels": [0, 1]}, protocol=2))
    with pytest.raises(ValueError, match=r"\(N, 3072\).*\(2, 100\)"):
        read_cifar(folder, CIFAR10)


@pytest.mark.parametrize("data, message", [
    (np.full((2, 3072), 0.5, np.float32), "not whole numbers"),    # already scaled floats
    (np.full((2, 3072), 300, np.int64), r"values in \[300, 300\]"),  # would wrap to 44
    (np.full((2, 3072), -1, np.int16), r"values in \[-1, -1\]"),
])
def test_pixels_that_uint8_would_change_are_refused(tmp_path, data, message):
    folder = tmp_path / CIFAR10.folder
    folder.mkdir()
    for name in (*CIFAR10.train, CIFAR10.test):
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": [0, 1]}, protocol=2))
    with pytest.raises(ValueError, match=message):
        read_cifar(folder, CIFAR10)


def test_whole_number_pixels_of_another_dtype_are_kept(tmp_path):
    folder = tmp_path / CIFAR10.folder
    folder.mkdir()
    data = (np.arange(2 * 3072) % 256).reshape(2, 3072)
    for name in (*CIFAR10.train, CIFAR10.test):
        (folder / name).write_bytes(pickle.dumps({b"data": data.astype(np.float64),
                                                  b"labels": [0, 1]}, protocol=2))
    x_train = read_cifar(folder, CIFAR10)[0]
    assert x_train.dtype == np.uint8
    np.testing.assert_array_equal(x_train[:2].reshape(2, -1), data)
