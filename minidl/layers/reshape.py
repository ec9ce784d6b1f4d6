"""Reshaping layers."""
from __future__ import annotations

import math

from .base import Layer


class Flatten(Layer):
    """Flatten all but the batch axis. x: (N, d1, d2, ...) -> (N, d1 * d2 * ...)."""

    def forward(self, x):
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) < 2:
            got = tuple(shape) if shape is not None else type(x).__name__
            raise ValueError(f"{self!r}: expected input of shape (N, ...) with at least 2 "
                             f"dimensions, got {got}")
        self._cache = tuple(shape)
        # An explicit size, not -1: reshape(0, -1) is ambiguous for an empty batch.
        return x.reshape(shape[0], math.prod(shape[1:]))

    def backward(self, dout):
        shape = self._saved()
        expected = (shape[0], math.prod(shape[1:]))
        if tuple(dout.shape) != expected:
            raise ValueError(f"{self!r}: backward expected dout of shape {expected}, "
                             f"got {tuple(dout.shape)}")
        return dout.reshape(shape)
