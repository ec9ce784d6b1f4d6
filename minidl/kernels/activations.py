"""Compiled parallel activations (numba): ReLU and LeakyReLU, forward and backward.

Same maths as ``minidl.functional.activations`` (the reference these are tested against), as
one pass over the data split across cores: NumPy needs two or three passes and a temporary
for each of these (ReLU's forward, ``np.maximum(x, 0)``, is one pass already and stays NumPy;
its backward is LeakyReLU's with slope 0). Two kernels, so the first use compiles four
signatures in all; ELU, sigmoid, tanh and Swish stay NumPy (not in the
coursework networks' hot path, and each kernel costs compile time). Arrays are taken flat (a copy is made only for a non-contiguous input);
scalars are cast to the array's dtype so each kernel compiles once per dtype (float32 for
training, float64 for gradient checks), and ``cache=True`` keeps the compiled code on disk.
"""
from __future__ import annotations

import numba
import numpy as np

from ._threads import threads_for


@numba.njit(parallel=True, cache=True)
def _leaky_relu(x, slope, out):
    for i in numba.prange(x.size):
        v = x[i]
        out[i] = v * slope if v <= 0 else v  # NaN is not <= 0: it passes, as in np.maximum


@numba.njit(parallel=True, cache=True)
def _leaky_relu_grad(dout, saved, slope, dx):
    for i in numba.prange(dout.size):
        d = dout[i]
        dx[i] = d if saved[i] > 0 else d * slope


def _flat(a):
    """A 1-d C-contiguous view of ``a`` (a copy only if ``a`` is not contiguous)."""
    return np.ascontiguousarray(a).reshape(-1)


def _elementwise(kernel, like, *args):
    """Run ``kernel(*flat arrays / scalars, out)`` and return ``out`` shaped like ``like``."""
    out = np.empty(like.shape, dtype=like.dtype)
    with threads_for(out.size):
        kernel(*args, out.reshape(-1))
    return out


def leaky_relu_forward(x, slope: float):
    """x for x > 0, ``slope * x`` otherwise."""
    return _elementwise(_leaky_relu, x, _flat(x), x.dtype.type(slope))


def leaky_relu_backward(dout, saved, slope: float):
    """dout where ``saved > 0``, ``slope * dout`` otherwise (``saved`` as in ActivationCache);
    slope 0 is ReLU's backward."""
    return _elementwise(_leaky_relu_grad, dout, _flat(dout), _flat(saved),
                        dout.dtype.type(slope))
