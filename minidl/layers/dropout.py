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
        # Each forward draws one 64-bit seed from this CPU Generator; the mask is then hashed
        # from it on the input's device (functional/dropout.py). So CPU and GPU give the same
        # masks, nothing but the seed crosses to the GPU, and the Generator's state is the
        # layer's whole random state: ``extra_state`` hands it to checkpoints.
        self.rng = rng

    def forward(self, x):
        shape = self._check_input(x)
        if not self.training or self.p == 0.0:
            self._cache = (shape, None)
            return x
        seed = int(self.rng.integers(2 ** 64, dtype=np.uint64))
        out, mask = dropout_forward(x, self.p, seed)
        self._cache = (shape, mask)
        return out

    def backward(self, dout):
        shape, mask = self._saved()
        self._check_dout(dout, shape)
        if mask is None:  # the forward pass was the identity
            return dout
        return dropout_backward(dout, mask)

    def extra_state(self) -> dict:
        """The mask Generator's state (JSON-ready), so a resumed run draws the same masks."""
        return {"rng": self.rng.bit_generator.state}

    def load_extra_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

    def extra_repr(self) -> str:
        return f"p={self.p}"
