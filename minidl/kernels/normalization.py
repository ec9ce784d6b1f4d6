"""Compiled batch normalisation (numba): the statistics, the normalisation and the backward as
fused parallel passes, without the full-size temporaries NumPy needs.

Same maths as ``minidl.functional.normalization`` (the reference these are tested against).
Arrays come as (N, C, L) views (L = H*W, 1 for (N, C) input); per-channel vectors in the
input's dtype. Sums accumulate in float64, so float32 statistics are at least as accurate as
NumPy's. Channel loops run in parallel for the sums, (sample, channel) planes for the
element-wise passes.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def _stats(x, mean, var):
    N, C, L = x.shape
    m = N * L
    for c in numba.prange(C):
        total = 0.0
        for n in range(N):
            for i in range(L):
                total += x[n, c, i]
        mu = total / m
        squares = 0.0  # two passes: sum (x - mean)^2 cannot cancel like sum x^2 - m mean^2
        for n in range(N):
            for i in range(L):
                d = x[n, c, i] - mu
                squares += d * d
        mean[c] = mu
        var[c] = squares / m


@numba.njit(parallel=True, cache=True)
def _normalise(x, mean, inv_std, gamma, beta, x_hat, out):
    N, C, L = x.shape
    for p in numba.prange(N * C):
        n, c = p // C, p % C
        mu, k, g, b = mean[c], inv_std[c], gamma[c], beta[c]
        for i in range(L):
            h = (x[n, c, i] - mu) * k
            x_hat[n, c, i] = h
            out[n, c, i] = h * g + b


@numba.njit(parallel=True, cache=True)
def _grad_sums(dout, x_hat, dgamma, dbeta):
    N, C, L = dout.shape
    for c in numba.prange(C):
        sum_d = 0.0
        sum_dx = 0.0
        for n in range(N):
            for i in range(L):
                d = dout[n, c, i]
                sum_d += d
                sum_dx += d * x_hat[n, c, i]
        dbeta[c] = sum_d
        dgamma[c] = sum_dx


@numba.njit(parallel=True, cache=True)
def _grad_input(dout, x_hat, scale, a, b, dx):
    N, C, L = dout.shape
    for p in numba.prange(N * C):
        n, c = p // C, p % C
        k, ac, bc = scale[c], a[c], b[c]
        for i in range(L):
            dx[n, c, i] = k * (dout[n, c, i] - (x_hat[n, c, i] * ac + bc))


def batch_stats(x):
    """Per-channel mean and biased variance of x (N, C, L) -> two (C,) arrays in x's dtype."""
    x = np.ascontiguousarray(x)
    C = x.shape[1]
    mean, var = np.empty(C), np.empty(C)
    _stats(x, mean, var)
    return mean.astype(x.dtype), var.astype(x.dtype)


def normalise(x, mean, inv_std, gamma, beta):
    """x_hat = (x - mean) * inv_std and out = gamma * x_hat + beta in one pass; x: (N, C, L)."""
    x = np.ascontiguousarray(x)
    x_hat, out = np.empty_like(x), np.empty_like(x)
    _normalise(x, *(v.astype(x.dtype, copy=False) for v in (mean, inv_std, gamma, beta)),
               x_hat, out)
    return x_hat, out


def batchnorm_backward(dout, x_hat, scale, batch_stats: bool):
    """(dx, dgamma, dbeta) from dout, x_hat (N, C, L) and scale = gamma * inv_std (C,).

    dx = scale * (dout - (x_hat * dgamma + dbeta) / m) with batch statistics, scale * dout
    with fixed ones (the subtracted term is then 0).
    """
    dout, x_hat = np.ascontiguousarray(dout), np.ascontiguousarray(x_hat)
    N, C, L = dout.shape
    dgamma, dbeta = np.empty(C), np.empty(C)
    _grad_sums(dout, x_hat, dgamma, dbeta)
    m = N * L
    a = (dgamma / m if batch_stats else np.zeros(C)).astype(dout.dtype)
    b = (dbeta / m if batch_stats else np.zeros(C)).astype(dout.dtype)
    dx = np.empty_like(dout)
    _grad_input(dout, x_hat, scale.astype(dout.dtype, copy=False), a, b, dx)
    return dx, dgamma.astype(dout.dtype), dbeta.astype(dout.dtype)
