"""Mini-batches over arrays: reshuffled every epoch from one checkpointable numpy Generator."""
from __future__ import annotations

import numpy as np

from .. import backend
from .._shapes import positive_int


class BatchIterator:
    """Iterate over ``(xb, yb)`` mini-batches of ``(x, y)``; ``len()`` is the number of batches.

    x: (N, ...), y: (N,). Each ``iter()`` starts an epoch: with ``shuffle`` a fresh
    permutation is drawn from ``self.rng``, and ``augment(xb, rng)`` (see
    ``minidl.data.make_augmentation``) is applied to each batch with the same Generator, so
    saving and restoring ``iterator.rng.bit_generator.state`` between epochs replays them
    exactly. ``rng`` is a Generator or a seed (None: fresh OS entropy). The last, smaller
    batch is kept unless ``drop_last``. Batches are copies when shuffled or augmented, else
    views of ``x`` and ``y``.
    """

    def __init__(self, x, y, batch_size: int, shuffle: bool = True, rng=None, augment=None,
                 drop_last: bool = False):
        if len(x) != len(y):
            raise ValueError(f"BatchIterator: x and y must have the same length, got x {tuple(x.shape)} "
                             f"and y {tuple(y.shape)}")
        if augment is not None and not callable(augment):
            raise ValueError(f"BatchIterator: augment must be callable(x, rng) or None, got {augment!r}")
        self.x, self.y = x, y
        self.batch_size = positive_int(batch_size, "batch_size", "BatchIterator")
        self.shuffle = shuffle
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.augment = augment
        self.drop_last = drop_last

    @property
    def num_samples(self) -> int:
        """Samples yielded per epoch."""
        n = len(self.x)
        return n - n % self.batch_size if self.drop_last else n

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n, bs = len(self.x), self.batch_size
        order = self.rng.permutation(n) if self.shuffle else None
        xp = backend.get_array_module(self.x)
        for start in range(0, self.num_samples, bs):
            if order is None:
                xb, yb = self.x[start:start + bs], self.y[start:start + bs]
            else:
                idx = order[start:start + bs]
                xb, yb = self.x[xp.asarray(idx)], self.y[backend.get_array_module(self.y).asarray(idx)]
            if self.augment is not None:
                xb = self.augment(xb, self.rng)
            yield xb, yb

    def __repr__(self) -> str:
        return (f"BatchIterator(n={len(self.x)}, batch_size={self.batch_size}, batches={len(self)}, "
                f"shuffle={self.shuffle}, augment={self.augment!r}, drop_last={self.drop_last})")
