"""Compiled batch normalisation (numba): the statistics, the normalisation and the backward as
fused parallel passes, without the full-size temporaries NumPy needs.

Same maths as ``minidl.functional.normalization`` (the reference these are tested against).
Arrays come as (N, C, L) views (L = H*W, 1 for (N, C) input); per-channel vectors in the
input's dtype. Sums accumulate in float64, so float32 statistics are at least as accurate as
NumPy's. Every kernel runs in parallel over the N*C (sample, channel) planes; per-plane sums
are then added per channel in NumPy (an (N, C) array, small).
"""
from __future__ import annotations

import numba
import numpy as np

from ._threads import threads_for


# Sums may be reordered ("reassoc") so that LLVM vectorises them; NaN and inf keep their
# meaning (no other fast-math flag).
_SUMS = {"reassoc"}


@numba.njit(parallel=True, cache=True, fastmath=_SUMS)
def _plane_stats(x, mean, m2):
    """Mean and sum of squared deviations of each (n, c) plane of L values: two passes over
    one plane, the second from the cache, so x is read from memory once."""
    N, C, L = x.shape
    for p in numba.prange(N * C):
        n, c = p // C, p % C
        total = 0.0
        for i in range(L):
            total += x[n, c, i]
        mu = total / L
        squares = 0.0
        for i in range(L):
            d = x[n, c, i] - mu
            squares += d * d
        mean[n, c] = mu
        m2[n, c] = squares


@numba.njit(parallel=True, cache=True)
def _normalise(x, mean, scale, beta, centred, out):
    N, C, L = x.shape
    for p in numba.prange(N * C):
        n, c = p // C, p % C
        mu, k, b = mean[c], scale[c], beta[c]
        for i in range(L):
            h = x[n, c, i] - mu
            centred[n, c, i] = h
            out[n, c, i] = h * k + b


@numba.njit(parallel=True, cache=True, fastmath=_SUMS)
def _grad_sums(dout, centred, sum_d, sum_dx):
    """Per (n, c) plane: the sum of dout and of dout * centred."""
    N, C, L = dout.shape
    for p in numba.prange(N * C):
        n, c = p // C, p % C
        a = 0.0
        b = 0.0
        for i in range(L):
            d = dout[n, c, i]
            a += d
            b += d * centred[n, c, i]
        sum_d[n, c] = a
        sum_dx[n, c] = b


@numba.njit(parallel=True, cache=True)
def _grad_input(dout, centred, scale, a, b, dx):
    N, C, L = dout.shape
    for p in numba.prange(N * C):
        n, c = p // C, p % C
        k, ac, bc = scale[c], a[c], b[c]
        for i in range(L):
            dx[n, c, i] = k * (dout[n, c, i] - (centred[n, c, i] * ac + bc))


def batch_stats(x):
    """Per-channel mean and biased variance of x (N, C, L) -> two (C,) arrays in x's dtype.

    The planes' statistics are combined exactly (Chan et al., 1979): the channel's sum of
    squared deviations is the planes' own plus L * (plane mean - channel mean)^2 each.
    """
    x = np.ascontiguousarray(x)
    N, C, L = x.shape
    plane_mean, plane_m2 = np.empty((N, C)), np.empty((N, C))
    with threads_for(x.size):
        _plane_stats(x, plane_mean, plane_m2)
    mean = plane_mean.mean(axis=0)
    m2 = plane_m2.sum(axis=0) + L * ((plane_mean - mean) ** 2).sum(axis=0)
    return mean.astype(x.dtype), (m2 / (N * L)).astype(x.dtype)


def normalise(x, mean, inv_std, gamma, beta):
    """centred = x - mean and out = centred * (gamma * inv_std) + beta in one pass; x: (N, C, L)."""
    x = np.ascontiguousarray(x)
    centred, out = np.empty_like(x), np.empty_like(x)
    scale = (gamma * inv_std).astype(x.dtype, copy=False)
    with threads_for(x.size):
        _normalise(x, mean.astype(x.dtype, copy=False), scale, beta.astype(x.dtype, copy=False),
                   centred, out)
    return centred, out


def batchnorm_backward(dout, centred, inv_std, scale, batch_stats: bool):
    """(dx, dgamma, dbeta) from dout, centred = x - mean (N, C, L), inv_std and
    scale = gamma * inv_std (C,).

    dgamma = inv_std * sum(dout * centred) (= sum(dout * x_hat)); dx = scale * (dout -
    (centred * inv_std * dgamma + dbeta) / m) with batch statistics, scale * dout with fixed
    ones (the subtracted term is then 0).
    """
    dout, centred = np.ascontiguousarray(dout), np.ascontiguousarray(centred)
    N, C, L = dout.shape
    sum_d, sum_dc = np.empty((N, C)), np.empty((N, C))
    with threads_for(dout.size):
        _grad_sums(dout, centred, sum_d, sum_dc)
    dbeta, dgamma = sum_d.sum(axis=0), sum_dc.sum(axis=0) * inv_std
    m = N * L
    a = (inv_std * dgamma / m if batch_stats else np.zeros(C)).astype(dout.dtype)
    b = (dbeta / m if batch_stats else np.zeros(C)).astype(dout.dtype)
    dx = np.empty_like(dout)
    with threads_for(dout.size):
        _grad_input(dout, centred, scale.astype(dout.dtype, copy=False), a, b, dx)
    return dx, dgamma.astype(dout.dtype), dbeta.astype(dout.dtype)
