"""DessiLBI (Fu, Liu, Li, Sun, Zeng & Yao, ICML 2020, "DessiLBI: Exploring structural sparsity
of deep networks via differential inclusion paths"): SGD on the weights W, coupled to a
sparse copy Gamma that follows a Split Linearised Bregman Iteration.

The coupled loss is ``Lbar(W, Gamma) = L(W) + mu / 2 * ||W - Gamma||^2`` (``mu = 1 / nu``).
For a weight matrix or conv kernel (``ndim >= 2``), with ``g = grad L(W) + weight_decay * W``:

    d     = kappa * (g + mu * (W - Gamma))          # kappa * grad_W Lbar
    z    += lr * mu * (W - Gamma)                   # z -= lr * grad_Gamma Lbar
    W    -= lr * d                                  # with momentum: b = m b + d; W -= lr * b
    Gamma = kappa * shrink(z, lam)                  # from the same W, Gamma as d and z

``shrink`` is the proximal map of the group lasso ``lam * sum_g ||Gamma_g||`` with one group
per output filter or neuron (the first axis): ``z_g * max(0, 1 - lam / ||z_g||)``. Gamma is
exactly zero for a group until its ``z`` has grown past ``lam``: which filters Gamma lets in,
and when, is the path of structural sparsity the paper reads off. Biases and BatchNorm
parameters (``ndim < 2``) take the plain SGD step ``W -= lr * g`` (with the same momentum).
State: ``gamma``, ``z`` and ``momentum_buffer`` per parameter.

Defaults: ``kappa = 1`` and ``mu = 0.01`` (the paper's nu = 100: a weak pull of W towards
Gamma, so W trains almost as plain SGD); ``lam = 0.1`` is our choice: a group enters Gamma
after about ``lam / (lr * mu * ||W_g||)`` steps, i.e. within the first hundred steps at
lr 0.1 for a filter of norm 1, so the sparse path shows in a short run.
"""
from __future__ import annotations

from .. import backend
from .._shapes import nonnegative, positive, unit_interval
from .optimizers import register_optimizer
from .base import Optimizer


def group_shrink(z, lam: float):
    """The group-lasso proximal map over output groups: z (O, ...) -> same shape.

    Each row ``z[o]`` is scaled by ``max(0, 1 - lam / ||z[o]||)`` (a zero row stays zero).
    """
    xp = backend.get_array_module(z)
    norms = xp.sqrt((z.reshape(len(z), -1) ** 2).sum(axis=1))
    scale = xp.maximum(0, 1 - lam / xp.maximum(norms, xp.finfo(z.dtype).tiny))
    return z * scale.reshape((-1,) + (1,) * (z.ndim - 1))


class DessiLBI(Optimizer):
    """DessiLBI: SGD on W plus a group-sparse Gamma path (see the module docstring)."""

    def __init__(self, params, lr, kappa=1.0, mu=0.01, lam=0.1, momentum=0.9, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.kappa = positive(kappa, "kappa", "DessiLBI")
        self.mu = positive(mu, "mu", "DessiLBI")
        if self.lr * self.kappa * self.mu >= 1:
            # The coupling term alone moves W - Gamma by the factor (1 - lr kappa mu) per step:
            # at 1 or more it overshoots Gamma, at 2 or more it oscillates and blows up.
            raise ValueError(f"DessiLBI: lr * kappa * mu must be < 1 (W would overshoot Gamma), "
                             f"got {self.lr} * {self.kappa} * {self.mu}")
        self.lam = nonnegative(lam, "lam", "DessiLBI")
        self.momentum = unit_interval(momentum, "momentum", "DessiLBI")
        self._state_names = ("gamma", "z") + (("momentum_buffer",) if self.momentum else ())

    @staticmethod
    def is_sparse(p) -> bool:
        """Weights of convs and linear layers (ndim >= 2) get a Gamma; the rest do not."""
        return p.data.ndim >= 2

    def _update(self, i, p, g):
        if self.is_sparse(p):
            gamma, z = self._buffer(i, "gamma"), self._buffer(i, "z")
            diff = p.data - gamma
            g = self.kappa * (g + self.mu * diff)
            z += self.lr * self.mu * diff
            gamma[...] = self.kappa * group_shrink(z, self.lam)
        if self.momentum:
            buf = self._buffer(i, "momentum_buffer")
            buf *= self.momentum
            buf += g
            g = buf
        p.data -= self.lr * g

    def gamma(self, p):
        """Gamma of parameter ``p`` (zeros before the first step), or None if it has none."""
        for i, q in enumerate(self.params):
            if q is p:
                return self._buffer(i, "gamma") if self.is_sparse(p) else None
        raise ValueError("DessiLBI.gamma: the parameter is not one of this optimiser's")

    def _hyper(self):
        return {**super()._hyper(), "kappa": self.kappa, "mu": self.mu, "lam": self.lam,
                "momentum": self.momentum}


# Importing this module makes "dessilbi" a name of build_optimizer and of OPTIMIZERS (and so a
# choice of the train CLI's --optimizer); minidl.optim imports it before re-exporting them.
register_optimizer("dessilbi", DessiLBI)
