"""Where each data set comes from: names, official URLs and checksums, and the local search path.

A data set is looked for in an explicit ``data_dir`` only, when one is given; otherwise, in
order, in ``$MINIDL_DATA``, ``./data``, ``~/.minidl/data`` and (Fashion-MNIST only)
``/usr/share/datasets/fashion-mnist``, the folder of the Debian package ``dataset-fashion-mnist``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .cifar import CIFAR10, CIFAR100, CifarLayout, find_cifar
from .mnist import IDX_FILES, find_idx_files

ENV_VAR = "MINIDL_DATA"
DEFAULT_DATA_DIR = os.path.join("~", ".minidl", "data")


@dataclass(frozen=True)
class DatasetSource:
    """One data set: its files, where to download them, and how to recognise them on disk.

    ``files`` maps each downloadable file to its official md5 (None where none is published).
    ``subdirs`` are the folder names it may have under a data root (the first is where
    ``download`` puts it).
    """

    name: str
    title: str
    num_classes: int
    image_shape: tuple
    mirrors: tuple
    files: dict
    subdirs: tuple
    class_names: tuple = ()
    cifar: CifarLayout | None = None
    system_dirs: tuple = ()
    apt_package: str | None = None
    aliases: tuple = field(default=())

    def locate(self, directory):
        """The files of this data set in ``directory`` (a dict, path or folder), else None."""
        if self.cifar is not None:
            return find_cifar(directory, self.cifar)
        return find_idx_files(directory)

    def expected_files(self) -> str:
        """Human-readable list of what ``locate`` looks for."""
        if self.cifar is not None:
            return f"{self.cifar.archive} or the extracted folder {self.cifar.folder}/"
        return ", ".join(f"{stem}[.gz]" for stem in IDX_FILES.values())


def _idx_files(md5s):
    return {stem + ".gz": md5 for stem, md5 in zip(IDX_FILES.values(), md5s)}


SOURCES = {
    "fashion_mnist": DatasetSource(
        name="fashion_mnist", title="Fashion-MNIST", num_classes=10, image_shape=(1, 28, 28),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
        # md5s published in the zalandoresearch/fashion-mnist README (also torchvision's).
        files=_idx_files(("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                          "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
        subdirs=("fashion_mnist", "fashion-mnist", "FashionMNIST"),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                     "Sneaker", "Bag", "Ankle boot"),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        apt_package="dataset-fashion-mnist", aliases=("fashionmnist",)),
    "mnist": DatasetSource(
        name="mnist", title="MNIST", num_classes=10, image_shape=(1, 28, 28),
        # yann.lecun.com is the original home but often refuses downloads; PyTorch's mirror first.
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        files=_idx_files(("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
                          "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")),
        subdirs=("mnist", "MNIST"), class_names=tuple(str(i) for i in range(10))),
    "cifar10": DatasetSource(
        name="cifar10", title="CIFAR-10", num_classes=10, image_shape=(3, 32, 32),
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        files={CIFAR10.archive: "c58f30108f718f92721af3b95e74349a"},
        subdirs=("cifar10", "cifar-10"), cifar=CIFAR10, aliases=("cifar_10",)),
    "cifar100": DatasetSource(
        name="cifar100", title="CIFAR-100", num_classes=100, image_shape=(3, 32, 32),
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        files={CIFAR100.archive: "eb9058c3a382ffc7106e4002c42a8d85"},
        subdirs=("cifar100", "cifar-100"), cifar=CIFAR100, aliases=("cifar_100",)),
}
DATASET_NAMES = tuple(SOURCES)


class DatasetNotFoundError(FileNotFoundError):
    """A data set is in none of the searched folders; the message lists them and how to get it."""


def get_source(name: str) -> DatasetSource:
    """Look a data set up by name; ``-`` and ``_`` are interchangeable, case is ignored."""
    key = str(name).strip().lower().replace("-", "_")
    for source in SOURCES.values():
        if key == source.name or key in source.aliases:
            return source
    raise ValueError(f"unknown data set {name!r}; expected one of {list(DATASET_NAMES)} "
                     "('-' may replace '_')")


def search_roots(data_dir=None):
    """The data roots in search order, as (absolute path, why it is searched)."""
    roots = []
    if data_dir is not None:
        roots.append((data_dir, "data_dir"))
    for entry in filter(None, os.environ.get(ENV_VAR, "").split(os.pathsep)):
        roots.append((entry, f"${ENV_VAR}"))
    roots.append(("data", "./data"))
    roots.append((DEFAULT_DATA_DIR, DEFAULT_DATA_DIR))
    return [(os.path.abspath(os.path.expanduser(os.fspath(r))), why) for r, why in roots]


def candidate_dirs(source: DatasetSource, data_dir=None):
    """Every folder that may hold ``source``'s files, in search order, as (path, why).

    An explicit ``data_dir`` is the only place searched: another copy found elsewhere would
    silently replace the data the user pointed at.
    """
    candidates = []
    roots = search_roots(data_dir)
    if data_dir is not None:
        roots = roots[:1]
    for root, why in roots:
        candidates += [(os.path.join(root, sub), why) for sub in source.subdirs]
        # MNIST and Fashion-MNIST use the same file names, so loose IDX files in a shared
        # root are only trusted when the user pointed at that folder; CIFAR names are unique.
        if why == "data_dir" or source.cifar is not None:
            candidates.append((root, why))
    if data_dir is None:
        candidates += [(d, f"the {source.apt_package} package") for d in source.system_dirs]
    return candidates


def how_to_get(source: DatasetSource) -> str:
    """The ways to obtain ``source``, one per line."""
    ways = []
    if source.apt_package:
        ways.append(f"sudo apt-get install {source.apt_package}   "
                    f"(installs {', '.join(source.system_dirs)})")
    ways.append(f"{'or ' if ways else ''}python -c \"import minidl.data; "
                f"minidl.data.download('{source.name}', '{DEFAULT_DATA_DIR}')\"")
    urls = ", ".join(source.mirrors[0] + f for f in source.files)
    ways.append(f"or download {urls} by hand into one of the folders above "
                f"(or set ${ENV_VAR}, or pass data_dir=)")
    return "\n".join("  " + w for w in ways)


def find_dataset(name, data_dir=None):
    """Return ``(source, location)`` for the first folder that holds the data set.

    ``location`` is what ``source.locate`` found: {role: path} for IDX files, or the CIFAR
    archive / extracted folder. Raises DatasetNotFoundError naming every folder searched.
    """
    source = get_source(name)
    searched = []
    for directory, why in candidate_dirs(source, data_dir):
        if os.path.isdir(directory):
            location = source.locate(directory)
            if location is not None:
                return source, location
        searched.append(f"  {directory}   ({why})")
    if data_dir is not None:
        raise DatasetNotFoundError(
            f"{source.title} not found in data_dir {data_dir}: looked for "
            f"{source.expected_files()} in\n" + "\n".join(searched)
            + "\n(an explicit data_dir is the only place searched; leave it out to search "
            f"${ENV_VAR}, ./data, {DEFAULT_DATA_DIR} and the system folders)"
            f"\nTo get it:\n{how_to_get(source)}")
    raise DatasetNotFoundError(
        f"{source.title} not found: looked for {source.expected_files()} in\n"
        + "\n".join(searched) + f"\nTo get it:\n{how_to_get(source)}")
