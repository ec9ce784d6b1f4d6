"""SGD (with momentum / Nesterov), AdaGrad, RMSProp and Adam (with AMSGrad): torch.optim's update rules.

Every rule starts from ``g = grad + weight_decay * w`` (L2 added to the gradient, not AdamW's
decoupled decay) and updates ``w`` in place in its own dtype; ``t`` counts steps from 1.
"""
from __future__ import annotations

import math

from .. import backend
from .. import _shapes
from .base import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent: ``b = mu * b + g``; ``w -= lr * (g + mu * b if nesterov else b)``.

    Nesterov momentum in the form of Sutskever et al. 2013, as torch.optim.SGD (dampening 0).
    """

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum = _shapes.unit_interval(momentum, "momentum", "SGD")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self._state_names = ("momentum_buffer",) if self.momentum else ()

    def _update(self, i, p, g):
        if self.momentum:
            buf = self._buffer(i, "momentum_buffer")
            buf *= self.momentum
            buf += g                      # zeros at t = 1, so b_1 = g as in torch
            g = g + self.momentum * buf if self.nesterov else buf
        p.data -= self.lr * g

    def _hyper(self):
        return {**super()._hyper(), "momentum": self.momentum, "nesterov": self.nesterov}


class AdaGrad(Optimizer):
    """AdaGrad (Duchi, Hazan & Singer 2011): ``s += g^2``; ``w -= lr * g / (sqrt(s) + eps)``."""

    def __init__(self, params, lr=1e-2, eps=1e-10, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.eps = _shapes.nonnegative(eps, "eps", "AdaGrad")
        self._state_names = ("sum",)

    def _update(self, i, p, g):
        xp = backend.get_array_module(p.data)
        total = self._buffer(i, "sum")
        total += g * g
        p.data -= self.lr * g / (xp.sqrt(total) + self.eps)

    def _hyper(self):
        return {**super()._hyper(), "eps": self.eps}


class RMSProp(Optimizer):
    """RMSProp (Hinton, Coursera lecture 6e): ``v = alpha * v + (1 - alpha) * g^2``; step ``g / (sqrt(v) + eps)``.

    With momentum: ``b = mu * b + g / (sqrt(v) + eps)``; ``w -= lr * b`` (torch.optim.RMSprop, not centred).
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.alpha = _shapes.unit_interval(alpha, "alpha", "RMSProp")
        self.eps = _shapes.nonnegative(eps, "eps", "RMSProp")
        self.momentum = _shapes.unit_interval(momentum, "momentum", "RMSProp")
        self._state_names = ("square_avg",) + (("momentum_buffer",) if self.momentum else ())

    def _update(self, i, p, g):
        xp = backend.get_array_module(p.data)
        square_avg = self._buffer(i, "square_avg")
        square_avg *= self.alpha
        square_avg += (1 - self.alpha) * g * g
        scaled = g / (xp.sqrt(square_avg) + self.eps)
        if self.momentum:
            buf = self._buffer(i, "momentum_buffer")
            buf *= self.momentum
            buf += scaled
            scaled = buf
        p.data -= self.lr * scaled

    def _hyper(self):
        return {**super()._hyper(), "alpha": self.alpha, "eps": self.eps, "momentum": self.momentum}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), optionally AMSGrad (Reddi, Kale & Kumar 2018).

    ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2`` (AMSGrad: ``v_max = max(v_max, v)`` is used
    for ``v``); ``w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``, as torch.optim.Adam.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        super().__init__(params, lr, weight_decay)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_shapes.unit_interval(betas[0], "betas[0]", "Adam"),
                      _shapes.unit_interval(betas[1], "betas[1]", "Adam"))
        self.eps = _shapes.nonnegative(eps, "eps", "Adam")
        self.amsgrad = bool(amsgrad)
        self._state_names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self.amsgrad else ())

    def _update(self, i, p, g):
        xp = backend.get_array_module(p.data)
        beta1, beta2 = self.betas
        t = self.step_count
        exp_avg, exp_avg_sq = self._buffer(i, "exp_avg"), self._buffer(i, "exp_avg_sq")
        exp_avg *= beta1
        exp_avg += (1 - beta1) * g
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * g * g
        second = exp_avg_sq
        if self.amsgrad:
            second = self._buffer(i, "max_exp_avg_sq")
            xp.maximum(second, exp_avg_sq, out=second)
        # Bias corrections for the zero-initialised averages.
        step_size = self.lr / (1 - beta1 ** t)
        denom = xp.sqrt(second) / math.sqrt(1 - beta2 ** t) + self.eps
        p.data -= step_size * exp_avg / denom

    def _hyper(self):
        return {**super()._hyper(), "betas": self.betas, "eps": self.eps, "amsgrad": self.amsgrad}


# name -> (class, default keyword arguments); build_optimizer's keywords override the defaults.
_REGISTRY = {
    "sgd": (SGD, {}),
    "momentum": (SGD, {"momentum": 0.9}),
    "nesterov": (SGD, {"momentum": 0.9, "nesterov": True}),
    "adagrad": (AdaGrad, {}),
    "rmsprop": (RMSProp, {}),
    "adam": (Adam, {}),
    "amsgrad": (Adam, {"amsgrad": True}),
}
OPTIMIZERS = tuple(_REGISTRY)


def register_optimizer(name: str, cls, defaults: dict | None = None) -> None:
    """Make ``build_optimizer(name, ...)`` (and the train CLI's ``--optimizer name``) build ``cls``.

    ``OPTIMIZERS`` is a tuple that other modules import by value, so register before they do:
    ``minidl.optim`` imports every optimiser module (which registers itself) first.
    """
    global OPTIMIZERS
    if name in _REGISTRY and _REGISTRY[name][0] is not cls:
        raise ValueError(f"register_optimizer: {name!r} is already {_REGISTRY[name][0].__name__}")
    _REGISTRY[name] = (cls, dict(defaults or {}))
    OPTIMIZERS = tuple(_REGISTRY)


def build_optimizer(name: str, params, lr, weight_decay=0.0, **kw) -> Optimizer:
    """The optimiser called ``name`` (one of ``OPTIMIZERS``) over ``params``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {list(OPTIMIZERS)}")
    cls, defaults = _REGISTRY[name]
    return cls(params, lr=lr, weight_decay=weight_decay, **{**defaults, **kw})
