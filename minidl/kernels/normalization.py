"""Compiled batch normalisation (numba): the statistics, the normalisation and the backward as
fused parallel passes, without the full-size temporaries NumPy needs.

Same maths as ``minidl.functional.normalization`` (the reference these are tested against).
Arrays come as (N, C, L) views (L = H*W, 1 for (N, C) input); per-channel vectors in the
input's dtype. Sums accumulate in float64, so float32 statistics are at least as accurate as
NumPy's. Every kernel works on a range ``lo, hi`` of the N*C (sample, channel) planes, the
planes shared out to threads (``_threads.run_shares``); per-plane sums are then added per
channel in NumPy (an (N, C) array, small).
"""
from __future__ import annotations

import numba
import numpy as np

from .._threads import run_shares


# Sums may be reordered ("reassoc") so that LLVM vectorises them; NaN and inf keep their
# meaning (no other fast-math flag).
_SUMS = {"reassoc"}


@numba.njit(cache=True, nogil=True, fastmath=_SUMS)
def _plane_stats(x, mean, m2, lo, hi):
    """Mean and sum of squared deviations of each (n, c) plane of L values: two passes over
    one plane, the second from the cache, so x is read from memory once."""
    N, C, L = x.shape
    for p in range(lo, hi):
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


@numba.njit(cache=True, nogil=True)
def _normalise(x, mean, inv_std, gamma, beta, x_hat, out, lo, hi):
    N, C, L = x.shape
    for p in range(lo, hi):
        n, c = p // C, p % C
        mu, k, g, b = mean[c], inv_std[c], gamma[c], beta[c]
        for i in range(L):
            h = (x[n, c, i] - mu) * k
            x_hat[n, c, i] = h
            out[n, c, i] = h * g + b


@numba.njit(cache=True, nogil=True, fastmath=_SUMS)
def _grad_sums(dout, x_hat, sum_d, sum_dx, lo, hi):
    """Per (n, c) plane: the sum of dout and of dout * x_hat."""
    N, C, L = dout.shape
    for p in range(lo, hi):
        n, c = p // C, p % C
        a = 0.0
        b = 0.0
        for i in range(L):
            d = dout[n, c, i]
            a += d
            b += d * x_hat[n, c, i]
        sum_d[n, c] = a
        sum_dx[n, c] = b


@numba.njit(cache=True, nogil=True)
def _grad_input(dout, x_hat, scale, a, b, dx, lo, hi):
    N, C, L = dout.shape
    for p in range(lo, hi):
        n, c = p // C, p % C
        k, ac, bc = scale[c], a[c], b[c]
        for i in range(L):
            dx[n, c, i] = k * (dout[n, c, i] - (x_hat[n, c, i] * ac + bc))


def batch_stats(x):
    """Per-channel mean and biased variance of x (N, C, L) -> two (C,) arrays in x's dtype.

    The planes' statistics are combined exactly (Chan et al., 1979): the channel's sum of
    squared deviations is the planes' own plus L * (plane mean - channel mean)^2 each.
    """
    x = np.ascontiguousarray(x)
    N, C, L = x.shape
    plane_mean, plane_m2 = np.empty((N, C)), np.empty((N, C))
    run_shares(_plane_stats, N * C, x.size, x, plane_mean, plane_m2)
    mean = plane_mean.mean(axis=0)
    m2 = plane_m2.sum(axis=0) + L * ((plane_mean - mean) ** 2).sum(axis=0)
    return mean.astype(x.dtype), (m2 / (N * L)).astype(x.dtype)


def normalise(x, mean, inv_std, gamma, beta):
    """x_hat = (x - mean) * inv_std and out = gamma * x_hat + beta in one pass; x: (N, C, L)."""
    x = np.ascontiguousarray(x)
    x_hat, out = np.empty_like(x), np.empty_like(x)
    N, C = x.shape[:2]
    run_shares(_normalise, N * C, x.size, x,
               *(v.astype(x.dtype, copy=False) for v in (mean, inv_std, gamma, beta)), x_hat, out)
    return x_hat, out


def batchnorm_backward(dout, x_hat, scale, batch_stats: bool):
    """(dx, dgamma, dbeta) from dout, x_hat (N, C, L) and scale = gamma * inv_std (C,).

    dx = scale * (dout - (x_hat * dgamma + dbeta) / m) with batch statistics, scale * dout
    with fixed ones (the subtracted term is then 0).
    """
    dout, x_hat = np.ascontiguousarray(dout), np.ascontiguousarray(x_hat)
    N, C, L = dout.shape
    sum_d, sum_dx = np.empty((N, C)), np.empty((N, C))
    run_shares(_grad_sums, N * C, dout.size, dout, x_hat, sum_d, sum_dx)
    dbeta, dgamma = sum_d.sum(axis=0), sum_dx.sum(axis=0)
    m = N * L
    a = (dgamma / m if batch_stats else np.zeros(C)).astype(dout.dtype)
    b = (dbeta / m if batch_stats else np.zeros(C)).astype(dout.dtype)
    dx = np.empty_like(dout)
    run_shares(_grad_input, N * C, dout.size, dout, x_hat, scale.astype(dout.dtype, copy=False),
               a, b, dx)
    return dx, dgamma.astype(dout.dtype), dbeta.astype(dout.dtype)
