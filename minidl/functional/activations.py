"""Element-wise activations: any input shape, output dtype follows the input."""
from __future__ import annotations

from .. import backend


def sigmoid(x):
    """Numerically stable logistic function ``1 / (1 + exp(-x))``.

    ``exp`` only ever sees ``-|x|`` so it cannot overflow, and the negative branch is
    computed as ``e / (1 + e)`` rather than ``1 - s`` to keep relative precision near 0.
    """
    xp = backend.get_array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def relu_forward(x):
    """max(x, 0). x: any shape -> out: same shape."""
    xp = backend.get_array_module(x)
    mask = x > 0
    return xp.maximum(x, 0), mask


def relu_backward(dout, cache):
    """dx = dout where x > 0, else 0 (the subgradient at 0 is taken as 0, as in PyTorch)."""
    mask = cache
    return dout * mask


def leaky_relu_forward(x, negative_slope=0.01):
    """x for x > 0, ``negative_slope * x`` otherwise (Maas et al., 2013)."""
    xp = backend.get_array_module(x)
    # float(): a numpy float64 slope would promote a float32 input to float64 (NEP 50).
    negative_slope = float(negative_slope)
    mask = x > 0
    return xp.where(mask, x, negative_slope * x), (mask, negative_slope)


def leaky_relu_backward(dout, cache):
    """dx = dout where x > 0, ``negative_slope * dout`` otherwise."""
    xp = backend.get_array_module(dout)
    mask, negative_slope = cache
    return xp.where(mask, dout, negative_slope * dout)


def elu_forward(x, alpha=1.0):
    """x for x > 0, ``alpha * (exp(x) - 1)`` otherwise (Clevert et al., 2016, "Fast and
    Accurate Deep Network Learning by Exponential Linear Units")."""
    xp = backend.get_array_module(x)
    alpha = float(alpha)  # keep float32 inputs float32 (see leaky_relu_forward)
    mask = x > 0
    # expm1 of min(x, 0): accurate near 0 and no overflow warning from the unused branch.
    negative = alpha * xp.expm1(xp.minimum(x, 0))
    return xp.where(mask, x, negative), (mask, negative, alpha)


def elu_backward(dout, cache):
    """d/dx of the negative branch is ``alpha * exp(x) = out + alpha``."""
    xp = backend.get_array_module(dout)
    mask, negative, alpha = cache
    return xp.where(mask, dout, dout * (negative + alpha))


def sigmoid_forward(x):
    """sigmoid(x); the output is the cache. x: any shape -> out: same shape."""
    out = sigmoid(x)
    return out, out


def sigmoid_backward(dout, cache):
    """sigma'(x) = sigma(x) * (1 - sigma(x))."""
    out = cache
    return dout * out * (1 - out)


def tanh_forward(x):
    """tanh(x); the output is the cache. x: any shape -> out: same shape."""
    xp = backend.get_array_module(x)
    out = xp.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    """tanh'(x) = 1 - tanh(x)^2."""
    out = cache
    return dout * (1 - out * out)


def swish_forward(x):
    """x * sigmoid(x) (Ramachandran et al., 2017, "Searching for Activation Functions";
    beta = 1, also known as SiLU)."""
    s = sigmoid(x)
    return x * s, (x, s)


def swish_backward(dout, cache):
    """d/dx [x s] = s + x s (1 - s) = s (1 + x (1 - s))."""
    x, s = cache
    return dout * (s * (1 + x * (1 - s)))
