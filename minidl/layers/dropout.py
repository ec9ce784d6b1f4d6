"""Dropout layer: inverted dropout in training, the identity in evaluation."""
from __future__ import annotations

import numpy as np

from .. import init
from .._shapes import unit_interval
from ..functional.dropout import dropout_backward, dropout_forward
from .base import Layer


class Dropout(Layer):
    """Zero each unit with probability ``p`` and scale the kept ones by ``1/(1-p)``
    (Srivastava et al., 2014); the identity in eval mode. x: any shape -> same shape.

    ``rng``: a numpy Generator or an int seed for the masks; by default a Generator seeded
    from ``minidl.init.default_rng()``, so ``init.seed`` makes whole runs reproducible.
    """

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        self.p = unit_interval(p, "p", "Dropout")
        if rng is None:
            rng = np.random.default_rng(int(init.default_rng().integers(np.iinfo(np.int64).max)))
        elif not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        # Masks come from this CPU numpy Generator and are then moved to the input's device,
        # never from the device RNG: the same seed gives the same masks on CPU and GPU, and a
        # training script can save ``layer.rng.bit_generator.state`` in a checkpoint and
        # restore it to resume a run exactly. (It is not an array, so ``to()`` leaves it alone
        # and ``state_dict`` does not hold it.)
        self.rng = rng

    def forward(self, x):
        shape = self._check_input(x)
        if not self.training or self.p == 0.0:
            self._cache = (shape, None)
            return x
        out, mask = dropout_forward(x, self.p, self.rng)
        self._cache = (shape, mask)
        return out

    def backward(self, dout):
        shape, mask = self._saved()
        self._check_dout(dout, shape)
        if mask is None:  # the forward pass was the identity
            return dout
        return dropout_backward(dout, mask)

    def extra_repr(self) -> str:
        return f"p={self.p}"
