"""Fully connected (affine) layer: ``y = x W^T + b``."""
from __future__ import annotations

from typing import NamedTuple

from .._shapes import float_input


class LinearCache(NamedTuple):
    """What ``linear_forward`` keeps for ``linear_backward``.

    x: (N, in) the input; weight: (out, in) the weight cast to x's dtype; has_bias: whether
    a bias was added (so the backward returns its gradient, else None).
    """

    x: object
    weight: object
    has_bias: bool


def linear_forward(x, weight, bias=None):
    """Affine map with PyTorch's weight layout.

    x: (N, in), weight: (out, in), bias: (out,) or None -> (out: (N, out), LinearCache).
    The parameters are cast to ``x.dtype`` so the output dtype follows the input.
    """
    x = float_input(x, "linear_forward")
    W = weight.astype(x.dtype, copy=False)
    out = x @ W.T
    if bias is not None:
        out += bias.astype(x.dtype, copy=False)  # out is freshly allocated: in place is safe
    return out, LinearCache(x, W, bias is not None)


def linear_backward(dout, cache):
    """Gradients of the affine map.

    dout: (N, out) -> (dx: (N, in), dW: (out, in), db: (out,) or None).
    """
    x, W, has_bias = cache
    dx = dout @ W
    dW = dout.T @ x
    db = dout.sum(axis=0) if has_bias else None
    return dx, dW, db
