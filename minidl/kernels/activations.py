"""Compiled activations (numba): ReLU and LeakyReLU, forward and backward.

Same maths as ``minidl.functional.activations`` (the reference these are tested against), as
one pass over the data, shared out to threads (``_threads.run_shares``): NumPy needs two or
three passes and a temporary for each of these (ReLU's forward, ``np.maximum(x, 0)``, is one
pass already and stays NumPy; its backward is LeakyReLU's with slope 0). Two kernels, so the
first use compiles four signatures in all; ELU, sigmoid, tanh and Swish stay NumPy (not in
the coursework networks' hot path, and each kernel costs compile time). Arrays are taken
flat (a copy is made only for a non-contiguous input); scalars are cast to the array's dtype
so each kernel compiles once per dtype (float32 for training, float64 for gradient checks),
and ``cache=True`` keeps the compiled code on disk.
"""
from __future__ import annotations

import numba
import numpy as np

from .._threads import run_shares


# Each kernel loops over slices from 0: an index known not to be negative needs no
# wrap-around check, so LLVM vectorises the loop (indexing x[lo + i] ran 5x slower).
@numba.njit(cache=True, nogil=True)
def _leaky_relu(x, slope, out, lo, hi):
    x, out = x[lo:hi], out[lo:hi]
    for i in range(x.size):
        v = x[i]
        out[i] = v * slope if v <= 0 else v  # NaN is not <= 0: it passes, as in np.maximum


@numba.njit(cache=True, nogil=True)
def _leaky_relu_grad(dout, saved, slope, dx, lo, hi):
    dout, saved, dx = dout[lo:hi], saved[lo:hi], dx[lo:hi]
    for i in range(dout.size):
        d = dout[i]
        dx[i] = d if saved[i] > 0 else d * slope


def _flat(a):
    """A 1-d C-contiguous view of ``a`` (a copy only if ``a`` is not contiguous)."""
    return np.ascontiguousarray(a).reshape(-1)


def _elementwise(kernel, like, *args):
    """Run ``kernel(*flat arrays / scalars, out, lo, hi)`` over every element, shared out to
    threads (``_threads.run_shares``), and return ``out`` shaped like ``like``."""
    out = np.empty(like.shape, dtype=like.dtype)
    run_shares(kernel, out.size, out.size, *args, out.reshape(-1))
    return out


def leaky_relu_forward(x, slope: float):
    """x for x > 0, ``slope * x`` otherwise."""
    return _elementwise(_leaky_relu, x, _flat(x), x.dtype.type(slope))


def leaky_relu_backward(dout, saved, slope: float):
    """dout where ``saved > 0``, ``slope * dout`` otherwise (``saved`` as in ActivationCache);
    slope 0 is ReLU's backward."""
    return _elementwise(_leaky_relu_grad, dout, _flat(dout), _flat(saved),
                        dout.dtype.type(slope))
