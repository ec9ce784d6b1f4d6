"""Element-wise activation layers and the name -> layer factory the models use.

Each layer wraps a forward/backward pair from ``minidl.functional.activations``; inputs may
have any shape and the output keeps the input's shape and dtype.
"""
from __future__ import annotations

import math

from ..functional import activations as F
from .base import Layer


class _Activation(Layer):
    """Shared plumbing: run ``_forward_op`` and keep its cache for ``_backward_op``."""

    def _forward_op(self, x):
        raise NotImplementedError

    def _backward_op(self, dout, cache):
        raise NotImplementedError

    def forward(self, x):
        shape = self._check_input(x)
        out, cache = self._forward_op(x)
        self._cache = (shape, cache)
        return out

    def backward(self, dout):
        shape, cache = self._saved()
        self._check_dout(dout, shape)
        return self._backward_op(dout, cache)


class ReLU(_Activation):
    """max(x, 0) (Nair & Hinton, 2010). x: any shape -> same shape."""

    def _forward_op(self, x):
        return F.relu_forward(x)

    def _backward_op(self, dout, cache):
        return F.relu_backward(dout, cache)


class LeakyReLU(_Activation):
    """x for x > 0, ``negative_slope * x`` otherwise (Maas et al., 2013). x: any shape."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = _finite_float(self, "negative_slope", negative_slope)

    def _forward_op(self, x):
        return F.leaky_relu_forward(x, self.negative_slope)

    def _backward_op(self, dout, cache):
        return F.leaky_relu_backward(dout, cache)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ELU(_Activation):
    """x for x > 0, ``alpha * (exp(x) - 1)`` otherwise (Clevert et al., 2016). x: any shape."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        alpha = _finite_float(self, "alpha", alpha)
        if alpha <= 0:
            raise ValueError(f"ELU: alpha must be positive, got {alpha!r}")
        self.alpha = alpha

    def _forward_op(self, x):
        return F.elu_forward(x, self.alpha)

    def _backward_op(self, dout, cache):
        return F.elu_backward(dout, cache)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Sigmoid(_Activation):
    """1 / (1 + exp(-x)), computed without overflow. x: any shape -> same shape."""

    def _forward_op(self, x):
        return F.sigmoid_forward(x)

    def _backward_op(self, dout, cache):
        return F.sigmoid_backward(dout, cache)


class Tanh(_Activation):
    """tanh(x). x: any shape -> same shape."""

    def _forward_op(self, x):
        return F.tanh_forward(x)

    def _backward_op(self, dout, cache):
        return F.tanh_backward(dout, cache)


class Swish(_Activation):
    """x * sigmoid(x) (Ramachandran et al., 2017, "Searching for Activation Functions").
    x: any shape -> same shape."""

    def _forward_op(self, x):
        return F.swish_forward(x)

    def _backward_op(self, dout, cache):
        return F.swish_backward(dout, cache)


def _finite_float(layer: Layer, name: str, value) -> float:
    """``value`` as a finite float, else a ValueError naming the layer and the argument."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{type(layer).__name__}: {name} must be a finite number, "
                         f"got {value!r}")
    return number


ACTIVATIONS = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "elu": ELU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "swish": Swish,
}


def get_activation(name: str, **kwargs) -> Layer:
    """A new activation layer by name, e.g. ``get_activation("leaky_relu", negative_slope=0.2)``.

    Names: "relu", "leaky_relu", "elu", "sigmoid", "tanh", "swish" (case-insensitive).
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[key](**kwargs)
