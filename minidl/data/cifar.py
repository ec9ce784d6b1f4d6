"""CIFAR-10 and CIFAR-100 from the official python-pickle archives (Krizhevsky, 2009).

The archives ``cifar-10-python.tar.gz`` (``cifar-10-batches-py/data_batch_1..5, test_batch,
batches.meta``) and ``cifar-100-python.tar.gz`` (``cifar-100-python/train, test, meta``) hold
pickled dicts with bytes keys: ``b"data"`` a uint8 ``(N, 3072)`` array (1024 red, 1024 green,
1024 blue values per row, each plane row-major 32 x 32) and ``b"labels"`` (CIFAR-10) or
``b"fine_labels"`` (CIFAR-100). Either the ``.tar.gz`` or its extracted folder is read.
"""
from __future__ import annotations

import os
import pickle
import tarfile
from dataclasses import dataclass

import numpy as np

CIFAR_IMAGE_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class CifarLayout:
    """File names inside one CIFAR archive."""

    archive: str
    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: bytes
    names_key: bytes


CIFAR10 = CifarLayout("cifar-10-python.tar.gz", "cifar-10-batches-py",
                      tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                      "batches.meta", b"labels", b"label_names")
CIFAR100 = CifarLayout("cifar-100-python.tar.gz", "cifar-100-python", ("train",), "test",
                       "meta", b"fine_labels", b"fine_label_names")

# The pickles hold only dicts, lists, bytes and numpy arrays; refusing every other global
# keeps a tampered archive from running code when it is unpickled.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),  # written by numpy 1.x (the official files)
    ("numpy._core.multiarray", "_reconstruct"),  # written by numpy 2.x
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 stores bytes in a protocol-2 pickle
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"CIFAR pickle refers to {module}.{name}, which a "
                                         "CIFAR batch never contains; refusing to load it")
        return super().find_class(module, name)


def _unpickle(fileobj, source: str) -> dict:
    # encoding="bytes": the official files were written by Python 2, so keys stay bytes.
    try:
        return _ArrayUnpickler(fileobj, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise ValueError(f"{source}: not a valid CIFAR pickle ({err})") from err


def find_cifar(directory, layout: CifarLayout):
    """Return the archive or folder under ``directory`` holding ``layout``'s files, else None.

    Accepts ``directory/<archive>.tar.gz``, ``directory/<folder>/`` and ``directory`` itself
    being the extracted folder.
    """
    archive = os.path.join(directory, layout.archive)
    folder = os.path.join(directory, layout.folder)
    for candidate in (folder, directory):
        if all(os.path.isfile(os.path.join(candidate, f)) for f in (*layout.train, layout.test)):
            return candidate
    return archive if os.path.isfile(archive) else None


def _read_members(source, layout: CifarLayout) -> dict:
    """Unpickle every file of ``layout`` from a folder or a tar.gz: {file name: dict}."""
    wanted = (*layout.train, layout.test, layout.meta)
    batches = {}
    if os.path.isdir(source):
        for name in wanted:
            path = os.path.join(source, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    batches[name] = _unpickle(f, path)
    else:
        # One pass over the members: seeking backwards in a gzip stream re-decompresses it.
        try:
            with tarfile.open(source, "r:gz") as tar:
                for member in tar:
                    name = os.path.basename(member.name)
                    parent = os.path.basename(os.path.dirname(member.name))
                    if member.isfile() and parent == layout.folder and name in wanted:
                        batches[name] = _unpickle(tar.extractfile(member), f"{source}:{member.name}")
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ValueError(f"{source}: cannot read the archive ({err})") from err
    missing = [n for n in (*layout.train, layout.test) if n not in batches]
    if missing:
        raise ValueError(f"{source}: missing CIFAR files {missing} (expected "
                         f"{layout.folder}/{{{', '.join(wanted)}}})")
    return batches


def _pixels(data: np.ndarray, source: str) -> np.ndarray:
    """``data`` as uint8 if it holds whole numbers in [0, 255]; else a ValueError saying what
    it holds (a float or out-of-range array cast to uint8 would wrap around silently)."""
    if data.dtype == np.uint8:
        return data
    if data.dtype.kind not in "iuf" or data.size == 0:
        raise ValueError(f"{source}: CIFAR data must be uint8 pixels, got dtype {data.dtype}")
    low, high = data.min(), data.max()
    if low < 0 or high > 255 or (data.dtype.kind == "f" and not np.all(data == np.round(data))):
        raise ValueError(f"{source}: CIFAR data must be uint8 pixels in [0, 255], got "
                         f"{data.dtype} values in [{low}, {high}]"
                         + (" that are not whole numbers" if data.dtype.kind == "f" else "")
                         + "; this is not an official CIFAR archive (re-download it)")
    return data.astype(np.uint8)


def _images_labels(batch: dict, layout: CifarLayout, source: str):
    try:
        data, labels = batch[b"data"], batch[layout.label_key]
    except KeyError as err:
        raise ValueError(f"{source}: CIFAR batch lacks key {err.args[0]!r}; "
                         f"has {sorted(batch)}") from err
    data = _pixels(np.asarray(data), source)
    size = int(np.prod(CIFAR_IMAGE_SHAPE))
    if data.ndim != 2 or data.shape[1] != size or data.shape[0] != len(labels):
        raise ValueError(f"{source}: expected data (N, {size}) with N = len(labels) = "
                         f"{len(labels)}, got {data.shape}")
    return data.reshape(-1, *CIFAR_IMAGE_SHAPE), np.asarray(labels, dtype=np.int64)


def read_cifar(source, layout: CifarLayout):
    """Read a CIFAR archive or extracted folder.

    Returns ``(x_train, y_train, x_test, y_test, class_names)``: x uint8 ``(N, 3, 32, 32)``,
    y int64 ``(N,)``, class names from the meta file (None without it).
    """
    source = os.fspath(source)
    batches = _read_members(source, layout)
    train = [_images_labels(batches[n], layout, f"{source}:{n}") for n in layout.train]
    x_test, y_test = _images_labels(batches[layout.test], layout, f"{source}:{layout.test}")
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    names = batches.get(layout.meta, {}).get(layout.names_key)
    class_names = None if names is None else tuple(
        n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return x_train, y_train, x_test, y_test, class_names
