"""Fully connected (affine) layer: ``y = x W^T + b``."""
from __future__ import annotations


def linear_forward(x, weight, bias=None):
    """Affine map with PyTorch's weight layout.

    x: (N, in), weight: (out, in), bias: (out,) or None -> out: (N, out).
    The parameters are cast to ``x.dtype`` so the output dtype follows the input.
    """
    W = weight.astype(x.dtype, copy=False)
    out = x @ W.T
    if bias is not None:
        out = out + bias.astype(x.dtype, copy=False)
    return out, (x, W, bias is not None)


def linear_backward(dout, cache):
    """Gradients of the affine map.

    dout: (N, out) -> (dx: (N, in), dW: (out, in), db: (out,) or None).
    """
    x, W, has_bias = cache
    dx = dout @ W
    dW = dout.T @ x
    db = dout.sum(axis=0) if has_bias else None
    return dx, dW, db
