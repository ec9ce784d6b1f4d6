"""Batch normalisation (Ioffe & Szegedy, 2015, "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift").

Statistics are taken per channel (axis 1) over every other axis, so one code path serves
(N, C) and (N, C, H, W). The forward either computes batch statistics (training) or is given
fixed ones (evaluation with running statistics); the backward handles both.
"""
from __future__ import annotations

from .. import backend


def _reduce_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(a, x):
    """Reshape a (C,) vector to broadcast against x along axis 1, in x's dtype."""
    return a.astype(x.dtype, copy=False).reshape((1, -1) + (1,) * (x.ndim - 2))


def batchnorm_forward(x, gamma, beta, eps: float = 1e-5, mean=None, var=None):
    """Normalise per channel and apply the affine map ``gamma * x_hat + beta``.

    x: (N, C) or (N, C, H, W); gamma, beta: (C,). With ``mean``/``var`` None the batch
    statistics over N (and H, W) are used with the BIASED variance, and the cache carries
    them (``cache["mean"]``, ``cache["var"]``, ``cache["count"]``) so the caller can update
    running statistics. With ``mean``/``var`` given (evaluation) they are constants and the
    layer is a per-channel affine map.
    """
    xp = backend.get_array_module(x)
    axes = _reduce_axes(x)
    batch_stats = mean is None
    mean = x.mean(axis=axes) if batch_stats else mean.astype(x.dtype, copy=False)
    centred = x - _per_channel(mean, x)
    if batch_stats:
        # Two-pass variance: E[(x - mean)^2] does not cancel catastrophically like E[x^2] - mean^2.
        var = (centred * centred).mean(axis=axes)
    else:
        var = var.astype(x.dtype, copy=False)
    inv_std = 1.0 / xp.sqrt(var + eps)
    x_hat = centred * _per_channel(inv_std, x)
    out = _per_channel(gamma, x) * x_hat + _per_channel(beta, x)
    count = x.size // x.shape[1]
    cache = {"x_hat": x_hat, "inv_std": inv_std, "gamma": gamma.astype(x.dtype, copy=False),
             "batch_stats": batch_stats, "mean": mean, "var": var, "count": count}
    return out, cache


def batchnorm_backward(dout, cache):
    """Return ``(dx, dgamma, dbeta)``; dout has x's shape, dgamma and dbeta are (C,).

    With batch statistics this is the compact form (cs231n ``batchnorm_backward_alt``):
    ``dx = gamma * inv_std / m * (m * dout - sum(dout) - x_hat * sum(dout * x_hat))`` with the
    sums over the m = N*H*W values of each channel: the mean and variance depend on every
    input, which gives the two subtracted terms. With fixed statistics (evaluation)
    ``dx = gamma * inv_std * dout``.
    """
    x_hat = cache["x_hat"]
    axes = _reduce_axes(x_hat)
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * x_hat).sum(axis=axes)
    scale = _per_channel(cache["gamma"] * cache["inv_std"], x_hat)
    if not cache["batch_stats"]:
        return (scale * dout).astype(x_hat.dtype, copy=False), dgamma, dbeta
    m = cache["count"]
    dx = (scale / m) * (m * dout - _per_channel(dbeta, x_hat)
                        - x_hat * _per_channel(dgamma, x_hat))
    return dx.astype(x_hat.dtype, copy=False), dgamma, dbeta
