"""Inverted dropout (Srivastava et al., 2014, "Dropout: A Simple Way to Prevent Neural
Networks from Overfitting"): kept units are scaled by 1/(1-p) at training time so that the
network needs no rescaling at test time."""
from __future__ import annotations

import numpy as np

from .. import backend


def dropout_mask(shape, p, rng: np.random.Generator):
    """Boolean keep-mask of ``shape`` drawn on the CPU: True with probability ``1 - p``.

    Drawing from a numpy Generator (never the device's RNG) makes the mask depend only on
    the generator's state, so it is identical on CPU and GPU and for float32/float64 inputs.
    """
    return rng.random(shape) >= p


def dropout_forward(x, p, rng: np.random.Generator):
    """Zero each entry with probability ``p`` and scale the rest by ``1/(1-p)``.

    x: any shape -> out: same shape; cache: the scaled mask (x.dtype, on x's device).
    """
    # Move the 1-byte boolean mask, not a float one: it is the cheapest thing to copy.
    keep = backend.to_device(dropout_mask(x.shape, p, rng), backend.device_of(x))
    # float(): a numpy float64 scale would promote a float32 input to float64 (NEP 50).
    scaled_mask = keep.astype(x.dtype) * (1.0 / (1.0 - float(p)))
    return x * scaled_mask, scaled_mask


def dropout_backward(dout, cache):
    """dx = dout * the same scaled mask."""
    scaled_mask = cache
    return dout * scaled_mask
