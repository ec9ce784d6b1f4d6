"""Reshaping layers."""
from __future__ import annotations

import math

from .base import Layer


class Flatten(Layer):
    """Flatten all but the batch axis. x: (N, d1, d2, ...) -> (N, d1 * d2 * ...)."""

    def forward(self, x):
        shape = self._check_input(x)
        if len(shape) < 2:
            raise ValueError(f"{self.describe()}: expected input of shape (N, ...) with at "
                             f"least 2 dimensions, got {shape}")
        self._cache = shape
        # An explicit size, not -1: reshape(0, -1) is ambiguous for an empty batch.
        return x.reshape(shape[0], math.prod(shape[1:]))

    def backward(self, dout):
        shape = self._saved()
        self._check_dout(dout, (shape[0], math.prod(shape[1:])))
        return dout.reshape(shape)
