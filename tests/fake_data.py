"""Fashion-MNIST stand-ins for tests: random images and labels in the official file layout."""
import numpy as np

from minidl.data import write_idx


def write_fake_fashion_mnist(root, n_train: int = 120, n_test: int = 40, n_classes: int = 10):
    """Write the four IDX gz files (random 28x28 uint8 images, labels below ``n_classes``) into
    ``root`` and return it; seeded, so every caller gets the same files."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz",
                  rng.integers(0, n_classes, size=n).astype(np.uint8))
    return root
