"""Batch normalisation (Ioffe & Szegedy, 2015, "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift").

Statistics are taken per channel (axis 1) over every other axis, so one code path serves
(N, C) and (N, C, H, W). The forward either computes batch statistics (training) or is given
fixed ones (evaluation with running statistics); the backward handles both.

Speed: the input is viewed as (N, C, L) with L = H*W (1 for (N, C)), so each per-channel sum
runs along contiguous memory, and a per-channel constant is spread to a (C, L) array before
it meets a full-size one: ``x * v`` then runs N long contiguous loops of C*L values instead
of N*C short ones broadcast from a (C, 1) column, with the same arithmetic. That makes each
such pass up to 2x faster (at 8x8 the short loops are 64 values, and loop overhead
dominates), the layer about 1.15x in a training step (float32, 100x32x32x32, one thread).
Sums of products are ``einsum`` contractions that need no full-size temporary. Every
full-size array made is needed: the forward makes ``x_hat`` (kept for the backward) and
``out``, the backward only ``dx``; the rest is done in place. With numba installed the same
maths runs as two fused passes each way (``minidl.kernels.normalization``).

Threads: each pass over memory is one short function of the rows ``lo:hi`` of the batch
(``_plane_sums``, ``_centre``, ``_affine``; ``_grad_sums``, ``_grad_input``), and a large
NumPy array is cut into consecutive shares of rows done at once by a small pool of threads
(``minidl._threads.share_rows``: NumPy releases the GIL in its loops, so two threads use two
cores). A per-channel sum is first made per (n, c) plane, into an (N, C) array, then added
over n in one fixed order: the same bits for any number of threads, and the same bits as one
``sum(axis=(0, 2))`` over the whole array, which adds plane by plane in that order too.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import backend, kernels
from .._shapes import float_input
from .._threads import share_rows


class BatchNormCache(NamedTuple):
    """What ``batchnorm_forward`` keeps for ``batchnorm_backward`` (and the layer's running
    statistics); arrays in x's dtype, C = x.shape[1].

    x_hat: x's shape, the normalised input ``(x - mean) * inv_std``.
    inv_std: (C,) ``1 / sqrt(var + eps)``.
    gamma: (C,) the scale the forward used.
    batch_stats: True when mean/var are the batch's (training), False when they were given.
    mean, var: (C,) the statistics used; in training the batch mean and the BIASED variance.
    """

    x_hat: object
    inv_std: object
    gamma: object
    batch_stats: bool
    mean: object
    var: object


def _channels_last_flat(a):
    """``a`` (N, C, ...) viewed as (N, C, L), L = prod(...) (1 for (N, C)); a view when contiguous."""
    L = 1
    for size in a.shape[2:]:
        L *= size
    return a.reshape(a.shape[0], a.shape[1], L)


def _per_channel(v, L: int):
    """A (C,) vector as a contiguous (C, L) array, each row constant: it broadcasts against
    (N, C, L) along N only, so an element-wise op runs N long loops (see the module docstring).

    Full-size outputs are allocated before it: made first, this small array can take the start
    of a just-freed full-size block, and the full-size array then needs fresh memory.
    """
    xp = backend.get_array_module(v)
    return xp.broadcast_to(v[:, None], (v.shape[0], L)).copy()


# ---------------------------------------------------------------------------- one share
# The maths of rows lo:hi of the batch, one pass over memory each; arrays are (N, C, L) and
# a per-channel constant is a (C, L) array (``_per_channel``).
def _plane_sums(x, sums, lo, hi):
    """``sums[n, c]``: the sum of the L values of plane ``x[n, c]``, for rows lo:hi."""
    sums[lo:hi] = x[lo:hi].sum(axis=2)


def _centre(x, mean, centred, squares, lo, hi):
    """``centred = x - mean`` and, unless ``squares`` is None (fixed statistics), each
    plane's sum of squares of it into ``squares[n, c]``."""
    xp = backend.get_array_module(x)
    c = centred[lo:hi]
    xp.subtract(x[lo:hi], mean, out=c)
    if squares is not None:
        squares[lo:hi] = xp.einsum("ncl,ncl->nc", c, c)  # no full-size temporary


def _affine(x_hat, inv_std, gamma, beta, out, lo, hi):
    """``x_hat *= inv_std`` (it holds x - mean on entry), ``out = gamma * x_hat + beta``."""
    xp = backend.get_array_module(x_hat)
    h, o = x_hat[lo:hi], out[lo:hi]
    h *= inv_std
    xp.multiply(h, gamma, out=o)
    o += beta


def _grad_sums(dout, x_hat, sum_d, sum_dx, lo, hi):
    """Per plane: the sum of dout into ``sum_d[n, c]``, of dout * x_hat into ``sum_dx[n, c]``."""
    d = dout[lo:hi]
    sum_d[lo:hi] = d.sum(axis=2)
    sum_dx[lo:hi] = backend.get_array_module(d).einsum("ncl,ncl->nc", d, x_hat[lo:hi])


