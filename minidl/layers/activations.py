"""Element-wise activation layers and the name -> layer factory the models use.

Each layer wraps a forward/backward pair from ``minidl.functional.activations``; inputs may
have any shape and the output keeps the input's shape and dtype.
"""
from __future__ import annotations

import math

from ..functional import activations as F
from .base import Layer


class _Activation(Layer):
    """One idiom for every activation: a subclass names its functional pair and hyper-parameters.

    ``ops = (forward, backward)`` from ``minidl.functional.activations``, where the maths of each
    activation and its derivative sit side by side; ``hyper`` names the attributes passed to
    the forward after ``x`` (e.g. ``("negative_slope",)``). The cache is ``(x.shape, op cache)``.
    """

    ops: tuple
    hyper: tuple[str, ...] = ()

    def forward(self, x):
        shape = self._check_input(x)
        out, cache = self.ops[0](x, *(getattr(self, name) for name in self.hyper))
        self._cache = (shape, cache)
        return out

    def backward(self, dout):
        shape, cache = self._saved()
        self._check_dout(dout, shape)
        return self.ops[1](dout, cache)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)}" for name in self.hyper)


class ReLU(_Activation):
    """max(x, 0) (Nair & Hinton, 2010). x: any shape -> same shape."""

    ops = (F.relu_forward, F.relu_backward)


class LeakyReLU(_Activation):
    """x for x > 0, ``negative_slope * x`` otherwise (Maas et al., 2013). x: any shape."""

    ops = (F.leaky_relu_forward, F.leaky_relu_backward)
    hyper = ("negative_slope",)

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = _finite_float(self, "negative_slope", negative_slope)


class ELU(_Activation):
    """x for x > 0, ``alpha * (exp(x) - 1)`` otherwise (Clevert et al., 2016). x: any shape."""

    ops = (F.elu_forward, F.elu_backward)
    hyper = ("alpha",)

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        alpha = _finite_float(self, "alpha", alpha)
        if alpha <= 0:
            raise ValueError(f"ELU: alpha must be positive, got {alpha!r}")
        self.alpha = alpha


class Sigmoid(_Activation):
    """1 / (1 + exp(-x)), computed without overflow. x: any shape -> same shape."""

    ops = (F.sigmoid_forward, F.sigmoid_backward)


class Tanh(_Activation):
    """tanh(x). x: any shape -> same shape."""

    ops = (F.tanh_forward, F.tanh_backward)


class Swish(_Activation):
    """x * sigmoid(x) (Ramachandran et al., 2017, "Searching for Activation Functions").
    x: any shape -> same shape."""

    ops = (F.swish_forward, F.swish_backward)


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
