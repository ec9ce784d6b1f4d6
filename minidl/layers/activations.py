"""Activation layers and the name -> layer factory the models use.

Each layer wraps a forward/backward pair from ``minidl.functional.activations``; inputs may
have any shape and the output keeps the input's dtype, and its shape too, except CReLU's,
which doubles the channel axis 1.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ..functional import activations as F
from .base import Layer, Parameter


class _Activation(Layer):
    """One idiom for every activation: a subclass names its functional pair and hyper-parameters.

    ``ops = (forward, backward)`` from ``minidl.functional.activations``, where the maths of each
    activation and its derivative sit side by side; ``hyper`` names the attributes passed to
    the forward after ``x`` (e.g. ``("negative_slope",)``). The cache is ``(output shape, op
    cache)``. ``channel_multiplier``: output channels per input channel (axis 1), 1 for the
    element-wise ones; a model sizes the layer after an activation with it (CReLU: 2).
    """

    ops: tuple
    hyper: tuple[str, ...] = ()
    channel_multiplier = 1

    def forward(self, x):
        self._check_input(x)
        out, cache = self.ops[0](x, *self._hyper_values())
        self._cache = (tuple(out.shape), cache)
        return out

    def backward(self, dout):
        out_shape, cache = self._saved()
        self._check_dout(dout, out_shape)
        return self.ops[1](dout, cache)

    def _hyper_values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.hyper)

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


class CReLU(_Activation):
    """Concatenated ReLU: ``concat(max(x, 0), max(-x, 0))`` along the channel axis (Shang et
    al., 2016). x: (N, C, ...) -> (N, 2C, ...): it doubles the channels, so the next layer
    takes ``2 * C`` inputs (``channel_multiplier``); no parameters. Shang et al. found that
    early conv layers learn filters in +/- pairs, and CReLU gives both phases from one filter.
    (The survey seed 001 describes CReLU as a ReLU truncated above a threshold; that is
    ReLU6. This is the paper's CReLU.)
    """

    ops = (F.crelu_forward, F.crelu_backward)
    channel_multiplier = 2

    def forward(self, x):
        shape = self._check_input(x)
        if len(shape) < 2:
            raise ValueError(f"{self.describe()}: expected input of shape (N, C, ...) with "
                             f"channels on axis 1, got {shape}")
        return super().forward(x)


class Swish(_Activation):
    """``x * sigmoid(beta * x)`` (Ramachandran et al., 2017, "Searching for Activation
    Functions"). x: any shape -> same shape.

    beta = 1 (the default) is SiLU; beta = 0 gives x / 2; as beta grows Swish tends to ReLU.
    ``trainable=True`` makes beta a Parameter ``beta`` learned with the weights: a single
    scalar (shape (1,)) for the whole layer, the one beta of the paper's formula, which the
    survey seed 001 also trains ("beta is either a constant or a trainable parameter").
    Its gradient, summed over every element of the batch, accumulates in ``beta.grad``.
    Cache: ``(output shape, ActivationCache(x, beta))``.
    """

    ops = (F.swish_forward, F.swish_backward)
    hyper = ("beta",)

    def __init__(self, beta: float = 1.0, trainable: bool = False):
        super().__init__()
        beta = _finite_float(self, "beta", beta)
        if not isinstance(trainable, (bool, np.bool_)):
            raise ValueError(f"Swish: trainable must be True or False, got {trainable!r}")
        self.trainable = bool(trainable)
        # float32 like every weight; it follows the input's dtype in the forward.
        self.beta = Parameter(np.full((1,), beta, np.float32)) if trainable else beta

    def _hyper_values(self) -> tuple:
        return (self.beta.data,) if self.trainable else (self.beta,)

    def backward(self, dout):
        if not self.trainable:
            return super().backward(dout)
        out_shape, cache = self._saved()
        self._check_dout(dout, out_shape)
        dx, dbeta = F.swish_beta_backward(dout, cache)
        self.beta.grad += dbeta  # accumulate, as every parameter gradient does
        return dx

    def extra_repr(self) -> str:
        if self.trainable:
            return "trainable=True"  # the value changes as it learns: see beta.data
        return "" if self.beta == 1.0 else f"beta={self.beta}"


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
    "swish_trainable": functools.partial(Swish, trainable=True),  # beta starts at 1, learned
    "crelu": CReLU,  # doubles the channels: the model must size the next layer for it
}


def get_activation(name: str, **kwargs) -> Layer:
    """A new activation layer by name, e.g. ``get_activation("leaky_relu", negative_slope=0.2)``.

    Names: "relu", "leaky_relu", "elu", "sigmoid", "tanh", "swish", "swish_trainable" (Swish
    with a learned beta), "crelu" (case-insensitive). A model that accepts "crelu" must give
    the next layer ``layer.channel_multiplier`` times the channels.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[key](**kwargs)