def _grad_input(dout, x_hat, a, b, scale, dx, lo, hi):
    """``dx = scale * (dout - (x_hat * a + b))``, in place on dx (a = dgamma/m, b = dbeta/m:
    batch statistics), or ``dx = scale * dout`` when a is None (fixed statistics)."""
    xp = backend.get_array_module(dout)
    d, g = dout[lo:hi], dx[lo:hi]
    if a is None:
        xp.multiply(d, scale, out=g)
        return
    xp.multiply(x_hat[lo:hi], a, out=g)
    g += b
    xp.subtract(d, g, out=g)
    g *= scale


# ---------------------------------------------------------------------------- the op
def _compiled(*arrays):
    """The compiled kernels when they should run on these arrays, else None (NumPy code)."""
    if kernels.active(*arrays) and len({a.dtype for a in arrays}) == 1:
        from ..kernels import normalization as compiled  # imports numba on first use only
        return compiled
    return None


def batchnorm_forward(x, gamma, beta, eps: float = 1e-5, mean=None, var=None):
    """Normalise per channel and apply the affine map ``gamma * x_hat + beta``.

    x: (N, C) or (N, C, H, W); gamma, beta: (C,) -> (out: x's shape, BatchNormCache). With
    ``mean``/``var`` None the batch statistics over N (and H, W) are used, with the BIASED
    variance, and the cache carries them so the caller can update running statistics. With
    ``mean``/``var`` given (evaluation) they are constants and the op is a per-channel affine map.
    """
    x = float_input(x, "batchnorm_forward")
    if x.ndim < 2:
        raise ValueError(f"batchnorm_forward: expected input of shape (N, C, ...), "
                         f"got {tuple(x.shape)}")
    xp = backend.get_array_module(x)
    batch_stats = mean is None
    gamma = gamma.astype(x.dtype, copy=False)
    beta = beta.astype(x.dtype, copy=False)
    x3 = _channels_last_flat(x)
    L = x3.shape[2]
    k = _compiled(x)
    if batch_stats:
        if k:
            mean, var = k.batch_stats(x3)
        else:
            m = x3.shape[0] * L
            sums = xp.empty(x3.shape[:2], dtype=x.dtype)  # (N, C): one sum per plane
            share_rows(_plane_sums, x3, sums)
            mean = sums.sum(axis=0) / m
            # Two-pass variance, E[(x - mean)^2]: it does not cancel catastrophically like
            # E[x^2] - mean^2. ``centred`` becomes x_hat below, so it costs nothing extra.
            centred = xp.empty_like(x3)  # before the (C, L) constant: see _per_channel
            share_rows(_centre, x3, _per_channel(mean, L), centred, sums)
            var = sums.sum(axis=0) / m
    else:
        mean, var = mean.astype(x.dtype, copy=False), var.astype(x.dtype, copy=False)
    inv_std = 1.0 / xp.sqrt(var + eps)
    if k:
        x_hat, out = k.normalise(x3, mean, inv_std, gamma, beta)
    else:
        if batch_stats:
            x_hat = centred
        else:
            x_hat = xp.empty_like(x3)
            share_rows(_centre, x3, _per_channel(mean, L), x_hat, None)
        out = xp.empty_like(x_hat)
        share_rows(_affine, x_hat, _per_channel(inv_std, L), _per_channel(gamma, L),
                   _per_channel(beta, L), out)
    cache = BatchNormCache(x_hat.reshape(x.shape), inv_std, gamma, batch_stats, mean, var)
    return out.reshape(x.shape), cache


def batchnorm_backward(dout, cache):
    """Return ``(dx, dgamma, dbeta)``; dout has x's shape, dgamma and dbeta are (C,).

    With batch statistics this is the compact form (cs231n ``batchnorm_backward_alt``):
    ``dx = gamma * inv_std * (dout - (dbeta + x_hat * dgamma) / m)`` with
    ``dbeta = sum(dout)``, ``dgamma = sum(dout * x_hat)`` over the m = N*H*W values of each
    channel: the mean and variance depend on every input, which gives the two subtracted
    terms. With fixed statistics (evaluation) ``dx = gamma * inv_std * dout``.
    """
    xp = backend.get_array_module(dout)
    x_hat = _channels_last_flat(cache.x_hat)
    d3 = _channels_last_flat(dout)
    L = x_hat.shape[2]
    m = x_hat.shape[0] * L
    scale = cache.gamma * cache.inv_std
    k = _compiled(d3, x_hat)
    if k:
        dx, dgamma, dbeta = k.batchnorm_backward(d3, x_hat, scale, cache.batch_stats)
        return dx.reshape(cache.x_hat.shape), dgamma, dbeta
    sum_d = xp.empty(d3.shape[:2], dtype=d3.dtype)  # (N, C): one sum per plane
    sum_dx = xp.empty(d3.shape[:2], dtype=xp.result_type(d3, x_hat))
    share_rows(_grad_sums, d3, x_hat, sum_d, sum_dx)
    dbeta, dgamma = sum_d.sum(axis=0), sum_dx.sum(axis=0)
    dtype = x_hat.dtype
    dx = xp.empty_like(x_hat)
    if cache.batch_stats:
        a = _per_channel((dgamma / m).astype(dtype, copy=False), L)
        b = _per_channel((dbeta / m).astype(dtype, copy=False), L)
    else:
        a = b = None
    share_rows(_grad_input, d3, x_hat, a, b, _per_channel(scale, L), dx)
    return dx.reshape(cache.x_hat.shape), dgamma, dbeta
