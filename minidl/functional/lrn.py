"""Local response normalisation across channels (Krizhevsky et al., 2012, "ImageNet
Classification with Deep Convolutional Neural Networks", section 3.3: AlexNet's LRN).

Each activation is divided by a power of the energy of its ``size`` neighbouring channels:

    s_c = k + alpha / size * sum_{j in window(c)} x_j^2,      y_c = x_c * s_c^(-beta)

with window(c) = channels c - size//2 ... c + (size-1)//2 (zero outside 0..C-1). ``alpha`` is
divided by ``size`` as in PyTorch's ``LocalResponseNorm``; AlexNet's paper values (k=2, n=5,
alpha=1e-4, beta=0.75) are that layer with alpha = 5e-4. The backward: y_c depends on x_c directly
and on every x_j whose window contains c, so

    dx_c = dout_c * s_c^(-beta) - (2 alpha beta / size) * x_c * sum_{j: c in window(j)} dout_j x_j s_j^(-beta-1)

where c in window(j) means j in c - (size-1)//2 ... c + size//2 (the window reflected).
"""
from __future__ import annotations

from typing import NamedTuple

from .. import backend
from .._shapes import float_input


class LRNCache(NamedTuple):
    """What the backward needs: the input ``x`` and ``scale`` = s, both (N, C, ...) like x."""
    x: object
    scale: object
    size: int
    alpha: float
    beta: float


def _channel_window_sum(a, before: int, after: int):
    """out[:, c] = sum of a[:, c - before ... c + after] along axis 1, zeros outside the channels.

    A loop over the window's offsets (``size`` of them, e.g. 5), never over channels or pixels.
    """
    xp = backend.get_array_module(a)
    out = a.copy()
    C = a.shape[1]
    for offset in range(1, max(before, after) + 1):
        if offset <= before and offset < C:  # neighbour below: out[c] += a[c - offset]
            out[:, offset:] += a[:, :C - offset]
        if offset <= after and offset < C:   # neighbour above: out[c] += a[c + offset]
            out[:, :C - offset] += a[:, offset:]
    return out if out.dtype == a.dtype else xp.asarray(out, dtype=a.dtype)


def lrn_forward(x, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
    """x: (N, C, ...) -> out: same shape; cache: :class:`LRNCache`."""
    float_input(x, "local_response_norm")
    if x.ndim < 3:
        raise ValueError(f"local_response_norm: expected input of shape (N, C, H, W) or (N, C, L), "
                         f"got {tuple(x.shape)}")
    scale = _channel_window_sum(x * x, size // 2, (size - 1) // 2)
    scale *= alpha / size
    scale += k
    out = x * scale ** -beta
    return out, LRNCache(x, scale, size, alpha, beta)


def lrn_backward(dout, cache: LRNCache):
    """dout: like x -> dx (see the module docstring for the derivation)."""
    x, scale, size, alpha, beta = cache
    # The reflected window: x_c appears in the sums of channels c - (size-1)//2 ... c + size//2.
    spread = _channel_window_sum(dout * x * scale ** (-beta - 1), (size - 1) // 2, size // 2)
    return dout * scale ** -beta - (2 * alpha * beta / size) * x * spread
