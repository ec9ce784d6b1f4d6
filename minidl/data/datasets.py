"""``load_dataset``: read a data set, split off a seeded validation set, scale and normalise."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._shapes import positive_int, unit_interval
from .cifar import read_cifar
from .mnist import read_idx_dataset
from .sources import DatasetSource, find_dataset

_PIXEL_MAX = 255  # uint8 pixels are scaled to [0, 1] by this


@dataclass(frozen=True, repr=False)
class DatasetSplits:
    """Train / validation / test splits of one data set, ready for a model.

    Each split is ``(x, y)``: x float32 ``(N, C, H, W)``, y int64 ``(N,)``. ``mean`` and ``std``
    (float32 ``(C,)``) are the per-channel statistics of the [0, 1]-scaled TRAIN split that were
    subtracted and divided from every split (0 and 1 when ``normalize=False``).
    """

    name: str
    train: tuple
    val: tuple
    test: tuple
    num_classes: int
    class_names: tuple
    mean: np.ndarray
    std: np.ndarray

    @property
    def image_shape(self) -> tuple:
        """Shape of one image, ``(C, H, W)``."""
        return tuple(self.train[0].shape[1:])

    @property
    def in_channels(self) -> int:
        return self.image_shape[0]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(getattr(self, s)[1])}" for s in ("train", "val", "test"))
        return (f"DatasetSplits({self.name!r}, {sizes}, image_shape={self.image_shape}, "
                f"num_classes={self.num_classes})")


def _read(source: DatasetSource, location):
    """Raw uint8 arrays and class names of a located data set."""
    if source.cifar is not None:
        x_train, y_train, x_test, y_test, names = read_cifar(location, source.cifar)
    else:
        (x_train, y_train, x_test, y_test), names = read_idx_dataset(location), None
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.shape[1:] != source.image_shape:
            raise ValueError(f"{source.title} {split} images have shape {x.shape[1:]}, "
                             f"expected {source.image_shape} (read from {location})")
        if y.size and (y.min() < 0 or y.max() >= source.num_classes):
            raise ValueError(f"{source.title} {split} labels span [{y.min()}, {y.max()}], "
                             f"expected [0, {source.num_classes - 1}] (read from {location})")
    names = names or source.class_names or tuple(str(i) for i in range(source.num_classes))
    return x_train, y_train, x_test, y_test, tuple(names)


def channel_stats(x_uint8: np.ndarray):
    """Exact per-channel mean and std of ``x_uint8 / 255``; x: (N, C, H, W) uint8.

    Counting the 256 pixel values per channel gives float64-exact statistics without a
    float copy of the whole split (which for CIFAR would be hundreds of MB).
    """
    values = np.arange(_PIXEL_MAX + 1, dtype=np.float64) / _PIXEL_MAX
    mean, std = [], []
    for c in range(x_uint8.shape[1]):  # C <= 3 channels
        counts = np.bincount(x_uint8[:, c].ravel(), minlength=_PIXEL_MAX + 1)
        p = counts / counts.sum()
        m = p @ values
        mean.append(m)
        std.append(np.sqrt(p @ (values - m) ** 2))
    return np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)


def _to_float(x_uint8, mean, std):
    """uint8 (N, C, H, W) -> float32 ((x / 255) - mean) / std, per channel."""
    x = x_uint8.astype(np.float32)
    x /= np.float32(_PIXEL_MAX)
    x -= mean[:, None, None]
    x /= std[:, None, None]
    return x


def _check_args(val_fraction, subset):
    unit_interval(val_fraction, "val_fraction", "load_dataset")
    if subset is not None:
        positive_int(subset, "subset", "load_dataset")


def load_dataset(name: str = "fashion_mnist", data_dir=None, val_fraction: float = 0.05, seed: int = 0,
                 subset: int | None = None, normalize: bool = True) -> DatasetSplits:
    """Load ``name`` ("fashion_mnist", "mnist", "cifar10", "cifar100") as train/val/test splits.

    The official training set is shuffled with ``np.random.default_rng(seed)``; its first
    ``round(val_fraction * N)`` samples form the validation split and the rest, in shuffled
    order, the training split (CIFAR-100 at 5 %: 47,500 / 2,500 / 10,000, as in the Edinburgh
    MLP report). ``subset=N`` keeps the first N training samples and the same fraction
    ``N / len(train)`` of the validation split (its first samples) and of the test split (a
    seeded random sample), each at least one, for quick runs. Pixels are scaled to [0, 1],
    then, when ``normalize``, standardised per channel with the TRAIN split's mean and std.
    Searches ``data_dir``, ``$MINIDL_DATA``, ``./data``, ``~/.minidl/data`` (and the Debian
    package's folder for Fashion-MNIST); raises DatasetNotFoundError naming them all.
    """
    _check_args(val_fraction, subset)
    source, location = find_dataset(name, data_dir)
    x_train, y_train, x_test, y_test, class_names = _read(source, location)

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_train))
    n_val = int(round(val_fraction * len(x_train)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    test_idx = np.arange(len(x_test))
    if subset is not None:
        if subset > len(train_idx):
            raise ValueError(f"load_dataset: subset={subset} exceeds the {len(train_idx)} "
                             f"training samples of {source.title}")
        fraction = subset / len(train_idx)
        train_idx = train_idx[:subset]
        val_idx = val_idx[:max(1, round(fraction * len(val_idx)))]
        test_idx = rng.permutation(len(x_test))[:max(1, round(fraction * len(x_test)))]

    if normalize:
        mean, std = channel_stats(x_train[train_idx])
        std[std == 0] = 1  # a constant channel is only centred, not divided by zero
    else:
        channels = source.image_shape[0]
        mean, std = np.zeros(channels, np.float32), np.ones(channels, np.float32)

    def split(x, y, idx):
        return _to_float(x[idx], mean, std), y[idx]

    return DatasetSplits(
        name=source.name,
        train=split(x_train, y_train, train_idx),
        val=split(x_train, y_train, val_idx),
        test=split(x_test, y_test, test_idx),
        num_classes=source.num_classes, class_names=class_names, mean=mean, std=std)
